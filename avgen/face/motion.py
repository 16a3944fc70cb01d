"""Motion as the face side reads and writes it: per person head_pose (T, 7) and
expression (T, E) in the order of `EXPRESSION_NAMES`, on the 86.13 fps model clock.

Reads `avgen.av/1` and `avgen.motion/1` files; expressions are matched by the names
stored in the file, so a file with fewer, more or reordered names still renders."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen import formats
from avgen.constants import EXPRESSION_NAMES
from avgen.errors import FormatError, InputError


@dataclass(frozen=True)
class Motion:
    head_pose: tuple[np.ndarray, ...]    # per person (T, 7)
    expression: tuple[np.ndarray, ...]   # per person (T, E), E = len(EXPRESSION_NAMES)
    names: tuple[str, ...] = ()          # people's names when the file has them

    @property
    def num_people(self) -> int:
        return len(self.head_pose)

    @property
    def num_frames(self) -> int:
        return len(self.head_pose[0])


def _peek_format(path: str) -> tuple[str, str]:
    """(path to read, format tag). Standard input is spooled to a temp file because the
    format decides which reader to use and stdin can be read only once."""
    source_is_stdin = path == "-"
    if source_is_stdin:
        data = sys.stdin.buffer.read()
        from avgen.outputs import make_temp_dir

        path = str(Path(make_temp_dir("stdin")) / "motion.npz")
        Path(path).write_bytes(data)
    if not Path(path).exists():
        raise InputError("no such file", path)
    try:
        tag = str(formats.read_npz(path, path, {"format"}).get("format", ""))
    except FormatError:
        if source_is_stdin:
            Path(path).unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        if source_is_stdin:
            Path(path).unlink(missing_ok=True)
        raise FormatError(f"not a readable .npz file ({exc})", path) from None
    return path, tag


def load_motion(path: str | Path) -> Motion:
    """Motion from an `avgen.av/1` or `avgen.motion/1` file."""
    source = str(path)
    real, tag = _peek_format(source)
    kind = formats.AV if tag.startswith(formats.AV + "/") else formats.MOTION
    try:
        arrays = formats.load(real, kind)
    finally:
        if source == "-":
            Path(real).unlink(missing_ok=True)
    return motion_from_arrays(arrays, source)


def motion_from_arrays(arrays: dict[str, np.ndarray], source: str = "motion") -> Motion:
    """Motion from `avgen.av/1` or `avgen.motion/1` arrays (as `generate` returns them, or
    as read from a file); FormatError naming `source` for values no renderer can use."""
    stored = [str(n) for n in arrays["expression_names"]]
    known = [n for n in stored if n in EXPRESSION_NAMES]
    if stored and not known:
        raise FormatError("none of its expression_names are ones avgen knows "
                          f"({', '.join(stored[:5])}...)", source)
    poses, expressions = [], []
    for i in range(int(arrays["num_people"])):
        pose = np.asarray(arrays[f"p{i}/head_pose"], dtype=np.float64)
        expr_in = np.asarray(arrays[f"p{i}/expression"], dtype=np.float64)
        if not (np.isfinite(pose).all() and np.isfinite(expr_in).all()):
            raise FormatError(f"p{i} motion has NaN or infinite values", source)
        norms = np.linalg.norm(pose[:, :4], axis=1)
        if (norms < 1e-6).any():
            raise FormatError(f"p{i}/head_pose has a zero quaternion", source)
        pose[:, :4] /= norms[:, None]
        expr = np.zeros((len(pose), len(EXPRESSION_NAMES)))
        for k, name in enumerate(stored):
            if name in EXPRESSION_NAMES:
                expr[:, EXPRESSION_NAMES.index(name)] = expr_in[:, k]
        poses.append(pose)
        expressions.append(expr)
    names = tuple(str(n) for n in arrays["names"]) if "names" in arrays else ()
    return Motion(tuple(poses), tuple(expressions), names)


def save_motion(path: str | Path, motion: Motion) -> None:
    """Write an `avgen.motion/1` file (atomically) on the model clock."""
    arrays = {
        "num_frames": np.array(motion.num_frames),
        "num_people": np.array(motion.num_people),
        "expression_names": formats.string_array(EXPRESSION_NAMES),
    }
    for i in range(motion.num_people):
        arrays[f"p{i}/head_pose"] = motion.head_pose[i].astype(np.float32)
        arrays[f"p{i}/expression"] = motion.expression[i].astype(np.float32)
    formats.save(path, formats.MOTION, arrays)

