"""Motion and audio-visual metrics (docs/design.md, "Evaluation"), in numpy.

Everything works on the model clock (FRAMES_PER_SECOND = 86.13 fps) and on the arrays of
an `avgen.av/1` file for one person: mel (T, 80) natural-log mel magnitudes,
head_pose (T, 7) = quaternion (w, x, y, z) + translation, expression (T, E).
Parameters given in seconds are converted to frames at 86.13 fps.

Metrics (exact definitions in each function's docstring):

- lip-closure F1 (`lip_closure_score`): event matching of predicted lip closures
  (runs of lips_close >= 0.75) against reference bilabial intervals (p/b/m phonemes of a
  tokens file, or runs of the reference's lips_close >= 0.9), +-2 frames tolerance,
  counted inside the person's speech region.
- FDe (`frechet_distance`): Frechet distance between Gaussian fits of per-frame
  expression vectors, as FID does for image features.
- Div_h, Div_e (`diversity`): std across samples for the same input, per frame and
  dimension, averaged. Head pose is taken as (yaw, pitch, roll) in radians + translation
  (x, y, z) in face widths (`head_pose_features`), not the raw 7-vector: q and -q are the
  same rotation, so quaternion components can differ between samples without the head
  moving.
- BC_h, BC_e (`beat_consistency`): mean over motion beats (local minima of the smoothed
  head-rotation / expression speed) of exp(-d^2 / 2 sigma^2), d = distance to the
  nearest audio onset (spectral-flux peak of the person's mel), sigma = 0.12 s.
- Listener checks (`listener_energy`, `count_nods`, `smile_events`): speech energy in
  listening frames, backchannel nods (pitch-velocity peaks) and smiles while listening.

Speech regions (`activity_mask`, `token_masks`) say which frames a person speaks: from a
tokens file when one is given, else from the reference mel's energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avgen.constants import FRAMES_PER_SECOND, LOG_SILENCE
from avgen.face.rotations import quaternion_to_euler
from avgen.smoothing import gaussian_smooth


# Phones whose closure is made with both lips (symbol table entries, stress-free).
BILABIAL_PHONES = ("p", "b", "m", "m̩")


@dataclass(frozen=True)
class MetricsConfig:
    """Every threshold of the motion metrics. Seconds are converted at 86.13 fps."""

    # Lip closure. The teacher's mouth rests at lips_close 0.6 and its labiodentals (f, v)
    # reach 0.55, neither a bilabial closure; 0.75 lies between those and a full closure.
    closure_threshold: float = 0.75
    reference_closure_threshold: float = 0.9
    closure_tolerance_frames: int = 2
    # Beat consistency: sigma of the Gaussian score (3 frames at 25 fps, as Bailando).
    beat_sigma_seconds: float = 0.12
    # Gaussian smoothing of motion speed before its minima are taken as beats.
    speed_smoothing_seconds: float = 0.05
    # Onset peak picking on the spectral flux (librosa.onset's defaults, in spirit):
    # a peak is the maximum within +-onset_window and exceeds the local mean over
    # +-onset_average by onset_delta (envelope scaled to max 1); peaks at least
    # onset_window apart.
    onset_window_seconds: float = 0.03
    onset_average_seconds: float = 0.1
    onset_delta: float = 0.07
    # Speech activity from a mel: band-mean log-mel above the silence floor by this many
    # nats, with gaps shorter than activity_gap_seconds closed (stop closures are silent).
    activity_margin: float = 1.5
    activity_gap_seconds: float = 0.25
    # Listener activity: a nod is a peak of smoothed pitch velocity (chin down) above
    # nod_velocity rad/s; the teacher's backchannel nods peak at ~0.5-1 rad/s and its
    # slow drift stays under ~0.1 rad/s.
    nod_velocity: float = 0.25
    nod_min_gap_seconds: float = 0.2
    smile_threshold: float = 0.3
    # A smile event is a run of smile_left > smile_threshold lasting at least
    # smile_min_seconds after gaps up to smile_gap_seconds are closed, so that a
    # coefficient jittering around the threshold is not counted as many smiles.
    smile_min_seconds: float = 0.2
    smile_gap_seconds: float = 0.1

    def frames(self, seconds: float) -> float:
        return seconds * FRAMES_PER_SECOND


# ----------------------------------------------------------------- helpers

def runs(mask: np.ndarray) -> np.ndarray:
    """(T,) bool -> (K, 2) int [start, end) of each run of True frames, in order."""
    mask = np.asarray(mask, bool)
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges.reshape(-1, 2).astype(np.int64)


def close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of False no longer than `max_gap` frames that lie between True frames."""
    out = np.asarray(mask, bool).copy()
    gaps = runs(~out)
    for start, end in gaps:
        if start > 0 and end < len(out) and end - start <= max_gap:
            out[start:end] = True
    return out


