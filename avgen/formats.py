"""The versioned `.npz` files between stages (docs/design.md, "Files between stages"):
one reader/writer.

Every file holds `format` ("avgen.tokens/1", "avgen.av/1", "avgen.motion/1"),
`sample_rate`, `hop_length`, `frames_per_second`, `num_people`, and per person i the
arrays `p{i}/...`. Frames are on the model clock (86.13 fps) and time comes first in
every per-frame array. Files are written atomically and read without pickle.
"""

from __future__ import annotations

import io
import struct
import sys
import tokenize
import zipfile
import zlib
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
    from avgen.outputs import write_bytes

    write_bytes(path, data)


def save(path: str | Path, kind: str, arrays: dict[str, np.ndarray]) -> None:
    """Validate `arrays` against the format schema, add the header, write atomically."""
    num_people = int(arrays.get("num_people", sum(
        1 for i in range(2) if any(k.startswith(f"p{i}/") for k in arrays))))
    full = {**header(kind, num_people), **{k: np.asarray(v) for k, v in arrays.items()}}
    _validate(kind, full, str(path))
    _check_values(kind, full, str(path))  # what a reader would refuse is never written
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **full)
    atomic_write_bytes(path, buffer.getvalue())


# Bounds on the values of each array (inclusive): anything else is a corrupt or hostile
# file. "T" and "V" stand for num_frames and the number of symbols. Float arrays must
# always be finite.
VALUE_RANGES: dict[str, dict[str, tuple]] = {
    TOKENS: {
        "num_frames": (1, "MAX_FRAMES"),
        "turns/start_frame": (0, "T"), "turns/end_frame": (0, "T"),
        "phonemes/symbol_id": (0, "V-1"), "phonemes/start_frame": (0, "T"),
        "phonemes/duration": (0, "T"), "cues/start_frame": (0, "T"),
        "cues/duration": (0, "T"),
        "p{i}/token_ids": (0, "V-1"), "p{i}/token_logits": (-1e4, 1e4),
    },
    AV: {
        "num_frames": (1, "MAX_FRAMES"),
        # natural-log mel: silence is log(1e-5) = -11.5, full-scale speech stays below 5
        "p{i}/mel": (-30.0, 10.0),
        "p{i}/head_pose": (-100.0, 100.0), "p{i}/expression": (-10.0, 10.0),
    },
    MOTION: {
        "num_frames": (1, "MAX_FRAMES"),
        "p{i}/head_pose": (-100.0, 100.0), "p{i}/expression": (-10.0, 10.0),
    },
}
_HEADER_KEYS = ("format", "sample_rate", "hop_length", "frames_per_second", "num_people")


def declared_keys(kind: str) -> set[str]:
    """Every array name a file of `kind` may hold (for up to two people)."""
    keys = set(_HEADER_KEYS)
    for pattern in SCHEMAS[kind]:
        keys.update({pattern.format(i=i) for i in range(2)} if "{i}" in pattern else {pattern})
    return keys


def read_npz(file, source: str, keys: set[str]) -> dict[str, np.ndarray]:
    """The arrays named in `keys` from an .npz (path or binary file object), without
    pickle. Other entries are never decompressed, and each entry's declared size and its
    .npy header (shape, dtype) are checked against `avgen.limits` first, so a small file
    cannot expand into gigabytes."""
    from avgen.limits import MAX_NPZ_BYTES, MAX_NPZ_ENTRY_BYTES

    total = 0
    arrays = {}
    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy") or info.filename[:-4] not in keys:
                continue
            key = info.filename[:-4]
            if info.file_size > MAX_NPZ_ENTRY_BYTES:
                raise FormatError(f"array {key!r} is {info.file_size / 2**20:.0f} MiB "
                                  f"decompressed; the limit is "
                                  f"{MAX_NPZ_ENTRY_BYTES / 2**20:.0f} MiB", source)
            total += info.file_size
            if total > MAX_NPZ_BYTES:
                raise FormatError(f"its arrays are over {MAX_NPZ_BYTES / 2**20:.0f} MiB "
                                  "decompressed", source)
            with archive.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(handle)
                if dtype.hasobject:
                    raise FormatError(f"array {key!r} holds Python objects (a pickle); "
                                      "avgen files hold plain arrays", source)
                if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                    raise FormatError(f"array {key!r} has shape {shape}, more data than "
                                      "the entry holds", source)
            with archive.open(info) as handle:
                arrays[key] = np.lib.format.read_array(handle, allow_pickle=False)
    return arrays


