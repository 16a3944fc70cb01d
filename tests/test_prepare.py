"""`avgen prepare`: recordings -> shards -> `train av`.

Items are built from our own renderer (known motion) and synthetic voiced audio, so the
ground truth is known: who speaks when, and how the faces move.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from avgen.audio.mel import LOG_SILENCE
from avgen.constants import EXPRESSION_NAMES, FRAMES_PER_SECOND, N_MELS
from avgen.errors import InputError
from avgen.face.rotations import degrees_from_quaternion
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FACE_SIZE = 256  # the smallest render whose face MediaPipe still accepts (64 px wide)
VIDEO_FPS = 12.5
# who speaks when (seconds) in the conversation item
TURNS = {0: (0.3, 1.8), 1: (2.2, 3.7)}
SECONDS = 4.0


def voiced(seconds: float, rate: int, f0: float, start: float, end: float) -> np.ndarray:
    """A buzzy vowel-like sound (harmonics of a wobbling f0, syllable-rate envelope)
    between `start` and `end`, silence elsewhere."""
    t = np.arange(int(seconds * rate)) / rate
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 16))
    envelope = (0.4 + 0.6 * 0.5 * (1 - np.cos(2 * np.pi * 4 * t))) * ((t >= start) & (t < end))
    return (0.15 * wave * envelope).astype(np.float32)


def render(motion, refs, path: Path, audio: Path | None = None) -> None:
    from avgen.face.motion import save_motion
    from avgen.face.frames import VideoConfig, render_video

    save_motion(path.with_suffix(".npz"), motion)
    # square face crops, as recordings for training are framed (and the figures below were
    # set on them: the H.264 noise of a different picture beside a face moves them a little)
    render_video(str(path.with_suffix(".npz")), [str(EXAMPLES / r) for r in refs], str(path),
                 audio=str(audio) if audio else None,
                 config=VideoConfig(fps=VIDEO_FPS, size=FACE_SIZE, crop="face"), progress=False)


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory):
    """A randomly initialised tiny wav2vec2 CTC model saved like a real one."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("ctc")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for letter in "ETAOINSHRDLUCMWFGYPBVK'":
        vocab[letter] = len(vocab)
    vocab["ʃ"] = len(vocab)   # an IPA phone the symbol table has
    vocab["ø"] = len(vocab)   # one it has not: left out, and recorded
    config = transformers.Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, conv_dim=(32, 32, 32), conv_stride=(5, 8, 8),
        conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        pad_token_id=0, do_stable_layer_norm=False, feat_extract_norm="group")
    torch.manual_seed(0)
    transformers.Wav2Vec2ForCTC(config).save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"sampling_rate": 16000, "do_normalize": True}))
    return folder


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """Layout (b): a side-by-side video of two rendered faces + a 44.1 kHz stereo file,
    one channel per person, each with a little of the other leaking in (-26 dB)."""
    from avgen.face.sequence import scripted_motion

    folder = tmp_path_factory.mktemp("recordings")
    truth = scripted_motion(SECONDS, people=2)
    render(truth, ["eileen.png", "grace.png"], folder / "talk.mp4")
    rate = 44100
    a = voiced(SECONDS, rate, 190.0, *TURNS[0])
    b = voiced(SECONDS, rate, 115.0, *TURNS[1])
    noise = np.random.default_rng(0).normal(0, 1e-4, (len(a), 2)).astype(np.float32)
    soundfile.write(folder / "talk.wav", np.stack([a + 0.05 * b, b + 0.05 * a], 1) + noise,
                    rate)
    (folder / "talk.toml").write_text(
        '[[person]]\nname = "alice"\nvideo = "talk.mp4"\nview = "left"\naudio = "talk.wav"\n'
        'channel = 0\n\n[[person]]\nname = "bob"\nvideo = "talk.mp4"\nview = "right"\n'
        'audio = "talk.wav"\nchannel = 1\n')
    return folder, truth


@pytest.fixture(scope="module")
def prepared(conversation, tiny_ctc, tmp_path_factory):
    from avgen.prepare import PrepareConfig, prepare

    folder, truth = conversation
    out = tmp_path_factory.mktemp("shards")
    result = prepare(folder, out, PrepareConfig(ctc_model=str(tiny_ctc)), progress=False)
    return out, truth, result


