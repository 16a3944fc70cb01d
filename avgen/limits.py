"""Every bound on what avgen accepts, in one place, and the checks that apply them.

Bounds keep a hostile or mistaken input from costing more than a normal one: no input
file of a few MB may make a command take gigabytes or hours. Each check raises an
InputError naming the file (and line) or the option, so the CLI prints one line and
exits with code 2 before any output is written.
"""

from __future__ import annotations

import math

import numpy as np

from avgen.constants import FRAMES_PER_SECOND
from avgen.errors import ConfigError

# -- dialogue length -----------------------------------------------------------------------
MAX_SECONDS = 1800.0                        # longest dialogue: 30 minutes
MAX_FRAMES = int(MAX_SECONDS * FRAMES_PER_SECOND)

# -- scripts -------------------------------------------------------------------------------
MAX_SCRIPT_BYTES = 1 << 20                  # 1 MiB of text
MAX_LINE_CHARS = 2000                       # one turn: about two minutes of speech
MAX_TURNS = 1000

# -- images --------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 40_000_000               # 8000 x 5000
MAX_IMAGE_BYTES = 64 << 20

# -- .npz files between stages -------------------------------------------------------------
MAX_NPZ_ENTRY_BYTES = 256 << 20             # one array, decompressed
MAX_NPZ_BYTES = 768 << 20                   # all arrays read from one file, decompressed

# -- options -------------------------------------------------------------------------------
STEPS = (1, 256)
SEED = (0, 2**32 - 1)
TEMPERATURE = (0.0, 2.0)
VOICE_GUIDANCE = (0.0, 4.0)
SWAY = (-1.0, 1.0)                          # step_times is monotone on it
ATTENTION_WINDOW = (0, 256)                 # frames a block attends back or ahead (3 s)
FPS = (1.0, 120.0)
SIZE = (64, 2048)                           # even
RATE = (0.25, 4.0)
GAP = (0.0, 10.0)
CRF = (0, 51)


def check_range(value, bounds: tuple, option: str, integer: bool = False,
                name: str | None = None, unit: str = ""):
    """`value` if it is a finite number within `bounds` (inclusive); ConfigError (an
    InputError: exit code 2) naming `option` otherwise. With `name` (the setting as a
    Python caller knows it, e.g. "turn gap"), a value out of range reads
    "OPTION: NAME must be from LO to HI UNIT, got VALUE". Returns the value for chaining."""
    lo, hi = bounds
    if name is not None:
        kind = "an integer " if integer else ""
        unit = f" {unit}" if unit else ""
        shown_range = f"from {lo:g} to {hi:g}{unit}"
        if (isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or (integer and isinstance(value, (float, np.floating))
                    and not float(value).is_integer())
                or not math.isfinite(float(value)) or not lo <= value <= hi):
            raise ConfigError(f"{name} must be {kind}{shown_range}, got {value!r}", option)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"expected a number, got {value!r}", option)
    if integer and (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"expected a whole number, got {value!r}", option)
    if not math.isfinite(float(value)) or not lo <= value <= hi:
        shown = f"{value:g}" if isinstance(value, (float, np.floating)) else f"{value!r}"
        raise ConfigError(f"{shown} is out of range; use {lo:g} to {hi:g}"
                          if isinstance(lo, float) else
                          f"{shown} is out of range; use {lo} to {hi}", option)
    return value


def check_values(array: np.ndarray, key: str, source: str, bounds: tuple | None = None) -> None:
    """A numeric array read from a file: floats finite, and every value within `bounds`
    (inclusive) when given. FormatError naming the file and the array otherwise."""
    from avgen.errors import FormatError

    if array.dtype.kind not in "biuf" or array.size == 0:
        return
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = "NaN" if np.isnan(array).any() else "infinite"
        raise FormatError(f"{key} holds {bad} values", source)
    if bounds is not None:
        lo, hi = bounds
        low, high = array.min(), array.max()
        if low < lo or high > hi:
            raise FormatError(f"{key} has values from {low:g} to {high:g}, outside "
                              f"{lo:g} to {hi:g}", source)
