"""`avgen synth` as a user runs it (tiny random joint model): photos anywhere, inline
text, controls, side outputs, the final report and log-friendly progress; and the other
commands' user-facing options (check, tokens --json, weights list, train vocoder -o)."""

import json

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

from avgen import formats
from avgen.cli import app
from avgen.constants import N_MELS
from avgen.model.av_flow import MOTION_DIM, AVFlow, AVFlowConfig
from avgen.train.av import TrainConfig, save_checkpoint
from avgen.train.av_data import Normalizer
from conftest import EXAMPLES

EILEEN, GRACE = str(EXAMPLES / "eileen.png"), str(EXAMPLES / "grace.png")
FAST = ["--steps", "2", "--size", "64", "--fps", "8", "--vocoder", "griffinlim"]


def run(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="avgen", **kwargs)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    normalizer = Normalizer(np.full(N_MELS, -6.0, np.float32), np.full(N_MELS, 2.0, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.full(MOTION_DIM, 0.1, np.float32))
    path = tmp_path_factory.mktemp("ckpt") / "av.safetensors"
    save_checkpoint(path, AVFlow(AVFlowConfig(d_model=32, n_blocks=2, n_heads=2, ff_mult=2))
                    .eval(), normalizer, 0, TrainConfig())
    return path


def test_synth_with_every_side_output(checkpoint, tmp_path):
    """--ref before the script, --text inline, --rate/--gap/--still, --keep, --subtitles,
    --json: one run, every output checked; progress in a log is plain lines."""
    out, keep, srt = tmp_path / "talk.mp4", tmp_path / "stems", tmp_path / "talk.srt"
    result = run("synth", "--ref", EILEEN, GRACE, "--text", r"A: Hi there.\nB: Hello!",
                 "-o", out, "--checkpoint", checkpoint, "--rate", "1.3", "--gap", "0.6",
                 "--still", "--keep", keep, "--subtitles", srt, "--json", *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the report and nothing else
    assert report["output"] == str(out) and out.is_file()
    assert report["video_seconds"] == pytest.approx(report["frames"] / 8)
    assert report["real_time_factor"] == pytest.approx(
        report["wall_seconds"] / report["video_seconds"], rel=0.01)
    assert "\r" not in result.stderr  # not a terminal: no carriage-return bars
    for stage in ("joint model", "vocoder", "render"):
        assert f"{stage}: done in" in result.stderr
    names = sorted(p.name for p in keep.iterdir())
    assert names == ["talk.av.npz", "talk.p0-A.wav", "talk.p1-B.wav", "talk.tokens.npz",
                     "talk.wav"]
    av = formats.load(keep / "talk.av.npz", formats.AV)
    assert np.allclose(av["p0/head_pose"], [1, 0, 0, 0, 0, 0, 0], atol=1e-6)  # --still
    tokens = formats.load(keep / "talk.tokens.npz", formats.TOKENS)
    starts, ends = tokens["turns/start_frame"], tokens["turns/end_frame"]
    assert (starts[1] - ends[0]) / 86.1328125 == pytest.approx(0.6, abs=0.02)  # --gap
    mixed, rate = soundfile.read(keep / "talk.wav")
    alone = [soundfile.read(keep / f)[0] for f in ("talk.p0-A.wav", "talk.p1-B.wav")]
    assert rate == 22050 and len(mixed) == len(alone[0]) == len(alone[1])
    cues = srt.read_text().strip().split("\n\n")
    assert [c.splitlines()[2] for c in cues] == ["A: Hi there.", "B: Hello!"]
    assert report["files"]["subtitles"] == str(srt)
    # --rate: the same words at 1.3x take fewer frames than at 1.0x
    slow = run("tokens", "-", "-o", tmp_path / "slow.npz", "--durations", "espeak",
               input="A: Hi there.\nB: Hello!\n")
    fast = run("tokens", "-", "-o", tmp_path / "fast.npz", "--durations", "espeak",
               "--rate", "1.3", input="A: Hi there.\nB: Hello!\n")
    assert slow.exit_code == fast.exit_code == 0
    assert (formats.load(tmp_path / "fast.npz", formats.TOKENS)["num_frames"]
            < formats.load(tmp_path / "slow.npz", formats.TOKENS)["num_frames"])


def test_synth_report_line_and_photos_after_the_script(checkpoint, tmp_path, write_script):
    script = write_script("A: Hi.\nB: Yes.\n")
    out = tmp_path / "x.mp4"
    result = run("synth", script, "--ref", EILEEN, GRACE, "-o", out, "--checkpoint",
                 checkpoint, "--quiet", "--head-scale", "0.5", *FAST)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # --quiet
    line = result.stdout.strip()
    assert line.startswith(f"{out}: ") and "s of video in" in line
    assert "real-time factor" in line and len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--ref", EILEEN, GRACE, "{script}"], None),  # fine: checked below to fail later
    ([EILEEN, GRACE, "{script}"], "eileen.png: is an image, not a dialogue script"),
    (["{photo}", "--ref", EILEEN, GRACE], "3 photos for 2 people"),
    (["--ref", EILEEN, GRACE], "give one dialogue script (a file, '-' for stdin, or --text)"),
    (["{script}", "--ref", EILEEN, GRACE, "--rate", "9"], "rate must be from 0.25 to 4, got 9"),
    (["{script}", "--ref", EILEEN, GRACE, "--gap", "-1"], "turn gap must be from 0 to 10 s"),
    (["{script}", "--ref", EILEEN, GRACE, "--head-scale", "5"], "head scale must be from 0 to 3"),
    (["{script}", "--ref", EILEEN, GRACE, "--subtitles", "{tmp}/x.txt"],
     "x.txt: subtitles must end in .srt or .vtt"),
    (["{script}", "--text", "A: hi", "--ref", EILEEN, GRACE], "not both"),
    (["{script}", "--ref", EILEEN, GRACE, "--quiet", "--verbose"], "contradict"),
])
def test_synth_argument_errors_are_one_line_exit_2(args, message, tmp_path, write_script):
    script = write_script("A: hi\n")
    photo = tmp_path / "face"  # a photo without a suffix, given as the script
    photo.write_bytes((EXAMPLES / "grace.png").read_bytes())
    args = [a.format(script=script, photo=photo, tmp=tmp_path) for a in args]
    if message is None:  # `--ref a b SCRIPT` parses: it fails on the missing checkpoint
        result = run("synth", *args, "-o", tmp_path / "o.mp4", "--checkpoint",
                     tmp_path / "none.safetensors")
        assert "image" not in result.output and "UTF-8" not in result.output
        return
    result = run("synth", *args, "-o", tmp_path / "o.mp4")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_generate_and_render_take_photos_in_any_position(tmp_path, write_script):
    script = write_script("A: hi\n")
    tokens = tmp_path / "t.npz"
    assert run("tokens", script, "-o", tokens, "--durations", "espeak").exit_code == 0
    result = run("generate", "--ref", EILEEN, GRACE, tokens, "-o", tmp_path / "a.npz",
                 "--checkpoint", tmp_path / "missing.safetensors")
    assert "pickled" not in result.output and "image" not in result.output
    result = run("generate", EILEEN, tokens, "-o", tmp_path / "a.npz")
    assert result.exit_code == 2 and "eileen.png: is an image, not a tokens file" in result.output


