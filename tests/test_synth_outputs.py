"""Side outputs and controls of the chain that need no model: motion style, subtitles,
word timings, script checks."""

import numpy as np
import pytest

from avgen.constants import EXPRESSION_NAMES
from avgen.errors import InputError
from avgen.face.rotations import euler_to_quaternion, quaternion_to_euler
from avgen.pipeline import MotionStyle, SynthConfig
from avgen.text.script import parse_script
from avgen.text.timeline import EspeakDurations, build_timeline, timings


def _motion(frames=50):
    rng = np.random.default_rng(0)
    yaw, pitch, roll = (rng.uniform(-0.2, 0.2, frames) for _ in range(3))
    pose = np.concatenate([euler_to_quaternion(yaw, pitch, roll),
                           rng.uniform(-0.05, 0.05, (frames, 3))], axis=1).astype(np.float32)
    expression = rng.uniform(0, 0.6, (frames, len(EXPRESSION_NAMES))).astype(np.float32)
    return pose, expression


def _angle(pose):
    return 2 * np.arccos(np.clip(np.abs(pose[:, 0]), 0, 1))


def test_motion_style_scales_head_and_face_and_keeps_blinks():
    pose, expression = _motion()
    half_pose, half_face = MotionStyle(head_scale=0.5, expression_scale=0.5).apply(pose,
                                                                                   expression)
    assert np.allclose(_angle(half_pose), 0.5 * _angle(pose), atol=1e-5)
    assert np.allclose(half_pose[:, 4:], 0.5 * pose[:, 4:])
    assert np.allclose(np.linalg.norm(half_pose[:, :4], axis=1), 1, atol=1e-5)
    blink = [k for k, n in enumerate(EXPRESSION_NAMES) if n.startswith("eye_blink")]
    jaw = EXPRESSION_NAMES.index("jaw_open")
    assert np.allclose(half_face[:, jaw], 0.5 * expression[:, jaw])
    assert np.array_equal(half_face[:, blink], expression[:, blink])
    # the rotation axis is kept: yaw stays yaw
    yaw, _, _ = quaternion_to_euler(pose[:, :4])
    only_yaw = np.concatenate([euler_to_quaternion(yaw, 0 * yaw, 0 * yaw), pose[:, 4:]], 1)
    scaled_yaw, pitch, roll = quaternion_to_euler(MotionStyle(head_scale=2).apply(
        only_yaw, expression)[0][:, :4])
    assert np.allclose(scaled_yaw, 2 * yaw, atol=1e-5) and np.abs(pitch).max() < 1e-5
    big = MotionStyle(expression_scale=3).apply(pose, expression)[1]
    assert big.max() <= 1.0  # coefficients stay in their range


def test_still_keeps_the_head_at_the_photo_pose():
    pose, expression = _motion()
    still_pose, face = MotionStyle(still=True).apply(pose, expression)
    assert np.allclose(still_pose, [1, 0, 0, 0, 0, 0, 0], atol=1e-6)
    assert np.array_equal(face, expression)  # the face still talks


@pytest.mark.parametrize("kwargs, message", [
    ({"head_scale": -1}, "head scale must be from 0 to 3"),
    ({"expression_scale": float("nan")}, "expression scale must be from 0 to 3"),
])
def test_motion_style_ranges(kwargs, message):
    with pytest.raises(InputError, match=message):
        MotionStyle(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0.1}, "rate must be from 0.25 to 4, got 0.1"),
    ({"turn_gap": 11}, "turn gap must be from 0 to 10 s, got 11"),
])
def test_synth_config_checks_rate_and_gap(kwargs, message):
    with pytest.raises(InputError, match=message):
        SynthConfig(**kwargs)


@pytest.fixture(scope="module")
def timeline():
    dialogue = parse_script("EILEEN: Out of the house, on 3/4/2024. (pause 0.5) Yes.\n"
                            "GRACE: (smiles) It was a moth & a relay.\n"
                            "EILEEN: (nods)\n", "s.txt")
    return build_timeline(dialogue, EspeakDurations())


