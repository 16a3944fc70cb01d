"""Fitting the face model to MediaPipe landmarks, one frame at a time: the head pose by a
weighted 3D similarity on points expressions do not move, and the expression
coefficients by box-constrained least squares against the basis *observed* on renders of
the neutral face (so MediaPipe's own bias is undone). `avgen.face.track` runs it over a
video and smooths the result; see its docstring for the whole method."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avgen.constants import EXPRESSION_NAMES
from avgen.errors import InputError
from avgen.face import landmarks as lm


@dataclass(frozen=True)
class TrackConfig:
    smooth_expression: float = 0.6   # Gaussian sigma in video frames
    smooth_pose: float = 1.0
    ridge: float = 2e-3              # pull towards 0 (x10 for the rarer coefficients), per
                                     # unit of each coefficient's squared landmark motion
    secondary_prior: float = 10.0    # ridge multiplier for the rarer coefficients
    blink_cues: tuple = ("lids", "brightness")
    cue_power: float = 1.0           # blink cues are weighted by signal-to-noise ** this
    shift_prior: float = 0.5         # per pixel^2 of head shift (see fit_pose)
    iterations: int = 4              # Gauss-Newton steps per frame
    min_found: float = 0.5           # fraction of frames that must show a face


def _point_weights() -> np.ndarray:
    w = np.full(lm.NUM_LANDMARKS, 0.3)
    for group in (lm.LIPS_INNER_UPPER, lm.LIPS_INNER_LOWER, lm.LIPS_OUTER_UPPER,
                  lm.LIPS_OUTER_LOWER, lm.RIGHT_EYE["upper"], lm.RIGHT_EYE["lower"],
                  lm.LEFT_EYE["upper"], lm.LEFT_EYE["lower"], lm.RIGHT_BROW_INNER,
                  lm.RIGHT_BROW_OUTER, lm.LEFT_BROW_INNER, lm.LEFT_BROW_OUTER,
                  lm.RIGHT_EYE["iris_ring"], lm.LEFT_EYE["iris_ring"]):
        w[list(group)] = 1.0
    w[[468, 473]] = 1.0
    w[[152, 148, 377, 176, 400]] = 1.0  # chin: tells jaw_open from lip motion
    return w


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """(s, R, b) minimising sum w |s R src + b - dst|^2 for point sets (N, 3) (Umeyama)."""
    w = np.ones(len(src)) if weights is None else weights
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var = (w * (xs ** 2).sum(1)).sum()
    s = float(np.trace(np.diag(D) @ S) / max(var, 1e-12))
    b = mu_d - s * R @ mu_s
    return s, R, b


# Coefficient groups and the landmarks each is fitted on.
_MOUTH_POINTS = sorted(set(
    lm.LIPS_OUTER_UPPER + lm.LIPS_OUTER_LOWER + lm.LIPS_INNER_UPPER + lm.LIPS_INNER_LOWER
    + lm.LIPS_SEMI_OUTER_UPPER + lm.LIPS_SEMI_OUTER_LOWER + lm.LIPS_SEMI_INNER_UPPER
    + lm.LIPS_SEMI_INNER_LOWER
    + (152, 148, 176, 149, 150, 136, 172, 377, 400, 378, 379, 365, 397, 175, 199, 200, 18,
       83, 313, 182, 406, 57, 287, 43, 273, 106, 335, 205, 425, 207, 427, 216, 436)))
_LID_POINTS = sorted(set(
    lm.RIGHT_EYE["upper"] + lm.RIGHT_EYE["lower"] + lm.LEFT_EYE["upper"] + lm.LEFT_EYE["lower"]
    + (33, 133, 263, 362)))
_IRIS_POINTS = [468, 473] + list(lm.RIGHT_EYE["iris_ring"] + lm.LEFT_EYE["iris_ring"])
_BROW_POINTS = sorted(set(lm.RIGHT_BROW_INNER + lm.RIGHT_BROW_OUTER + lm.RIGHT_BROW_MID
                          + lm.LEFT_BROW_INNER + lm.LEFT_BROW_OUTER + lm.LEFT_BROW_MID))
# All coefficients are fitted together on these landmarks against the observed basis,
# which holds MediaPipe's cross-talk (a wink moves its mouth corner a little, say), so
# the cross-talk is explained instead of read as a smirk.
FIT_POINTS = sorted(set(_MOUTH_POINTS + _LID_POINTS + _IRIS_POINTS + _BROW_POINTS))
# Coefficients most motion carries (and the round trip is judged on) get a lighter prior.
_PRIMARY = {"jaw_open", "lips_close", "eye_blink_left", "eye_blink_right", "smile_left",
            "smile_right", "brow_inner_up", "brow_outer_up"}


@dataclass(frozen=True)
class ObservedBasis:
    neutral: np.ndarray     # (478, 3) landmarks MediaPipe reports on the neutral render
    basis: np.ndarray       # (E, 478, 3) landmark motion per unit coefficient
    coupling: np.ndarray    # (478, 3) extra motion of jaw_open x lips_close
    # Per coefficient, what the linear fit reports (E, L) at the true levels `LEVELS`:
    # MediaPipe's response is not linear (lids barely move until an eye is half closed),
    # so fitted values are mapped back through this curve.
    response: np.ndarray | None = None
    # Per eye (left, right), the upper-lid drop `lid_drop` measures at each of `LEVELS`
    # of that eye's blink: blinks are read from this curve, not from the linear fit.
    blink_curve: np.ndarray | None = None
    # Likewise for `eye_brightness` (2, L).
    brightness_curve: np.ndarray | None = None


BLINKS = (("eye_blink_left", lm.LEFT_EYE), ("eye_blink_right", lm.RIGHT_EYE))


def eye_brightness(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per eye (left, right): luminance of the darkest tenth of an almond between the eye
    corners over the median of the skin ring around it. An open eye (iris, pupil, lashes)
    is darker than skin; a closed lid is skin. Only the corners are taken from the landmarks -- MediaPipe tracks
    them well even where it keeps closed lids apart (behind glasses, say) -- and the ratio
    does not care about exposure."""
    gray = frame.mean(axis=2) if frame.ndim == 3 else frame
    h, w = gray.shape
    out = np.full(2, np.nan)
    for e, (_, eye) in enumerate(BLINKS):
        a, b = points[eye["outer"], :2], points[eye["inner"], :2]
        d = float(np.linalg.norm(b - a))
        if d < 4:
            continue
        centre = 0.5 * (a + b)
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        half = int(np.ceil(1.25 * d)) + 2
        x0, y0 = int(centre[0]) - half, int(centre[1]) - half
        if x0 < 0 or y0 < 0 or x0 + 2 * half > w or y0 + 2 * half > h:
            continue
        patch = gray[y0:y0 + 2 * half, x0:x0 + 2 * half]
        c = (int(round((centre[0] - x0) * 4)), int(round((centre[1] - y0) * 4)))

        def ellipse(rx, ry):
            mask = np.zeros(patch.shape, np.uint8)
            cv2.ellipse(mask, c, (int(rx * d * 4), int(ry * d * 4)), angle, 0, 360, 1, -1,
                        lineType=cv2.LINE_8, shift=2)
            return mask > 0

        # sizes in eye widths, chosen on the example faces' renders (a wide ring steadies
        # the reference against glasses rims and brows moving through it)
        inside = ellipse(0.45, 0.2)
        ring = ellipse(1.2, 0.9) & ~ellipse(0.7, 0.45)
        if inside.sum() >= 10 and ring.sum() >= 4:
            # darkest tenth inside (pupil and iris while the eye is open) over the median
            # of the ring (robust to glints and glasses rims)
            out[e] = np.percentile(patch[inside], 10) / max(float(np.median(patch[ring])), 1.0)
    return out


