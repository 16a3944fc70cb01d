"""The chain with a tiny random joint model: shapes, determinism, CLI errors."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avgen import formats
from avgen.cli import app
from avgen.constants import EXPRESSION_NAMES, N_MELS
from avgen.model.av_flow import MOTION_DIM, AVFlow, AVFlowConfig
from avgen.pipeline import GenerateConfig, generate
from avgen.text.script import parse_script
from avgen.text.timeline import EspeakDurations, build_timeline, save_timeline
from avgen.model.av_checkpoint import save_checkpoint
from avgen.train.av import TrainConfig
from avgen.model.features import Normalizer

TINY = AVFlowConfig(d_model=32, n_blocks=2, n_heads=2, ff_mult=2)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = AVFlow(TINY).eval()
    normalizer = Normalizer(np.full(N_MELS, -6.0, np.float32), np.full(N_MELS, 2.0, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.full(MOTION_DIM, 0.1, np.float32))
    return model, normalizer


@pytest.fixture(scope="module")
def timeline():
    return build_timeline(parse_script("A: Hello there!\nB: (smiles) Hi, how are you?", "s"),
                          EspeakDurations())


def test_generate_shapes_and_determinism(tiny_model, timeline):
    model, normalizer = tiny_model
    first = generate(timeline, model, normalizer, GenerateConfig(steps=2, seed=4))
    second = generate(timeline, model, normalizer, GenerateConfig(steps=2, seed=4))
    other = generate(timeline, model, normalizer, GenerateConfig(steps=2, seed=5))
    t = timeline.num_frames
    assert first["p0/mel"].shape == (t, N_MELS)
    assert first["p1/expression"].shape == (t, len(EXPRESSION_NAMES))
    assert np.allclose(np.linalg.norm(first["p0/head_pose"][:, :4], axis=1), 1, atol=1e-5)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not np.array_equal(first["p0/mel"], other["p0/mel"])


def test_generate_cli(tiny_model, timeline, tmp_path):
    model, normalizer = tiny_model
    checkpoint = tmp_path / "av.safetensors"
    save_checkpoint(checkpoint, model, normalizer, 0, TrainConfig())
    tokens = tmp_path / "d.tokens.npz"
    save_timeline(tokens, timeline)
    out = tmp_path / "d.av.npz"
    runner = CliRunner()
    result = runner.invoke(app, ["generate", str(tokens), "-o", str(out), "--checkpoint",
                                 str(checkpoint), "--steps", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    data = formats.load(out, formats.AV)
    assert data["p1/mel"].shape == (timeline.num_frames, N_MELS)
    bad = runner.invoke(app, ["generate", str(tokens), "-o", str(tmp_path / "x.npz"),
                              "--checkpoint", str(checkpoint), "--voice", "nobody",
                              "--voice", "heart"])
    assert bad.exit_code == 2 and "voices must be two of heart, heart-low" in bad.output
    assert not (tmp_path / "x.npz").exists()
    wrong = runner.invoke(app, ["generate", str(out), "-o", str(tmp_path / "y.npz"),
                                "--checkpoint", str(checkpoint)])
    assert wrong.exit_code == 2 and "expected avgen.tokens/1" in wrong.output


def test_synth_end_to_end_with_a_tiny_model(tiny_model, tmp_path, write_script):
    """Script + two photos -> MP4 with audio, through every stage (random tiny model)."""
    import subprocess

    from conftest import EXAMPLES
    from avgen.video import ffmpeg_exe

    model, normalizer = tiny_model
    checkpoint = tmp_path / "av.safetensors"
    save_checkpoint(checkpoint, model, normalizer, 0, TrainConfig())
    script = write_script("A: Hi there.\nB: Hello!\n")
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(app, [
        "synth", str(script), "--ref", str(EXAMPLES / "eileen.png"),
        str(EXAMPLES / "grace.png"), "-o", str(out), "--checkpoint", str(checkpoint),
        "--steps", "2", "--size", "128", "--vocoder", "griffinlim"])
    assert result.exit_code == 0, result.output
    probe = subprocess.run([ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True)
    assert "Video: h264" in probe.stderr and "Audio: aac" in probe.stderr
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".mp4"] == ["out.mp4"]


def test_synth_checks_inputs_before_work(tmp_path, write_script):
    from conftest import EXAMPLES

    script = write_script("A: Hi there.\n")
    runner = CliRunner()
    one = runner.invoke(app, ["synth", str(script), "--ref", str(EXAMPLES / "eileen.png"),
                              "-o", str(tmp_path / "x.mp4")])
    assert one.exit_code == 2 and "one photo per person (2), got 1" in one.output
    bad = write_script("A: (sings)\n", name="bad.txt")
    result = runner.invoke(app, ["synth", str(bad), "--ref", str(EXAMPLES / "eileen.png"),
                                 "--ref", str(EXAMPLES / "grace.png"), "-o",
                                 str(tmp_path / "x.mp4")])
    assert result.exit_code == 2 and "bad.txt:1: unknown cue" in result.output
    assert not (tmp_path / "x.mp4").exists()


def test_script_cues_are_acted_out_on_generated_motion():
    from avgen.model.av_flow import MOTION_DIM
    from avgen.pipeline import act_cues
    from avgen.face.model import EXPRESSION_INDEX as E

    motion = np.zeros((2, 400, MOTION_DIM), np.float32)
    assert np.array_equal(act_cues(motion, []), motion)
    acted = act_cues(motion, [(0, "nods", 50, 60), (0, "smiles", 200, 100), (1, "pause", 0, 9)])
    pitch, smile = acted[:, :, 1], acted[:, :, 6 + E["smile_left"]]
    assert pitch[0, 50:110].max() > np.radians(4) and np.abs(pitch[0, :45]).max() == 0
    assert smile[0, 200:300].max() > 0.8 and smile[0, :200].max() == 0
    assert smile[1, 230:330].max() > 0.3  # the partner smiles back
    assert np.abs(pitch[1]).max() == 0  # nobody else nods
    assert np.array_equal(motion, np.zeros_like(motion))  # input untouched


def test_generate_acts_the_timeline_cues(tiny_model, timeline):
    model, normalizer = tiny_model
    from avgen.pipeline import GenerateConfig, generate, generate_from_tokens

    tokens = np.stack([timeline.token_logits(p) for p in range(2)])
    plain = generate_from_tokens(tokens, timeline.names, model, normalizer, GenerateConfig())
    acted = generate(timeline, model, normalizer, GenerateConfig())
    smiler = [c for c in timeline.cues if c.kind == "smiles"][0]
    span = slice(smiler.start_frame, smiler.start_frame + smiler.duration)
    from avgen.constants import EXPRESSION_NAMES

    k = EXPRESSION_NAMES.index("smile_left")
    assert (acted[f"p{smiler.person}/expression"][span, k]
            > plain[f"p{smiler.person}/expression"][span, k] + 0.3).any()
    assert np.array_equal(acted["p0/mel"], plain["p0/mel"])