def test_word_timings_follow_the_phonemes(timeline):
    data = timings(timeline)
    first, second = data["turns"][0], data["turns"][1]
    words = [w["word"] for w in first["words"]]
    assert words[:4] == ["Out of", "the", "house", "on"]  # espeak joins "out of"
    assert "March" in words and "fourth" in words and words[-1] == "Yes"
    starts = [w["start"] for t in data["turns"] for w in t["words"]]
    assert starts == sorted(starts)
    for turn in data["turns"]:
        for word in turn["words"]:
            assert turn["start"] <= word["start"] < word["end"] <= turn["end"]
    assert second["speaker"] == "GRACE" and second["words"][-1]["word"] == "relay"
    assert {p["phoneme"] for p in first["phonemes"]} >= {"h", "s"}


def test_subtitles_one_cue_per_sentence(timeline, tmp_path):
    from avgen.subtitles import write_subtitles

    srt_path, vtt_path = tmp_path / "d.srt", tmp_path / "d.vtt"
    assert write_subtitles(srt_path, timeline) == 3  # the '(nods)' turn shows nothing
    blocks = srt_path.read_text().strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["1", "2", "3"]
    assert [b.splitlines()[2] for b in blocks] == [
        "EILEEN: Out of the house, on 3/4/2024.", "EILEEN: Yes.",
        "GRACE: It was a moth & a relay."]
    stamps = [[_seconds(t) for t in b.splitlines()[1].split(" --> ")] for b in blocks]
    turn = timeline.turns[0]
    assert stamps[0][0] == pytest.approx(turn.start_frame / 86.1328125, abs=0.001)
    assert stamps[1][1] == pytest.approx(turn.end_frame / 86.1328125, abs=0.001)
    assert stamps[1][0] - stamps[0][1] == pytest.approx(0.5, abs=0.02)  # the (pause 0.5)
    write_subtitles(vtt_path, timeline)
    vtt = vtt_path.read_text()
    assert vtt.startswith("WEBVTT\n") and "<v GRACE>It was a moth &amp; a relay." in vtt
    with pytest.raises(InputError, match="d.txt: subtitles must end in .srt or .vtt"):
        write_subtitles(tmp_path / "d.txt", timeline)


def test_subtitles_from_a_tokens_file_are_one_cue_per_turn(timeline, tmp_path):
    from avgen.subtitles import subtitle_cues
    from avgen.text.timeline import load_timeline, save_timeline

    save_timeline(tmp_path / "t.npz", timeline)
    cues = subtitle_cues(load_timeline(tmp_path / "t.npz"))  # no phrase timings kept
    assert [c.text for c in cues] == ["Out of the house, on 3/4/2024. Yes.",
                                      "It was a moth & a relay."]


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return 3600 * int(h) + 60 * int(m) + float(s)


def test_check_reports_every_problem_and_the_spoken_words():
    from avgen.check import check_script

    report = check_script("A: On 3/4/2024 call 555-1234.\n"
                          "B: hello (sings)\n"
                          "A: 你好\n"
                          "C: a third\n"
                          "B: fine [S1] no\n"
                          "B: Louis XVI, 5 km.\n", "s.txt")
    assert not report.ok
    assert [p.split(":")[1] for p in report.problems] == ["2", "3", "4", "5"]
    assert "third speaker 'C'" in report.problems[2]
    assert "unknown cue '(sings)'" in report.problems[0]
    assert "cannot phonemize" in report.problems[1]
    lines = {c.line: c for c in report.lines}
    assert lines[1].spoken == ("On March fourth, twenty twenty-four call five five five, "
                               "one two three four.")
    assert lines[6].spoken == "Louis the sixteenth, five kilometers."
    assert check_script("A: hi\n").ok


def test_progress_reporters_by_stream():
    import io

    from avgen.progress import BarProgress, LineProgress, NullProgress, for_stream

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert type(for_stream(Terminal(), quiet=True)) is NullProgress
    assert type(for_stream(Terminal())) is BarProgress
    log = io.StringIO()
    reporter = for_stream(log)
    assert type(reporter) is LineProgress
    reporter.min_seconds = 0.0
    with reporter.stage("joint model", 100, "frame-steps") as update:
        for _ in range(100):
            update(1)
    lines = log.getvalue().splitlines()
    assert lines[0] == "joint model: started (100 frame-steps)"
    assert [line.split(" (")[0] for line in lines[1:-1]] == [
        "joint model: 25%", "joint model: 50%", "joint model: 75%"]
    assert lines[-1].startswith("joint model: done in") and "\r" not in log.getvalue()