def lid_drop(canonical: np.ndarray, eye: dict) -> float:
    """How far the middle of the upper lid sits below the line through the eye corners,
    in eye widths, for landmarks in the neutral face's frame. A blink is mostly the upper
    lid coming down (a squint mostly raises the lower one), so this tells them apart."""
    a, b = canonical[eye["outer"], :2], canonical[eye["inner"], :2]
    width = max(float(np.linalg.norm(b - a)), 1e-6)
    normal = np.array([-(b - a)[1], (b - a)[0]]) / width
    if normal[1] < 0:
        normal = -normal  # pointing down the image
    mid = canonical[list(eye["upper"][2:5]), :2]
    return float(((mid - a) @ normal).mean() / width)


LEVELS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def calibrate(value: np.ndarray, response: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Map fitted values (..., E) back to true levels through each coefficient's observed
    response curve (E, L); signed coefficients are mapped by magnitude."""
    out = np.array(value, dtype=np.float64)
    for k in range(out.shape[-1]):
        curve = np.maximum.accumulate(np.maximum(response[k], 0.0))
        if curve[-1] < 0.5:
            continue  # barely observable (gaze): mapping back would amplify noise
        curve = curve + np.arange(len(curve)) * 1e-6  # strictly increasing for interp
        mag = np.abs(out[..., k])
        mapped = np.interp(mag, curve, LEVELS, right=np.nan)
        # beyond the last level: extrapolate with the last segment's slope
        last = (LEVELS[-1] - LEVELS[-2]) / max(curve[-1] - curve[-2], 1e-6)
        mapped = np.where(np.isnan(mapped), LEVELS[-1] + (mag - curve[-1]) * last, mapped)
        out[..., k] = np.sign(out[..., k]) * mapped if lower[k] < 0 else mapped
    return np.clip(out, lower, 1.0)


def observe_basis(renderer, mesh: "lm.FaceMesh", repeats: int = 1,
                  blink_mesh: "lm.FaceMesh | None" = None) -> ObservedBasis:
    """Measure each coefficient's landmark motion on renders of the renderer's face."""
    E = len(EXPRESSION_NAMES)
    identity = np.array([1.0, 0, 0, 0, 0, 0, 0])

    rigid = list(lm.RIGID)
    base = None

    last = {}

    def seen(c, mesh=mesh, repeats=repeats):
        frame = renderer.render(c, identity)
        last["frame"] = frame
        # In tracking mode MediaPipe crops each frame around the last frame's face, which
        # shifts its landmarks a little against detection from scratch; showing each
        # calibration render a few times lets that crop settle as it does in a video.
        for _ in range(repeats - 1):
            mesh.detect(frame, "<calibration render>")
        points = mesh.detect(frame, "<calibration render>")
        if points is None:
            raise InputError("MediaPipe lost the face on a calibration render; use a "
                             "clearer, more frontal reference", "<reference>")
        points = points.astype(np.float64)
        last["points"] = points
        if base is None:
            return points
        # the same rigid alignment the tracker applies to video frames
        s, R, b = fit_pose(base[rigid], points[rigid, :2])
        return ((points - b) @ R) / s

    base = seen(np.zeros(E))
    basis = np.zeros((E,) + base.shape)
    for k, name in enumerate(EXPRESSION_NAMES):
        c = np.zeros(E)
        if renderer.model.lower[k] < 0:
            c[k] = 1.0
            plus = seen(c)
            c[k] = -1.0
            basis[k] = 0.5 * (plus - seen(c))
        else:
            c[k] = 1.0
            full = seen(c) - base
            c[k] = 0.5
            half = seen(c) - base
            basis[k] = (full + 0.5 * half) / 1.25  # least-squares slope through the origin
    jaw, close = EXPRESSION_NAMES.index("jaw_open"), EXPRESSION_NAMES.index("lips_close")
    c = np.zeros(E)
    c[jaw] = c[close] = 1.0
    coupling = seen(c) - base - basis[jaw] - basis[close]
    # response curves: fit renders of each coefficient alone at each level
    fitter = ExpressionFitter(base, basis, coupling, renderer.model.width)
    response = np.zeros((E, len(LEVELS)))
    for k in range(E):
        for j, level in enumerate(LEVELS[1:], start=1):
            c = np.zeros(E)
            c[k] = level
            response[k, j] = abs(fitter.fit(seen(c), 1.0, np.eye(3), np.zeros(3),
                                            np.zeros(E))[k])
    blink_curve = np.zeros((2, len(LEVELS)))
    brightness_curve = np.zeros((2, len(LEVELS)))
    for e, (name, eye) in enumerate(BLINKS):
        for j, level in enumerate(LEVELS):
            c = np.zeros(E)
            c[EXPRESSION_NAMES.index(name)] = level
            # Blink levels are measured from scratch on each render (blink_mesh): in
            # tracking mode MediaPipe smooths over frames, and consecutive levels of one
            # eye would drag on each other.
            blink_curve[e, j] = lid_drop(seen(c, blink_mesh or mesh, 1), eye)
            brightness_curve[e, j] = eye_brightness(last["frame"], last["points"])[e]
    return ObservedBasis(base, basis, coupling, response, blink_curve, brightness_curve)


def _rotvec_matrix(v: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(v))
    if theta < 1e-12:
        return np.eye(3)
    k = v / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def fit_pose(model_points: np.ndarray, image_xy: np.ndarray, pivot: np.ndarray | None = None,
             shift_prior: float = 0.0, iterations: int = 6):
    """(s, R, b) such that the orthographic projection of s R X + b matches the observed
    (N, 2) points: the renderer's own camera, so only x and y are trusted (the depth
    MediaPipe guesses is the noisiest axis). Starts from a 3D Umeyama fit with the
    observed depth and refines by Gauss-Newton over rotation, scale and shift.

    With a `pivot`, the shift is that of the pivot, and `shift_prior` (per pixel^2) pulls
    it towards zero: rotation about a pivot behind the face looks much like a shift, and
    heads in conversation turn far more than they move, so the tie goes to rotation."""
    start_3d = np.column_stack([image_xy, np.zeros(len(image_xy))])
    s0, R0, b0 = similarity(model_points, start_3d)
    P = np.zeros(3) if pivot is None else np.asarray(pivot, dtype=np.float64)
    t0 = (s0 * R0 @ P + b0 - P)[:2]
    params = np.concatenate([np.zeros(4), t0])  # rotation vector (relative to R0), log scale, t
    centred = model_points - P
    weight = np.sqrt(shift_prior)

    def residual(p):
        Rp = R0 @ _rotvec_matrix(p[:3])
        pred = (s0 * np.exp(p[3]) * centred @ Rp.T)[:, :2] + P[:2] + p[4:6]
        return np.concatenate([(pred - image_xy).reshape(-1), weight * p[4:6]])

    for _ in range(iterations):
        r0 = residual(params)
        J = np.empty((len(r0), 6))
        for i in range(6):
            step = np.zeros(6)
            step[i] = 1e-4 if i < 4 else 1e-2
            J[:, i] = (residual(params + step) - r0) / step[i]
        delta = np.linalg.lstsq(J, -r0, rcond=None)[0]
        params = params + delta
        if np.abs(delta[:4]).max() < 1e-6:
            break
    R = R0 @ _rotvec_matrix(params[:3])
    s = s0 * float(np.exp(params[3]))
    t = np.array([params[4], params[5], 0.0])
    b = P + t - s * R @ P
    b[2] = 0.0
    return s, R, b


class ExpressionFitter:
    """Fits (E,) coefficients to observed landmarks given the head pose: the observed
    basis is rotated and projected like the renderer does, and only x and y are compared."""

    def __init__(self, neutral: np.ndarray, basis: np.ndarray, coupling: np.ndarray,
                 width: float, config: TrackConfig = TrackConfig()):
        self.neutral = neutral
        self.basis = basis
        self.coupling = coupling
        self.config = config
        self.lower = np.array([-1.0 if n in ("gaze_x", "gaze_y") else 0.0
                               for n in EXPRESSION_NAMES])
        self.upper = np.ones(len(EXPRESSION_NAMES))
        self.width = width
        self.jaw = EXPRESSION_NAMES.index("jaw_open")
        self.close = EXPRESSION_NAMES.index("lips_close")
        self.points = FIT_POINTS
        norms = (basis[:, FIT_POINTS, :2] ** 2).sum((1, 2)) / width ** 2
        ridge = np.array([config.ridge * (1 if n in _PRIMARY else config.secondary_prior)
                          for n in EXPRESSION_NAMES])
        self.lam = ridge * np.maximum(norms, 1e-9)

    def fit(self, observed: np.ndarray, s: float, R: np.ndarray, b: np.ndarray,
            start: np.ndarray) -> np.ndarray:
        """Coefficients (E,) for observed landmarks (478, 2+) posed by (s, R, b)."""
        pts = self.points
        lo, hi, lam = self.lower, self.upper, self.lam
        scale = s * self.width
        neutral = (s * self.neutral[pts] @ R.T + b)[:, :2]
        target = (observed[pts, :2] - neutral).reshape(-1) / scale
        B = (self.basis[:, pts] @ R.T)[..., :2].reshape(len(lo), -1) / self.width
        K = (self.coupling[pts] @ R.T)[:, :2].reshape(-1) / self.width
        c = np.clip(start.copy(), lo, hi)
        j, k = self.jaw, self.close
        for _ in range(self.config.iterations):
            pred = c @ B + c[j] * c[k] * K
            J = B.copy()
            J[j] += c[k] * K
            J[k] += c[j] * K
            r = target - pred
            H = J @ J.T + np.diag(lam)
            grad = J @ r - lam * c
            delta = _box_qp(H, grad, lo - c, hi - c)
            c = np.clip(c + delta, lo, hi)
            if np.abs(delta).max() < 1e-4:
                break
        return c


def _box_qp(H: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            sweeps: int = 60) -> np.ndarray:
    """argmin 0.5 x'Hx - g'x subject to lo <= x <= hi, by coordinate descent (E is ~17)."""
    x = np.zeros_like(g)
    diag = np.maximum(np.diag(H), 1e-12)
    for _ in range(sweeps):
        change = 0.0
        for i in range(len(g)):
            new = x[i] + (g[i] - H[i] @ x) / diag[i]
            new = min(max(new, lo[i]), hi[i])
            change = max(change, abs(new - x[i]))
            x[i] = new
        if change < 1e-6:
            break
    return x