def load(path: str | Path, kind: str) -> dict[str, np.ndarray]:
    """Read a file of the given kind; clear FormatError for anything else. '-' is stdin.
    Only the arrays the format declares are read; numbers are checked finite and within
    `VALUE_RANGES`."""
    from avgen.limits import MAX_NPZ_BYTES

    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        if source == "<stdin>":
            data = sys.stdin.buffer.read(MAX_NPZ_BYTES + 1)
            if len(data) > MAX_NPZ_BYTES:
                raise FormatError("standard input is too large for an avgen file", source)
            file = io.BytesIO(data)
        else:
            if Path(path).is_dir():
                raise InputError("is a folder, expected an .npz file", source)
            if not Path(path).exists():
                raise InputError("no such file", source)
            file = path
        if not zipfile.is_zipfile(file):
            raise FormatError("not a readable .npz file (not a zip archive; a bare .npy "
                              "array?)", source)
        arrays = read_npz(file, source, declared_keys(kind))
    except FileNotFoundError:
        raise InputError("no such file", source) from None
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError,
            NotImplementedError, RuntimeError, struct.error,
            # a corrupted .npy header: numpy tokenizes and parses it as a Python literal
            tokenize.TokenError, SyntaxError) as exc:
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
        if key not in arrays or arrays[key].shape != () or arrays[key].dtype.kind not in "iu" \
                or int(arrays[key]) != want:
            got = arrays[key] if key in arrays else "missing"
            raise FormatError(f"{key} is {got}, avgen works at {want}", source)
    if "num_people" not in arrays:
        raise FormatError("missing array 'num_people'", source)
    for key in ("num_people", "num_frames"):
        if key in arrays and (arrays[key].shape != () or arrays[key].dtype.kind not in "iu"):
            raise FormatError(f"{key} must be one whole number", source)
    _validate(kind, arrays, source)
    _check_values(kind, arrays, source)
    return arrays


def _check_values(kind: str, arrays: dict[str, np.ndarray], source: str) -> None:
    from avgen.limits import MAX_FRAMES, check_values
    from avgen.text.symbols import NUM_SYMBOLS

    frames = int(arrays["num_frames"])
    names = {"T": frames, "V-1": NUM_SYMBOLS - 1, "MAX_FRAMES": MAX_FRAMES}
    ranges = VALUE_RANGES[kind]
    for pattern, shape in SCHEMAS[kind].items():
        keys = ([pattern.format(i=i) for i in range(int(arrays["num_people"]))]
                if "{i}" in pattern else [pattern])
        bounds = ranges.get(pattern)
        if bounds is not None:
            bounds = tuple(names[b] if isinstance(b, str) else b for b in bounds)
        for key in keys:
            if key == "num_frames" and frames < 1:
                raise FormatError("has no frames (num_frames is 0)", source)
            check_values(arrays[key], key, source, bounds)


def file_key(path: str | Path) -> tuple[str, int, int] | None:
    """(resolved path, size, mtime) of a file, or None where it cannot be read: what
    per-file caches (renderers, face attributes) are keyed on, so an edited file is read
    afresh."""
    try:
        stat = Path(path).stat()
        return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns
    except OSError:
        return None


class FileCache:
    """Values computed from files, kept per file (`file_key`: an edited file is computed
    afresh), the least recently used dropped beyond `capacity`. `extra` joins the key
    where one file gives different values (a renderer per framing)."""

    def __init__(self, capacity: int) -> None:
        from collections import OrderedDict

        self.capacity = capacity
        self._values: OrderedDict = OrderedDict()

    def get(self, path: str | Path, compute, extra: tuple = ()):
        """The value for `path`, from `compute()` the first time (every time for a file
        that cannot be read: `compute` reports that)."""
        key = file_key(path)
        if key is None:
            return compute()
        key = (*key, *extra)
        if key not in self._values:
            self._store(key, compute())
        self._values.move_to_end(key)
        return self._values[key]

    def has(self, path: str | Path, extra: tuple = ()) -> bool:
        """Whether `get` would return a kept value (the file unchanged since)."""
        key = file_key(path)
        return key is not None and (*key, *extra) in self._values

    def put(self, path: str | Path, value, extra: tuple = ()) -> None:
        """Keep `value` for `path`, computed elsewhere."""
        key = file_key(path)
        if key is not None:
            self._store((*key, *extra), value)

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def _store(self, key: tuple, value) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.capacity:
            self._values.popitem(last=False)


def string_array(values) -> np.ndarray:
    """Strings as a fixed-width unicode array (loads without pickle; '' for none)."""
    values = list(values)
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")
