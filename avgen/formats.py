"""The versioned `.npz` files between stages (docs/design.md, "Files between stages"):
one reader/writer.

Every file holds `format` ("avgen.tokens/1", "avgen.av/1", "avgen.motion/1"),
`sample_rate`, `hop_length`, `frames_per_second`, `num_people`, and per person i the
arrays `p{i}/...`. Frames are on the model clock (86.13 fps) and time comes first in
every per-frame array. Files are written atomically and read without pickle.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from avgen.constants import FRAMES_PER_SECOND, HEAD_POSE_DIM, HOP_LENGTH, N_MELS, SAMPLE_RATE
from avgen.errors import FormatError, InputError

TOKENS = "avgen.tokens"
AV = "avgen.av"
MOTION = "avgen.motion"
VERSIONS = {TOKENS: 1, AV: 1, MOTION: 1}

# Shapes of the arrays each format must hold. Letters are sizes that must agree within a
# file: T frames, V symbols, E expressions, N turns, M phonemes, K cues; P = num_people.
_PER_PERSON = "p{i}/"
SCHEMAS: dict[str, dict[str, tuple]] = {
    TOKENS: {
        "num_frames": (), "names": ("P",), "symbols": ("V",), "symbols_version": (),
        "durations_source": (),
        "turns/person": ("N",), "turns/line": ("N",), "turns/text": ("N",),
        "turns/phonemes": ("N",), "turns/start_frame": ("N",), "turns/end_frame": ("N",),
        "turns/phoneme_start": ("N",), "turns/phoneme_count": ("N",),
        "phonemes/symbol_id": ("M",), "phonemes/start_frame": ("M",),
        "phonemes/duration": ("M",),
        "cues/kind": ("K",), "cues/person": ("K",), "cues/start_frame": ("K",),
        "cues/duration": ("K",), "cues/turn": ("K",),
        "p{i}/token_ids": ("T",), "p{i}/token_logits": ("T", "V"),
    },
    AV: {
        "num_frames": (), "names": ("P",), "expression_names": ("E",),
        "p{i}/mel": ("T", N_MELS), "p{i}/head_pose": ("T", HEAD_POSE_DIM),
        "p{i}/expression": ("T", "E"),
    },
    MOTION: {
        "num_frames": (), "expression_names": ("E",),
        "p{i}/head_pose": ("T", HEAD_POSE_DIM), "p{i}/expression": ("T", "E"),
    },
}


def format_tag(kind: str) -> str:
    return f"{kind}/{VERSIONS[kind]}"


def _validate(kind: str, arrays: dict[str, np.ndarray], source: str) -> None:
    num_people = int(arrays["num_people"])
    if not 1 <= num_people <= 2:
        raise FormatError(f"num_people is {num_people}, expected 1 or 2", source)
    sizes: dict[str, int] = {"P": num_people}
    for pattern, shape in SCHEMAS[kind].items():
        keys = ([pattern.format(i=i) for i in range(num_people)] if "{i}" in pattern
                else [pattern])
        for key in keys:
            if key not in arrays:
                raise FormatError(f"missing array {key!r} ({format_tag(kind)})", source)
            actual = arrays[key].shape
            if len(actual) != len(shape):
                raise FormatError(f"{key} has shape {actual}, expected {len(shape)} dimensions",
                                  source)
            for dim, want in zip(actual, shape):
                if isinstance(want, str):
                    want = sizes.setdefault(want, dim)
                if dim != want:
                    raise FormatError(f"{key} has shape {actual}, which disagrees with the "
                                      f"other arrays (expected {want} for that axis)", source)
    if "T" in sizes and sizes["T"] != int(arrays["num_frames"]):
        raise FormatError(f"per-frame arrays have {sizes['T']} frames but num_frames is "
                          f"{int(arrays['num_frames'])}", source)


def header(kind: str, num_people: int) -> dict[str, np.ndarray]:
    return {
        "format": np.array(format_tag(kind)),
        "sample_rate": np.array(SAMPLE_RATE),
        "hop_length": np.array(HOP_LENGTH),
        "frames_per_second": np.array(FRAMES_PER_SECOND),
        "num_people": np.array(num_people),
    }


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder and a rename, so a reader
    never sees a half-written file and a failure leaves any old file untouched.
    '-' writes to standard output."""
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", str(path.parent))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(path: str | Path, kind: str, arrays: dict[str, np.ndarray]) -> None:
    """Validate `arrays` against the format schema, add the header, write atomically."""
    num_people = int(arrays.get("num_people", sum(
        1 for i in range(2) if any(k.startswith(f"p{i}/") for k in arrays))))
    full = {**header(kind, num_people), **{k: np.asarray(v) for k, v in arrays.items()}}
    _validate(kind, full, str(path))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **full)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: str | Path, kind: str) -> dict[str, np.ndarray]:
    """Read a file of the given kind; clear FormatError for anything else. '-' is stdin."""
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        if source == "<stdin>":
            handle = np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)
        else:
            handle = np.load(path, allow_pickle=False)
        with handle as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise FormatError("not an avgen .npz file (a bare .npy array?)", source)
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise InputError("no such file", source) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise FormatError(f"not a readable .npz file ({exc})", source) from None
    tag = str(arrays["format"]) if "format" in arrays else None
    if tag is None:
        raise FormatError("not an avgen file: it has no 'format' entry", source)
    name, _, version = tag.partition("/")
    if name != kind:
        raise FormatError(f"is a {tag} file, expected {format_tag(kind)}", source)
    if version != str(VERSIONS[kind]):
        raise FormatError(f"{tag} is not supported by this avgen (reads {format_tag(kind)}); "
                          "regenerate the file with this version", source)
    for key, want in (("sample_rate", SAMPLE_RATE), ("hop_length", HOP_LENGTH)):
        if key not in arrays or int(arrays[key]) != want:
            got = arrays[key] if key in arrays else "missing"
            raise FormatError(f"{key} is {got}, avgen works at {want}", source)
    if "num_people" not in arrays:
        raise FormatError("missing array 'num_people'", source)
    _validate(kind, arrays, source)
    return arrays


def string_array(values) -> np.ndarray:
    """Strings as a fixed-width unicode array (loads without pickle; '' for none)."""
    values = list(values)
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")
