from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from avgen import formats
from avgen.audio.io import read_audio
from avgen.audio.mel import log_mel
from avgen.cli import app
from avgen.constants import EXPRESSION_NAMES, HOP_LENGTH

runner = CliRunner()
DATA = Path(__file__).parent / "data"


def run(*args, **kwargs):
    return runner.invoke(app, list(args), prog_name="avgen", **kwargs)


@pytest.fixture
def speech_mel():
    return log_mel(read_audio(DATA / "speech.flac")).T  # (T, 80)


def write_av(path, mels):
    arrays = {"num_frames": np.array(len(mels[0])), "names": np.array(["A", "B"][:len(mels)]),
              "expression_names": np.array(EXPRESSION_NAMES)}
    for i, mel in enumerate(mels):
        arrays[f"p{i}/mel"] = mel
        arrays[f"p{i}/head_pose"] = np.tile([1.0, 0, 0, 0, 0, 0, 0], (len(mel), 1))
        arrays[f"p{i}/expression"] = np.zeros((len(mel), len(EXPRESSION_NAMES)))
    formats.save(path, formats.AV, arrays)


@pytest.mark.parametrize("command", [["vocode"], ["train"], ["train", "vocoder"]])
def test_audio_commands_have_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage: avgen" in result.output


def test_vocode_npy_to_wav(tmp_path, speech_mel):
    np.save(tmp_path / "mel.npy", speech_mel)
    result = run("vocode", str(tmp_path / "mel.npy"), "-o", str(tmp_path / "out.wav"))
    assert result.exit_code == 0, result.output
    wave, rate = soundfile.read(tmp_path / "out.wav")
    assert rate == 22050 and wave.shape == (len(speech_mel) * HOP_LENGTH,)
    assert 0.01 < np.abs(wave).max() <= 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mel.npy", "out.wav"]


def test_vocode_av_file_mixes_or_splits_people(tmp_path, speech_mel):
    silent = np.full_like(speech_mel, np.log(1e-5))
    write_av(tmp_path / "d.av.npz", [speech_mel[:120], silent[:120]])
    assert run("vocode", str(tmp_path / "d.av.npz"), "-o", str(tmp_path / "mix.wav"),
               "--vocoder", "griffinlim", "--iterations", "4").exit_code == 0
    assert run("vocode", str(tmp_path / "d.av.npz"), "-o", str(tmp_path / "split.wav"),
               "--vocoder", "griffinlim", "--iterations", "4", "--split").exit_code == 0
    mix, _ = soundfile.read(tmp_path / "mix.wav")
    split, _ = soundfile.read(tmp_path / "split.wav")
    assert mix.ndim == 1 and split.shape == (len(mix), 2)
    assert np.abs(split[:, 1]).max() < 0.01 < np.abs(split[:, 0]).max()  # listener silent
    assert np.allclose(mix, split.sum(axis=1), atol=2 / 32768)


def test_vocode_stdin_to_stdout_equals_files(tmp_path, speech_mel):
    np.save(tmp_path / "mel.npy", speech_mel[:50])
    assert run("vocode", str(tmp_path / "mel.npy"), "-o", str(tmp_path / "a.wav")).exit_code == 0
    result = run("vocode", "-", "-o", "-", input=(tmp_path / "mel.npy").read_bytes())
    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(b"RIFF")
    assert result.stdout_bytes == (tmp_path / "a.wav").read_bytes()


def test_vocode_is_deterministic_under_a_seed(tmp_path, speech_mel):
    np.save(tmp_path / "mel.npy", speech_mel[:40])
    outs = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert run("vocode", str(tmp_path / "mel.npy"), "-o", str(tmp_path / f"{name}.wav"),
                   "--vocoder", "griffinlim", "--iterations", "4", "--seed", seed).exit_code == 0
        outs.append((tmp_path / f"{name}.wav").read_bytes())
    assert outs[0] == outs[1] != outs[2]


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "missing.npy: no such file"),
    (lambda d: np.save(d / "missing.npy", np.zeros((10, 3))), "missing.npy: mel array has shape"),
    (lambda d: (d / "missing.npy").write_text("hello"), "missing.npy: not an .npz"),
    (lambda d: formats.save(d / "missing.npy", formats.MOTION, {
        "num_frames": np.array(2), "expression_names": np.array(["a"]),
        "p0/head_pose": np.zeros((2, 7)), "p0/expression": np.zeros((2, 1))}),
     "missing.npy: is a avgen.motion/1 file, expected avgen.av/1"),
])
def test_vocode_bad_input_exits_2_and_writes_nothing(tmp_path, setup, message):
    setup(tmp_path)
    out = tmp_path / "out.wav"
    result = run("vocode", str(tmp_path / "missing.npy"), "-o", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ")
    assert not out.exists()


def test_vocode_missing_bigvgan_weights_says_how_to_fetch(tmp_path, speech_mel, monkeypatch):
    monkeypatch.setenv("AVGEN_CACHE_DIR", str(tmp_path / "cache"))
    np.save(tmp_path / "mel.npy", speech_mel[:10])
    result = run("vocode", str(tmp_path / "mel.npy"), "-o", str(tmp_path / "o.wav"),
                 "--vocoder", "bigvgan")
    assert result.exit_code == 3
    assert "avgen weights fetch bigvgan-v2-22khz-80band-fmax8k" in result.output
    assert not (tmp_path / "o.wav").exists()


def test_train_vocoder_cli_rejects_a_folder_without_audio(tmp_path):
    result = run("train", "vocoder", str(tmp_path), "-o", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "no .wav or .flac files found" in result.output
