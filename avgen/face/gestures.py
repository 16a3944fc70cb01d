"""Gestures as pulses on motion curves, and the script's cues acted out with them.

The motion teacher builds its training motion from these pulses, and `avgen synth` acts
the script's (nods), (smiles) and (laughs) out on generated motion with the same
`act_cues`, so a cue looks the same in the training data and in a generated video.
"""

from __future__ import annotations

import numpy as np

from avgen.constants import FRAMES_PER_SECOND

FPS = FRAMES_PER_SECOND


def bump(length: int, rise: int, fall: int) -> np.ndarray:
    """A raised-cosine pulse: up over `rise` frames, down over `fall`."""
    up = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, max(rise, 1)))
    down = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, max(fall, 1)))
    hold = np.ones(max(length - rise - fall, 0))
    return np.concatenate([up, hold, down])


def add(curve: np.ndarray, start: int, pulse: np.ndarray, amount: float, mode="max") -> None:
    """Lay `pulse * amount` onto `curve` from frame `start` (clipped to the curve), in
    place: `mode` "max" keeps the larger value, anything else adds."""
    a, b = max(start, 0), min(start + len(pulse), len(curve))
    if b <= a:
        return
    piece = pulse[a - start:b - start] * amount
    if mode == "max":
        curve[a:b] = np.maximum(curve[a:b], piece)
    else:
        curve[a:b] += piece


def act_cues(pitch: np.ndarray, smile: np.ndarray, jaw_open: np.ndarray, cues, partner_cues,
             rng: np.random.Generator) -> None:
    """Act out script cues in place on (T,) curves: `cues` and `partner_cues` are
    (kind, start_frame, frames) of this person and of the partner. Nods nod, smiles smile,
    laughs smile with a bobbing jaw and head; the partner's smiles and laughs are smiled
    back. Used by the motion teacher and, on generated motion, by `avgen synth`."""
    for kind, start, dur in cues:
        if kind == "nods":
            for k in range(2):
                add(pitch, start + k * int(0.35 * FPS), bump(int(0.35 * FPS), 10, 18),
                     np.radians(6.0), mode="add")
        elif kind == "smiles":
            add(smile, start, bump(max(dur, int(0.8 * FPS)), 10, 25), 0.85)
        elif kind == "laughs":
            add(smile, start, bump(max(dur, int(0.8 * FPS)), 6, 25), 0.95)
            t = np.arange(dur)
            bob = 0.5 - 0.5 * np.cos(2 * np.pi * 4.5 * t / FPS)
            add(jaw_open, start, bob, 0.35)
            add(pitch, start, bob, np.radians(2.0), mode="add")
            add(pitch, start, bump(dur, 8, 20), np.radians(-3.0), mode="add")  # head back
    for kind, start, dur in partner_cues:
        if kind in ("smiles", "laughs"):
            add(smile, start + int(0.3 * FPS), bump(max(dur, int(1.0 * FPS)), 15, 30),
                 rng.uniform(0.4, 0.7))
