import numpy as np
import pytest

from avgen.constants import FRAMES_PER_SECOND
from avgen.text.espeak import espeak_timer
from avgen.text.script import parse_script, read_script
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID, SYMBOLS
from avgen.text.phrases import to_phrases
from avgen.text.timeline import (EspeakDurations, TimelineConfig, build_timeline, load_timeline,
                          save_timeline)


@pytest.fixture(scope="module")
def espeak():
    return EspeakDurations()


@pytest.fixture(scope="module")
def example_timeline(espeak):
    from conftest import EXAMPLES

    return build_timeline(read_script(EXAMPLES / "dialogue.txt"), espeak)


def test_example_timeline_structure(example_timeline):
    tl = example_timeline
    assert tl.names == ("EILEEN", "GRACE")
    assert [t.person for t in tl.turns] == [0, 1] * 4
    gap = TimelineConfig().turn_gap * FRAMES_PER_SECOND
    for prev, turn in zip(tl.turns, tl.turns[1:]):
        assert turn.start_frame - prev.end_frame == pytest.approx(gap, abs=1)
    assert tl.turns[-1].end_frame < tl.num_frames
    # 8 turns of ordinary speech: 25-45 s is a sane length for this script.
    assert 25 < tl.num_frames / FRAMES_PER_SECOND < 45


def test_phonemes_tile_each_turn_without_gaps(example_timeline):
    tl = example_timeline
    for turn in tl.turns:
        span = slice(turn.phoneme_start, turn.phoneme_start + turn.phoneme_count)
        starts, durs = tl.phoneme_starts[span], tl.phoneme_durations[span]
        assert (durs >= 1).all()
        assert starts[0] >= turn.start_frame
        assert (starts[1:] == starts[:-1] + durs[:-1]).all()  # contiguous
        assert starts[-1] + durs[-1] <= turn.end_frame


def test_tokens_per_person(example_timeline):
    tl = example_timeline
    ids0, ids1 = tl.token_ids(0), tl.token_ids(1)
    assert ids0.shape == ids1.shape == (tl.num_frames,)
    # Nobody speaks over the other in this script: at every frame one is silent.
    assert ((ids0 == SILENCE_ID) | (ids1 == SILENCE_ID)).all()
    for turn in tl.turns:
        other = tl.token_ids(1 - turn.person)[turn.start_frame:turn.end_frame]
        assert (other == SILENCE_ID).all()
    logits = tl.token_logits(0)
    assert logits.shape == (tl.num_frames, NUM_SYMBOLS)
    assert (logits.argmax(1) == ids0).all()
    assert np.allclose(np.exp(logits).sum(1), 1.0, atol=1e-4)


def test_cues_land_in_their_turns(example_timeline):
    tl = example_timeline
    kinds = [(c.kind, tl.names[c.person]) for c in tl.cues]
    assert kinds == [("smiles", "GRACE"), ("laughs", "EILEEN"), ("nods", "EILEEN"),
                     ("pause", "EILEEN")]
    for cue in tl.cues:
        turn = tl.turns[cue.turn]
        assert turn.start_frame <= cue.start_frame < turn.end_frame
    pause = tl.cues[-1]
    assert pause.duration == pytest.approx(0.4 * FRAMES_PER_SECOND, abs=1)
    # the pause and the laugh are silence in the speaker's tokens
    ids = tl.token_ids(pause.person)
    assert (ids[pause.start_frame:pause.start_frame + pause.duration] == SILENCE_ID).all()


def test_espeak_durations_follow_espeak_timing(espeak):
    phrase = to_phrases("Computers compare answers")[0]
    frames = espeak.durations(phrase)
    assert frames.shape == (len(phrase.phones),)
    timings = [t for t in espeak_timer().timings(phrase.text) if t.phone]
    espeak_frames = (timings[-1].end - timings[0].start) * FRAMES_PER_SECOND / 22050
    assert frames.sum() == pytest.approx(espeak_frames, rel=0.05)
    assert [t.phone for t in timings] == list(phrase.phones)


