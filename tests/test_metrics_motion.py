"""Motion metrics on constructed cases with known answers."""

import math

import numpy as np
import pytest

from avgen.constants import FRAMES_PER_SECOND as FPS
from avgen.metrics import motion as m
from avgen.face.rotations import euler_to_quaternion
from avgen.text.symbols import SILENCE_ID, symbol_id

CFG = m.MetricsConfig()


def pose_from(yaw=None, pitch=None, roll=None, n=None):
    n = n or len(next(a for a in (yaw, pitch, roll) if a is not None))
    yaw, pitch, roll = (np.zeros(n) if a is None else np.asarray(a, float)
                        for a in (yaw, pitch, roll))
    pose = np.zeros((n, 7))
    pose[:, :4] = euler_to_quaternion(yaw, pitch, roll)
    return pose


# ----------------------------------------------------------------- helpers

def test_runs_and_gaps():
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1], bool)
    assert m.runs(mask).tolist() == [[1, 3], [5, 6], [7, 8]]
    assert m.runs(np.zeros(4, bool)).shape == (0, 2)
    assert m.close_gaps(mask, 1).tolist() == [0, 1, 1, 0, 0, 1, 1, 1]
    assert m.close_gaps(mask, 2).tolist() == [0, 1, 1, 1, 1, 1, 1, 1]


def test_local_minima_strict_and_plateau_and_edges():
    x = np.array([3, 2, 1, 2, 3, 1, 1, 1, 2, 0])
    # minimum at 2, flat valley 5..7 counts once at its middle, edge value 0 never counts
    assert m.local_minima(x).tolist() == [2, 6]
    assert m.local_minima(np.ones(10)).size == 0


def test_log_silence_matches_mel_module():
    from avgen.audio.mel import LOG_SILENCE

    assert m.LOG_SILENCE == LOG_SILENCE


# ----------------------------------------------------------------- lip closure

@pytest.mark.parametrize("event,hit", [
    ((16, 18), True),   # starts 1 frame after the interval ends: inside tolerance 2
    ((17, 19), False),  # starts 2 frames after: the first frame outside
    ((7, 9), True),     # ends (exclusive) at 9: last frame 8 is 2 before the start
    ((5, 8), False),    # last frame 7 is 3 before the start
    ((12, 13), True),   # inside
    ((0, 40), True),    # covering it
])
def test_match_closures_tolerance_boundaries(event, hit):
    score = m.match_closures(np.array([[10, 15]]), np.array([event]), tolerance=2)
    assert (score.reference_hit, score.predicted_correct) == ((1, 1) if hit else (0, 0))
    assert score.f1 == (1.0 if hit else 0.0)


def test_match_closures_counts_events_and_intervals():
    reference = np.array([[10, 15], [40, 45], [80, 85], [120, 125]])
    predicted = np.array([[11, 14], [41, 44], [200, 205]])  # 2 hits, 1 false alarm
    score = m.match_closures(reference, predicted, tolerance=2)
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(2 / 4)
    assert score.f1 == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    # one long closure over two intervals ("m b"), and two flickers in one interval
    score = m.match_closures(np.array([[10, 15], [16, 20], [50, 60]]),
                             np.array([[9, 21], [50, 53], [55, 60]]), tolerance=0)
    assert (score.precision, score.recall) == (1.0, 1.0)


def test_closure_score_undefined_cases():
    none = m.match_closures(np.zeros((0, 2)), np.zeros((0, 2)), 2)
    assert math.isnan(none.f1) and math.isnan(none.precision) and math.isnan(none.recall)
    only_false_alarms = m.match_closures(np.zeros((0, 2)), np.array([[3, 5]]), 2)
    assert only_false_alarms.precision == 0.0 and math.isnan(only_false_alarms.recall)
    assert only_false_alarms.f1 == 0.0
    missed = m.match_closures(np.array([[3, 5]]), np.zeros((0, 2)), 2)
    assert missed.recall == 0.0 and math.isnan(missed.precision) and missed.f1 == 0.0
    pooled = m.match_closures(np.array([[3, 5]]), np.array([[3, 4]]), 2) + missed
    assert (pooled.precision, pooled.recall) == (1.0, 0.5)


