"""Text-to-tokens model: entries, shapes, checkpoints, training (tiny models, random
weights), the MAS path, and a timeline built with a learned source."""

import numpy as np
import pytest
import torch

from avgen.errors import WeightsError
from avgen.model.text_to_tokens import (BREAK, PUNCTUATION, WORD_WHOLE, TextToTokens,
                                        TextToTokensConfig, load_checkpoint, length_regulate,
                                        phrases_to_entries, save_checkpoint)
from avgen.text.script import parse_script
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID, phones_to_ids
from avgen.text.phrases import to_phrases
from avgen.text.timeline import LearnedDurations, build_timeline

TINY = TextToTokensConfig(embed_dim=16, conv_layers=1, attn_layers=1, attn_heads=2, ff_dim=32,
                          duration_layers=1, decoder_dim=16, decoder_layers=1, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(TextToTokens(TINY), path, {"step": 0})
    return path


def test_entries_carry_breaks_places_and_punctuation():
    phrases = to_phrases("Wait, did Ben go? Yes!")
    e = phrases_to_entries(phrases)
    phones = [p for phrase in phrases for p in phrase.phones]
    assert len(e) == len(phones_to_ids(phones)) + len(phrases) - 1
    breaks = np.flatnonzero(e.places == BREAK)
    assert len(breaks) == 2 and (e.symbols[breaks] == SILENCE_ID).all()
    assert [PUNCTUATION[k] for k in e.punctuation[breaks]] == [",", "?"]
    assert PUNCTUATION[e.punctuation[-1]] == "!"  # the last phrase's phones know its mark
    assert e.last.tolist() == [int(k == len(phrases) - 1) for k in e.phrase_of]
    assert (e.phone_of[e.places != BREAK] == np.arange(len(phones))).all()
    assert (e.phone_of[breaks] == -1).all()
    # "go" is two phones, "Wait" three: whole-word class only for one-phone words
    assert WORD_WHOLE not in e.places[:breaks[0]].tolist()


def test_length_regulation():
    d = torch.tensor([[2, 1, 3], [1, 2, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    index, progress, frame_mask = length_regulate(d, mask)
    assert index.tolist()[0] == [0, 0, 1, 2, 2, 2]
    assert index.tolist()[1][:3] == [0, 1, 1]
    assert frame_mask.tolist() == [[True] * 6, [True] * 3 + [False] * 3]
    assert progress[0].tolist() == pytest.approx([0, 0.5, 0, 0, 1 / 3, 2 / 3])


def test_tiny_model_shapes_and_determinism(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    e = phrases_to_entries(to_phrases("Hello there, my friend."))
    d = model.predict_durations(e)
    assert d.shape == (len(e),) and (d > 0).all()
    frames = np.arange(1, len(e) + 1)
    for head in ("direct", "flow"):
        logp = model.decode(e, frames, seed=3, decoder=head)
        assert logp.shape == (frames.sum(), NUM_SYMBOLS) and logp.dtype == np.float32
        assert np.allclose(np.exp(logp).sum(1), 1.0, atol=1e-4)
        assert np.array_equal(logp, model.decode(e, frames, seed=3, decoder=head))
    flow = load_checkpoint(tiny_checkpoint, decoder="flow")
    assert not np.array_equal(flow.decode(e, frames, seed=1), flow.decode(e, frames, seed=2))


def test_checkpoint_round_trip_and_bad_files(tiny_checkpoint, tmp_path):
    a, b = load_checkpoint(tiny_checkpoint), load_checkpoint(tiny_checkpoint)
    assert a.config == TINY
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_checkpoint(bad)
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_timeline_with_a_learned_source(tiny_checkpoint):
    source = LearnedDurations(tiny_checkpoint)
    dialogue = parse_script("A: Hi there, you. (pause 0.5) Fine?\nB: (laughs) Yes.", "s.txt")
    tl = build_timeline(dialogue, source)
    assert tl.durations_source == "learned"
    for person in (0, 1):
        logp = tl.token_logits(person)
        assert logp.shape == (tl.num_frames, NUM_SYMBOLS)
        assert np.allclose(np.exp(logp).sum(1), 1.0, atol=1e-4)
        # where nobody decoded (gaps, the other's turn) it is the smoothed one-hot silence
        silent = tl.token_ids(person) == SILENCE_ID
        assert (logp[silent].argmax(1) == SILENCE_ID).mean() > 0.5
    pause = next(c for c in tl.cues if c.kind == "pause")
    assert pause.duration == round(0.5 * 86.1328125)
    # turns still tile without gaps
    for turn in tl.turns:
        span = slice(turn.phoneme_start, turn.phoneme_start + turn.phoneme_count)
        starts, durs = tl.phoneme_starts[span], tl.phoneme_durations[span]
        assert (starts[1:] == starts[:-1] + durs[:-1]).all() and (durs >= 1).all()


# ---------------------------------------------------------------- training (tiny corpus)

hibari = pytest.importorskip("hibari", reason="the teachers extra is not installed")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from avgen.train import corpus

    root = tmp_path_factory.mktemp("corpus")
    corpus.build_utterances(root, corpus.CorpusConfig(num_sentences=10, shard_size=5,
                                                      coverage=False))
    corpus.build_features(root)
    return root


def _train_config(**kw):
    from avgen.train.tokens import TrainConfig

    base = dict(steps=4, batch_size=4, crop=32, log_every=2, eval_every=2,
                checkpoint_every=2, warmup=2)
    return TrainConfig(**{**base, **kw})


def test_training_is_resumable_and_deterministic(tiny_corpus, tmp_path):
    from avgen.train.tokens import LOG, corpus_items, train

    items, skipped = corpus_items(tiny_corpus, tmp_path / "entries.npz")
    assert skipped == 0 and len(items) == 10
    assert [i.key for i in items if i.heldout] == ["0", "1"]
    for item in items:  # edge silences are gone; the mel matches the speech span
        assert item.durations.sum() == len(item.mel)
        assert len(item.durations) == len(item.entries)
    straight = train(items, tmp_path / "a", _train_config(), TINY)
    train(items, tmp_path / "b", _train_config(steps=2), TINY)
    resumed = train(items, tmp_path / "b", _train_config(), TINY)
    sa = load_checkpoint(straight).state_dict()
    sb = load_checkpoint(resumed).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    log = (tmp_path / "a" / LOG).read_text().splitlines()
    assert len(log) == 2 and "eval_phone_mae" in log[-1] and "eval_frame_acc_flow" in log[-1]
    # the cached phonemisation is reused
    again, _ = corpus_items(tiny_corpus, tmp_path / "entries.npz")
    assert all((x.entries.symbols == y.entries.symbols).all() for x, y in zip(items, again))


def test_recordings_without_durations_train_through_mas(tiny_corpus, tmp_path):
    import soundfile

    from avgen.train.corpus import load_utterances
    from avgen.train.tokens import align_batch, make_batch, recording_items, train

    folder = tmp_path / "recordings"
    folder.mkdir()
    for u in load_utterances(tiny_corpus)[:6]:
        audio, rate = soundfile.read(u.audio_path(tiny_corpus), dtype="float32")
        soundfile.write(folder / f"take{u.index}.wav", audio, rate)
        (folder / f"take{u.index}.txt").write_text(u.text)
    items = recording_items(folder)
    assert len(items) == 6 and all(i.durations is None and i.mel is not None for i in items)
    model = TextToTokens(TINY)
    batch = make_batch(items[:3])
    h, _ = model.encode(batch)
    d = align_batch(model, h, batch)
    for b, item in enumerate(items[:3]):
        assert d[b, :len(item.entries)].sum() == len(item.mel)
        assert (d[b, :len(item.entries)] >= 1).all()
    path = train(items, tmp_path / "run", _train_config(steps=2), TINY)
    assert load_checkpoint(path).config == TINY
    # fine-tuning starts from a checkpoint's weights and config (here: a wider decoder)
    wider = TextToTokensConfig(**{**TINY.__dict__, "decoder_dim": 24})
    start = tmp_path / "start.safetensors"
    save_checkpoint(TextToTokens(wider), start)
    tuned = train(items, tmp_path / "tuned", _train_config(steps=1), init=start)
    assert load_checkpoint(tuned).config == wider
    (folder / "take0.txt").unlink()
    from avgen.errors import InputError

    with pytest.raises(InputError, match="take0.wav: recording has no transcript"):
        recording_items(folder)


def test_token_windows_equal_the_whole_tokens(tiny_checkpoint):
    from avgen.pipeline import TimelineTokens
    from avgen.text.timeline import floor_log_probs

    dialogue = parse_script("A: Hi there, you. (pause 0.5) Fine?\nB: (laughs) Yes, fine.",
                            "s.txt")
    tl = build_timeline(dialogue, LearnedDurations(tiny_checkpoint))
    assert tl.decoded  # the decoder's spans are kept, not (T, V) arrays
    # held per decoded span: at most the speech frames, never (2, T, V)
    assert sum(len(block) for _, _, block in tl.decoded) <= tl.num_frames
    T = tl.num_frames
    windows = TimelineTokens(tl, "cpu")
    assert windows.shape == (2, T, NUM_SYMBOLS)
    for person in (0, 1):
        whole = tl.token_logits(person)
        for lo, hi in [(0, T), (0, 1), (T // 3, T // 2), (T - 5, T), (T - 5, T + 10)]:
            assert np.array_equal(tl.token_window(person, lo, hi), whole[lo:hi])
            assert np.array_equal(windows[:, lo:hi][person].numpy(),
                                  floor_log_probs(whole[lo:hi]))
    with pytest.raises(IndexError):
        windows[0, 0:5]
