"""Video -> motion: fit head pose and expression coefficients to the face mesh landmarks of
every frame (the inverse of `avgen.face.render`).

Per frame: MediaPipe landmarks (478, 3) in tracking mode; a weighted 3D similarity
(Umeyama) on points that expressions do not move gives the head rotation and translation;
the landmarks are brought back into the neutral face's frame and the expression
coefficients are fitted by box-constrained Gauss-Newton (the model is linear except for
the jaw_open x lips_close coupling), warm-started from the previous frame, one group of
coefficients at a time on its own landmarks (mouth, eyes, brows), so that MediaPipe's
habit of shifting the whole mesh a little when the eyes close does not leak into the lips.

The basis the fitter uses is *observed*, not assumed: the renderer animates the neutral
face with each coefficient in turn and MediaPipe measures where the landmarks went. The
landmark network under-reports closed lids and wide jaws (a fully closed eye moves its lid
landmarks about half way), and fitting against what it actually reports undoes that bias.

The neutral face is a reference photo when given (the expressions of `avgen render` are
offsets from its photo, so tracking its videos with the same photo recovers them), or
else the video frame nearest the per-landmark median of the pose-normalised frames.
Coefficients and pose are smoothed over time and resampled from the video's frame rate to
the 86.13 fps model clock.
"""

from __future__ import annotations

import numpy as np

from avgen.constants import EXPRESSION_NAMES, FRAMES_PER_SECOND
from avgen.errors import InputError
from avgen.face import landmarks as lm
from avgen.face.fitting import (BLINKS, LEVELS, ExpressionFitter, ObservedBasis, TrackConfig,
                                calibrate, eye_brightness, fit_pose, lid_drop, observe_basis,
                                similarity)
from avgen.face.model import FaceModel
from avgen.face.motion import Motion
from avgen.face.rotations import matrix_to_quaternion
from avgen.smoothing import gaussian_smooth


def crop_region(frame: np.ndarray, region: tuple[float, float, float, float] | None
                ) -> np.ndarray:
    """The part (x0, y0, x1, y1), in fractions of width and height, of a frame (H, W, 3);
    the whole frame for None. Lets one face of a side-by-side video be tracked alone."""
    if region is None:
        return frame
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = region
    return np.ascontiguousarray(frame[int(round(y0 * h)):int(round(y1 * h)),
                                      int(round(x0 * w)):int(round(x1 * w))])


def detect_video(path: str, progress: bool = True,
                 region: tuple[float, float, float, float] | None = None):
    """(fps, landmarks (T, 478, 3) in pixels, found (T,) bool, eye brightness (T, 2)) of
    every frame (of its `region`, see `crop_region`)."""
    from tqdm import tqdm

    from avgen.video import read_video

    fps, frames, estimate = read_video(path)
    frames = (crop_region(frame, region) for frame in frames)
    points, found, bright = [], [], []
    with lm.quiet_native_logs() as stderr, lm.FaceMesh(video=True) as mesh:
        for k, frame in enumerate(tqdm(frames, total=estimate or None, desc="track",
                                       unit="frame", disable=not progress, file=stderr,
                                       dynamic_ncols=True)):
            p = mesh.detect(frame, path, where=f"frame {k}: ")
            found.append(p is not None)
            points.append(p if p is not None else np.zeros((lm.NUM_LANDMARKS, 3), np.float32))
            bright.append(eye_brightness(frame, p) if p is not None else np.full(2, np.nan))
    if not points:
        raise InputError("the video has no frames", path)
    return fps, np.stack(points).astype(np.float64), np.array(found), np.array(bright)


