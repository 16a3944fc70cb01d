"""A face model over MediaPipe landmarks: named expression coefficients move defined sets
of landmarks, and a head pose rotates and translates them in 3D.

The model is built from one reference face (a photo, or the neutral shape of a video), so
expressions are offsets from the reference: coefficient 0 everywhere reproduces the photo.
All coordinates are pixels of the reference image: x right, y down, z away from the
camera (a right-handed camera frame). For one frame,

    shape = neutral + sum_k c_k * basis_k + jaw_open * lips_close * coupling    (478, 3)
    posed = R (shape - pivot) + pivot + face_width * translation

with R the rotation of the head-pose quaternion (w, x, y, z). Rotating about +y turns the
nose towards image-left (the subject's right); about +x nods the chin down.
Each coefficient's displacement is defined from the reference geometry (lid-to-lid gaps,
lip thickness, distances from the jaw hinge), so it fits any face, and the shapes of
`basis` are (E, 478, 3) in the order of `avgen.constants.EXPRESSION_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avgen.constants import EXPRESSION_NAMES, SIGNED_EXPRESSIONS
from avgen.face import landmarks as lm
from avgen.face.rotations import quaternion_to_matrix
from avgen.smoothing import smoothstep

# position of each named expression in an (…, E) expression array
EXPRESSION_INDEX = {name: k for k, name in enumerate(EXPRESSION_NAMES)}


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of each expression at coefficient 1, in face widths unless noted."""

    jaw_drop: float = 0.17          # chin travel at jaw_open = 1
    corner_smile: tuple = (0.075, -0.06)  # mouth corner (out, up) at smile = 1
    brow_raise: float = 0.04
    brow_lower: float = 0.035
    lip_press: float = 0.55         # lips_close thins each lip by this share
    lip_raise: float = 0.035
    lip_depress: float = 0.04
    blink_upper_share: float = 0.88  # of the lid gap covered by the upper lid in a blink
    lash_line: float = 0.12         # closed lid: fold to lid distance, eye widths
    fold_follow: float = 0.5        # the ring above the fold follows this much of it
    blink_radius: float = 0.45      # skin around the lid follows within this many eye widths
    gaze_x: float = 0.2             # iris travel in eye widths at gaze_x = 1
    gaze_y: float = 0.1
    pivot_depth: float = 0.6        # head pivot behind the face surface, face widths
    depth_smoothing: float = 0.06   # Gaussian radius for landmark depth, face widths


def _smooth_depth(points: np.ndarray, radius: float) -> np.ndarray:
    """Landmark depth averaged over neighbours: MediaPipe's per-point depth is noisy, and
    two points that touch in the photo but disagree in depth would be pulled apart by a
    head turn, stretching a sliver of skin into a visible smear."""
    d2 = ((points[:, None, :2] - points[None, :, :2]) ** 2).sum(-1)
    g = np.exp(-d2 / (radius * radius))
    return (g @ points[:, 2]) / g.sum(1)


def _fill_lip_rings(controls: dict[int, np.ndarray]) -> None:
    """Give the two middle rings of lip points the in-between motion of the outer and
    inner contours, column by column, so a lip moves as one piece and never folds."""
    for outer, so, si, inner in ((lm.LIPS_OUTER_UPPER, lm.LIPS_SEMI_OUTER_UPPER,
                                  lm.LIPS_SEMI_INNER_UPPER, lm.LIPS_INNER_UPPER),
                                 (lm.LIPS_OUTER_LOWER, lm.LIPS_SEMI_OUTER_LOWER,
                                  lm.LIPS_SEMI_INNER_LOWER, lm.LIPS_INNER_LOWER)):
        for o, a, b, i in zip(outer, so, si, inner):
            if o in controls and i in controls:
                do, di = np.asarray(controls[o]), np.asarray(controls[i])
                controls[a] = (2 * do + di) / 3
                controls[b] = (do + 2 * di) / 3