def lips_with_closures(n, intervals, level=1.0, rest=0.6):
    lips = np.full(n, rest)
    for a, b in intervals:
        lips[a:b] = level
    return lips


def test_lip_closure_score_thresholds_and_region():
    n = 300
    closures = [(20, 26), (60, 66), (100, 105)]
    reference = lips_with_closures(n, closures)
    ref_mask = m.reference_closure_mask(reference, config=CFG)
    assert m.runs(ref_mask).tolist() == [list(c) for c in closures]
    # rest (0.6) and f/v (0.55) are below the 0.75 threshold: no events from them
    generated = lips_with_closures(n, [(21, 25), (101, 104)], level=0.8)
    generated[150:160] = 0.7
    score = m.lip_closure_score(generated, ref_mask, None, CFG)
    assert (score.predicted_events, score.predicted_correct) == (2, 2)
    assert (score.reference_intervals, score.reference_hit) == (3, 2)
    # a closure while not speaking is not counted; one 2 frames before speech is
    generated[200:210] = 1.0  # far outside the region
    generated[239:241] = 1.0  # last frame 240 is 2 before the region's 242 (tolerance 2)
    region = np.zeros(n, bool)
    region[:130] = True
    region[242:260] = True
    score = m.lip_closure_score(generated, ref_mask, region, CFG)
    assert (score.predicted_events, score.predicted_correct) == (3, 2)
    # tokens' p/b/m frames replace the reference's lips_close
    bilabial = np.zeros(n, bool)
    bilabial[21:25] = True
    assert m.reference_closure_mask(reference, bilabial).tolist() == bilabial.tolist()


def test_token_masks():
    ids = np.array([SILENCE_ID, symbol_id("p"), symbol_id("b"), symbol_id("ə"),
                    symbol_id("m"), symbol_id("m̩"), symbol_id("n"), SILENCE_ID])
    speaking, bilabial = m.token_masks(ids)
    assert speaking.tolist() == [0, 1, 1, 1, 1, 1, 1, 0]
    assert bilabial.tolist() == [0, 1, 1, 0, 1, 1, 0, 0]


# ----------------------------------------------------------------- FDe

def whitened(rng, n, d):
    """(n, d) samples whose sample mean is 0 and sample covariance (ddof 1) is I."""
    x = rng.standard_normal((n, d))
    x -= x.mean(axis=0)
    return x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    x = rng.random((500, 17))
    assert m.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    shift = rng.normal(size=17)
    assert m.frechet_distance(x + shift, x) == pytest.approx(shift @ shift, rel=1e-9)
    # identity covariance vs diagonal scales a: sum (1 - a)^2, plus the mean offset
    w = whitened(rng, 400, 5)
    a = np.array([0.5, 1.0, 2.0, 3.0, 1.5])
    offset = np.array([1.0, 0, 0, 0, -2.0])
    expected = offset @ offset + ((1 - a) ** 2).sum()
    assert m.frechet_distance(w, w * a + offset) == pytest.approx(expected, rel=1e-9)
    assert m.frechet_distance(w * a + offset, w) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_agrees_with_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    x = rng.random((300, 6)) @ rng.random((6, 6))
    y = rng.random((200, 6)) @ rng.random((6, 6)) + 0.3
    mu1, s1 = m.gaussian_fit(x)
    mu2, s2 = m.gaussian_fit(y)
    cross = linalg.sqrtm(s1 @ s2).real
    fid = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * cross)
    assert m.frechet_distance(x, y) == pytest.approx(fid, rel=1e-6)


def test_frechet_distance_singular_covariances():
    rng = np.random.default_rng(2)
    x = rng.random((100, 4))
    x[:, 2] = 0.6  # a coefficient that never moves (lips_close at rest, say)
    y = x.copy()
    y[:, 2] = 0.1
    assert m.frechet_distance(x, y) == pytest.approx(0.25, rel=1e-9)
    few = rng.random((3, 17))  # fewer frames than dimensions: rank-2 covariance
    value = m.frechet_distance(few, few + 0.5)
    assert value == pytest.approx(17 * 0.25, rel=1e-7)
    assert math.isnan(m.frechet_distance(few[:1], few))


