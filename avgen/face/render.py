"""Photo + motion -> frames: warp the reference photo so its landmarks follow the motion.

How: the reference landmarks plus two rings around the head (hair, ears, neck) and fixed
points on the image border are triangulated once (Delaunay). Per frame the face model
moves the landmarks, the rings follow the head with less and less of its motion, and the
border stays put, so the background and shoulders are steady and only a band around the
head stretches. The deformed triangles are drawn far-to-near into a triangle-id image at
a coarse grid (so the nose hides the far cheek on a head turn instead of tearing), each
grid pixel gets the affine map of its triangle back into the photo, and the map is
upsampled and applied with one `cv2.remap`. Triangles seen from behind (their winding
flipped) are culled. The open mouth is painted over with a cavity, teeth and tongue;
blinks bring the lid and its fold down over the eye; each iris is cut out of the photo
once (the eyeball behind it inpainted) and pasted where the gaze puts it, clipped to the
current lids.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np

from avgen.face import landmarks as lm
from avgen.face.model import FaceModel, ModelConfig
from avgen.smoothing import smoothstep as _smooth01

# Landmarks that are warp vertices: the 468 mesh points. The irises are not warped: each
# is cut out of the photo once and pasted where the gaze puts it, inside the lids.
WARP_LANDMARKS = np.arange(468)
_EYES = (lm.LEFT_EYE, lm.RIGHT_EYE)


@dataclass(frozen=True)
class RenderConfig:
    size: int = 512                  # output square, pixels
    grid_step: int = 2               # the warp map is computed every `grid_step` pixels
    hair_ring: float = 1.3           # ring scale about the face centre (x face oval)
    outer_ring: float = 1.85
    hair_follow: float = 1.0         # how much of the head motion each ring follows
    outer_follow: float = 0.15
    border_margin: float = 0.08      # of the frame: this band along the edges never moves
    neck_follow: float = 0.45        # ring points below the chin follow less (neck)
    neck_jaw_follow: float = 0.0     # the neck stays when the jaw drops: the chin covers it
    teeth_rgb: tuple = (236, 222, 196)
    cavity_rgb: tuple = (92, 34, 36)
    tongue_rgb: tuple = (178, 86, 90)


def _chaikin(curve: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Corner-cutting subdivision of an open polyline (N, 2), endpoints kept."""
    for _ in range(rounds):
        a, b = curve[:-1], curve[1:]
        inner = np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], 1).reshape(-1, 2)
        curve = np.concatenate([curve[:1], inner[1:-1], curve[-1:]])
    return curve


def crop_frame(shape: tuple, points: np.ndarray, size: int) -> tuple[int, int, float]:
    """(x0, y0, scale) of the square crop `square_crop` takes."""
    h, w = shape[:2]
    side = min(h, w)
    cx, cy = points[:, 0].mean(), points[:, 1].mean()
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return x0, y0, size / side


def square_crop(image: np.ndarray, points: np.ndarray, size: int):
    """Crop the largest square around the face that fits the image and scale it to
    `size`; returns (image (size, size, 3), landmarks (478, 3) in its pixels).
    A point p of the image is at (p - (x0, y0)) * scale in the crop: see `crop_frame`."""
    x0, y0, scale = crop_frame(image.shape, points, size)
    side = int(round(size / scale))
    crop = image[y0:y0 + side, x0:x0 + side]
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if scale < 1
                          else cv2.INTER_CUBIC)
    pts = (points - np.array([x0, y0, 0], dtype=np.float32)) * scale
    return np.ascontiguousarray(crop), pts.astype(np.float64)


def _delaunay(points: np.ndarray, size: int) -> np.ndarray:
    """Triangles (K, 3) of vertex indices."""
    margin = size * 4
    subdiv = cv2.Subdiv2D((-margin, -margin, size + 2 * margin, size + 2 * margin))
    lookup = {}
    for i, (x, y) in enumerate(points):
        key = (float(x), float(y))
        lookup[key] = i
        subdiv.insert(key)
    tris = []
    pts = points.astype(np.float32)
    for x1, y1, x2, y2, x3, y3 in subdiv.getTriangleList():
        ids = []
        for x, y in ((x1, y1), (x2, y2), (x3, y3)):
            i = lookup.get((float(x), float(y)))
            if i is None:  # Subdiv2D rounds to float32
                i = int(np.argmin(((pts - np.float32([x, y])) ** 2).sum(1)))
            ids.append(i)
        if len(set(ids)) == 3:
            tris.append(ids)
    return np.array(tris, dtype=np.int64)