def test_check_reports_every_line(write_script):
    script = write_script("A: Louis XVI paid $5 on 3/4/2024.\nB: (sings)\nA: [S2] hi\n"
                          "C: too many\nB: fine\n")
    result = run("check", script)
    assert result.exit_code == 2
    assert "Louis the sixteenth paid five dollars on March fourth, twenty twenty-four." in \
        result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert [e.split(":")[2] for e in errors] == ["2", "3", "4"]
    ok = run("check", "--json", str(EXAMPLES / "dialogue.txt"))
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True


def test_tokens_json_word_timings(tmp_path, write_script):
    script = write_script("A: Hello there, friend.\nB: Hi.\n")
    result = run("tokens", script, "-o", tmp_path / "t.npz", "--durations", "espeak",
                 "--json", tmp_path / "t.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "t.json").read_text())
    assert [w["word"] for w in data["turns"][0]["words"]] == ["Hello", "there", "friend"]
    assert data["turns"][1]["words"][0]["start"] >= data["turns"][0]["end"]


def test_weights_list_piped_and_json():
    piped = run("weights", "list")
    lines = piped.stdout.splitlines()
    assert lines[0].split("\t")[0] == "name"
    names = {line.split("\t")[0] for line in lines[1:]}
    assert "bigvgan-v2-22khz-80band-fmax8k-config" in names  # not cut
    listed = json.loads(run("weights", "list", "--json").stdout)
    assert {e["name"] for e in listed} == names and {"status", "size"} <= set(listed[0])


def test_train_vocoder_takes_dash_o_and_the_old_out(tmp_path):
    for flag in ("-o", "--output", "--out"):
        result = run("train", "vocoder", tmp_path / "no-audio", flag, tmp_path / "run")
        assert result.exit_code == 2 and "not a folder" in result.output, (flag, result.output)
    assert "--out " not in run("train", "vocoder", "--help").stdout  # hidden alias


def test_shell_completion_is_on():
    assert "--install-completion" in run("--help").stdout


@pytest.mark.parametrize("command", ["synth", "generate"])
def test_unknown_voice_is_refused_before_any_model_loads(command, checkpoint, tmp_path,
                                                         monkeypatch):
    """A mistyped --voice costs a fraction of a second (read from the checkpoint's
    metadata), not the model loads and a whole run: the loaders fail this test if called."""
    import avgen.pipeline

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(avgen.pipeline, "load_av_model", no_loading)
    monkeypatch.setattr(avgen.pipeline.Synthesizer, "load", no_loading)
    script = tmp_path / "d.txt"
    script.write_text("A: Hello there.\nB: Hi.\n")
    if command == "synth":
        out = tmp_path / "d.mp4"
        args = ["synth", script, "--ref", EILEEN, GRACE, "-o", out]
    else:
        tokens = tmp_path / "d.tokens.npz"
        assert run("tokens", script, "-o", tokens, "--durations", "espeak").exit_code == 0
        out = tmp_path / "d.av.npz"
        args = ["generate", tokens, "-o", out]
    result = run(*args, "--checkpoint", checkpoint, "--voice", "nobody", "--voice", "heart")
    assert result.exit_code == 2, result.output
    assert "--voice: unknown voice 'nobody'" in result.output
    assert "a model was loaded" not in result.output and not out.exists()
    # the shipped default's voices are read the same way
    result = run(*args, "--voice", "nobody*2", "--voice", "nobody")
    assert result.exit_code == 2 and "unknown voice 'nobody'" in result.output, result.output


@pytest.mark.parametrize("content", [b"junk", b""])
def test_voice_check_of_an_unreadable_checkpoint_is_one_line(content, tmp_path):
    """--voice is checked from the checkpoint's metadata; a file that is no checkpoint at
    all gives the loaders' one-line error (exit 3), not a traceback."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    script = tmp_path / "d.txt"
    script.write_text("A: Hello there.\nB: Hi.\n")
    out = tmp_path / "d.mp4"
    result = run("synth", script, "--ref", EILEEN, GRACE, "-o", out, "--checkpoint", bad,
                 "--voice", "af_bella", "--voice", "bm_george")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and str(bad) in result.output
    assert not out.exists()
