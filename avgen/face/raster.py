"""The warp's compiled grid work: which triangle covers each cell of its coarse grid
(the triangle-id raster), and where in the photo each cell comes from (`backward_map`).

`fill_triangles` draws triangles in the order given (later ones cover earlier ones, so
far-to-near order gives the nearest), each writing its id into the cells whose centres
lie inside it or on its edges. Corners are fixed point, 1/16 of a cell, with cell (x, y)
centred at (16 x, 16 y), so every inside test is exact integer arithmetic: the same
corners give the same cells on every machine.

Compiled: a frame draws about 1100 small triangles, and one OpenCV call per triangle cost
more in call overhead than in drawing (about a third of a face frame's rendering time).
The kernels are C (`_raster.c`), built when avgen is installed where a C compiler is at
hand; without one the same kernels here are compiled by numba on first use, with the
same results bit for bit (tested) but about 0.5 s more start-up in every process that
renders (numba's imports and cache) and 130 MB more memory.
"""

from __future__ import annotations

import threading

import numpy as np

SUBPIXEL = 16  # fixed-point corners: 1/16 of a grid cell
# corners within +-LIMIT keep the inside tests' products well inside int64 (a renderer's
# corners lie within a few grid sizes of the grid)
LIMIT = 1 << 28


_UNSET = object()
_c_kernels = _UNSET  # the C extension module, or None without one (see `_kernels`)


def _kernels():
    """The C kernels (`avgen.face._raster`), or None where avgen was installed without
    them: the numba versions below are used then."""
    global _c_kernels
    if _c_kernels is _UNSET:
        try:
            from avgen.face import _raster
        except ImportError:
            _raster = None
        _c_kernels = _raster
    return _c_kernels


def backend() -> str:
    """"c" or "numba": which compiled kernels this process uses."""
    return "numba" if _kernels() is None else "c"


class _jit:
    """`function` compiled by numba on its first call (or `load`), not at import: numba's
    own imports take 0.1-0.2 s, which `avgen synth` would otherwise spend before its
    first step instead of in the background thread that warms the raster up."""

    _lock = threading.Lock()  # one thread compiles or loads; the other waits for it

    def __init__(self, function) -> None:
        self.function = function
        self.compiled = None

    def load(self):
        with self._lock:
            if self.compiled is None:
                import numba

                # The compiled code is cached beside this file (or in the user's cache
                # folder) so only the first run after an install compiles (about 1 s).
                # numba raises here if it finds no place at all for a cache; compiling
                # once per process is then still correct.
                try:
                    self.compiled = numba.njit(cache=True, nogil=True)(self.function)
                except RuntimeError:
                    self.compiled = numba.njit(nogil=True)(self.function)
            return self.compiled

    def __call__(self, *args):
        return (self.compiled or self.load())(*args)


