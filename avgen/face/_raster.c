/* The warp's grid kernels in C: the triangle-id raster, its hole filling and the
 * backward map. `avgen/face/raster.py` checks every argument (dtypes, shapes,
 * contiguity, ids in range) and calls these with C-contiguous buffers; the arithmetic is
 * the numba version's, operation for operation (float products are not fused: built with
 * -ffp-contract=off), so both give the same bits.
 *
 * Compiled when avgen is installed, where a C compiler is at hand; without it avgen uses
 * the numba version, which costs each rendering process about 0.5 s of start-up (numba's
 * imports and its cache) and 130 MB of memory. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SUBPIXEL 16

static int64_t floor_div(int64_t a, int64_t b) {  /* Python's //, b > 0 */
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int64_t min3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a < b ? a : b;
    return m < c ? m : c;
}

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* fill(ids (rows, cols) int32, rows, cols, corners (count, 3, 2) int32, triangle_ids
 * (count,) int32, count) */
static PyObject *fill(PyObject *self, PyObject *args) {
    Py_buffer ids_buf, corners_buf, tri_buf;
    Py_ssize_t rows, cols, count;
    if (!PyArg_ParseTuple(args, "w*nny*y*n", &ids_buf, &rows, &cols, &corners_buf, &tri_buf,
                          &count))
        return NULL;
    int32_t *ids = ids_buf.buf;
    const int32_t *corners = corners_buf.buf, *triangle_ids = tri_buf.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < count; k++) {
        const int32_t *c = corners + 6 * k;
        int64_t x0 = c[0], y0 = c[1], x1 = c[2], y1 = c[3], x2 = c[4], y2 = c[5];
        int64_t area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0);
        if (area == 0)
            continue;
        if (area < 0) {  /* wind every triangle the same way round */
            int64_t tx = x1, ty = y1;
            x1 = x2; y1 = y2; x2 = tx; y2 = ty;
        }
        int64_t lo_x = -floor_div(-min3(x0, x1, x2), SUBPIXEL);
        int64_t hi_x = floor_div(max3(x0, x1, x2), SUBPIXEL);
        int64_t lo_y = -floor_div(-min3(y0, y1, y2), SUBPIXEL);
        int64_t hi_y = floor_div(max3(y0, y1, y2), SUBPIXEL);
        if (lo_x < 0) lo_x = 0;
        if (lo_y < 0) lo_y = 0;
        if (hi_x > cols - 1) hi_x = cols - 1;
        if (hi_y > rows - 1) hi_y = rows - 1;
        int32_t value = triangle_ids[k];
        for (int64_t y = lo_y; y <= hi_y; y++) {
            int64_t py = y * SUBPIXEL;
            for (int64_t x = lo_x; x <= hi_x; x++) {
                int64_t px = x * SUBPIXEL;
                if ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0) >= 0
                        && (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1) >= 0
                        && (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2) >= 0)
                    ids[y * cols + x] = value;
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ids_buf);
    PyBuffer_Release(&corners_buf);
    PyBuffer_Release(&tri_buf);
    Py_RETURN_NONE;
}

/* grow(ids (rows, cols) int32, rows, cols, rounds) */
static PyObject *grow(PyObject *self, PyObject *args) {
    Py_buffer ids_buf;
    Py_ssize_t rows, cols, rounds;
    if (!PyArg_ParseTuple(args, "w*nnn", &ids_buf, &rows, &cols, &rounds))
        return NULL;
    int32_t *ids = ids_buf.buf;
    int32_t *before = malloc((size_t)(rows * cols > 0 ? rows * cols : 1) * sizeof(int32_t));
    if (before == NULL) {
        PyBuffer_Release(&ids_buf);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t round = 0; round < rounds; round++) {
        memcpy(before, ids, (size_t)(rows * cols) * sizeof(int32_t));
        Py_ssize_t left = 0;
        for (Py_ssize_t y = 0; y < rows; y++) {
            for (Py_ssize_t x = 0; x < cols; x++) {
                if (before[y * cols + x] >= 0)
                    continue;
                int32_t best = -1;
                Py_ssize_t y_end = y + 2 < rows ? y + 2 : rows;
                Py_ssize_t x_end = x + 2 < cols ? x + 2 : cols;
                for (Py_ssize_t yy = y > 0 ? y - 1 : 0; yy < y_end; yy++)
                    for (Py_ssize_t xx = x > 0 ? x - 1 : 0; xx < x_end; xx++)
                        if (before[yy * cols + xx] > best)
                            best = before[yy * cols + xx];
                ids[y * cols + x] = best;
                left += best < 0;
            }
        }
        if (left == 0)
            break;
    }
    Py_END_ALLOW_THREADS
    free(before);
    PyBuffer_Release(&ids_buf);
    Py_RETURN_NONE;
}