class FaceRenderer:
    """Renders one person: `render(expression (E,), head_pose (7,))` -> (size, size, 3)."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray,
                 config: RenderConfig = RenderConfig(),
                 model_config: ModelConfig = ModelConfig()):
        self.config = config
        self.image, points = square_crop(image, landmarks, config.size)
        self.model = FaceModel(points, model_config)
        size, W = config.size, self.model.width
        p = self.model.neutral
        oval = p[list(lm.FACE_OVAL)]
        centre = np.array([oval[:, 0].mean(), oval[:, 1].mean()])
        chin_y = p[152, 1]
        rings = []
        mouth_y = 0.5 * (p[0, 1] + p[17, 1])
        # Below the mouth the rings are neck and collar: they follow less of the head, and
        # smoothly so, or the hair and jaw line would shear where the weight changes.
        # Each ring point sits on the ray from the face centre through a face-oval point;
        # the outer ring stops `border_margin` short of the frame edge so a band along the
        # edges never moves at all (and a big face gets tighter rings).
        rays = oval[:, :2] - centre
        margin = 1.5 * config.border_margin * size
        limit = np.full(len(rays), np.inf)
        for axis in (0, 1):
            with np.errstate(divide="ignore", invalid="ignore"):
                hi = (size - 1 - margin - centre[axis]) / rays[:, axis]
                lo = (margin - centre[axis]) / rays[:, axis]
            limit = np.minimum(limit, np.where(rays[:, axis] > 0, hi, np.where(
                rays[:, axis] < 0, lo, np.inf)))
        outer = np.minimum(config.outer_ring, np.maximum(limit, 1.05))
        inner = np.minimum(config.hair_ring, 1 + 0.55 * (outer - 1))
        for scales, follow, is_inner in ((inner, config.hair_follow, True),
                                         (outer, config.outer_follow, False)):
            ring = centre + rays * scales[:, None]
            z = oval[:, 2] + 0.15 * W * (scales - 1)
            down = _smooth01((ring[:, 1] - mouth_y) / max(chin_y - mouth_y, 1.0))
            neck = config.neck_follow if is_inner else 0.0
            weight = follow * (1 - down) + neck * down
            rings.append((np.column_stack([ring, z]), weight))
        ring_pts = np.concatenate([r for r, _ in rings])
        inner_box = margin + 3.0                        # inner ring stays inside the outer
        outer_box = config.border_margin * size + 3.0   # outer ring inside the still band
        self._ring_lo = np.concatenate([np.full(len(oval), inner_box),
                                        np.full(len(oval), outer_box)])
        self._ring_hi = size - 1 - self._ring_lo
        self._ring_weight = np.concatenate([w for _, w in rings])
        self._ring_landmark = np.concatenate([np.array(lm.FACE_OVAL)] * 2)
        # the inner ring under the jaw is pulled down a little with an opening jaw
        self._ring_jaw = np.concatenate([np.ones(len(oval)), np.zeros(len(oval))]) * (
            self._ring_landmark_y_below(p, mouth_y))
        n = 12
        border = []
        for lo, hi in ((-1.0, float(size)),
                       (config.border_margin * size, (1 - config.border_margin) * size)):
            edge = np.linspace(lo, hi, n + 1)
            border += [(x, y) for x in edge for y in (lo, hi)]
            border += [(x, y) for y in edge[1:-1] for x in (lo, hi)]
        border = np.array(border)
        self._ring = ring_pts
        self._border = np.column_stack([border, np.full(len(border), 1e6)])
        self.src = np.concatenate([p[WARP_LANDMARKS], ring_pts, self._border])
        self.triangles = _delaunay(self.src[:, :2], size)
        self._src_area = self._signed_area(self.src[:, :2][self.triangles])
        step = config.grid_step
        self._grid_n = size // step
        g = (np.arange(self._grid_n) * step + (step - 1) / 2.0).astype(np.float32)
        self._gx, self._gy = np.meshgrid(g, g)
        self._ids = np.zeros((self._grid_n, self._grid_n), dtype=np.int32)
        self._teeth_rgb = self._teeth_colour()
        self._setup_irises()
        self._ref_gap = self._mouth_gap(p)
        self._teeth_strip = self._cut_teeth_strip()
        lips = [0.5 * (p[a, :2] + p[b, :2]) for a, b in ((0, 13), (17, 14), (37, 82), (84, 87))]
        lip_rgb = np.mean([self.image[int(y), int(x)] for x, y in lips], axis=0)
        self._lip_rgb = np.asarray(lip_rgb, dtype=np.float32)

    def _cut_teeth_strip(self, columns: int = 96, rows: int = 32):
        """The photo's own upper teeth, if its mouth is open: a strip hanging from the
        upper inner lip, unrolled to (rows, columns) so it can be laid under the upper lip
        of any later mouth shape (real teeth instead of painted ones, and no change of
        look as the mouth opens past the photo's own opening)."""
        W = self.model.width
        if self._ref_gap <= 0.02 * W:
            return None
        p = self.model.neutral
        upper = _chaikin(p[list(lm.LIPS_INNER_UPPER), :2])
        lower = _chaikin(p[list(lm.LIPS_INNER_LOWER), :2])
        upper, lower = upper[np.argsort(upper[:, 0])], lower[np.argsort(lower[:, 0])]
        x = np.linspace(upper[0, 0], upper[-1, 0], columns)
        yu = np.interp(x, upper[:, 0], upper[:, 1])
        yl = np.interp(x, lower[:, 0], lower[:, 1])
        depth = 0.065 * W
        Y = (yu[None, :] + np.linspace(0, 1, rows)[:, None] * depth).astype(np.float32)
        X = np.broadcast_to(x[None, :], Y.shape).astype(np.float32)
        strip = cv2.remap(self.image, X, Y, cv2.INTER_LINEAR).astype(np.float32)
        alpha = np.clip((yl[None, :] - Y - 1.0) / 1.5, 0, 1).astype(np.float32)
        return dict(rgb=strip, alpha=alpha, depth=depth, width=upper[-1, 0] - upper[0, 0])

    def _ring_landmark_y_below(self, p, mouth_y):
        return (p[self._ring_landmark, 1] > mouth_y).astype(np.float64)

    @staticmethod
    def _mouth_gap(points: np.ndarray) -> float:
        upper = points[list(lm.LIPS_INNER_UPPER)[1:-1], 1]
        lower = points[list(lm.LIPS_INNER_LOWER)[1:-1], 1]
        return float((lower - upper).max())

    def _teeth_colour(self) -> np.ndarray:
        """The reference's own teeth colour if its mouth shows teeth, else a default."""
        p = self.model.neutral
        poly = np.concatenate([p[list(lm.LIPS_INNER_UPPER), :2],
                               p[list(lm.LIPS_INNER_LOWER)[::-1], :2]])
        mask = np.zeros(self.image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        inside = self.image[mask > 0].astype(np.float64)
        if len(inside) > 30:
            bright = inside[inside.sum(1) > np.percentile(inside.sum(1), 70)]
            lum = bright.mean(0)
            if lum.mean() > 150 and lum.min() > 110:  # looks like teeth, not lips or a cavity
                return np.clip(lum * 1.02, 0, 255)
        return np.array(self.config.teeth_rgb, dtype=np.float64)

    @staticmethod
    def _signed_area(tri: np.ndarray) -> np.ndarray:
        """Twice the signed area of triangles (K, 3, 2)."""
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    # -- geometry per frame ------------------------------------------------------------
    def vertices(self, expression: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        """Output positions (V, 3) of every warp vertex for one frame."""
        m = self.model
        shape = m.shape(expression)
        posed = m.pose(shape, head_pose)
        # Rings follow the head's rigid motion (scaled by their weight) plus the jaw for
        # the neck below the chin.
        rigid = m.pose(self._ring, head_pose) - self._ring
        jaw = shape[self._ring_landmark] - m.neutral[self._ring_landmark]
        ring = self._ring + self._ring_weight[:, None] * rigid
        ring = ring + self._ring_jaw[:, None] * jaw * self.config.neck_jaw_follow
        # rings never cross the still frame around them (that would fold the background)
        ring[:, :2] = np.clip(ring[:, :2], self._ring_lo[:, None], self._ring_hi[:, None])
        ring[:, 2] = 1e5  # rings are drawn before (behind) every face triangle
        return np.concatenate([posed[WARP_LANDMARKS], ring, self._border]), posed

    def warp_map(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward map (size, size) x and y into the reference photo."""
        step = self.config.grid_step
        tris = self.triangles
        dst = verts[:, :2][tris]                            # (K, 3, 2)
        depth = verts[:, 2][tris].mean(1)
        order = np.argsort(-depth, kind="stable")           # far first
        ids = self._ids
        ids.fill(-1)
        # Back-face culling: a triangle whose winding flipped is seen from behind (the far
        # cheek on a turn, the neck under a dropping chin); drawing it would paint a
        # mirrored sliver. The visible triangles in front cover its place.
        area = self._signed_area(dst)
        front = (area * self._src_area > 0) & (np.abs(area) > 1e-3)
        scaled = np.round((dst - (step - 1) / 2.0) / step * 16).astype(np.int32)
        for k in order:
            if front[k]:
                cv2.fillConvexPoly(ids, scaled[k], int(k), lineType=cv2.LINE_4, shift=4)
        holes = ids < 0
        for _ in range(4):  # rare pixels left uncovered take a neighbouring triangle
            if not holes.any():
                break
            grown = cv2.dilate(ids, np.ones((3, 3), np.uint8))
            ids[holes] = grown[holes]
            holes = ids < 0
        # Affine per triangle from output to source, [x y 1] @ A = source xy, with the
        # 3x3 inverse written out (much cheaper than a batched solve for ~1200 triangles).
        a, b = dst[:, 0, 0], dst[:, 0, 1]
        c, d = dst[:, 1, 0], dst[:, 1, 1]
        e, f = dst[:, 2, 0], dst[:, 2, 1]
        det = area  # equals the determinant of [[a b 1] [c d 1] [e f 1]]
        ok = np.abs(det) > 1e-6
        inv = np.stack([np.stack([d - f, f - b, b - d], -1),
                        np.stack([e - c, a - e, c - a], -1),
                        np.stack([c * f - d * e, b * e - a * f, a * d - b * c], -1)], 1)
        inv /= np.where(ok, det, 1.0)[:, None, None]
        A = inv @ self.src[:, :2][tris]                               # (K, 3, 2)
        A[~ok] = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # degenerate: never drawn
        cols = A.reshape(len(tris), 6).astype(np.float32).T
        sel = ids.clip(0)
        t = [np.take(col, sel) for col in cols]  # six (n, n) gathers beat one (n, n, 3, 2)
        gx, gy = self._gx, self._gy
        mx = gx * t[0] + gy * t[2] + t[4]
        my = gx * t[1] + gy * t[3] + t[5]
        outside = ids < 0
        if outside.any():
            mx[outside] = gx[outside]
            my[outside] = gy[outside]
        size = self.config.size
        if step > 1:
            mx = cv2.resize(mx, (size, size), interpolation=cv2.INTER_LINEAR)
            my = cv2.resize(my, (size, size), interpolation=cv2.INTER_LINEAR)
        return mx, my

    def render(self, expression: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        """One frame (size, size, 3) uint8 RGB."""
        verts, posed = self.vertices(expression, head_pose)
        mx, my = self.warp_map(verts)
        # fixed-point maps: remap runs about a third faster and the conversion is cheap
        m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        frame = cv2.remap(self._eyeballs, m1, m2, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        self._paint_irises(frame, expression, head_pose, posed)
        self._paint_mouth(frame, posed)
        return frame

    # -- eyes -------------------------------------------------------------------------
    @staticmethod
    def _eye_outline(points: np.ndarray, eye: dict) -> np.ndarray:
        return np.concatenate([points[[eye["outer"]], :2], points[list(eye["upper"]), :2],
                               points[[eye["inner"]], :2], points[list(eye["lower"])[::-1], :2]])

    def _setup_irises(self) -> None:
        """Cut each visible iris out of the photo (a disc clipped to the eye opening) and
        fill its place with the white of the eye, so a moved iris leaves no ghost."""
        p = self.model.neutral
        h, w = self.image.shape[:2]
        hole = np.zeros((h, w), np.uint8)
        self._irises = []
        for eye in _EYES:
            centre = p[eye["iris"], :2]
            radius = float(np.linalg.norm(p[list(eye["iris_ring"]), :2] - centre, axis=1).mean())
            half = int(np.ceil(radius)) + 3
            x0, y0 = int(round(centre[0])) - half, int(round(centre[1])) - half
            if radius < 1.5 or x0 < 0 or y0 < 0 or x0 + 2 * half >= w or y0 + 2 * half >= h:
                self._irises.append(None)
                continue
            opening = np.zeros((h, w), np.uint8)
            cv2.fillPoly(opening, [np.round(self._eye_outline(p, eye) * 4).astype(np.int32)],
                         255, lineType=cv2.LINE_AA, shift=2)
            disc = np.zeros((h, w), np.uint8)
            cv2.circle(disc, (int(round(centre[0] * 4)), int(round(centre[1] * 4))),
                       int(round(radius * 4)), 255, -1, lineType=cv2.LINE_AA, shift=2)
            alpha = (disc.astype(np.float32) / 255) * (opening.astype(np.float32) / 255)
            sl = (slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half))
            self._irises.append(dict(
                patch=self.image[sl].astype(np.float32), alpha=alpha[sl].copy(),
                offset=np.array([x0, y0], np.float64) - centre, eye=eye))
            hole |= ((disc > 0) & (opening > 0)).astype(np.uint8)
        hole = cv2.dilate(hole, np.ones((3, 3), np.uint8))
        self._eyeballs = (cv2.inpaint(self.image, hole, 3, cv2.INPAINT_TELEA) if hole.any()
                          else self.image)
        gaze = [self.model.names.index(n) for n in ("gaze_x", "gaze_y")]
        self._gaze_idx = gaze

    def _paint_irises(self, frame: np.ndarray, expression: np.ndarray, head_pose: np.ndarray,
                      posed: np.ndarray) -> None:
        """Paste each iris where gaze and head pose put its centre, inside the current
        eye opening (so lids cover it as they close)."""
        m = self.model
        c = np.clip(np.asarray(expression, dtype=np.float64), m.lower, m.upper)
        h, w = frame.shape[:2]
        for iris in self._irises:
            if iris is None:
                continue
            eye = iris["eye"]
            centre = m.neutral[eye["iris"]] + sum(c[k] * m.basis[k, eye["iris"]]
                                                 for k in self._gaze_idx)
            # the iris rides on the head but not on the lids
            centre = m.pose(centre[None], head_pose)[0, :2]
            outline = self._eye_outline(posed, eye)
            lo = np.floor(outline.min(0)).astype(int) - 2
            hi = np.ceil(outline.max(0)).astype(int) + 3
            lo = np.maximum(lo, 0)
            hi = np.minimum(hi, [w, h])
            if (hi - lo).min() < 2:
                continue
            size = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
            shift = centre + iris["offset"] - lo
            M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            patch = cv2.warpAffine(iris["patch"], M, size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpAffine(iris["alpha"], M, size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            opening = np.zeros((size[1], size[0]), np.uint8)
            cv2.fillPoly(opening, [np.round((outline - lo) * 4).astype(np.int32)], 255,
                         lineType=cv2.LINE_AA, shift=2)
            a = (alpha * (opening.astype(np.float32) / 255))[..., None]
            region = frame[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
            frame[lo[1]:hi[1], lo[0]:hi[0]] = np.clip(region * (1 - a) + patch * a + 0.5, 0,
                                                      255).astype(np.uint8)

    # -- mouth interior ---------------------------------------------------------------
    def _paint_mouth(self, frame: np.ndarray, posed: np.ndarray) -> None:
        upper = posed[list(lm.LIPS_INNER_UPPER), :2]
        lower = posed[list(lm.LIPS_INNER_LOWER), :2]
        gap = float((lower[1:-1, 1] - upper[1:-1, 1]).max())
        W = self.model.width
        # fades in as the lips meet (no pop from one frame to the next)
        lip_paint = float(np.clip((0.03 * W - gap) / (0.015 * W), 0.0, 1.0))
        if self._ref_gap > 0.02 * W and lip_paint > 0:
            # Lips closed over a photo whose mouth was open: where they meet, the warp
            # would show the sliver of teeth between the mesh's inner-lip points and the
            # real lip edge. Paint lip over that band and the line where the lips meet.
            up, lo = _chaikin(upper), _chaikin(lower)
            band = np.concatenate([up - [0, 0.006 * W], (lo + [0, 0.018 * W])[::-1]])
            x0, y0 = np.floor(band.min(0)).astype(int) - 3
            x1, y1 = np.ceil(band.max(0)).astype(int) + 4
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
            if x1 - x0 > 2 and y1 - y0 > 2:
                region = frame[y0:y1, x0:x1].astype(np.float32)
                mask = np.zeros(region.shape[:2], np.float32)
                cv2.fillPoly(mask, [np.round((band - [x0, y0]) * 4).astype(np.int32)], 1.0,
                             lineType=cv2.LINE_AA, shift=2)
                mask = cv2.GaussianBlur(mask, (3, 3), 0)[..., None] * lip_paint
                paint = np.empty_like(region)
                paint[:] = self._lip_rgb
                seam = np.round((_chaikin(0.5 * (upper + lower)) - [x0, y0]) * 4).astype(np.int32)
                cv2.polylines(paint, [seam], False, tuple(float(v) for v in 0.6 * self._lip_rgb),
                              thickness=max(1, int(round(0.01 * W))), lineType=cv2.LINE_AA,
                              shift=2)
                region = region * (1 - mask) + paint * mask
                frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
        if gap < 0.75:
            return  # closed: nothing of the inside shows
        # A photo that shows its own teeth keeps them (warped) up to its own opening; the
        # painted interior takes over as the mouth opens wider than in the photo.
        strength = 1.0
        if self._ref_gap > 0.02 * W:
            strength = float(np.clip((gap - self._ref_gap) / (0.04 * W), 0.0, 1.0))
            if strength <= 0.0:
                return
        # smooth lip curves (the mesh has 11 points a lip), grown by ~1.5 % of a face width:
        # the inner-lip landmarks sit a little inside the visible lip edge
        upper, lower = _chaikin(upper), _chaikin(lower)
        mid = np.concatenate([upper, lower]).mean(0)
        grow = 1 + 0.015 * W / max(np.abs(upper - mid).max(), np.abs(lower - mid).max(), 1.0)
        upper = mid + (upper - mid) * grow
        lower = mid + (lower - mid) * grow
        poly = np.concatenate([upper, lower[::-1]])
        x0, y0 = np.floor(poly.min(0)).astype(int) - 2
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
        size = self.config.size
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, size), min(y1, size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        h, w = y1 - y0, x1 - x0
        # anti-aliased polygon mask at 4x sub-pixel precision
        mask = np.zeros((h, w), np.uint8)
        shifted = np.round((poly - [x0, y0]) * 4).astype(np.int32)
        cv2.fillPoly(mask, [shifted], 255, lineType=cv2.LINE_AA, shift=2)
        alpha = (mask.astype(np.float32) * (strength / 255.0))[..., None]
        xs = np.arange(x0, x1, dtype=np.float64) + 0.5
        ys = (np.arange(y0, y1, dtype=np.float64) + 0.5)[:, None]
        ou = np.argsort(upper[:, 0])
        ol = np.argsort(lower[:, 0])
        yu = np.interp(xs, upper[ou, 0], upper[ou, 1])[None, :]
        yl = np.interp(xs, lower[ol, 0], lower[ol, 1])[None, :]
        left, right = upper[0, 0], upper[-1, 0]
        centre = 0.5 * (left + right)
        half = max(0.5 * abs(right - left), 1.0)
        across = np.clip(1 - np.abs(xs - centre) / half, 0, 1)[None, :]  # 1 mid, 0 corner
        opening = np.clip(yl - yu, 0, None)
        depth = np.clip((ys - yu) / np.maximum(opening, 1), 0, 1)
        cavity = np.array(self.config.cavity_rgb, np.float64)
        # darker towards the throat (the middle of the opening) and the corners
        shade = (0.45 + 0.55 * across) * (1.0 - 0.6 * np.sin(np.pi * depth) ** 2)
        out = cavity * shade[..., None]
        # the tongue: a soft hump resting on the lower teeth, seen when the jaw is open
        tongue_top = yl - np.clip(opening * 0.45, 0, 0.07 * W) * np.sqrt(across)
        t_alpha = np.clip((ys - tongue_top) / np.maximum(0.3 * (yl - tongue_top), 1), 0, 1)
        tongue = np.array(self.config.tongue_rgb, np.float64) * (0.55 + 0.35 * across)[..., None]
        out = out * (1 - t_alpha[..., None]) + tongue * t_alpha[..., None]
        teeth = self._teeth_rgb
        up_h = 0.065 * W * np.sqrt(across)    # upper incisors, shorter towards the corners
        lo_h = 0.035 * W * np.sqrt(across)
        in_up = (ys >= yu) & (ys < yu + up_h)
        in_lo = (ys <= yl) & (ys > yl - lo_h) & ~in_up
        # a little shadow right under the lips and between teeth
        toothw = 0.05 * W
        seam = np.abs(((xs - centre) / toothw + 0.5) % 1.0 - 0.5)[None, :]
        seam_shade = np.where(seam < 0.04, 0.93, 1.0)
        t_up = (ys - yu) / np.maximum(up_h, 1)
        shade_up = (0.55 + 0.45 * across ** 0.7) * (0.75 + 0.25 * np.clip(t_up * 3, 0, 1)) \
            * seam_shade
        t_lo = (yl - ys) / np.maximum(lo_h, 1)
        shade_lo = (0.45 + 0.4 * across ** 0.7) * (0.75 + 0.25 * np.clip(t_lo * 3, 0, 1)) \
            * seam_shade
        out = np.where(in_lo[..., None], teeth * shade_lo[..., None], out)
        strip = self._teeth_strip
        if strip is None:
            # painted upper teeth with a soft bottom edge
            edge = np.clip((yu + up_h - ys) / 1.5, 0, 1)
            up_a = (in_up * edge)[..., None]
            out = out * (1 - up_a) + teeth * shade_up[..., None] * up_a
        else:
            # the photo's own upper teeth, laid along the current upper lip
            rows, cols = strip["alpha"].shape
            scale = (right - left) / max(strip["width"], 1.0)
            v = (ys - yu) / (strip["depth"] * scale)
            u = np.broadcast_to((xs[None, :] - left) / max(right - left, 1.0), v.shape)
            mx = (u * (cols - 1)).astype(np.float32)
            my = (v * (rows - 1)).astype(np.float32)
            rgb = cv2.remap(strip["rgb"], mx, my, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
            a = cv2.remap(strip["alpha"], mx, my, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)[..., None]
            out = out * (1 - a) + rgb * a
        region = frame[y0:y1, x0:x1].astype(np.float32)
        region = region * (1 - alpha) + out.astype(np.float32) * alpha
        frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)


# -- whole videos --------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoConfig:
    fps: float = 25.0
    size: int = 512
    layout: str = "side-by-side"   # or "stacked"
    crf: int = 20
    preset: str = "veryfast"


def load_renderers(refs: list[str], config: RenderConfig) -> list[FaceRenderer]:
    """One renderer per reference photo (errors name the photo)."""
    renderers = []
    for ref in refs:
        image = lm.read_image(ref)
        renderers.append(FaceRenderer(image, lm.detect_image(image, ref), config))
    return renderers


class RendererCache:
    """Renderers by reference photo, for many videos from the same photos (a batch).

    Setting a renderer up (face mesh on the photo, triangulation, iris cut-outs) costs far
    more than one frame. Keyed on the resolved path with its size and mtime, so an edited
    photo is seen afresh; a renderer keeps no per-video state, so reuse is exact."""

    def __init__(self, config: RenderConfig = RenderConfig(), capacity: int = 16) -> None:
        from collections import OrderedDict

        self.config = config
        self.capacity = capacity  # a renderer holds a few MB of images and maps
        self._cache: OrderedDict = OrderedDict()

    def get(self, refs: list[str]) -> list[FaceRenderer]:
        """One renderer per photo (errors name the photo, as `load_renderers`)."""
        from pathlib import Path

        from avgen.errors import InputError

        out = []
        for ref in refs:
            path = Path(ref)
            if not path.is_file():
                raise InputError("no such file", str(ref))
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            if key not in self._cache:
                self._cache[key] = load_renderers([ref], self.config)[0]
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        return out


class VideoFrames:
    """The video's frames (H, W, 3) uint8 at `config.fps`, all people composed by
    `config.layout`, rendered one at a time as they are iterated; len() is their number.
    `motion`: a loaded motion (avgen.face.motion.load_motion)."""

    def __init__(self, motion, renderers: list[FaceRenderer], config: VideoConfig) -> None:
        from avgen.constants import FRAMES_PER_SECOND
        from avgen.video import interpolate, resample_head_pose, resample_times

        positions = resample_times(motion.num_frames, FRAMES_PER_SECOND, config.fps)
        self.poses = [resample_head_pose(p, positions) for p in motion.head_pose]
        self.expressions = [interpolate(e, positions) for e in motion.expression]
        self.renderers, self.layout, self.count = renderers, config.layout, len(positions)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        from avgen.video import compose

        for k in range(self.count):
            yield compose([r.render(self.expressions[i][k], self.poses[i][k])
                           for i, r in enumerate(self.renderers)], self.layout)


def render_video(motion_path: str, refs: list[str], output: str, audio: str | None = None,
                 config: VideoConfig = VideoConfig(), frames_dir: str | None = None,
                 progress: bool = True, renderers: list[FaceRenderer] | None = None) -> int:
    """Render an `avgen.av/1` or `avgen.motion/1` file with one reference photo per person
    into an MP4 (H.264 yuv420p, AAC if `audio`). Returns the number of video frames.
    `renderers`: already set up for `refs` at `config.size` (e.g. from a RendererCache)."""
    from pathlib import Path

    from tqdm import tqdm

    from avgen.errors import InputError
    from avgen.face.motion import load_motion
    from avgen.video import Mp4Writer

    if config.size % 2 or config.size < 64:
        raise InputError(f"{config.size} is not allowed; use an even size of at least 64",
                         "--size")
    if not 1 <= config.fps <= 120:
        raise InputError(f"{config.fps:g} is out of range; use 1 to 120", "--fps")
    motion = load_motion(motion_path)
    if len(refs) != motion.num_people:
        raise InputError(f"the file has {motion.num_people} "
                         f"{'person' if motion.num_people == 1 else 'people'} but "
                         f"{len(refs)} --ref image{'s' if len(refs) != 1 else ''} were given",
                         motion_path)
    if output != "-" and not Path(output).parent.is_dir():
        raise InputError("output folder does not exist", str(Path(output).parent))
    if audio is not None and not Path(audio).is_file():
        raise InputError("no such audio file", audio)
    frames_path = None
    if frames_dir is not None:
        frames_path = Path(frames_dir)
        frames_path.mkdir(parents=True, exist_ok=True)
    if renderers is None:
        renderers = load_renderers(refs, RenderConfig(size=config.size))
    frames = VideoFrames(motion, renderers, config)
    width = config.size * (len(renderers) if config.layout == "side-by-side" else 1)
    height = config.size * (len(renderers) if config.layout == "stacked" else 1)
    with Mp4Writer(output, width, height, config.fps, audio=audio, crf=config.crf,
                   preset=config.preset) as writer:
        for k, frame in enumerate(tqdm(frames, total=len(frames), desc="render", unit="frame",
                                       disable=not progress, file=sys.stderr,
                                       dynamic_ncols=True)):
            writer.write(frame)
            if frames_path is not None:
                cv2.imwrite(str(frames_path / f"frame_{k:05d}.png"), frame[:, :, ::-1])
    return len(frames)