def _fill_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Frames without a face take the landmarks of the nearest frames (interpolated)."""
    if found.all():
        return points
    idx = np.flatnonzero(found)
    flat = points.reshape(len(points), -1)
    t = np.arange(len(points))
    out = np.stack([np.interp(t, idx, flat[idx, d]) for d in range(flat.shape[1])], axis=1)
    return out.reshape(points.shape)


def _neutral_from_video(points: np.ndarray, rigid_w: np.ndarray) -> np.ndarray:
    neutral = np.median(points, axis=0)
    rigid = list(lm.RIGID)
    for _ in range(2):
        aligned = []
        for p in points:
            s, R, b = similarity(p[rigid], neutral[rigid], rigid_w)
            aligned.append(s * p @ R.T + b)
        neutral = np.median(np.stack(aligned), axis=0)
    return neutral


def _ref_in_video(ref_points: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The reference photo's landmarks moved (scale + shift, no rotation) into the video's
    framing: the median over frames, so head motion in the video does not leak in."""
    rigid = list(lm.RIGID)
    r = ref_points[rigid, :2]
    rc, rs = r.mean(0), np.sqrt(((r - r.mean(0)) ** 2).sum(1).mean())
    scales, shifts = [], []
    for p in points:
        q = p[rigid, :2]
        qc, qs = q.mean(0), np.sqrt(((q - q.mean(0)) ** 2).sum(1).mean())
        scales.append(qs / rs)
        shifts.append(qc - rc * (qs / rs))
    s = float(np.median(scales))
    shift = np.median(np.array(shifts), axis=0)
    out = ref_points * s
    out[:, :2] += shift
    return out