@_jit
def _fill(ids, corners, triangle_ids):  # pragma: no cover - compiled; tested through fill_triangles
    rows, cols = ids.shape
    for k in range(corners.shape[0]):
        x0, y0 = np.int64(corners[k, 0, 0]), np.int64(corners[k, 0, 1])
        x1, y1 = np.int64(corners[k, 1, 0]), np.int64(corners[k, 1, 1])
        x2, y2 = np.int64(corners[k, 2, 0]), np.int64(corners[k, 2, 1])
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if area == 0:  # no inside; the caller's hole filling covers any cell it leaves
            continue
        if area < 0:  # wind every triangle the same way round
            x1, y1, x2, y2 = x2, y2, x1, y1
        # the cells whose centres can be inside: ceil(min / 16) .. floor(max / 16)
        lo_x = max(-((-min(x0, x1, x2)) // SUBPIXEL), 0)
        hi_x = min(max(x0, x1, x2) // SUBPIXEL, cols - 1)
        lo_y = max(-((-min(y0, y1, y2)) // SUBPIXEL), 0)
        hi_y = min(max(y0, y1, y2) // SUBPIXEL, rows - 1)
        value = triangle_ids[k]
        for y in range(lo_y, hi_y + 1):
            py = y * SUBPIXEL
            for x in range(lo_x, hi_x + 1):
                px = x * SUBPIXEL
                if ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0) >= 0
                        and (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1) >= 0
                        and (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2) >= 0):
                    ids[y, x] = value


@_jit
def _grow(ids, rounds):  # pragma: no cover - compiled; tested through fill_holes
    rows, cols = ids.shape
    for _ in range(rounds):
        before = ids.copy()
        left = 0
        for y in range(rows):
            for x in range(cols):
                if before[y, x] >= 0:
                    continue
                best = -1
                for yy in range(max(y - 1, 0), min(y + 2, rows)):
                    for xx in range(max(x - 1, 0), min(x + 2, cols)):
                        best = max(best, before[yy, xx])
                ids[y, x] = best
                left += best < 0
        if left == 0:
            return


def fill_holes(ids: np.ndarray, rounds: int = 4) -> None:
    """Give each cell no triangle covers (id < 0) the largest id among its 3 x 3
    neighbours, `rounds` times over (a 3 x 3 dilation of the holes only), in place.
    Holes are rare: slivers between triangles culled as seen from behind."""
    if ids.dtype != np.int32 or ids.ndim != 2 or not ids.flags.c_contiguous:
        raise ValueError("ids must be a C-contiguous (H, W) int32 array")
    kernels = _kernels()
    if kernels is not None:
        kernels.grow(ids, ids.shape[0], ids.shape[1], int(rounds))
    else:
        _grow(ids, rounds)


def fill_triangles(ids: np.ndarray, corners: np.ndarray, triangle_ids: np.ndarray) -> None:
    """Draw triangles into `ids` (H, W) int32 in place, in order: corners (K, 3, 2)
    int32 in 1/16 cell units (x, y), triangle k writing triangle_ids[k] into every cell
    whose centre is inside it or on an edge. Degenerate (zero-area) triangles draw
    nothing."""
    if ids.dtype != np.int32 or ids.ndim != 2 or not ids.flags.c_contiguous:
        raise ValueError("ids must be a C-contiguous (H, W) int32 array")
    corners = np.asarray(corners).reshape(-1, 3, 2)
    if len(corners) and np.abs(corners).max() > LIMIT:
        raise ValueError(f"triangle corners must lie within +-{LIMIT} (1/16 cells)")
    corners = np.ascontiguousarray(corners, dtype=np.int32)
    triangle_ids = np.ascontiguousarray(triangle_ids, dtype=np.int32).reshape(-1)
    if len(triangle_ids) != len(corners):
        raise ValueError(f"{len(corners)} triangles but {len(triangle_ids)} ids")
    kernels = _kernels()
    if kernels is not None:
        kernels.fill(ids, ids.shape[0], ids.shape[1], corners, triangle_ids, len(corners))
    else:
        _fill(ids, corners, triangle_ids)


@_jit
def _map(ids, gx, gy, dst, src, mx, my):  # pragma: no cover - compiled; tested through backward_map
    count = dst.shape[0]
    # per triangle, the affine map from output to photo, [x y 1] @ A = photo xy, with the
    # 3 x 3 inverse written out; a degenerate triangle (never drawn) maps to itself
    affine = np.empty((count, 6), np.float32)
    for k in range(count):
        a, b = dst[k, 0, 0], dst[k, 0, 1]
        c, d = dst[k, 1, 0], dst[k, 1, 1]
        e, f = dst[k, 2, 0], dst[k, 2, 1]
        det = (c - a) * (f - b) - (d - b) * (e - a)
        if abs(det) <= 1e-6:
            affine[k, 0], affine[k, 1], affine[k, 2] = 1.0, 0.0, 0.0
            affine[k, 3], affine[k, 4], affine[k, 5] = 1.0, 0.0, 0.0
            continue
        inverse = ((d - f, f - b, b - d), (e - c, a - e, c - a),
                   (c * f - d * e, b * e - a * f, a * d - b * c))
        for row in range(3):
            for col in range(2):
                value = 0.0
                for j in range(3):
                    value += inverse[row][j] / det * src[k, j, col]
                affine[k, 2 * row + col] = value
    rows, cols = ids.shape
    for y in range(rows):
        for x in range(cols):
            k = ids[y, x]
            if k < 0:  # no triangle: the cell stays where it is
                mx[y, x], my[y, x] = gx[y, x], gy[y, x]
            else:
                mx[y, x] = gx[y, x] * affine[k, 0] + gy[y, x] * affine[k, 2] + affine[k, 4]
                my[y, x] = gx[y, x] * affine[k, 1] + gy[y, x] * affine[k, 3] + affine[k, 5]


def backward_map(ids: np.ndarray, gx: np.ndarray, gy: np.ndarray, dst: np.ndarray,
                 src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each grid cell comes from in the photo: (mx, my) float32 (H, W) for the
    cells at output positions gx, gy (H, W) float32, cell (y, x) moved by the affine map
    of triangle ids[y, x] from its output corners dst (K, 3, 2) to its photo corners
    src (K, 3, 2); a cell with a negative id stays where it is. One compiled pass: the
    numpy version's six gathers and the per-triangle solve were a third of a frame's
    warp."""
    if ids.dtype != np.int32 or ids.ndim != 2:
        raise ValueError("ids must be an (H, W) int32 array")
    if gx.shape != ids.shape or gy.shape != ids.shape:
        raise ValueError("gx, gy and ids must have one shape")
    dst = np.ascontiguousarray(dst, dtype=np.float64).reshape(-1, 3, 2)
    src = np.ascontiguousarray(src, dtype=np.float64).reshape(-1, 3, 2)
    if len(dst) != len(src) or (ids.size and ids.max() >= len(dst)):
        raise ValueError(f"ids name triangles beyond the {len(dst)} given")
    mx = np.empty(ids.shape, np.float32)
    my = np.empty(ids.shape, np.float32)
    # contiguous, as `warm_up` loads it (numba compiles once per memory layout)
    ids = np.ascontiguousarray(ids)
    gx, gy = np.ascontiguousarray(gx, np.float32), np.ascontiguousarray(gy, np.float32)
    kernels = _kernels()
    if kernels is not None:
        kernels.backward_map(ids, gx, gy, ids.shape[0], ids.shape[1], dst, src, len(dst),
                             mx, my)
    else:
        _map(ids, gx, gy, dst, src, mx, my)
    return mx, my


def warm_up() -> None:
    """Load the compiled raster now (with numba about 0.6 s of CPU the first time in a
    process, most of it numba's imports; the C kernels a millisecond), so a process that
    will render does it before its first frame is due."""
    fill_triangles(np.zeros((1, 1), np.int32), np.zeros((1, 3, 2), np.int32),
                   np.zeros(1, np.int32))
    one = np.zeros((1, 1), np.float32)
    backward_map(np.zeros((1, 1), np.int32), one, one, np.zeros((1, 3, 2)),
                 np.zeros((1, 3, 2)))
