"""Each setting has one default and one range check, in its config; the command line
reads the defaults from there and reports a bad value as a one-line error, exit 2."""

import pytest
import typer
from typer.testing import CliRunner

from avgen.cli import app
from avgen.errors import ConfigError, InputError
from avgen.face.frames import VideoConfig
from avgen.pipeline import GenerateConfig, SynthConfig
from avgen.text.timeline import TimelineConfig
from avgen.train.av import TrainConfig as AVTrainConfig


@pytest.mark.parametrize("make, field", [
    (lambda: GenerateConfig(steps=0), "steps"),
    (lambda: GenerateConfig(steps=257), "steps"),
    (lambda: GenerateConfig(steps=2.5), "steps"),
    (lambda: GenerateConfig(temperature=-0.1), "temperature"),
    (lambda: GenerateConfig(voice_guidance=float("nan")), "voice_guidance"),
    (lambda: GenerateConfig(sway=-1.5), "sway"),
    (lambda: AVTrainConfig(motion_loss="l3"), "motion loss"),
    (lambda: GenerateConfig(voices=("heart",)), "voices"),
    (lambda: GenerateConfig(chunk_frames=0), "chunk_frames"),
    (lambda: GenerateConfig(precision="float16"), "precision"),
    (lambda: TimelineConfig(rate=0.0), "rate"),
    (lambda: TimelineConfig(turn_gap=11.0), "turn gap"),
    (lambda: SynthConfig(layout="diagonal"), "layout"),
    (lambda: SynthConfig(crop="chin"), "crop"),
    (lambda: VideoConfig(size=101), "size"),
    (lambda: SynthConfig(rate=5.0), "rate"),
])
def test_configs_reject_values_out_of_range(make, field):
    with pytest.raises(ConfigError, match=field) as caught:
        make()
    # the command line's error (exit 2) and a Python caller's ValueError at once
    assert isinstance(caught.value, InputError) and isinstance(caught.value, ValueError)


def options(*command):
    group = typer.main.get_command(app)
    for name in command:
        group = group.commands[name]
    return {p.name: p.default for p in group.params}


def test_command_line_defaults_are_the_configs():
    for command in ("generate", "synth"):
        got = options(command)
        for field in ("steps", "temperature", "voice_guidance", "sway", "seed", "device"):
            assert got[field] == getattr(GenerateConfig(), field), (command, field)
        assert got["precision"].value == GenerateConfig().precision
    for command in ("render", "synth"):
        got = options(command)
        assert (got["fps"], got["size"]) == (VideoConfig().fps, VideoConfig().size)
        assert got["layout"].value == VideoConfig().layout
        assert got["crop"].value == VideoConfig().crop
    assert options("synth")["vocoder"].value == SynthConfig().vocoder
    got = options("tokens")
    assert (got["rate"], got["gap"]) == (TimelineConfig().rate, TimelineConfig().turn_gap)


@pytest.mark.parametrize("flag, value, message", [
    ("--steps", "0", "steps must be an integer from 1 to 256"),
    ("--temperature", "3", "temperature must be from 0 to 2"),
    ("--voice-guidance", "5", "voice_guidance must be from 0 to 4"),
    ("--sway", "2", "sway must be from -1 to 1"),
    ("--precision", "half", "'half' is not one of"),
])
def test_bad_value_is_one_line_exit_2_nothing_written(example_script, tmp_path, flag, value,
                                                      message):
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(app, ["synth", str(example_script), "--ref", "a.png", "b.png",
                                      flag, value, "-o", str(out)], prog_name="avgen")
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_auto_precision_is_bfloat16_only_where_native():
    from avgen.model.av_flow import native_bfloat16

    assert GenerateConfig(precision="float32").evaluation_precision() == "float32"
    assert GenerateConfig(precision="bfloat16").evaluation_precision() == "bfloat16"
    auto = GenerateConfig().evaluation_precision()
    assert auto == ("bfloat16" if native_bfloat16("cpu") else "float32")