def local_minima(x: np.ndarray) -> np.ndarray:
    """Frames t (0 < t < T-1) where x[t] is a strict minimum, or the middle frame of a
    flat-bottomed valley (x falls into a plateau and rises out of it). Endpoints never
    count: a valley cut by the edge is not a beat."""
    x = np.asarray(x, np.float64)
    if len(x) < 3:
        return np.zeros(0, np.int64)
    # collapse plateaus so a valley floor of equal values counts once
    change = np.concatenate([[True], np.diff(x) != 0])
    starts = np.flatnonzero(change)
    values = x[starts]
    ends = np.concatenate([starts[1:], [len(x)]])
    out = []
    for k in range(1, len(values) - 1):
        if values[k] < values[k - 1] and values[k] < values[k + 1]:
            out.append((starts[k] + ends[k] - 1) // 2)
    return np.asarray(out, np.int64)


# ----------------------------------------------------------------- speech regions

def activity_mask(mel: np.ndarray, config: MetricsConfig = MetricsConfig()) -> np.ndarray:
    """(T, 80) log-mel -> (T,) bool: the person makes sound. A frame is active when the
    mean over bands of its log-mel exceeds LOG_SILENCE + activity_margin; inactive gaps of
    at most activity_gap_seconds between active frames are filled (stop closures and
    short pauses inside a phrase are quiet but are speech)."""
    level = np.asarray(mel, np.float64).mean(axis=1)
    active = level > LOG_SILENCE + config.activity_margin
    return close_gaps(active, int(round(config.frames(config.activity_gap_seconds))))


def token_masks(token_ids: np.ndarray, silence_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T,) symbol ids of one person -> (speaking (T,) bool, bilabial (T,) bool)."""
    from avgen.text.symbols import symbol_id

    ids = np.asarray(token_ids)
    bilabial_ids = [symbol_id(p) for p in BILABIAL_PHONES]
    return ids != silence_id, np.isin(ids, bilabial_ids)


# ----------------------------------------------------------------- lip-closure F1

@dataclass(frozen=True)
class ClosureScore:
    """Event counts of lip-closure matching. Precision is nan without predicted events,
    recall nan without reference intervals; F1 is 2PR / (P + R), 0 when exactly one side
    is empty (a mouth that never closes scores 0, not "undefined"), nan when both are."""

    reference_intervals: int
    reference_hit: int
    predicted_events: int
    predicted_correct: int

    @property
    def precision(self) -> float:
        return self.predicted_correct / self.predicted_events if self.predicted_events else math.nan

    @property
    def recall(self) -> float:
        return self.reference_hit / self.reference_intervals if self.reference_intervals else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if math.isnan(p) and math.isnan(r):
            return math.nan
        if math.isnan(p) or math.isnan(r):
            return 0.0
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def __add__(self, other: ClosureScore) -> ClosureScore:
        """Pooled counts (micro average), e.g. over people or files."""
        return ClosureScore(self.reference_intervals + other.reference_intervals,
                            self.reference_hit + other.reference_hit,
                            self.predicted_events + other.predicted_events,
                            self.predicted_correct + other.predicted_correct)


def match_closures(reference: np.ndarray, predicted: np.ndarray, tolerance: int) -> ClosureScore:
    """Match (K, 2) reference intervals and (L, 2) predicted events, both [start, end).

    A reference interval [a, b) and a predicted event [c, d) match when the event has a
    frame within `tolerance` frames of the interval: c < b + tolerance and
    d > a - tolerance. Recall = reference intervals matched by at least one event /
    reference intervals; precision = events matching at least one interval / events.
    One long event may cover several intervals (a closure held across "m b"), and several
    events may hit one interval (a flickering closure): both are counted as correct.
    """
    reference = np.asarray(reference, np.int64).reshape(-1, 2)
    predicted = np.asarray(predicted, np.int64).reshape(-1, 2)
    if len(reference) and len(predicted):
        hit = ((predicted[None, :, 0] < reference[:, None, 1] + tolerance)
               & (predicted[None, :, 1] > reference[:, None, 0] - tolerance))  # (K, L)
        reference_hit = int(hit.any(axis=1).sum())
        predicted_correct = int(hit.any(axis=0).sum())
    else:
        reference_hit = predicted_correct = 0
    return ClosureScore(len(reference), reference_hit, len(predicted), predicted_correct)


def lip_closure_score(lips_close: np.ndarray, reference_closed: np.ndarray,
                      region: np.ndarray | None = None,
                      config: MetricsConfig = MetricsConfig()) -> ClosureScore:
    """Lip-closure event score of one person.

    lips_close (T,): the generated lips_close coefficient; predicted closure events are
    the runs of frames with lips_close >= config.closure_threshold (0.75).
    reference_closed (T,) bool: frames of reference bilabial closure; its runs are the
    reference intervals (from the tokens' p/b/m phonemes, or the reference's
    lips_close >= 0.9: see `reference_closure_mask`).
    region (T,) bool or None: the person's speech; events and intervals that do not
    overlap the region dilated by the tolerance are left out, because closed lips while
    listening or resting are not lip-sync errors. None counts everything.
    Matching is `match_closures` with config.closure_tolerance_frames (2).
    """
    tolerance = config.closure_tolerance_frames
    reference = runs(reference_closed)
    predicted = runs(np.asarray(lips_close) >= config.closure_threshold)
    if region is not None:
        allowed = np.asarray(region, bool)
        if tolerance > 0:  # dilate by the tolerance: a closure just before speech counts
            allowed = np.convolve(allowed.astype(float), np.ones(2 * tolerance + 1),
                                  mode="same") > 0
        keep = lambda spans: spans[[allowed[a:b].any() for a, b in spans]] if len(spans) \
            else spans  # noqa: E731
        reference, predicted = keep(reference), keep(predicted)
    return match_closures(reference, predicted, tolerance)


def reference_closure_mask(reference_lips_close: np.ndarray | None = None,
                           bilabial: np.ndarray | None = None,
                           config: MetricsConfig = MetricsConfig()) -> np.ndarray:
    """(T,) bool reference closures: the tokens' bilabial frames when given, else the
    reference's lips_close >= config.reference_closure_threshold (0.9)."""
    if bilabial is not None:
        return np.asarray(bilabial, bool)
    if reference_lips_close is None:
        raise ValueError("need a reference lips_close or bilabial token frames")
    return np.asarray(reference_lips_close) >= config.reference_closure_threshold


# ----------------------------------------------------------------- FDe

def gaussian_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) samples -> mean (D,), covariance (D, D) with ddof=1 (as FID's np.cov)."""
    x = np.asarray(x, np.float64)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                           sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix S1^(1/2) S2 S1^(1/2), which has the same eigenvalues as S1 S2.
    Unlike scipy.linalg.sqrtm of the non-symmetric S1 S2, this stays real and finite for
    singular or near-singular covariances (a constant coefficient, fewer frames than
    dimensions); tiny negative eigenvalues from rounding are clipped to 0. The result is
    clipped at 0 for the same reason.
    """
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * cross, 0.0))


def frechet_distance(generated: np.ndarray, reference: np.ndarray) -> float:
    """FDe: Frechet distance between Gaussian fits of (N, E) generated and (M, E)
    reference per-frame expression vectors (frames are samples; time order is ignored).
    nan if either side has fewer than 2 frames."""
    if len(generated) < 2 or len(reference) < 2:
        return math.nan
    return frechet_distance_stats(*gaussian_fit(generated), *gaussian_fit(reference))


# ----------------------------------------------------------------- diversity

def head_pose_features(head_pose: np.ndarray) -> np.ndarray:
    """(T, 7) quaternion + translation -> (T, 6) yaw, pitch, roll (radians, see
    avgen.motion) and translation x, y, z (face widths)."""
    yaw, pitch, roll = quaternion_to_euler(np.asarray(head_pose[:, :4], np.float64))
    return np.concatenate([np.stack([yaw, pitch, roll], axis=1),
                           np.asarray(head_pose[:, 4:7], np.float64)], axis=1)


def diversity(samples: np.ndarray) -> float:
    """(S, T, D) S >= 2 samples for the same input -> mean over frames and dimensions of
    the standard deviation across samples (population std, ddof=0).
    Div_h uses head_pose_features (T, 6); Div_e uses the expression (T, E)."""
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 3 or samples.shape[0] < 2:
        raise ValueError(f"diversity needs (S >= 2, T, D) samples, got {samples.shape}")
    return float(samples.std(axis=0).mean())


# ----------------------------------------------------------------- beat consistency

def onset_envelope(mel: np.ndarray) -> np.ndarray:
    """(T, 80) log-mel -> (T,) spectral flux: mean over bands of the positive part of the
    frame-to-frame log-mel increase; frame 0 is 0."""
    mel = np.asarray(mel, np.float64)
    flux = np.zeros(len(mel))
    if len(mel) > 1:
        flux[1:] = np.clip(np.diff(mel, axis=0), 0, None).mean(axis=1)
    return flux


def audio_beats(mel: np.ndarray, config: MetricsConfig = MetricsConfig()) -> np.ndarray:
    """(T, 80) log-mel -> (K,) frames of audio onsets: peaks of `onset_envelope` scaled
    to max 1, where a peak at t (1) equals the maximum over t +- w (w = onset_window
    frames), (2) exceeds the mean over t +- a (a = onset_average frames) by onset_delta,
    (3) is positive, and (4) lies at least w frames after the previous kept peak."""
    flux = onset_envelope(mel)
    top = flux.max(initial=0.0)
    if top <= 0:
        return np.zeros(0, np.int64)
    flux = flux / top
    w = max(1, int(round(config.frames(config.onset_window_seconds))))
    a = max(1, int(round(config.frames(config.onset_average_seconds))))
    n = len(flux)
    beats: list[int] = []
    for t in np.flatnonzero(flux > 0):
        lo, hi = max(0, t - w), min(n, t + w + 1)
        if flux[t] < flux[lo:hi].max():
            continue
        if flux[t] < flux[max(0, t - a):min(n, t + a + 1)].mean() + config.onset_delta:
            continue
        if beats and t - beats[-1] < w:
            continue
        beats.append(int(t))
    return np.asarray(beats, np.int64)


def rotation_speed(head_pose: np.ndarray) -> np.ndarray:
    """(T, 7) -> (T,) head rotation speed in rad/s by central differences: the angle of
    the rotation from q[t-1] to q[t+1], 2 acos(|<q[t-1], q[t+1]>|), over 2 frames (one
    frame, one-sided, at the ends). Central, so a speed minimum sits on its frame rather
    than half a frame late."""
    q = np.asarray(head_pose[:, :4], np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return _central_speed(q, lambda a, b: 2 * np.arccos(
        np.clip(np.abs((a * b).sum(axis=1)), 0.0, 1.0)))


def expression_speed(expression: np.ndarray) -> np.ndarray:
    """(T, E) -> (T,) Euclidean norm of the expression velocity (per second), central
    differences as `rotation_speed`."""
    return _central_speed(np.asarray(expression, np.float64),
                          lambda a, b: np.linalg.norm(b - a, axis=1))


def _central_speed(x: np.ndarray, distance) -> np.ndarray:
    speed = np.zeros(len(x))
    if len(x) < 2:
        return speed
    if len(x) > 2:
        speed[1:-1] = distance(x[:-2], x[2:]) / 2
    speed[0] = distance(x[:1], x[1:2])[0]
    speed[-1] = distance(x[-2:-1], x[-1:])[0]
    return speed * FRAMES_PER_SECOND


def motion_beats(speed: np.ndarray, config: MetricsConfig = MetricsConfig()) -> np.ndarray:
    """(T,) speed -> frames of motion beats: local minima (`local_minima`) of the speed
    smoothed with a Gaussian of speed_smoothing_seconds (0.05 s)."""
    return local_minima(gaussian_smooth(speed, config.frames(config.speed_smoothing_seconds)))


def beat_consistency(motion: np.ndarray, audio: np.ndarray, sigma_frames: float) -> float:
    """BC = mean over motion beats m of exp(-min_a (m - a)^2 / (2 sigma^2)), a over the
    audio beats. nan without motion beats; 0 with motion beats but no audio beats."""
    motion = np.asarray(motion, np.float64)
    audio = np.asarray(audio, np.float64)
    if len(motion) == 0:
        return math.nan
    if len(audio) == 0:
        return 0.0
    distance = np.abs(motion[:, None] - audio[None, :]).min(axis=1)
    return float(np.exp(-distance ** 2 / (2 * sigma_frames ** 2)).mean())


def beat_chance(audio: np.ndarray, frames: np.ndarray, sigma_frames: float) -> float:
    """The BC that motion beats placed uniformly at random among `frames` would get on
    average: the mean over those frames of exp(-d^2 / 2 sigma^2). With speech onsets
    every ~0.2 s and sigma 0.12 s this is high (~0.8), so BC is only meaningful next to
    it. nan for no frames; 0 without audio beats."""
    return beat_consistency(np.asarray(frames), audio, sigma_frames)


def beat_scores(mel: np.ndarray, head_pose: np.ndarray, expression: np.ndarray,
                region: np.ndarray | None = None,
                config: MetricsConfig = MetricsConfig()) -> dict[str, float]:
    """BC_h, BC_e and BC chance (`beat_chance`) of one person: audio beats from the person's own mel, motion beats of
    head rotation speed (BC_h) and expression speed (BC_e); only motion beats inside
    `region` (the person's speech; None = all frames) are scored, since a listener's
    motion follows the partner, not its own silent track."""
    beats = audio_beats(mel, config)
    sigma = config.frames(config.beat_sigma_seconds)
    frames = np.arange(len(mel)) if region is None else np.flatnonzero(region)
    out = {"bc_chance": beat_chance(beats, frames, sigma)}
    for key, speed in (("bc_h", rotation_speed(head_pose)), ("bc_e", expression_speed(expression))):
        found = motion_beats(speed, config)
        if region is not None:
            found = found[np.asarray(region, bool)[found]]
        out[key] = beat_consistency(found, beats, sigma)
    return out


# ----------------------------------------------------------------- listener checks

def listener_energy(mel: np.ndarray, region: np.ndarray) -> float:
    """Mean over `region` frames of the band-mean log-mel minus LOG_SILENCE: nats above
    the silence floor (0 = silent). Over listening frames this is speech leaking into the
    listener's track. nan for an empty region."""
    region = np.asarray(region, bool)
    if not region.any():
        return math.nan
    return float(np.asarray(mel, np.float64)[region].mean() - LOG_SILENCE)


def pitch_velocity(head_pose: np.ndarray, config: MetricsConfig = MetricsConfig()) -> np.ndarray:
    """(T, 7) -> (T,) smoothed pitch velocity in rad/s (positive = chin moving down)."""
    _, pitch, _ = quaternion_to_euler(np.asarray(head_pose[:, :4], np.float64))
    velocity = np.gradient(pitch) * FRAMES_PER_SECOND if len(pitch) > 1 else np.zeros(len(pitch))
    return gaussian_smooth(velocity, config.frames(config.speed_smoothing_seconds))


def count_nods(head_pose: np.ndarray, region: np.ndarray,
               config: MetricsConfig = MetricsConfig()) -> int:
    """Nods inside `region`: local maxima of `pitch_velocity` above config.nod_velocity
    rad/s, at least nod_min_gap_seconds apart (a double-peaked velocity is one nod)."""
    velocity = pitch_velocity(head_pose, config)
    peaks = local_minima(-velocity)
    peaks = peaks[(velocity[peaks] > config.nod_velocity) & np.asarray(region, bool)[peaks]]
    gap = config.frames(config.nod_min_gap_seconds)
    count, last = 0, -math.inf
    for t in peaks:
        if t - last >= gap:
            count += 1
            last = t
    return count


def smile_events(smile_left: np.ndarray, region: np.ndarray,
                 config: MetricsConfig = MetricsConfig()) -> tuple[int, float]:
    """(smile events, fraction of region frames smiling) while in `region`.

    Smiling frames: smile_left > config.smile_threshold (0.3) inside the region. Events:
    runs of smiling frames after closing gaps of at most smile_gap_seconds (0.1 s),
    keeping runs of at least smile_min_seconds (0.2 s). The fraction counts raw smiling
    frames and is nan for an empty region."""
    region = np.asarray(region, bool)
    smiling = (np.asarray(smile_left) > config.smile_threshold) & region
    fraction = float(smiling[region].mean()) if region.any() else math.nan
    merged = close_gaps(smiling, int(round(config.frames(config.smile_gap_seconds)))) & region
    spans = runs(merged)
    long_enough = (spans[:, 1] - spans[:, 0]) >= config.frames(config.smile_min_seconds)
    return int(long_enough.sum()), fraction
