"""`avgen tokens` with the shipped text-to-tokens weights, end to end, and its CLI."""

import numpy as np
import pytest
from typer.testing import CliRunner

from avgen.cli import app
from avgen.constants import FRAMES_PER_SECOND
from avgen.text.script import parse_script, read_script
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID
from avgen.text.timeline import LearnedDurations, TimelineConfig, build_timeline
from avgen.weights import Weights

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args), prog_name="avgen")


@pytest.fixture(scope="module")
def learned():
    return LearnedDurations()


@pytest.fixture(scope="module")
def example(learned):
    from conftest import EXAMPLES

    return build_timeline(read_script(EXAMPLES / "dialogue.txt"), learned)


def test_shipped_weights_are_registered_and_verified():
    registry = Weights()
    assert registry.entry("text-to-tokens").builtin
    assert registry.status("text-to-tokens") == "ok"


def test_example_dialogue_timing_is_sane(example):
    tl = example
    assert tl.durations_source == "learned"
    assert [t.person for t in tl.turns] == [0, 1] * 4
    assert 25 < tl.num_frames / FRAMES_PER_SECOND < 45
    phones = tl.phoneme_ids != SILENCE_ID
    ms = tl.phoneme_durations[phones] / FRAMES_PER_SECOND * 1000
    assert 40 < np.median(ms) < 150


def test_decoder_posteriors_follow_the_timeline(example):
    tl = example
    for person in (0, 1):
        logp = tl.token_logits(person)
        assert logp.shape == (tl.num_frames, NUM_SYMBOLS)
        assert np.allclose(np.exp(logp).sum(1), 1.0, atol=1e-4)
        ids = tl.token_ids(person)
        speaking = ids != SILENCE_ID
        # the decoder reads the timeline it was given: argmax agrees almost everywhere
        assert (logp.argmax(1) == ids)[speaking].mean() > 0.95
        # and it is the decoder's output, not the baseline's fixed label smoothing
        top = np.exp(logp[speaking].max(1))
        assert np.std(top) > 1e-3


def test_rate_and_pause_cues(learned):
    dialogue = parse_script("A: a fairly long sentence, to time at two rates. (pause 0.8) Done.",
                            "s.txt")
    slow = build_timeline(dialogue, learned, TimelineConfig(rate=1.0))
    fast = build_timeline(dialogue, learned, TimelineConfig(rate=1.5))
    speech = lambda tl: tl.turns[0].end_frame - tl.turns[0].start_frame - tl.cues[0].duration  # noqa: E731
    assert speech(fast) == pytest.approx(speech(slow) / 1.5, rel=0.1)
    for tl in (slow, fast):  # an explicit pause is exact, whatever the rate
        assert tl.cues[0].kind == "pause"
        assert tl.cues[0].duration == round(0.8 * FRAMES_PER_SECOND)


def test_punctuation_sets_the_pause(learned):
    def pause_after_know(text):
        tl = build_timeline(parse_script(f"A: {text}", "s.txt"), learned)
        silences = tl.phoneme_durations[tl.phoneme_ids == SILENCE_ID]
        assert len(silences) == 1
        return silences[0]

    # the teacher pauses longer at a full stop than at a comma
    assert pause_after_know("I know. You know") > pause_after_know("I know, you know")


def test_cli_uses_the_learned_model_by_default(example_script, tmp_path):
    out = tmp_path / "d.tokens.npz"
    result = run("tokens", str(example_script), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert str(np.load(out)["durations_source"]) == "learned"
    result = run("tokens", str(example_script), "-o", str(out), "--durations", "espeak")
    assert result.exit_code == 0, result.output
    assert str(np.load(out)["durations_source"]) == "espeak"


def test_cli_bad_checkpoint(example_script, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nonsense")
    out = tmp_path / "d.tokens.npz"
    result = run("tokens", str(example_script), "-o", str(out), "--checkpoint", str(bad))
    assert result.exit_code == 3
    assert "bad.safetensors" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()
    result = run("tokens", str(example_script), "-o", str(out), "--checkpoint", str(bad),
                 "--durations", "espeak")
    assert result.exit_code == 2 and not out.exists()


def test_cli_train_tokens(tmp_path):
    result = run("train", "tokens", "--help")
    assert result.exit_code == 0 and "Usage: avgen train tokens" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("train", "tokens", str(empty), "-o", str(tmp_path / "run"))
    assert result.exit_code == 2 and "no NAME.wav + NAME.txt recordings" in result.output
