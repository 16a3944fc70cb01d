"""The renderer's triangle-id raster (avgen/face/raster.py)."""

import cv2
import numpy as np
import pytest

from avgen.face import raster
from avgen.face.raster import SUBPIXEL, backward_map, fill_triangles


@pytest.fixture(autouse=True, params=["c", "numba"])
def backend(request, monkeypatch):
    """Every test here runs on both kernels: the C ones and numba's."""
    if request.param == "numba":
        monkeypatch.setattr(raster, "_c_kernels", None)
    elif raster._kernels() is None:
        pytest.skip("avgen was installed without its C kernels (no C compiler)")
    assert raster.backend() == request.param
    return request.param


def cross(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def centres_inside(corners: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Reference: every cell centre tested against the triangle in floating point."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] * SUBPIXEL
    p = corners.astype(np.float64)
    area = cross(p[1] - p[0], p[2] - p[0])
    sides = [cross(p[(i + 1) % 3] - p[i], np.stack([xs - p[i][0], ys - p[i][1]], -1))
             for i in range(3)]
    return np.all([np.sign(area) * s >= 0 for s in sides], axis=0)


def distance_to_edges(corners: np.ndarray, point: np.ndarray) -> float:
    """Distance (in cells) from a point to the nearest edge of a triangle."""
    p, q = corners.astype(np.float64), point.astype(np.float64)
    best = np.inf
    for i in range(3):
        a, b = p[i], p[(i + 1) % 3]
        t = np.clip(np.dot(q - a, b - a) / max(np.dot(b - a, b - a), 1e-9), 0, 1)
        best = min(best, np.linalg.norm(q - (a + t * (b - a))))
    return best / SUBPIXEL


def test_cells_are_exactly_the_centres_inside_either_winding():
    rng = np.random.default_rng(0)
    for _ in range(200):
        corners = rng.integers(-40, 30 * SUBPIXEL, (3, 2)).astype(np.int32)
        for winding in (corners, corners[::-1]):
            ids = np.full((24, 24), -1, np.int32)
            fill_triangles(ids, winding[None], np.array([7]))
            expected = centres_inside(winding, ids.shape)
            assert np.array_equal(ids == 7, expected)
            assert np.all(ids[~expected] == -1)


def test_later_triangles_cover_earlier_ones_and_degenerate_ones_draw_nothing():
    big = np.array([[0, 0], [20 * SUBPIXEL, 0], [0, 20 * SUBPIXEL]])
    small = np.array([[2 * SUBPIXEL, 2 * SUBPIXEL], [6 * SUBPIXEL, 2 * SUBPIXEL],
                      [2 * SUBPIXEL, 6 * SUBPIXEL]])
    line = np.array([[0, 0], [5 * SUBPIXEL, 5 * SUBPIXEL], [10 * SUBPIXEL, 10 * SUBPIXEL]])
    ids = np.full((16, 16), -1, np.int32)
    fill_triangles(ids, np.stack([big, small, line]), np.array([1, 2, 3]))
    assert ids[3, 3] == 2 and ids[10, 2] == 1 and ids[12, 12] == -1
    assert not (ids == 3).any()
    ids[:] = -1
    fill_triangles(ids, np.stack([small, big]), np.array([2, 1]))  # near first: covered
    assert not (ids == 2).any()


def test_agrees_with_opencv_but_at_edges():
    """OpenCV's fill (which the renderer used before) also owns the cells an edge
    passes through; the two differ only within a cell of a triangle's edge."""
    rng = np.random.default_rng(1)
    corners = rng.integers(0, 64 * SUBPIXEL, (60, 3, 2)).astype(np.int32)
    ours = np.full((64, 64), -1, np.int32)
    theirs = ours.copy()
    fill_triangles(ours, corners, np.arange(60))
    for k, c in enumerate(corners):
        cv2.fillConvexPoly(theirs, c, k, lineType=cv2.LINE_4, shift=4)
    assert (ours == theirs).mean() > 0.8
    for y, x in zip(*np.nonzero(ours != theirs)):
        centre = np.array([x, y]) * SUBPIXEL
        near = [distance_to_edges(corners[k], centre) for k in (ours[y, x], theirs[y, x])
                if k >= 0]
        assert min(near) <= 1.0, (y, x)


def test_cells_outside_the_grid_are_clipped_and_bad_arrays_refused():
    ids = np.full((8, 8), -1, np.int32)
    huge = np.array([[[-1000, -1000], [4000, -1000], [-1000, 4000]]])
    fill_triangles(ids, huge, np.array([5]))
    assert (ids == 5).all()
    far = 2**28
    ids[:] = -1
    fill_triangles(ids, np.array([[[-far // 2, -far // 2], [far, -far // 2], [-far // 2, far]]]),
                   np.array([6]))
    assert (ids == 6).all()  # inside, however far the corners (no overflow)
    with pytest.raises(ValueError):
        fill_triangles(ids, huge * 2**20, np.array([5]))
    with pytest.raises(ValueError):
        fill_triangles(np.zeros((8, 8), np.int64), huge, np.array([5]))
    with pytest.raises(ValueError):
        fill_triangles(ids, huge, np.array([5, 6]))


def test_holes_take_a_neighbours_id_and_only_holes_change():
    from avgen.face.raster import fill_holes

    ids = np.full((6, 6), 3, np.int32)
    ids[:, 3:] = 5
    ids[2, 2] = ids[2, 3] = -1     # a sliver between the two
    ids[5, 0] = -1                  # a corner cell
    before = ids.copy()
    fill_holes(ids)
    assert ids[2, 2] == 5 and ids[2, 3] == 5 and ids[5, 0] == 3  # the largest neighbour
    kept = before >= 0
    assert np.array_equal(ids[kept], before[kept])
    wide = np.full((12, 12), -1, np.int32)
    wide[0, 0] = 1
    fill_holes(wide, rounds=2)      # each round grows one cell
    assert (wide[:3, :3] == 1).all() and (wide[3:, :] == -1).all()


def test_backward_map_moves_each_cell_by_its_triangles_affine_map():
    rng = np.random.default_rng(1)
    count = 50
    src = rng.uniform(0, 60, (count, 3, 2))
    dst = src + rng.normal(0, 3, (count, 3, 2))
    dst[7] = dst[7, :1]  # degenerate: all corners on one point
    ids = rng.integers(-1, count, (20, 30)).astype(np.int32)
    gy, gx = (np.mgrid[0:20, 0:30] * 2 + 0.5).astype(np.float32)
    mx, my = backward_map(ids, gx, gy, dst, src)
    assert mx.dtype == my.dtype == np.float32 and mx.shape == ids.shape
    for (y, x), k in np.ndenumerate(ids):
        if k < 0 or k == 7:  # no triangle, or one with no area: the cell stays put
            assert (mx[y, x], my[y, x]) == (gx[y, x], gy[y, x])
            continue
        # the affine map that takes the triangle's output corners to its photo corners
        affine = np.linalg.solve(np.column_stack([dst[k], np.ones(3)]), src[k])
        expected = np.array([gx[y, x], gy[y, x], 1.0]) @ affine
        assert np.allclose([mx[y, x], my[y, x]], expected, atol=1e-3)


def test_backward_map_refuses_ids_beyond_its_triangles():
    ids = np.full((2, 2), 3, np.int32)
    grid = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="beyond"):
        backward_map(ids, grid, grid, np.zeros((3, 3, 2)), np.zeros((3, 3, 2)))


def test_c_and_numba_kernels_give_the_same_bits(backend):
    """The C kernels repeat the numba ones operation for operation: on random triangles
    and holes, and on the warp's maps of random poses of a real face."""
    if backend != "c":
        pytest.skip("compares the two backends once")
    c = raster._kernels()
    rng = np.random.default_rng(1)
    for _ in range(20):
        corners = rng.integers(-100, 70 * SUBPIXEL, (300, 3, 2)).astype(np.int32)
        tri = rng.permutation(300).astype(np.int32)
        ids_c = np.full((64, 64), -1, np.int32)
        c.fill(ids_c, 64, 64, corners, tri, 300)
        ids_n = np.full((64, 64), -1, np.int32)
        raster._fill(ids_n, corners, tri)
        assert np.array_equal(ids_c, ids_n)
        holes = np.where(rng.random((64, 64)) < 0.3, -1, ids_c).astype(np.int32)
        grown_c, grown_n = holes.copy(), holes.copy()
        c.grow(grown_c, 64, 64, 4)
        raster._grow(grown_n, 4)
        assert np.array_equal(grown_c, grown_n)
        dst = rng.normal(0, 300, (300, 3, 2))
        dst[:5] = dst[:5, :1]  # degenerate triangles
        src = rng.normal(0, 300, (300, 3, 2))
        gx = rng.normal(0, 500, (64, 64)).astype(np.float32)
        gy = rng.normal(0, 500, (64, 64)).astype(np.float32)
        maps_c = [np.empty((64, 64), np.float32) for _ in range(2)]
        maps_n = [np.empty((64, 64), np.float32) for _ in range(2)]
        c.backward_map(grown_c, gx, gy, 64, 64, dst, src, 300, *maps_c)
        raster._map(grown_c, gx, gy, dst, src, *maps_n)
        for a, b in zip(maps_c, maps_n):
            assert np.array_equal(a.view(np.int32), b.view(np.int32))


def test_frames_are_the_same_on_both_kernels(backend, monkeypatch):
    if backend != "c":
        pytest.skip("compares the two backends once")
    from conftest import EXAMPLES

    from avgen.face.render import RenderConfig, load_renderers

    renderer = load_renderers([str(EXAMPLES / "grace.png")], RenderConfig(size=256))[0]
    rng = np.random.default_rng(2)
    poses, expressions = [], []
    for _ in range(20):
        q = np.array([1, *rng.normal(0, 0.08, 3)])
        poses.append(np.concatenate([q / np.linalg.norm(q), rng.normal(0, 0.02, 3)]))
        expressions.append(np.clip(rng.normal(0, 0.4, len(renderer.model.lower)),
                                   renderer.model.lower, renderer.model.upper))
    frames_c = [renderer.render(e, p) for e, p in zip(expressions, poses)]
    monkeypatch.setattr(raster, "_c_kernels", None)
    frames_n = [renderer.render(e, p) for e, p in zip(expressions, poses)]
    for a, b in zip(frames_c, frames_n):
        assert np.array_equal(a, b)