# ----------------------------------------------------------------- diversity

def test_diversity_known_answer():
    base = np.random.default_rng(3).random((50, 4))
    assert m.diversity(np.stack([base, base, base])) == pytest.approx(0, abs=1e-15)
    other = base.copy()
    other[:, 1] += 0.2
    # std of {x, x + 0.2} is 0.1 in one of 4 dimensions
    assert m.diversity(np.stack([base, other])) == pytest.approx(0.1 / 4)
    with pytest.raises(ValueError):
        m.diversity(base[None])


def test_head_pose_features_ignore_quaternion_sign():
    n = 40
    yaw = np.linspace(-0.3, 0.3, n)
    pose = pose_from(yaw, 0.1 * np.ones(n), np.zeros(n))
    pose[:, 4:] = [0.1, -0.2, 0.05]
    features = m.head_pose_features(pose)
    np.testing.assert_allclose(features[:, 0], yaw, atol=1e-9)
    np.testing.assert_allclose(features[:, 1], 0.1, atol=1e-9)
    np.testing.assert_allclose(features[:, 3:], np.tile([0.1, -0.2, 0.05], (n, 1)))
    flipped = pose.copy()
    flipped[:, :4] *= -1  # the same rotation
    assert m.diversity(np.stack([m.head_pose_features(pose),
                                 m.head_pose_features(flipped)])) == pytest.approx(0, abs=1e-12)


# ----------------------------------------------------------------- beats

def mel_with_onsets(n, onsets, length=6, level=-4.0):
    """Silence with a loud burst starting at each onset frame."""
    mel = np.full((n, 80), m.LOG_SILENCE)
    for t in onsets:
        mel[t:t + length] = level
    return mel


def test_audio_beats_at_burst_starts():
    onsets = [30, 60, 95, 140, 170]
    assert m.audio_beats(mel_with_onsets(220, onsets)).tolist() == onsets
    assert m.audio_beats(np.full((100, 80), m.LOG_SILENCE)).size == 0
    # a weak burst right after a strong one is not a separate onset (within +-window)
    mel = mel_with_onsets(100, [40])
    mel[41:46] = -2.0
    assert m.audio_beats(mel).tolist() == [40]


def test_rotation_and_expression_speed():
    n = 50
    omega = 0.5  # rad/s about yaw
    pose = pose_from(yaw=omega * np.arange(n) / FPS)
    np.testing.assert_allclose(m.rotation_speed(pose), omega, rtol=1e-6)
    expr = np.zeros((n, 3))
    expr[:, 0] = 0.3 * np.arange(n) / FPS
    expr[:, 2] = 0.4 * np.arange(n) / FPS
    np.testing.assert_allclose(m.expression_speed(expr), 0.5, rtol=1e-9)


def periodic_motion(n, period):
    """Yaw whose speed A (1 - cos(2 pi t / P)) is 0 exactly at t = k P."""
    t = np.arange(n, dtype=float)
    return 0.3 * (t - period / (2 * np.pi) * np.sin(2 * np.pi * t / period)) / FPS


def test_motion_beats_at_speed_minima():
    period = 40
    pose = pose_from(yaw=periodic_motion(400, period))
    assert m.motion_beats(m.rotation_speed(pose)).tolist() == list(range(40, 400 - 1, 40))
    assert m.motion_beats(np.ones(100)).size == 0


@pytest.mark.parametrize("offset", [0, 3, 6, 10])
def test_beat_consistency_with_known_offsets(offset):
    sigma = CFG.frames(CFG.beat_sigma_seconds)
    assert sigma == pytest.approx(0.12 * FPS)
    motion = np.arange(40, 400, 40)
    assert m.beat_consistency(motion, motion + offset, sigma) == pytest.approx(
        math.exp(-offset ** 2 / (2 * sigma ** 2)))
    # end to end: beats from the head's speed minima vs onsets from the mel
    n, period = 400, 80
    pose = pose_from(yaw=periodic_motion(n, period))
    expr = np.zeros((n, 3))
    expr[:, 0] = periodic_motion(n, period)
    mel = mel_with_onsets(n, [t + offset for t in range(period, n - 1, period)])
    scores = m.beat_scores(mel, pose, expr, None, CFG)
    expected = math.exp(-offset ** 2 / (2 * sigma ** 2))
    assert scores["bc_h"] == pytest.approx(expected)
    assert scores["bc_e"] == pytest.approx(expected)


