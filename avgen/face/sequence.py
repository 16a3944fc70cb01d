"""A scripted motion sequence that exercises every part of the face: visemes (open
vowels, bilabial closures, rounding, spread lips), blinks, a smile with raised brows, a nod,
a head turn left and right, and gaze shifts. Used to look at the renderer (contact
sheets), to measure it, and for the render -> track round trip."""

from __future__ import annotations

import numpy as np

from avgen.constants import EXPRESSION_NAMES, FRAMES_PER_SECOND
from avgen.face.rotations import quaternion_from_degrees
from avgen.face.motion import Motion

# (name, coefficients) of the visemes the sequence cycles through.
VISEMES = (
    ("aa", {"jaw_open": 0.75}),
    ("m", {"lips_close": 1.0, "jaw_open": 0.05}),
    ("oh", {"lips_funnel": 0.7, "jaw_open": 0.35}),
    ("uw", {"lips_pucker": 0.9, "jaw_open": 0.1}),
    ("iy", {"mouth_stretch": 0.7, "jaw_open": 0.2}),
    ("f", {"lower_lip_depress": 0.2, "upper_lip_raise": 0.3, "jaw_open": 0.1}),
    ("eh", {"jaw_open": 0.45, "mouth_stretch": 0.3}),
    ("p", {"lips_close": 0.9}),
)


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Raised cosine of full width `width` seconds around `centre`."""
    x = np.clip((t - centre) / (width / 2), -1, 1)
    return 0.5 * (1 + np.cos(np.pi * x))


def _plateau(t, start, end, ramp):
    return np.clip(np.minimum((t - start) / ramp, (end - t) / ramp), 0, 1) ** 1.0


def scripted_motion(seconds: float = 12.0, fps: float = FRAMES_PER_SECOND,
                    people: int = 1, seed: int = 0) -> Motion:
    """Motion for `people` people over `seconds`, on the model clock. The second person
    gets the same script shifted by half its length (so both faces do different things
    at any moment)."""
    rng = np.random.default_rng(seed)
    count = int(round(seconds * fps))
    poses, exprs = [], []
    for person in range(people):
        t = (np.arange(count) / fps + person * seconds / 2) % seconds
        s = t / seconds  # phase of the script, 0..1
        e = {name: np.zeros(count) for name in EXPRESSION_NAMES}
        # visemes: syllables of ~0.22 s during the first 40 % and again at 80-95 %
        syll = 0.22
        talking = (s < 0.40) | ((s > 0.80) & (s < 0.95))
        k = np.floor(t / syll).astype(int)
        env = _bump(t, (k + 0.5) * syll, syll * 1.15) * talking
        order = rng.permutation(len(VISEMES) * 8) % len(VISEMES)
        for idx in range(len(VISEMES)):
            _, coeffs = VISEMES[idx]
            sel = order[k % len(order)] == idx
            for name, value in coeffs.items():
                e[name] = np.maximum(e[name], value * env * sel)
        # blinks, ~0.25 s, at fixed moments
        for centre in (0.11, 0.37, 0.52, 0.66, 0.85):
            b = _bump(s * seconds, centre * seconds, 0.28)
            e["eye_blink_left"] = np.maximum(e["eye_blink_left"], b)
            e["eye_blink_right"] = np.maximum(e["eye_blink_right"], b)
        wink = _bump(s * seconds, 0.97 * seconds, 0.3)  # one wink: blinks are per eye
        e["eye_blink_left"] = np.maximum(e["eye_blink_left"], wink)
        # smile (left a bit stronger), squint and raised brows
        smile = _plateau(s, 0.42, 0.58, 0.05)
        e["smile_left"] = smile
        e["smile_right"] = 0.85 * smile
        e["eye_squint"] = 0.4 * smile
        e["brow_inner_up"] = _plateau(s, 0.45, 0.52, 0.03) * 0.8
        e["brow_outer_up"] = _plateau(s, 0.46, 0.53, 0.03) * 0.9
        e["brow_down"] = _plateau(s, 0.90, 0.97, 0.02) * 0.7
        e["gaze_x"] = 0.6 * np.sin(2 * np.pi * s * 3)
        e["gaze_y"] = 0.4 * np.sin(2 * np.pi * s * 2 + 1)
        # head: nod (pitch), turn (yaw), small drift
        nod = _plateau(s, 0.58, 0.70, 0.02) * 10 * np.sin(2 * np.pi * (s - 0.58) / 0.06)
        turn = (_plateau(s, 0.70, 0.80, 0.03) * 20
                * np.sin(2 * np.pi * (s - 0.70) / 0.10))
        drift = 2.5 * np.sin(2 * np.pi * s * 2)
        roll = 2.0 * np.sin(2 * np.pi * s * 1.5)
        quats = np.stack([quaternion_from_degrees(y, p, r) for y, p, r in
                          zip(turn + drift, nod + 0.5 * drift, roll)])
        trans = np.stack([0.02 * np.sin(2 * np.pi * s * 1.3), 0.015 * np.sin(2 * np.pi * s),
                          np.zeros(count)], axis=1)
        poses.append(np.concatenate([quats, trans], axis=1))
        exprs.append(np.stack([e[name] for name in EXPRESSION_NAMES], axis=1))
    return Motion(tuple(poses), tuple(exprs))
