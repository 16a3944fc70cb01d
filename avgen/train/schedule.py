"""The learning-rate schedule every trainer uses: linear warm-up, then half a cosine."""

from __future__ import annotations

import math


def cosine_schedule(step: int, peak: float, steps: int, warmup: int = 0,
                    floor: float = 0.0) -> float:
    """Learning rate at `step` (0-based): (step + 1) / warmup of `peak` during the first
    `warmup` steps, then half a cosine from `peak` down to `floor`, reached at `steps`;
    `floor` past the end (a run resumed with more steps than its schedule)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))
