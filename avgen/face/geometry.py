"""Warp geometry: where every pixel of a rendered face comes from in the reference photo.

The reference landmarks plus two rings around the head (hair, ears, neck) and fixed
points on the image border are triangulated once (Delaunay). Per frame the face model
moves the landmarks, the rings follow the head with less and less of its motion, and the
border stays put, so the background and shoulders are steady and only a band around the
head stretches. The deformed triangles are drawn far-to-near into a triangle-id image at
a coarse grid (so the nose hides the far cheek on a head turn instead of tearing), each
grid pixel gets the affine map of its triangle back into the photo, and the map is
upsampled to a backward map for one `cv2.remap` of the box where anything moves (the
still band along the edges is copied from the photo). Triangles seen from behind (their
winding flipped) are culled.
"""

from __future__ import annotations

import cv2
import numpy as np

from avgen.face import landmarks as lm
from avgen.face.raster import SUBPIXEL, backward_map, fill_holes, fill_triangles
from avgen.smoothing import smoothstep

# Landmarks that are warp vertices: the 468 mesh points. The irises are not warped: each
# is cut out of the photo once and pasted where the gaze puts it, inside the lids.
WARP_LANDMARKS = np.arange(468)


def chaikin(curve: np.ndarray, rounds: int = 2) -> np.ndarray:
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


def delaunay(points: np.ndarray, size: int) -> np.ndarray:
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


def signed_area(tri: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangles (K, 3, 2)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


class Warp:
    """The triangulated photo of one face model (`model`, in the pixels of a square of
    `config.size`): `vertices(expression, head_pose)` then `warp_map(vertices)` give the
    backward map of one frame. `config` is a `RenderConfig` (ring and border settings)."""

    def __init__(self, model, config) -> None:
        self.model, self.config = model, config
        size, W = config.size, model.width
        p = model.neutral
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
            down = smoothstep((ring[:, 1] - mouth_y) / max(chin_y - mouth_y, 1.0))
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
            (p[self._ring_landmark, 1] > mouth_y).astype(np.float64))
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
        self.triangles = delaunay(self.src[:, :2], size)
        self._src_corners = self.src[:, :2][self.triangles]  # (K, 3, 2)
        self._src_area = signed_area(self._src_corners)
        step = config.grid_step
        self._grid_n = size // step
        g = (np.arange(self._grid_n) * step + (step - 1) / 2.0).astype(np.float32)
        self._gx, self._gy = np.meshgrid(g, g)
        self.ids = np.zeros((self._grid_n, self._grid_n), dtype=np.int32)
        # The triangles between the two border squares never move and are drawn first
        # (farthest): drawn once, by the first frame (so setting up a renderer does not
        # wait for the compiled raster to load), and per frame start from that picture.
        still = np.isin(self.triangles, np.arange(len(self.src) - len(border), len(self.src)))
        self._moving = ~still.all(1)
        self._still_ids = None

    def _draw_still(self) -> np.ndarray:
        step = self.config.grid_step
        ids = np.full_like(self.ids, -1)
        dst = self.src[:, :2][self.triangles]
        scaled = np.round((dst - (step - 1) / 2.0) / step * SUBPIXEL).astype(np.int32)
        still = np.flatnonzero(~self._moving)
        fill_triangles(ids, scaled[still], still)
        return ids

    def vertices(self, expression: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        """(output positions (V, 3) of every warp vertex, posed landmarks (478, 3)) for one
        frame."""
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
        size = self.config.size
        (rows, cols), mx, my = self.moving_map(verts)
        full_x, full_y = np.meshgrid(np.arange(size, dtype=np.float32),
                                     np.arange(size, dtype=np.float32))
        full_x[rows, cols], full_y[rows, cols] = mx, my
        return full_x, full_y

    def moving_map(self, verts: np.ndarray):
        """((rows, cols) slices of the box where pixels move, backward map x and y of the
        box into the reference photo). Outside the box every pixel stays where it is in
        the photo: only the box needs a remap (the still band along the edges is a fifth
        to a third of the picture)."""
        step = self.config.grid_step
        tris = self.triangles
        dst = verts[:, :2][tris]                            # (K, 3, 2)
        depth = verts[:, 2][tris].mean(1)
        order = np.argsort(-depth, kind="stable")           # far first
        ids = self.ids
        if self._still_ids is None:
            self._still_ids = self._draw_still()
        ids[:] = self._still_ids
        # Back-face culling: a triangle whose winding flipped is seen from behind (the far
        # cheek on a turn, the neck under a dropping chin); drawing it would paint a
        # mirrored sliver. The visible triangles in front cover its place.
        area = signed_area(dst)
        front = (area * self._src_area > 0) & (np.abs(area) > 1e-3)
        drawn = order[(front & self._moving)[order]]
        scaled = np.round((dst[drawn] - (step - 1) / 2.0) / step * SUBPIXEL).astype(np.int32)
        fill_triangles(ids, scaled, drawn)
        n = self._grid_n
        # the grid cells that can differ from the photo: the drawn triangles' box and any
        # uncovered cell (filled from its neighbours below), a cell more each side
        lo = np.floor(scaled.min((0, 1)) / SUBPIXEL).astype(int) - 1 if len(drawn) else \
            np.array([n, n])
        hi = np.ceil(scaled.max((0, 1)) / SUBPIXEL).astype(int) + 2 if len(drawn) else \
            np.array([0, 0])
        holes = ids < 0
        if holes.any():
            ys, xs = np.nonzero(holes)
            lo = np.minimum(lo, [xs.min() - 5, ys.min() - 5])
            hi = np.maximum(hi, [xs.max() + 6, ys.max() + 6])
            fill_holes(ids, rounds=4)  # rare cells left uncovered take a neighbouring triangle
        lo, hi = np.clip(lo, 0, n), np.clip(hi, 0, n)
        size = self.config.size
        if size != step * n:  # the grid does not tile the picture: map all of it
            lo, hi = np.array([0, 0]), np.array([n, n])
        elif (hi <= lo).any():  # nothing moves
            lo, hi = np.array([0, 0]), np.array([1, 1])
        # one grid cell of context each side (where there is one), so the upsampling
        # below is what the whole grid's would be inside the box
        plo, phi = np.maximum(lo - 1, 0), np.minimum(hi + 1, n)
        cells = (slice(plo[1], phi[1]), slice(plo[0], phi[0]))
        mx, my = backward_map(ids[cells], self._gx[cells], self._gy[cells], dst,
                              self._src_corners)
        if size != step * n:
            return (slice(0, size), slice(0, size)), *(
                cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in (mx, my))
        if step > 1:
            shape = (step * (phi[0] - plo[0]), step * (phi[1] - plo[1]))
            mx = cv2.resize(mx, shape, interpolation=cv2.INTER_LINEAR)
            my = cv2.resize(my, shape, interpolation=cv2.INTER_LINEAR)
        cut = (slice(step * (lo[1] - plo[1]), step * (hi[1] - plo[1])),
               slice(step * (lo[0] - plo[0]), step * (hi[0] - plo[0])))
        box = (slice(step * lo[1], step * hi[1]), slice(step * lo[0], step * hi[0]))
        return box, mx[cut], my[cut]