@pytest.fixture(scope="module")
def monologues(tmp_path_factory):
    """Layout (c) twice (two voices): a one-face video whose own audio track (48 kHz AAC)
    is the sound, with a transcript; prepared by two worker processes."""
    from avgen.face.sequence import scripted_motion
    from avgen.prepare import PrepareConfig, prepare

    folder = tmp_path_factory.mktemp("monologues")
    soundfile.write(folder / "voice.wav", voiced(3.0, 48000, 150.0, 0.4, 2.6), 48000)
    render(scripted_motion(3.0, people=1), ["eileen.png"], folder / "solo.mp4",
           audio=folder / "voice.wav")
    (folder / "solo.txt").write_text("Hello there, how are you?\n")
    for name in ("carol", "dave"):
        (folder / f"{name}.toml").write_text(
            f'[[person]]\nname = "{name}"\nvideo = "solo.mp4"\ntranscript = "solo.txt"\n')
    out = tmp_path_factory.mktemp("mono-shards")
    result = prepare(folder, out, PrepareConfig(), jobs=2, progress=False)
    return folder, out, result


def shard(out: Path, name: str) -> dict:
    with np.load(out / "items" / f"{name}.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# -- the conversation item -------------------------------------------------------------------
def test_prepare_shapes_and_model_clock(prepared):
    out, _, result = prepared
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "avgen.prepared/1"
    assert config["voices"] == ["alice", "bob"] and config["items"] == ["talk"]
    assert result.prepared == 1 and result.voices == ("alice", "bob")
    s = shard(out, "talk")
    # 4.0 s at 44.1 kHz resampled to 22050 Hz: 88200 samples -> 88200 // 256 mel frames
    T = int(SECONDS * 22050) // 256
    assert int(s["num_frames"]) == T and abs(T - SECONDS * FRAMES_PER_SECOND) < 1
    for k in range(2):
        assert s[f"p{k}/mel"].shape == (T, N_MELS)
        assert s[f"p{k}/head_pose"].shape == (T, 7)
        assert s[f"p{k}/expression"].shape == (T, len(EXPRESSION_NAMES))
        assert s[f"p{k}/speech"].shape == (T,)
        logits = s[f"p{k}/token_logits"].astype(np.float64)
        assert logits.shape == (T, NUM_SYMBOLS)
        assert np.allclose(np.logaddexp.reduce(logits, axis=1), 0, atol=1e-2)  # log-probs
        assert np.allclose(np.linalg.norm(s[f"p{k}/head_pose"][:, :4], axis=1), 1, atol=1e-3)
    assert list(s["token_sources"]) == ["ctc", "ctc"]
    assert config["ctc_left_out"] == ["ø"]


def test_voice_activity_marks_the_speaking_person(prepared):
    out, _, _ = prepared
    s = shard(out, "talk")
    t = np.arange(int(s["num_frames"])) / FRAMES_PER_SECOND
    for k, (start, end) in TURNS.items():
        speech = s[f"p{k}/speech"]
        inside = (t > start + 0.1) & (t < end - 0.1)
        outside = (t < start - 0.1) | (t > end + 0.1)
        assert speech[inside].mean() > 0.95, f"person {k}: speech missed"
        # the partner's voice leaking into this channel is not this person speaking
        assert speech[outside].mean() < 0.02, f"person {k}: silence marked as speech"
        mel = s[f"p{k}/mel"].astype(np.float32)
        assert np.all(mel[~speech] == np.float16(LOG_SILENCE))
        ids = s[f"p{k}/token_logits"].argmax(1)
        assert np.all(ids[~speech] == SILENCE_ID)


def test_recovered_motion_follows_the_rendered_motion(prepared):
    out, truth, _ = prepared
    s = shard(out, "talk")
    n = min(int(s["num_frames"]), truth.num_frames)
    jaw = EXPRESSION_NAMES.index("jaw_open")
    for k in range(2):
        r_jaw = np.corrcoef(truth.expression[k][:n, jaw], s[f"p{k}/expression"][:n, jaw])[0, 1]
        yaw_true = degrees_from_quaternion(truth.head_pose[k][:n, :4])[:, 0]
        yaw = degrees_from_quaternion(s[f"p{k}/head_pose"][:n, :4].astype(np.float64))[:, 0]
        r_yaw = np.corrcoef(yaw_true, yaw)[0, 1]
        print(f"person {k}: jaw_open r={r_jaw:.3f}, yaw r={r_yaw:.3f}")
        assert r_jaw > 0.8 and r_yaw > 0.6


def test_prepare_resumes_and_notices_changes(prepared, conversation, tiny_ctc):
    from avgen.prepare import PrepareConfig, item_digest, prepare
    from avgen.prepare.manifest import read_manifest

    out, _, _ = prepared
    folder, _ = conversation
    before = (out / "items" / "talk.npz").stat().st_mtime_ns
    config = PrepareConfig(ctc_model=str(tiny_ctc))
    result = prepare(folder, out, config, progress=False)
    assert (result.prepared, result.kept) == (0, 1)
    assert (out / "items" / "talk.npz").stat().st_mtime_ns == before
    item = read_manifest(folder / "talk.toml", folder)
    assert item_digest(item, config) != item_digest(item, PrepareConfig(
        ctc_model=str(tiny_ctc), tolerance=0.3))


# -- monologues, transcripts, workers ----------------------------------------------------------
def test_monologue_from_video_audio_track_with_transcript(monologues):
    _, out, result = monologues
    assert result.prepared == 2 and result.voices == ("carol", "dave")
    s = shard(out, "carol")
    assert int(s["num_people"]) == 1 and list(s["token_sources"]) == ["transcript"]
    T = int(s["num_frames"])
    assert abs(T - 3.0 * FRAMES_PER_SECOND) <= 2  # the AAC track, resampled from 48 kHz
    t = np.arange(T) / FRAMES_PER_SECOND
    speech = s["p0/speech"]
    assert speech[(t > 0.5) & (t < 2.5)].mean() > 0.95 and speech[t > 2.8].mean() < 0.05
    ids = s["p0/token_ids"]
    assert ids.shape == (T,) and np.all(ids[~speech] == SILENCE_ID)
    assert (ids[speech] != SILENCE_ID).mean() > 0.8  # the phones fill the speech


def test_transcript_alignment_matches_teacher_durations(tiny_corpus):
    """MAS against the text-to-tokens mel prior finds the teacher's exact phone timing on
    most frames, also at another recording level (the mean normalisation)."""
    from avgen.audio.mel import log_mel
    from avgen.prepare.media import frame_energy_db, voice_activity
    from avgen.prepare.transcript import align_transcript, load_aligner
    from avgen.train.corpus import load_utterances

    root, _ = tiny_corpus
    model = load_aligner()
    agree = []
    for u in load_utterances(root)[:6]:
        wave, _ = soundfile.read(u.audio_path(root), dtype="float32")
        wave = 0.3 * wave
        mel = log_mel(wave).T
        speech = voice_activity([frame_energy_db(wave)])[0]
        ids = align_transcript(model, [(1, u.text)], mel, speech, "test")
        truth = np.repeat(u.symbol_ids, u.durations)
        n = min(len(ids), len(truth))
        agree.append((ids[:n] == truth[:n]).mean())
    print(f"frame agreement with teacher durations: {np.mean(agree):.3f}")
    assert np.mean(agree) > 0.6


# -- training on shards ------------------------------------------------------------------------
def test_windows_from_prepared_folders(prepared, monologues):
    from avgen.train.prepared import PreparedWindows, open_windows
    from avgen.model.features import Normalizer

    out, _, _ = prepared
    data = open_windows(out, ("alice", "bob"))
    assert isinstance(data, PreparedWindows)
    rng = np.random.default_rng(0)
    e = data.example(rng, 64, speech_bias=1.0)
    assert e["mel"].shape == (64, N_MELS) and e["tokens"].shape == (64, NUM_SYMBOLS)
    assert e["mask"].all() and int(e["voice"]) in (0, 1)
    with pytest.raises(ValueError, match="voice 'bob'"):
        open_windows(out, ("alice",))
    _, mono, _ = monologues
    solo = open_windows(mono, ("carol", "dave"))
    e = solo.example(rng, 400)  # longer than the item: padded, masked
    assert not e["mask"].all()
    assert (e["partner_tokens"].argmax(1) == SILENCE_ID).all()
    norm = solo.normalizer(rng, windows=4, length=100)
    assert isinstance(norm, Normalizer)
    batch = solo.batch(rng, 2, 100, norm)
    assert set(batch) == {"mel", "motion", "tokens", "partner_tokens", "partner_motion",
                          "voice", "mask"}
    assert float(batch["partner_motion"].abs().max()) == 0.0  # no partner: zero, normalised


def test_train_av_on_shards_then_finetune_with_init(prepared, monologues, tmp_path):
    import torch

    from avgen.model.av_flow import AVFlowConfig
    from avgen.train.av import TrainConfig, load_checkpoint, train

    out, _, _ = prepared
    _, mono, _ = monologues
    tiny = AVFlowConfig(d_model=32, n_blocks=1, n_heads=2)
    first = train(out, tmp_path / "a", tiny, TrainConfig(steps=2, batch_size=2, frames=64,
                                                         warmup_steps=1), device="cpu",
                  log=lambda m: None)
    base, base_norm, step, _ = load_checkpoint(first)
    assert step == 2 and base.config.voices == ("alice", "bob")
    # learning rate 0: the fine-tuned weights must be exactly the ones it started from
    tuned_path = train(mono, tmp_path / "b", AVFlowConfig(),
                       TrainConfig(steps=1, batch_size=2, frames=64, learning_rate=0.0),
                       device="cpu", log=lambda m: None, init=first)
    tuned, tuned_norm, _, _ = load_checkpoint(tuned_path)
    assert tuned.config.voices == ("alice", "bob", "carol", "dave")
    assert tuned.config.d_model == 32  # the checkpoint's config, not the default
    a, b = base.state_dict(), tuned.state_dict()
    for key, value in a.items():
        if key == "voice.table.weight":
            assert torch.equal(b[key][:2], value)
            assert torch.equal(b[key][2], value[0]) and torch.equal(b[key][3], value[0])
        else:
            assert torch.equal(b[key], value), key
    assert np.array_equal(tuned_norm.mel_mean, base_norm.mel_mean)


def test_finetune_can_widen_the_visual_window_and_a_resume_keeps_it(prepared, tmp_path):
    """The visual stream's window holds no weights: a fine-tune may widen it, the weights
    come over unchanged, and the run's checkpoint (and its resume) carries the window."""
    import torch

    from avgen.model.av_flow import AVFlowConfig
    from avgen.train.av import TrainConfig, load_checkpoint, train

    out, _, _ = prepared
    tiny = AVFlowConfig(d_model=32, n_blocks=1, n_heads=2)
    first = train(out, tmp_path / "a", tiny, TrainConfig(steps=1, batch_size=2, frames=64,
                                                         warmup_steps=1), device="cpu",
                  log=lambda m: None)
    said = []
    widened = train(out, tmp_path / "b", AVFlowConfig(motion_window_past=12),
                    TrainConfig(steps=1, batch_size=2, frames=64, learning_rate=0.0),
                    device="cpu", log=said.append, init=first)
    assert any("7 -> 12 frames back" in line for line in said)
    base, _, _, _ = load_checkpoint(first)
    model, _, _, _ = load_checkpoint(widened)
    assert model.config.motion_window_past == 12 and model.config.d_model == 32
    assert [b.past for b in model.visual_blocks] == [12]
    assert [b.past for b in model.audio_blocks] == [tiny.window_past]
    for key, value in base.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    resumed = train(out, tmp_path / "b", tiny, TrainConfig(steps=2, batch_size=2, frames=64,
                                                           learning_rate=0.0),
                    device="cpu", log=lambda m: None)
    assert load_checkpoint(resumed)[0].config.motion_window_past == 12


def test_cli_train_av_init_and_prepare_help(tmp_path):
    result = subprocess.run([sys.executable, "-m", "avgen", "train", "av", str(tmp_path),
                             "-o", str(tmp_path / "run"), "--init", str(tmp_path / "no.st")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no.st: no such checkpoint" in result.stderr
    result = subprocess.run([sys.executable, "-m", "avgen", "prepare", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "[[person]]" in result.stdout and "channel" in result.stdout


# -- errors ------------------------------------------------------------------------------------
def write_item(folder: Path, text: str, name: str = "item.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_manifest_errors_name_the_item_and_field(tmp_path):
    from avgen.prepare.manifest import read_manifest

    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "a.wav").write_bytes(b"x")
    cases = {
        '[[person]]\nname = "a"\nvideo = "missing.mp4"\n': "video file 'missing.mp4' does not exist",
        '[[person]]\nvideo = "v.mp4"\n': "person 1: missing field 'name'",
        '[[person]]\nname = "a"\nvideo = "v.mp4"\ncolour = 1\n': "unknown field 'colour'",
        '[[person]]\nname = "a"\nvideo = "v.mp4"\nview = "middle"\n': "view 'middle'",
        'persons = 2\n': "unknown field 'persons'",
        '[[person]]\nname = "a"\nvideo = "v.mp4"\naudio = "a.wav"\nchannel = 0\n'
        '[[person]]\nname = "b"\nvideo = "v.mp4"\naudio = "a.wav"\nchannel = 0\n':
            "share v.mp4",
        '[[person]]\nname = "a"\nvideo = "v.mp4"\nview = "left"\naudio = "a.wav"\n'
        '[[person]]\nname = "b"\nvideo = "v.mp4"\nview = "right"\naudio = "a.wav"\n':
            "read the same audio a.wav",
        'heldout = "yes"\n': "'heldout' must be true or false",
        '[[person\n': "not valid TOML",
    }
    for k, (text, message) in enumerate(cases.items()):
        path = write_item(tmp_path, text, f"case{k}.toml")
        with pytest.raises(InputError) as info:
            read_manifest(path, tmp_path)
        assert message in str(info.value) and str(path) in str(info.value), str(info.value)


def test_item_errors_lengths_audio_faces(tmp_path, conversation, monologues, tiny_ctc):
    from avgen.prepare import PrepareConfig, prepare_item
    from avgen.prepare.manifest import read_manifest
    from avgen.video import Mp4Writer

    folder, _ = conversation
    solo, _, _ = monologues
    base = tmp_path / "items"
    base.mkdir()
    for name in ("talk.mp4", "talk.wav"):
        (base / name).symlink_to(folder / name)
    (base / "solo.mp4").symlink_to(solo / "solo.mp4")
    soundfile.write(base / "short.wav", voiced(2.0, 22050, 150.0, 0.2, 1.8), 22050)
    soundfile.write(base / "long.wav", voiced(4.0, 22050, 150.0, 0.2, 1.8), 22050)
    (base / "garbage.wav").write_bytes(b"RIFF not really a wave file")
    with Mp4Writer(base / "blank.mp4", 256, 256, VIDEO_FPS) as writer:
        for _ in range(12):
            writer.write(np.full((256, 256, 3), 128, np.uint8))
    cases = {
        # two audio files that disagree by 2 s
        '[[person]]\nname = "a"\nvideo = "talk.mp4"\nview = "left"\naudio = "short.wav"\n'
        '[[person]]\nname = "b"\nvideo = "talk.mp4"\nview = "right"\naudio = "long.wav"\n':
            "audio lengths disagree: 'a' short.wav 2.00 s, 'b' long.wav 4.00 s",
        # a 3 s video with 2 s of audio
        '[[person]]\nname = "a"\nvideo = "solo.mp4"\naudio = "short.wav"\n':
            "video solo.mp4 lasts",
        '[[person]]\nname = "a"\nvideo = "solo.mp4"\naudio = "garbage.wav"\n':
            "garbage.wav: cannot read audio",
        '[[person]]\nname = "a"\nvideo = "blank.mp4"\naudio = "short.wav"\n':
            "a face was found in only 0 of",
        # a single-person view that shows both faces
        '[[person]]\nname = "a"\nvideo = "talk.mp4"\naudio = "long.wav"\n': "found 2 faces",
        '[[person]]\nname = "a"\nvideo = "talk.mp4"\naudio = "talk.wav"\nchannel = 2\n':
            "channel 2 was asked for but the audio has 2 channels",
    }
    config = PrepareConfig(ctc_model=str(tiny_ctc))
    for k, (text, message) in enumerate(cases.items()):
        path = write_item(base, text, f"case{k}.toml")
        with pytest.raises(InputError) as info:
            prepare_item(read_manifest(path, base), tmp_path / "out", config)
        assert message in str(info.value) and str(path) in str(info.value), str(info.value)
    path = write_item(base, '[[person]]\nname = "a"\nvideo = "solo.mp4"\n', "notokens.toml")
    with pytest.raises(InputError, match="person 'a' has no 'transcript' and no --ctc-model"):
        prepare_item(read_manifest(path, base), tmp_path / "out")
    assert not (tmp_path / "out" / "items").exists()  # nothing written


def test_ctc_vocabulary_maps_letters_and_phones_to_symbols():
    """A character CTC model's letters become rough phones (not silence), its blank and
    word delimiter silence; an IPA phone maps to itself; a token without counterpart is
    left out and named."""
    from avgen.prepare.ctc import vocabulary_map
    from avgen.text.symbols import SILENCE_ID, symbol_id

    vocab = {"<pad>": 0, "|": 1, "T": 2, "S": 3, "A": 4, "ʃ": 5, "ø": 6}
    mapping, left_out = vocabulary_map(vocab, len(vocab))
    assert mapping.sum(1).tolist() == [1, 1, 1, 1, 1, 1, 0]
    assert mapping[:6].argmax(1).tolist() == [SILENCE_ID, SILENCE_ID, symbol_id("t"),
                                              symbol_id("s"), symbol_id("æ"), symbol_id("ʃ")]
    assert left_out == ["ø"]


def test_ctc_model_folder_errors(tmp_path, tiny_ctc):
    from avgen.prepare.ctc import check_model_dir

    with pytest.raises(InputError, match="no config.json"):
        check_model_dir(tmp_path)
    (tmp_path / "config.json").write_text((tiny_ctc / "config.json").read_text())
    with pytest.raises(InputError, match="no weights"):
        check_model_dir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((tiny_ctc / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match="no vocab.json"):
        check_model_dir(tmp_path)
    result = subprocess.run([sys.executable, "-m", "avgen", "prepare", str(tmp_path), "-o",
                             str(tmp_path / "out"), "--ctc-model", str(tmp_path / "nope")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "nope: the --ctc-model folder does not exist" in result.stderr


def test_worker_errors_reach_the_caller(tmp_path, monologues):
    """With --jobs, an item's error comes back as the same one-line InputError."""
    from avgen.prepare import prepare

    solo, _, _ = monologues
    (tmp_path / "solo.mp4").symlink_to(solo / "solo.mp4")
    (tmp_path / "solo.txt").symlink_to(solo / "solo.txt")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    for name in ("x", "y"):
        write_item(tmp_path, '[[person]]\nname = "a"\nvideo = "solo.mp4"\naudio = "bad.wav"\n'
                   'transcript = "solo.txt"\n', f"{name}.toml")
    with pytest.raises(InputError, match=r"\.toml: person 'a': .*bad\.wav: cannot read audio"):
        prepare(tmp_path, tmp_path / "out", jobs=2, progress=False)
    assert not list((tmp_path / "out" / "items").glob("*.npz"))


def test_layout_a_one_video_and_one_audio_file_per_person(tmp_path, tiny_ctc):
    """Layout (a): each person filmed alone, each with their own microphone file (22.05
    and 16 kHz mono): shapes, who speaks when, and the recovered motion."""
    from avgen.face.sequence import scripted_motion
    from avgen.prepare import PrepareConfig, prepare

    folder = tmp_path / "rec"
    folder.mkdir()
    truths = [scripted_motion(SECONDS, people=1, seed=s) for s in (1, 2)]
    for k, (name, face, rate, f0) in enumerate((("alice", "eileen.png", 22050, 190.0),
                                                ("bob", "grace.png", 16000, 115.0))):
        render(truths[k], [face], folder / f"{name}.mp4")
        soundfile.write(folder / f"{name}.wav", voiced(SECONDS, rate, f0, *TURNS[k]), rate)
    (folder / "pair.toml").write_text(
        '[[person]]\nname = "alice"\nvideo = "alice.mp4"\naudio = "alice.wav"\n\n'
        '[[person]]\nname = "bob"\nvideo = "bob.mp4"\naudio = "bob.wav"\n')
    out = tmp_path / "shards"
    prepare(folder, out, PrepareConfig(ctc_model=str(tiny_ctc)), progress=False)
    s = shard(out, "pair")
    n = int(s["num_frames"])
    assert abs(n - SECONDS * FRAMES_PER_SECOND) <= 2
    t = np.arange(n) / FRAMES_PER_SECOND
    jaw = EXPRESSION_NAMES.index("jaw_open")
    for k, (start, end) in TURNS.items():
        assert s[f"p{k}/mel"].shape == (n, 80) and s[f"p{k}/token_logits"].shape[0] == n
        speech = s[f"p{k}/speech"]
        assert speech[(t > start + 0.1) & (t < end - 0.1)].mean() > 0.95
        assert speech[(t < start - 0.1) | (t > end + 0.1)].mean() < 0.02
        m = min(n, truths[k].num_frames)
        r = np.corrcoef(truths[k].expression[0][:m, jaw], s[f"p{k}/expression"][:m, jaw])[0, 1]
        assert r > 0.8, f"person {k}: jaw_open r={r:.3f}"