def _through_curve(values: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Blink levels for measurements, through a calibration curve (L,) measured at
    `LEVELS` (made increasing; a flat curve gives NaN: that cue sees nothing)."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve[-1] < curve[0]:
        curve, values = -curve, -values
    if not curve[-1] - curve[0] > 1e-3:
        return np.full(len(values), np.nan)
    curve = np.maximum.accumulate(curve) + np.arange(len(curve)) * 1e-6
    return np.interp(values, curve, LEVELS)


def track_landmarks(points: np.ndarray, fps: float, observed: ObservedBasis,
                    config: TrackConfig = TrackConfig(),
                    brightness: np.ndarray | None = None) -> Motion:
    """Motion on the model clock from landmarks (T, 478, 3) at `fps`, in the pixel frame of
    the observed basis (the renderer's square crop of the neutral face)."""
    neutral = observed.neutral
    model = FaceModel(neutral)  # for the pivot and face width the renderer uses
    # the renderer turns heads with the model's smoothed landmark depth: fit with it too
    shape3d = model.neutral
    fitter = ExpressionFitter(neutral, observed.basis, observed.coupling, model.width, config)
    rigid = list(lm.RIGID)
    T = len(points)
    quats = np.zeros((T, 4))
    trans = np.zeros((T, 3))
    expr = np.zeros((T, len(EXPRESSION_NAMES)))
    c = np.zeros(len(EXPRESSION_NAMES))
    drops = np.zeros((T, 2))
    for t in range(T):
        s, R, b = fit_pose(shape3d[rigid], points[t, rigid, :2], model.pivot,
                           config.shift_prior)
        # posed = s R x + b = s [R (x - P) + P] + (b + s R P - s P); the model has s = 1
        # (its translation in depth does not change the picture), so the shift is the rest
        shift = b + s * R @ model.pivot - model.pivot
        quats[t] = matrix_to_quaternion(R)
        trans[t] = shift / model.width
        trans[t, 2] = 0.0
        c = fitter.fit(points[t], s, R, b, c)
        expr[t] = c
        canonical = ((points[t] - b) @ R) / s
        for e, (name, eye) in enumerate(BLINKS):
            drops[t, e] = lid_drop(canonical, eye)
    from avgen.video import continuous_quaternions, interpolate, resample_head_pose

    quats = continuous_quaternions(quats)
    pose = np.concatenate([quats, trans], axis=1)
    pose = gaussian_smooth(pose, config.smooth_pose)
    pose[:, :4] /= np.linalg.norm(pose[:, :4], axis=1, keepdims=True)
    if observed.response is not None:
        expr = calibrate(expr, observed.response, fitter.lower)
    # Blinks from two cues, each through its own calibration curve: where the lids are
    # drawn and how bright the inside of the eye outline is; averaged with weights
    # proportional to each cue's signal to noise in this video (its open-to-closed swing
    # over its frame-to-frame jitter), so a cue the face defeats -- lids behind glasses,
    # an eye too bright to darken -- counts less. (Squared weights, inverse variance,
    # trusted the better cue too much on one of the two example faces.)
    for e, (name, _) in enumerate(BLINKS):
        cues = []  # (blink estimate (T,), weight)
        raw = []
        if observed.blink_curve is not None and "lids" in config.blink_cues:
            raw.append((drops[:, e], observed.blink_curve[e]))
        if (brightness is not None and observed.brightness_curve is not None
                and "brightness" in config.blink_cues):
            raw.append((brightness[:, e], observed.brightness_curve[e]))
        for values, curve in raw:
            # The open-eye level is taken from this video (eyes are open most of the time),
            # the swing to closed from the calibration renders: head pose, light and
            # glasses shift a cue's baseline far more than they change its swing.
            curve = curve + (np.nanmedian(values) - curve[0])
            estimate = _through_curve(values, curve)
            if np.isfinite(estimate).mean() < 0.5:
                continue
            # signal to noise: the cue's swing from open to closed over its jitter here
            jitter = np.nanmedian(np.abs(np.diff(values))) + 1e-6
            snr = abs(curve[-1] - curve[0]) / jitter
            cues.append((estimate, snr ** config.cue_power))
        if cues:
            stack = np.stack([c for c, _ in cues])
            w = np.where(np.isfinite(stack), np.array([w for _, w in cues])[:, None], 0.0)
            est = (np.nan_to_num(stack) * w).sum(0) / np.maximum(w.sum(0), 1e-12)
            est[w.sum(0) == 0] = np.nan
            k = EXPRESSION_NAMES.index(name)
            expr[:, k] = np.where(np.isfinite(est), est, expr[:, k])
    expr = np.clip(gaussian_smooth(expr, config.smooth_expression), fitter.lower, fitter.upper)
    count = max(1, int(np.floor(T / fps * FRAMES_PER_SECOND + 1e-6)))
    positions = np.minimum(np.arange(count) * (fps / FRAMES_PER_SECOND), T - 1)
    return Motion((resample_head_pose(pose, positions),),
                  (np.clip(interpolate(expr, positions), fitter.lower, fitter.upper),))


def _frame_at(path: str, index: int, region=None) -> np.ndarray:
    from avgen.video import read_video

    _, frames, _ = read_video(path)
    for k, frame in enumerate(frames):
        if k == index:
            return crop_region(frame, region).copy()
    raise InputError(f"frame {index} could not be read again", path)


def track_video(path: str, ref: str | None = None, config: TrackConfig = TrackConfig(),
                progress: bool = True,
                region: tuple[float, float, float, float] | None = None) -> Motion:
    """Head pose + expression (one person) of a video of one face, on the model clock;
    `region` (x0, y0, x1, y1 in fractions) tracks only that part of each frame."""
    from avgen.face.render import FaceRenderer, RenderConfig, crop_frame

    fps, points, found, brightness = detect_video(path, progress, region)
    if found.mean() < config.min_found:
        raise InputError(f"a face was found in only {found.sum()} of {len(found)} frames; "
                         "use a video where one face is visible throughout", path)
    points = _fill_missing(points, found)
    if ref is not None:
        image = lm.read_image(ref)
        ref_points = lm.detect_image(image, ref).astype(np.float64)
        # video pixels -> reference photo pixels (median scale and shift over the video)
        in_video = _ref_in_video(ref_points, points)
        scale = np.sqrt(((in_video[:, :2] - in_video[:, :2].mean(0)) ** 2).sum()
                        / ((ref_points[:, :2] - ref_points[:, :2].mean(0)) ** 2).sum())
        offset = in_video[:, :2].mean(0) - ref_points[:, :2].mean(0) * scale
        points = points.copy()
        points[..., :2] = (points[..., :2] - offset) / scale
        points[..., 2] /= scale
    else:
        neutral = _neutral_from_video(points, np.ones(len(lm.RIGID)))
        nearest = int(np.argmin(np.abs(points - neutral).sum((1, 2))))
        image, ref_points = _frame_at(path, nearest, region), points[nearest]
    render_config = RenderConfig()  # the neutral face at the renderer's own size
    renderer = FaceRenderer(image, ref_points, render_config)
    x0, y0, crop_scale = crop_frame(image.shape, ref_points, render_config.size)
    points = points.copy()
    points[..., 0] -= x0
    points[..., 1] -= y0
    points *= crop_scale
    with lm.quiet_native_logs(), lm.FaceMesh(video=True) as mesh, \
            lm.FaceMesh(video=False) as still:
        observed = observe_basis(renderer, mesh, repeats=3, blink_mesh=still)
    return track_landmarks(points, fps, observed, config, brightness)