def _spread(points: np.ndarray, controls: dict[int, np.ndarray], radius: float,
            locked: set[int] = frozenset()) -> np.ndarray:
    """Full (N, 3) displacement from exact displacements at control landmarks: every other
    point follows its nearby controls with a Gaussian falloff of `radius` pixels (skin
    drags along with what moves it), except `locked` points, which stay put."""
    controls = dict(controls)
    _fill_lip_rings(controls)
    idx = np.array(sorted(controls), dtype=int)
    disp = np.stack([np.asarray(controls[i], dtype=np.float64) for i in idx])
    d2 = ((points[:, None, :2] - points[None, idx, :2]) ** 2).sum(-1)
    g = np.exp(-d2 / (radius * radius))
    full = (g @ disp) / np.maximum(g.sum(1, keepdims=True), 1e-12) * g.max(1, keepdims=True)
    for i in locked:
        full[i] = 0.0
    full[idx] = disp
    return full


class FaceModel:
    """Expression basis and head pose over one reference face's landmarks (478, 3)."""

    names = EXPRESSION_NAMES

    def __init__(self, neutral: np.ndarray, config: ModelConfig = ModelConfig()):
        self.neutral = np.asarray(neutral, dtype=np.float64).copy()
        self.config = config
        self.width = lm.face_width(self.neutral)
        self.neutral[:, 2] = _smooth_depth(self.neutral, config.depth_smoothing * self.width)
        rigid = self.neutral[list(lm.RIGID)]
        mouth_y = 0.5 * (self.neutral[0, 1] + self.neutral[17, 1])
        self.pivot = np.array([rigid[:, 0].mean(), mouth_y,
                               rigid[:, 2].mean() + config.pivot_depth * self.width])
        bases, self.coupling = self._build()
        self.basis = np.stack([bases[name] for name in self.names])  # (E, 478, 3)
        self.lower = np.array([-1.0 if n in SIGNED_EXPRESSIONS else 0.0 for n in self.names])
        self.upper = np.ones(len(self.names))
        self._jaw = self.names.index("jaw_open")
        self._close = self.names.index("lips_close")

    # -- the basis -------------------------------------------------------------------
    def _build(self):
        p, W, cfg = self.neutral, self.width, self.config
        zero = np.zeros_like(p)
        up_in, lo_in = list(lm.LIPS_INNER_UPPER), list(lm.LIPS_INNER_LOWER)
        up_out, lo_out = list(lm.LIPS_OUTER_UPPER), list(lm.LIPS_OUTER_LOWER)
        corners = {61, 78, 291, 308, 76, 62, 306, 292}
        semi = (lm.LIPS_SEMI_OUTER_UPPER + lm.LIPS_SEMI_INNER_UPPER,
                lm.LIPS_SEMI_OUTER_LOWER + lm.LIPS_SEMI_INNER_LOWER)
        upper_lip = set(up_in + up_out + list(semi[0])) - corners
        lower_lip = set(lo_in + lo_out + list(semi[1])) - corners
        lips = upper_lip | lower_lip | corners
        mouth_c = 0.5 * (p[13] + p[14])
        mouth_half = 0.5 * abs(p[291, 0] - p[61, 0])
        B: dict[str, np.ndarray] = {}

        # jaw_open: rotation of the mandible about the hinge axis (through both ears,
        # behind the face): points move down in proportion to their depth in front of the
        # hinge, so the chin travels most and the jaw angle little.
        hinge_z = 0.5 * (p[234, 2] + p[454, 2]) + 0.15 * W
        hinge_y = 0.5 * (p[234, 1] + p[454, 1])
        lip_line = np.interp(p[:, 0], [p[234, 0], p[61, 0], p[291, 0], p[454, 0]],
                             [hinge_y, p[61, 1], p[291, 1], hinge_y])
        below = smoothstep((p[:, 1] - lip_line) / (0.05 * W) + 0.5)
        for i in lower_lip:
            below[i] = 1.0
        for i in upper_lip:
            below[i] = 0.0
        for i in corners:
            below[i] = 0.45
        theta = cfg.jaw_drop * W / (hinge_z - p[152, 2])
        jaw = zero.copy()
        jaw[:, 1] = theta * np.maximum(hinge_z - p[:, 2], 0.0) * below
        jaw[:, 2] = theta * (p[:, 1] - hinge_y) * below * 0.5
        B["jaw_open"] = jaw

        # lips_close: the lips meet (closing whatever gap the reference has) and press:
        # they roll in (the red of the lips thins by `lip_press`), the corners tighten and
        # the chin below bulges up a little -- the visible "m/b/p". With jaw_open the
        # coupling term pulls the lower lip back up.
        close_ctrl = {}
        press = cfg.lip_press
        for a, b, oa, ob in zip(up_in, lo_in, up_out, lo_out):
            if a in corners:
                continue
            gap = max(p[b, 1] - p[a, 1], 0.0)
            close_ctrl[a] = np.array([0, 0.5 * gap + 0.004 * W, 0])
            close_ctrl[b] = np.array([0, -0.5 * gap, 0])
            close_ctrl[oa] = np.array([0, 0.4 * gap + press * (p[a, 1] - p[oa, 1]), 0.015 * W])
            close_ctrl[ob] = np.array([0, -0.4 * gap - press * (p[ob, 1] - p[b, 1]), 0.015 * W])
        for i in (61, 291, 78, 308):
            close_ctrl[i] = np.array([-0.08 * (p[i, 0] - mouth_c[0]), 0.0, 0.0])
        for i in (18, 200, 83, 313, 201, 421):  # under the lower lip: the chin pushes up
            close_ctrl[i] = np.array([0.0, -0.02 * W, -0.01 * W])
        B["lips_close"] = _spread(p, close_ctrl, 0.05 * W)
        coupling_ctrl = {i: -0.9 * jaw[i] for i in lower_lip}
        for i in upper_lip:
            coupling_ctrl[i] = 0.1 * jaw[14]
        coupling_ctrl.update({i: -0.5 * jaw[i] for i in corners})
        coupling = _spread(p, coupling_ctrl, 0.05 * W)

        def lip_profile(i):  # 1 at the middle of the mouth, 0 at the corners
            return float(np.clip(1 - abs(p[i, 0] - mouth_c[0]) / max(mouth_half, 1), 0, 1))

        # lips_pucker: lips gather towards the middle and push forward.
        ctrl = {}
        for i in lips:
            ctrl[i] = np.array([-(p[i, 0] - mouth_c[0]) * 0.3,
                                (-0.01 * W if i in up_out else 0.012 * W if i in lo_out else 0),
                                -0.05 * W])
        B["lips_pucker"] = _spread(p, ctrl, 0.09 * W)
        # lips_funnel: gathered and open, like "oo" in "who" / "sh".
        ctrl = {}
        for i in lips:
            dy = 0.0
            if i in up_in:
                dy = -0.03 * W * lip_profile(i)
            elif i in lo_in:
                dy = 0.045 * W * lip_profile(i)
            elif i in up_out:
                dy = -0.02 * W * lip_profile(i)
            elif i in lo_out:
                dy = 0.03 * W * lip_profile(i)
            ctrl[i] = np.array([-(p[i, 0] - mouth_c[0]) * 0.2, dy, -0.035 * W])
        B["lips_funnel"] = _spread(p, ctrl, 0.09 * W)

        # smiles: the corner goes out and up, drags its half of the lips and the cheek.
        for name, corner, inner, cheek, sign, eye in (
                ("smile_left", 291, 308, 425, 1.0, lm.LEFT_EYE),
                ("smile_right", 61, 78, 205, -1.0, lm.RIGHT_EYE)):
            out, upv = cfg.corner_smile
            move = np.array([sign * out * W, upv * W, 0.0])
            ctrl = {}
            for i in lips:
                near = np.exp(-((p[i, 0] - p[corner, 0]) / (0.9 * mouth_half)) ** 2)
                ctrl[i] = move * near
            ctrl[corner] = move
            ctrl[inner] = move
            ctrl[cheek] = np.array([0.01 * sign * W, -0.03 * W, 0])
            for i in eye["lower"]:
                ctrl[i] = np.array([0, -0.008 * W, 0])
            B[name] = _spread(p, ctrl, 0.11 * W)

        # mouth_stretch: corners out and a little down, lips flatten.
        ctrl = {}
        for i in lips:
            t = (p[i, 0] - mouth_c[0]) / max(mouth_half, 1)
            ctrl[i] = np.array([0.07 * W * t, 0.015 * W * abs(t), 0])
        B["mouth_stretch"] = _spread(p, ctrl, 0.09 * W)

        # upper_lip_raise / lower_lip_depress: one lip moves, the other stays.
        ctrl = {i: np.array([0, -cfg.lip_raise * W * (0.4 + 0.6 * lip_profile(i)), 0])
                for i in upper_lip}
        B["upper_lip_raise"] = _spread(p, ctrl, 0.07 * W, locked=lower_lip | corners)
        ctrl = {i: np.array([0, cfg.lip_depress * W * (0.3 + 0.7 * lip_profile(i)), 0])
                for i in lower_lip}
        B["lower_lip_depress"] = _spread(p, ctrl, 0.07 * W, locked=upper_lip | corners)

        # brows: raised inner / outer ends, or lowered and drawn together.
        lids = set(lm.RIGHT_EYE["upper"] + lm.RIGHT_EYE["lower"] + lm.LEFT_EYE["upper"]
                   + lm.LEFT_EYE["lower"]) | {33, 133, 263, 362, 468, 473}
        for name, ends, mids in (
                ("brow_inner_up", lm.RIGHT_BROW_INNER + lm.LEFT_BROW_INNER,
                 lm.RIGHT_BROW_MID + lm.LEFT_BROW_MID),
                ("brow_outer_up", lm.RIGHT_BROW_OUTER + lm.LEFT_BROW_OUTER,
                 lm.RIGHT_BROW_MID + lm.LEFT_BROW_MID)):
            ctrl = {i: np.array([0, -cfg.brow_raise * W, 0]) for i in ends}
            ctrl.update({i: np.array([0, -0.5 * cfg.brow_raise * W, 0]) for i in mids})
            B[name] = _spread(p, ctrl, 0.13 * W, locked=lids)
        ctrl = {}
        centre_x = p[168, 0]
        for i in (lm.RIGHT_BROW_INNER + lm.RIGHT_BROW_OUTER + lm.RIGHT_BROW_MID
                  + lm.LEFT_BROW_INNER + lm.LEFT_BROW_OUTER + lm.LEFT_BROW_MID):
            inner = i in lm.RIGHT_BROW_INNER + lm.LEFT_BROW_INNER
            ctrl[i] = np.array([-np.sign(p[i, 0] - centre_x) * (0.02 * W if inner else 0.0),
                                cfg.brow_lower * W * (1.0 if inner else 0.6), 0])
        B["brow_down"] = _spread(p, ctrl, 0.1 * W, locked=lids)

        # blinks: the upper lid comes down to meet the lower lid, which rises a little;
        # the iris points (warp vertices too, so gaze can move the iris) are squeezed between.
        def eye_motion(eye, upper_share, lower_share):
            ctrl = {}
            gaps = []
            for a, b in zip(eye["upper"], eye["lower"]):
                gap = p[b] - p[a]
                gaps.append(gap[1])
                ctrl[a] = gap * upper_share * np.array([1, 1, 0])
                ctrl[b] = -gap * lower_share * np.array([1, 1, 0])
            top = np.mean([p[a, 1] for a in eye["upper"][2:5]])
            bottom = np.mean([p[b, 1] for b in eye["lower"][2:5]])
            # the iris points are squeezed between the lids by their height in the eye
            for i in (eye["iris"],) + eye["iris_ring"]:
                t = float(np.clip((bottom - p[i, 1]) / max(bottom - top, 1e-6), 0, 1))
                ctrl[i] = np.array([0, t * upper_share * (bottom - top)
                                    - (1 - t) * lower_share * (bottom - top), 0])
            return ctrl

        # The lid margin (lashes, often dark) travels with the lid; the skin under the brow
        # stretches instead, or the margin would be smeared into a dark band.
        brows = set(lm.RIGHT_BROW_INNER + lm.RIGHT_BROW_OUTER + lm.RIGHT_BROW_MID
                    + lm.LEFT_BROW_INNER + lm.LEFT_BROW_OUTER + lm.LEFT_BROW_MID)
        for name, eye in (("eye_blink_left", lm.LEFT_EYE), ("eye_blink_right", lm.RIGHT_EYE)):
            share = cfg.blink_upper_share
            ctrl = eye_motion(eye, share, 1 - share)
            ew = np.linalg.norm(p[eye["outer"], :2] - p[eye["inner"], :2])
            # The lid fold comes down too, to a lash line's width above the closed lid: the
            # mesh's upper-lid points often sit below the real lid edge (on the iris), and
            # the dark sliver above them must be covered, not stretched over the eye.
            for a, f1, f2 in zip(eye["upper"], eye["upper1"], eye["upper2"]):
                closed_y = p[a, 1] + ctrl[a][1]
                drop = max(closed_y - cfg.lash_line * ew - p[f1, 1], 0.0)
                ctrl[f1] = np.array([ctrl[a][0], drop, 0.0])
                ctrl[f2] = np.array([0.5 * ctrl[a][0], cfg.fold_follow * drop, 0.0])
            B[name] = _spread(p, ctrl, cfg.blink_radius * ew,
                              locked=brows | {eye["outer"], eye["inner"]})
        ctrl = {}
        for eye in (lm.LEFT_EYE, lm.RIGHT_EYE):
            ctrl.update(eye_motion(eye, 0.12, 0.3))
        B["eye_squint"] = _spread(p, ctrl, 0.06 * W)

        # gaze: the irises slide inside the eyes (x: towards image right, y: up).
        for name, axis, amount in (("gaze_x", 0, cfg.gaze_x), ("gaze_y", 1, -cfg.gaze_y)):
            g = zero.copy()
            for eye in (lm.LEFT_EYE, lm.RIGHT_EYE):
                ew = np.linalg.norm(p[eye["outer"], :2] - p[eye["inner"], :2])
                for i in (eye["iris"],) + eye["iris_ring"]:
                    g[i, axis] = amount * ew
            B[name] = g
        missing = set(EXPRESSION_NAMES) - set(B)
        assert not missing, missing
        return B, coupling

    # -- evaluation ------------------------------------------------------------------
    def shape(self, coefficients: np.ndarray) -> np.ndarray:
        """Unposed landmarks (..., 478, 3) for coefficients (..., E)."""
        c = np.clip(np.asarray(coefficients, dtype=np.float64), self.lower, self.upper)
        out = self.neutral + np.tensordot(c, self.basis, axes=(-1, 0))
        both = c[..., self._jaw] * c[..., self._close]
        return out + both[..., None, None] * self.coupling

    def pose(self, shape: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        """Apply head_pose (7,) (quaternion w,x,y,z + translation in face widths) to a
        shape (478, 3)."""
        R = quaternion_to_matrix(head_pose[:4])
        t = np.asarray(head_pose[4:7], dtype=np.float64) * self.width
        return (shape - self.pivot) @ R.T + self.pivot + t

    def posed(self, coefficients: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        return self.pose(self.shape(coefficients), head_pose)


# -- rotations ---------------------------------------------------------------------------