def test_beat_consistency_edge_cases_and_region():
    assert math.isnan(m.beat_consistency(np.array([]), np.array([3]), 2.0))
    assert m.beat_consistency(np.array([3]), np.array([]), 2.0) == 0.0
    # nearest audio beat counts, not the first
    assert m.beat_consistency(np.array([50]), np.array([0, 49, 100]), 1.0) == pytest.approx(
        math.exp(-0.5))
    # chance: audio beats on every frame give 1; region restricts the motion beats
    assert m.beat_chance(np.arange(100), np.arange(100), 3.0) == 1.0
    n, period = 400, 80
    pose = pose_from(yaw=periodic_motion(n, period))
    mel = mel_with_onsets(n, [160])
    region = np.zeros(n, bool)
    region[150:170] = True  # only the motion beat at 160 is scored: it sits on the onset
    assert m.beat_scores(mel, pose, np.zeros((n, 2)) + np.arange(n)[:, None] * 1e-3, region,
                         CFG)["bc_h"] == pytest.approx(1.0)


# ----------------------------------------------------------------- listener checks

def test_activity_mask():
    mel = np.full((200, 80), m.LOG_SILENCE)
    mel[20:50] = -5
    mel[55:80] = -5  # 5-frame gap: closed (gap limit 0.25 s = 22 frames)
    mel[150:160] = -5  # 70-frame gap: kept
    mel[170:180] = m.LOG_SILENCE + 1.0  # under the 1.5-nat margin
    active = m.activity_mask(mel)
    assert m.runs(active).tolist() == [[20, 80], [150, 160]]


def test_listener_energy():
    mel = np.full((100, 80), m.LOG_SILENCE)
    mel[50:] += 2.0
    region = np.zeros(100, bool)
    assert math.isnan(m.listener_energy(mel, region))
    region[:50] = True
    assert m.listener_energy(mel, region) == 0.0
    region[:] = True
    assert m.listener_energy(mel, region) == pytest.approx(1.0)


def nodding_pose(n, starts, degrees):
    """Pitch bumps (chin down and back, 0.38 s like the teacher's backchannel nods)."""
    pitch = np.zeros(n)
    length = int(0.38 * FPS)
    shape = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
    for s in starts:
        pitch[s:s + length] += math.radians(degrees) * shape
    return pose_from(pitch=pitch)


def test_count_nods():
    n = 1000
    region = np.ones(n, bool)
    starts = [100, 300, 500, 700]
    assert m.count_nods(nodding_pose(n, starts, 4.0), region) == 4
    assert m.count_nods(nodding_pose(n, starts, 0.5), region) == 0  # below 0.25 rad/s
    region[:400] = False
    assert m.count_nods(nodding_pose(n, starts, 4.0), region) == 2
    # a head turning steadily (yaw) is not nodding
    assert m.count_nods(pose_from(yaw=np.linspace(0, 1, n)), np.ones(n, bool)) == 0


def test_smile_events():
    smile = np.zeros(200)
    smile[10:40] = 0.5
    smile[60:80] = 0.31
    smile[100:130] = 0.3  # not above 0.3
    smile[150:160] = 0.9  # 10 frames: shorter than 0.2 s (17 frames)
    region = np.ones(200, bool)
    assert m.smile_events(smile, region) == (2, pytest.approx(60 / 200))
    region[:50] = False
    assert m.smile_events(smile, region) == (1, pytest.approx(30 / 150))
    # jitter around the threshold inside one smile is one event, not many
    jitter = np.where(np.arange(200) % 4 == 0, 0.25, 0.5)
    jitter[100:] = 0.0
    assert m.smile_events(jitter, np.ones(200, bool))[0] == 1
