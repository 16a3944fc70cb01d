"""Smoothing shared by every stage: a Gaussian smoother over time and a smoothstep ramp.

Each has one edge rule, chosen on purpose:

- `gaussian_smooth` pads by repeating the first and last values (a constant signal stays
  constant and no dip or bump appears at the ends) and spans floor(3 sigma) + 1 frames
  each side, the first whole frame past 3 sigma (the weights left out are under 0.3 % of
  the kernel). This is the rule the motion teacher was built with, so the teacher
  corpus, and the shipped models trained on it, stay reproducible.
- `smoothstep` clamps its input to [0, 1] first, so it is 0 below the ramp and 1 above.
"""

from __future__ import annotations

import numpy as np


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """(T,) or (T, D) smoothed along time (axis 0) with a Gaussian of `sigma` frames, as
    float64; a copy of `x` when `sigma` <= 0 or `x` is empty."""
    x = np.asarray(x, np.float64)
    if sigma <= 0 or len(x) == 0:
        return x.copy()
    radius = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    columns = x.reshape(len(x), -1)
    padded = np.pad(columns, ((radius, radius), (0, 0)), mode="edge")
    out = np.stack([np.convolve(padded[:, d], kernel, mode="valid")
                    for d in range(columns.shape[1])], axis=1)
    return out.reshape(x.shape)


def smoothstep(x):
    """3x^2 - 2x^3 of `x` clamped to [0, 1]: a ramp from 0 to 1 with zero slope at both
    ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)