/* backward_map(ids (rows, cols) int32, gx, gy (rows, cols) float32, rows, cols,
 * dst, src (count, 3, 2) float64, count, mx, my (rows, cols) float32 out) */
static PyObject *backward_map(PyObject *self, PyObject *args) {
    Py_buffer ids_buf, gx_buf, gy_buf, dst_buf, src_buf, mx_buf, my_buf;
    Py_ssize_t rows, cols, count;
    if (!PyArg_ParseTuple(args, "y*y*y*nny*y*nw*w*", &ids_buf, &gx_buf, &gy_buf, &rows, &cols,
                          &dst_buf, &src_buf, &count, &mx_buf, &my_buf))
        return NULL;
    const int32_t *ids = ids_buf.buf;
    const float *gx = gx_buf.buf, *gy = gy_buf.buf;
    const double *dst = dst_buf.buf, *src = src_buf.buf;
    float *mx = mx_buf.buf, *my = my_buf.buf;
    float *affine = malloc((size_t)(count > 0 ? count : 1) * 6 * sizeof(float));
    PyObject *result = NULL;
    if (affine == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < count; k++) {
        const double *d3 = dst + 6 * k, *s3 = src + 6 * k;
        double a = d3[0], b = d3[1], c = d3[2], d = d3[3], e = d3[4], f = d3[5];
        double det = (c - a) * (f - b) - (d - b) * (e - a);
        float *out = affine + 6 * k;
        if (fabs(det) <= 1e-6) {  /* degenerate (never drawn): maps to itself */
            out[0] = 1.0f; out[1] = 0.0f; out[2] = 0.0f;
            out[3] = 1.0f; out[4] = 0.0f; out[5] = 0.0f;
            continue;
        }
        double inverse[3][3] = {{d - f, f - b, b - d}, {e - c, a - e, c - a},
                                {c * f - d * e, b * e - a * f, a * d - b * c}};
        for (int row = 0; row < 3; row++) {
            for (int col = 0; col < 2; col++) {
                double value = 0.0;
                for (int j = 0; j < 3; j++)
                    value += inverse[row][j] / det * s3[2 * j + col];
                out[2 * row + col] = (float)value;
            }
        }
    }
    for (Py_ssize_t i = 0; i < rows * cols; i++) {
        int32_t k = ids[i];
        if (k < 0) {  /* no triangle: the cell stays where it is */
            mx[i] = gx[i];
            my[i] = gy[i];
        } else {
            const float *m = affine + 6 * k;
            mx[i] = gx[i] * m[0] + gy[i] * m[2] + m[4];
            my[i] = gx[i] * m[1] + gy[i] * m[3] + m[5];
        }
    }
    Py_END_ALLOW_THREADS
    free(affine);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&ids_buf);
    PyBuffer_Release(&gx_buf);
    PyBuffer_Release(&gy_buf);
    PyBuffer_Release(&dst_buf);
    PyBuffer_Release(&src_buf);
    PyBuffer_Release(&mx_buf);
    PyBuffer_Release(&my_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, "Draw triangles into an id grid (see raster.fill_triangles)."},
    {"grow", grow, METH_VARARGS, "Fill uncovered cells from their neighbours (raster.fill_holes)."},
    {"backward_map", backward_map, METH_VARARGS, "Per-cell photo positions (raster.backward_map)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_raster", "The warp's grid kernels in C (see raster.py).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__raster(void) { return PyModule_Create(&module); }
