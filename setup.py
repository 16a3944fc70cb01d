"""The renderer's compiled raster (avgen/face/_raster.c), an optional C extension: where
no C compiler is at hand avgen installs without it and compiles the same kernels with
numba instead (avgen/face/raster.py). Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "avgen.face._raster", ["avgen/face/_raster.c"], optional=True,
    # no fused multiply-adds (gcc's default on aarch64), so the warp's float
    # arithmetic rounds as the numba kernels' does
    extra_compile_args=["-O2", "-ffp-contract=off"])])
