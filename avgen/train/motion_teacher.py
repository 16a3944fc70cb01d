"""Procedural motion teacher: head pose and expression from phoneme timing and prosody.

Its output is the ground truth the joint model learns, so it aims at looking like a
person talking and listening:
- speech: coarticulated visemes (keyframes at phone centres, anticipation ~70 ms,
  smoothing), full lip closure on p/b/m, lower lip to teeth on f/v, rounding on
  oo/w/sh, jaw by vowel height and loudness;
- prosody: brow raises and small head nods on stressed, high-pitch or loud syllables,
  brows up at the end of questions;
- life: slow head drift, blinks (~17 per minute, more at phrase ends), gaze at the
  partner with glances away at turn starts;
- listening: mouth closed or relaxed, backchannel nods and smiles after the partner's
  phrase ends and pauses, smiles mirroring the partner's;
- script cues: (nods), (smiles), (laughs).
All randomness comes from one seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avgen.constants import EXPRESSION_NAMES, FRAMES_PER_SECOND
from avgen.face.gestures import act_cues, add as _add, bump as _bump
from avgen.face.model import EXPRESSION_INDEX as E
from avgen.face.rotations import euler_to_quaternion
from avgen.smoothing import gaussian_smooth
from avgen.text.symbols import PRIMARY_STRESS, SECONDARY_STRESS, SILENCE_ID, SYMBOLS

FPS = FRAMES_PER_SECOND
MOUTH = ("jaw_open", "lips_close", "lips_pucker", "lips_funnel", "mouth_stretch",
         "upper_lip_raise", "lower_lip_depress")
REST = {"jaw_open": 0.03, "lips_close": 0.6}
# Conversational speech rarely opens the jaw fully; wider reads as shouting on a face.
MAX_JAW = 0.72


def _v(jaw=0.0, close=0.0, pucker=0.0, funnel=0.0, stretch=0.0, raise_=0.0, depress=0.0):
    return dict(jaw_open=jaw, lips_close=close, lips_pucker=pucker, lips_funnel=funnel,
                mouth_stretch=stretch, upper_lip_raise=raise_, lower_lip_depress=depress)


# Mouth shape per phone (stress removed). A tuple is a glide: first half, second half.
VISEMES = {
    "p": _v(0.03, 1.0), "b": _v(0.03, 1.0), "m": _v(0.04, 1.0), "m̩": _v(0.04, 1.0),
    "f": _v(0.08, 0.55, raise_=0.45), "v": _v(0.08, 0.55, raise_=0.45),
    "θ": _v(0.16, raise_=0.15), "ð": _v(0.14, raise_=0.12),
    "t": _v(0.14, stretch=0.1), "d": _v(0.15, stretch=0.1), "n": _v(0.14),
    "n̩": _v(0.14), "s": _v(0.1, stretch=0.25), "z": _v(0.1, stretch=0.25),
    "l": _v(0.18), "əl": _v(0.22), "ɾ": _v(0.18), "ʔ": _v(0.12), "ɬ": _v(0.16),
    "ʃ": _v(0.14, pucker=0.3, funnel=0.6), "ʒ": _v(0.14, pucker=0.3, funnel=0.6),
    "tʃ": _v(0.12, pucker=0.3, funnel=0.6), "dʒ": _v(0.12, pucker=0.3, funnel=0.6),
    "k": _v(0.2), "ɡ": _v(0.2), "ŋ": _v(0.18), "x": _v(0.2), "ç": _v(0.16),
    "h": _v(0.28), "j": _v(0.12, stretch=0.3), "w": _v(0.1, pucker=0.85),
    "ɹ": _v(0.14, pucker=0.4, funnel=0.3), "r": _v(0.14, pucker=0.4, funnel=0.3),
    "i": _v(0.16, stretch=0.5), "iː": _v(0.16, stretch=0.55), "ɪ": _v(0.22, stretch=0.35),
    "e": _v(0.35, stretch=0.3), "ɛ": _v(0.4, stretch=0.25), "æ": _v(0.58, stretch=0.3),
    "a": _v(0.6, stretch=0.2), "ɑ": _v(0.7), "ɑː": _v(0.72), "ɒ": _v(0.65, funnel=0.2),
    "ɔ": _v(0.55, funnel=0.35), "ɔː": _v(0.55, funnel=0.45), "o": _v(0.4, pucker=0.4, funnel=0.5),
    "oː": _v(0.45, pucker=0.35, funnel=0.5), "u": _v(0.18, pucker=0.8), "uː": _v(0.18, pucker=0.85),
    "ʊ": _v(0.25, pucker=0.55), "ʌ": _v(0.45), "ə": _v(0.3), "ɐ": _v(0.38), "ᵻ": _v(0.22, stretch=0.2),
    "ɚ": _v(0.26, pucker=0.35), "ɜ": _v(0.3, pucker=0.3), "ɜː": _v(0.3, pucker=0.35),
    "eɪ": (_v(0.38, stretch=0.3), _v(0.2, stretch=0.45)),
    "aɪ": (_v(0.66, stretch=0.1), _v(0.2, stretch=0.4)),
    "aʊ": (_v(0.64), _v(0.2, pucker=0.7)),
    "ɔɪ": (_v(0.5, funnel=0.45), _v(0.2, stretch=0.4)),
    "oʊ": (_v(0.42, pucker=0.35, funnel=0.55), _v(0.2, pucker=0.75)),
    "iə": (_v(0.16, stretch=0.5), _v(0.3)), "aɪə": (_v(0.64), _v(0.28, stretch=0.2)),
    "aɪɚ": (_v(0.64), _v(0.24, pucker=0.35)),
    "ɑːɹ": (_v(0.68), _v(0.2, pucker=0.4, funnel=0.3)),
    "ɔːɹ": (_v(0.52, funnel=0.45), _v(0.2, pucker=0.4, funnel=0.3)),
    "oːɹ": (_v(0.5, funnel=0.45), _v(0.2, pucker=0.4, funnel=0.3)),
    "ɛɹ": (_v(0.42, stretch=0.2), _v(0.2, pucker=0.4, funnel=0.3)),
    "ɪɹ": (_v(0.22, stretch=0.35), _v(0.2, pucker=0.4, funnel=0.3)),
    "ʊɹ": (_v(0.25, pucker=0.55), _v(0.2, pucker=0.4, funnel=0.3)),
}
BILABIAL = {"p", "b", "m", "m̩"}


def _base(symbol: str) -> tuple[str, str]:
    if symbol[:1] in (PRIMARY_STRESS, SECONDARY_STRESS):
        return symbol[1:], symbol[0]
    return symbol, ""


@dataclass(frozen=True)
class Track:
    """One person's part of a dialogue on the model clock (T frames).

    segments: (symbol_id, start_frame, duration) of what they say (silences allowed);
    f0 (T,) Hz, 0 unvoiced; energy (T,) RMS of their audio; questions: end frames of
    their questions; cues: (kind, start_frame, duration) from the script.
    """

    segments: list[tuple[int, int, int]]
    f0: np.ndarray
    energy: np.ndarray
    questions: list[int] = field(default_factory=list)
    cues: list[tuple[str, int, int]] = field(default_factory=list)

    def speaking(self, num_frames: int) -> np.ndarray:
        mask = np.zeros(num_frames, bool)
        for sid, start, dur in self.segments:
            if sid != SILENCE_ID:
                mask[start:start + dur] = True
        return mask

    def phrase_ends(self, num_frames: int, min_gap: int = 12) -> list[int]:
        """Frames where a run of speech ends and at least `min_gap` frames of silence follow."""
        speaking = self.speaking(num_frames)
        ends = []
        edges = np.flatnonzero(speaking[:-1] & ~speaking[1:]) + 1
        for end in edges:
            after = speaking[end:end + min_gap]
            if not after.any():
                ends.append(int(end))
        if speaking[-1:].any():
            ends.append(num_frames)
        return ends


def _ou(rng: np.random.Generator, n: int, sigma: float, tau_seconds: float) -> np.ndarray:
    """Smooth drift: Ornstein-Uhlenbeck noise (std `sigma`, correlation time `tau`),
    low-passed so that it has no frame-to-frame jitter (heads don't tremble)."""
    a = np.exp(-1.0 / (tau_seconds * FPS))
    noise = rng.standard_normal(n) * np.sqrt(1 - a * a)
    out = np.empty(n)
    value = rng.standard_normal()
    for k in range(n):
        value = a * value + noise[k]
        out[k] = value
    out = gaussian_smooth(out, 0.12 * FPS)
    return out * sigma


@dataclass(frozen=True)
class TeacherConfig:
    anticipation_seconds: float = 0.07
    blinks_per_minute: float = 17.0
    nod_degrees: float = 3.0
    backchannel_nod_probability: float = 0.6
    backchannel_smile_probability: float = 0.3


def _visemes(track: Track, n: int, energy: np.ndarray, cfg: TeacherConfig) -> dict:
    """Mouth curves from the phone sequence."""
    lead = cfg.anticipation_seconds * FPS
    times, values = [0.0], [dict(_v(REST["jaw_open"], REST["lips_close"]))]
    closures = []
    for sid, start, dur in sorted(track.segments, key=lambda s: s[1]):
        symbol, stress = _base(SYMBOLS[sid])
        if sid == SILENCE_ID:
            rest = _v(REST["jaw_open"], REST["lips_close"])
            if dur > 12:  # long pause: settle to rest mid-way
                times += [start + 4 - lead, start + dur - 4 - lead]
                values += [rest, rest]
            else:
                times.append(start + dur / 2 - lead)
                values.append(_v(0.08, 0.3))
            continue
        shape = VISEMES.get(symbol, _v(0.25))
        gain = {PRIMARY_STRESS: 1.15, SECONDARY_STRESS: 1.0, "": 0.85}[stress]
        loud = float(np.clip(energy[start:start + dur].mean() if dur else 0.5, 0, 1))
        jaw_scale = gain * (0.75 + 0.5 * loud)
        shapes = shape if isinstance(shape, tuple) else (shape,)
        for k, s in enumerate(shapes):
            s = dict(s)
            if s["jaw_open"] > 0.2:
                s["jaw_open"] = min(MAX_JAW, s["jaw_open"] * jaw_scale)
            times.append(start + dur * (k + 0.5) / len(shapes) - (lead if symbol not in BILABIAL
                                                                  else 0.2 * lead))
            values.append(s)
        if symbol in BILABIAL:
            closures.append((start, dur))
    times.append(float(n))
    values.append(_v(REST["jaw_open"], REST["lips_close"]))
    order = np.argsort(times, kind="stable")
    times = np.asarray(times)[order]
    frames = np.arange(n, dtype=np.float64)
    curves = {}
    for name in MOUTH:
        keys = np.asarray([values[k][name] for k in order])
        curves[name] = gaussian_smooth(np.interp(frames, times, keys), 1.5)
    for start, dur in closures:  # full closure for the whole acoustic closure
        a, b = max(start - 1, 0), min(start + max(dur - 1, 1), n)
        curves["lips_close"][a:b] = 1.0
        curves["jaw_open"][a:b] = np.minimum(curves["jaw_open"][a:b], 0.05)
        curves["lips_pucker"][a:b] *= 0.5
        curves["lips_funnel"][a:b] = 0.0
    return curves


def animate(me: Track, partner: Track, person: int, num_frames: int, seed: int,
            cfg: TeacherConfig = TeacherConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Head pose (T, 7) and expression (T, E) for `person` (0 sits left, 1 right)."""
    n = num_frames
    rng = np.random.default_rng(seed)
    speaking = me.speaking(n)
    energy = me.energy / (np.percentile(me.energy[speaking], 95) + 1e-6 if speaking.any()
                          else 1.0)
    expr = np.zeros((n, len(EXPRESSION_NAMES)), np.float64)

    curves = _visemes(me, n, np.clip(energy, 0, 1.5), cfg)
    for name, curve in curves.items():
        expr[:, E[name]] = curve

    yaw = _ou(rng, n, np.radians(2.5), 1.8)
    pitch = _ou(rng, n, np.radians(1.5), 1.5)
    roll = _ou(rng, n, np.radians(1.2), 2.5)
    toward = 1.0 if person == 0 else -1.0  # +1: the partner is to image right
    yaw -= np.radians(6.0) * toward  # turn a little toward the partner (+yaw is nose left)
    brow_inner, brow_outer = np.zeros(n), np.zeros(n)
    smile = np.full(n, rng.uniform(0.05, 0.2))

    # Prosody: accents on stressed vowels with high pitch or energy.
    voiced = me.f0 > 0
    f0_median = np.median(me.f0[voiced]) if voiced.any() else 1.0
    for sid, start, dur in me.segments:
        symbol = SYMBOLS[sid]
        if not symbol.startswith(PRIMARY_STRESS):
            continue
        f0_peak = me.f0[start:start + dur].max(initial=0.0) / f0_median
        loud = energy[start:start + dur].max(initial=0.0)
        strength = max(f0_peak - 1.0, 0.0) * 3 + max(loud - 0.7, 0.0)
        if strength < 0.15 or rng.random() < 0.35:
            continue
        strength = min(strength, 1.0)
        onset = start - int(0.05 * FPS)
        _add(pitch, onset, _bump(int(0.35 * FPS), 10, 18),
             np.radians(cfg.nod_degrees) * strength * rng.uniform(0.5, 1.2), mode="add")
        if rng.random() < 0.6:
            pulse = _bump(int(0.4 * FPS), 8, 18)
            _add(brow_outer, onset, pulse, 0.25 + 0.35 * strength)
            _add(brow_inner, onset, pulse, 0.15 + 0.3 * strength)
    for end in me.questions:
        pulse = _bump(int(0.6 * FPS), 10, 20)
        _add(brow_outer, end - int(0.45 * FPS), pulse, 0.5)
        _add(brow_inner, end - int(0.45 * FPS), pulse, 0.45)
        _add(roll, end - int(0.5 * FPS), _bump(int(0.7 * FPS), 15, 20),
             np.radians(2.5) * rng.choice([-1, 1]), mode="add")

    # Speech moves the head a little more than silence does.
    yaw += gaussian_smooth(gaussian_smooth(rng.standard_normal(n), 0.15 * FPS) * 6.0 * speaking, 0.1 * FPS) \
        * np.radians(1.5)
    # Listening: backchannels after the partner's phrase ends.
    for end in partner.phrase_ends(n):
        if speaking[min(end, n - 1)]:
            continue
        start = end + int(rng.uniform(0.15, 0.5) * FPS)
        if rng.random() < cfg.backchannel_nod_probability:
            for k in range(rng.integers(1, 4)):
                _add(pitch, start + k * int(0.38 * FPS), _bump(int(0.38 * FPS), 12, 20),
                     np.radians(rng.uniform(2.5, 5.5)), mode="add")
        if rng.random() < cfg.backchannel_smile_probability:
            _add(smile, start, _bump(int(rng.uniform(1.0, 2.0) * FPS), 12, 30),
                 rng.uniform(0.35, 0.7))

    act_cues(pitch, smile, expr[:, E["jaw_open"]], me.cues, partner.cues, rng)

    # Blinks: Poisson, plus likely ones just after own phrase ends.
    blink = np.zeros(n)
    rate = cfg.blinks_per_minute / 60.0 / FPS
    times = np.flatnonzero(rng.random(n) < rate).tolist()
    times += [e + int(rng.uniform(0.05, 0.25) * FPS) for e in me.phrase_ends(n)
              if rng.random() < 0.5]
    for t in sorted(times):
        _add(blink, t, _bump(int(0.26 * FPS), 5, 13), 1.0)

    # Gaze: at the partner, glances away at some turn starts while speaking.
    gaze_x = np.full(n, 0.25 * toward)
    gaze_y = np.zeros(n)
    onsets = np.flatnonzero(speaking[1:] & ~speaking[:-1]) + 1
    for onset in onsets:
        if rng.random() < 0.5:
            length = int(rng.uniform(0.5, 1.4) * FPS)
            gaze_x[onset:onset + length] = rng.uniform(-0.5, 0.5)
            gaze_y[onset:onset + length] = rng.uniform(0.1, 0.35)
    gaze_x, gaze_y = gaussian_smooth(gaze_x, 2), gaussian_smooth(gaze_y, 2)

    smile = np.clip(smile, 0, 1)
    asym = rng.uniform(0.9, 1.1)
    expr[:, E["smile_left"]] = smile
    expr[:, E["smile_right"]] = np.clip(smile * asym, 0, 1)
    expr[:, E["eye_squint"]] = 0.45 * smile
    expr[:, E["brow_inner_up"]] = brow_inner
    expr[:, E["brow_outer_up"]] = brow_outer
    expr[:, E["brow_down"]] = np.clip(_ou(rng, n, 0.06, 3.0), 0, None) * ~speaking
    expr[:, E["eye_blink_left"]] = blink
    expr[:, E["eye_blink_right"]] = blink * rng.uniform(0.93, 1.0)
    expr[:, E["gaze_x"]] = gaze_x
    expr[:, E["gaze_y"]] = gaze_y
    expr = np.clip(expr, -1, 1)
    unsigned = [E[name] for name in EXPRESSION_NAMES if name not in ("gaze_x", "gaze_y")]
    expr[:, unsigned] = np.clip(expr[:, unsigned], 0, 1)

    pose = np.zeros((n, 7), np.float64)
    pose[:, :4] = euler_to_quaternion(yaw, pitch, roll)
    pose[:, 4] = -0.15 * np.sin(yaw)  # shifting weight follows the turn a little
    pose[:, 5] = 0.05 * np.sin(pitch)  # a nod lowers the head a little (y is down)
    pose[:, 6] = _ou(rng, n, 0.01, 3.0)
    return pose.astype(np.float32), expr.astype(np.float32)