def test_durations_are_plausible_for_english(espeak):
    phrase = to_phrases("The odd one out is ignored by the other computers")[0]
    ms = espeak.durations(phrase) / FRAMES_PER_SECOND * 1000
    assert 40 < np.median(ms) < 150  # phones last tens of milliseconds


def test_rate_scales_speech(espeak):
    dialogue = parse_script("A: a fairly long sentence to time at two rates", "s.txt")
    slow = build_timeline(dialogue, espeak, TimelineConfig(rate=1.0))
    fast = build_timeline(dialogue, espeak, TimelineConfig(rate=2.0))
    length = lambda tl: tl.turns[0].end_frame - tl.turns[0].start_frame  # noqa: E731
    assert length(fast) == pytest.approx(length(slow) / 2, rel=0.1)


def test_cue_only_turn_takes_the_cue_time(espeak):
    tl = build_timeline(parse_script("A: hello\nB: (nods)\nA: bye", "s.txt"), espeak)
    nod = tl.turns[1]
    assert nod.end_frame - nod.start_frame == round(0.7 * FRAMES_PER_SECOND)
    assert tl.turns[2].start_frame > nod.end_frame


def test_monologue_gets_a_silent_listener(espeak):
    tl = build_timeline(parse_script("A: only me talking", "s.txt"), espeak)
    assert tl.names == ("A", "(listener)")
    assert (tl.token_ids(1) == SILENCE_ID).all()


def test_deterministic_and_round_trips(espeak, tmp_path):
    dialogue = parse_script("A: Hi, 2 you! (laughs)\nB: (smiles) Yes (pause 1.5) indeed.", "s")
    first, second = build_timeline(dialogue, espeak), build_timeline(dialogue, espeak)
    path = tmp_path / "t.tokens.npz"
    save_timeline(path, first)
    loaded = load_timeline(path)
    for tl in (second, loaded):
        assert tl.turns == first.turns and tl.cues == first.cues
        assert tl.names == first.names and tl.num_frames == first.num_frames
        assert (tl.phoneme_ids == first.phoneme_ids).all()
        assert (tl.phoneme_durations == first.phoneme_durations).all()
    raw = np.load(path)
    assert str(raw["format"]) == "avgen.tokens/1"
    assert raw["frames_per_second"] == pytest.approx(86.1328125)
    assert tuple(raw["symbols"]) == SYMBOLS
    assert str(raw["turns/phonemes"][0]).split()[0] == "h"
    assert raw["p1/token_logits"].shape == (first.num_frames, NUM_SYMBOLS)


def test_phrase_timing_does_not_depend_on_what_came_before():
    timer = espeak_timer()
    first = timer.timings("Yes")
    timer.timings("A much longer sentence with many vowels, to move any internal state.")
    assert timer.timings("Yes") == first


def test_floor_log_probs_matches_training_tokens():
    from avgen.text.symbols import NUM_SYMBOLS
    from avgen.text.timeline import floor_log_probs, one_hot_log_probs

    ids = np.array([0, 5, 5, 17])
    smoothed = one_hot_log_probs(ids)
    assert np.allclose(floor_log_probs(smoothed), smoothed, atol=1e-6)  # idempotent
    confident = np.full((4, NUM_SYMBOLS), -35.0, np.float32)
    confident[np.arange(4), ids] = 0.0
    floored = floor_log_probs(confident)
    assert np.allclose(floored, smoothed, atol=0.02)  # a decoder's certainty -> training form
    soft = np.log(np.full((1, NUM_SYMBOLS), 1.0 / NUM_SYMBOLS))
    assert np.allclose(floor_log_probs(soft), soft, atol=1e-6)
    assert np.allclose(np.exp(floor_log_probs(np.random.default_rng(0).normal(
        size=(3, NUM_SYMBOLS)) * 10)).sum(1), 1.0, atol=1e-5)
