"""Dialogue scripts (docs/design.md, "Dialogue scripts").

One turn per line, `NAME: words` or `[S1] words`. `#` starts a comment, blank lines are
ignored. Inline cues: `(pause 0.8)` is silence in seconds; `(laughs)`, `(nods)`,
`(smiles)` are acted out by the person whose line holds them. Speakers are numbered by
first appearance: the first maps to the first `--ref` image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from avgen.constants import NUM_PEOPLE
from avgen.errors import InputError

CUES = ("laughs", "nods", "smiles")
_CUE_ALIASES = {"laugh": "laughs", "laughing": "laughs", "nod": "nods", "nodding": "nods",
                "smile": "smiles", "smiling": "smiles"}
MAX_PAUSE_SECONDS = 30.0
MAX_NAME_LENGTH = 40

_TAG_LINE = re.compile(r"^\[(S[12])\]\s*(.*)$", re.IGNORECASE)
_NAME_LINE = re.compile(r"^([^:\[\]()#]{1,%d}?)\s*:\s*(.*)$" % MAX_NAME_LENGTH)
_NAME_OK = re.compile(r"^[\w][\w .'-]*$")
_INNER_TAG = re.compile(r"\[S\d+\]", re.IGNORECASE)
_PAREN = re.compile(r"\(([^()]*)\)")


@dataclass(frozen=True)
class Speech:
    text: str


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Cue:
    kind: str  # one of CUES


Segment = Speech | Pause | Cue


@dataclass(frozen=True)
class Turn:
    """One script line. `person` is 0 or 1 (order of first appearance)."""

    person: int
    line: int
    text: str
    segments: tuple[Segment, ...]

    @property
    def has_speech(self) -> bool:
        return any(isinstance(s, Speech) for s in self.segments)


@dataclass(frozen=True)
class Dialogue:
    """A parsed script. `names` has one entry per person who speaks (1 or 2)."""

    source: str
    names: tuple[str, ...]
    turns: tuple[Turn, ...]


def _parse_cue(body: str, source: str, line: int) -> Pause | Cue:
    words = body.strip().lower().split()
    if not words:
        raise InputError("empty cue '()'", source, line)
    if words[0] == "pause":
        if len(words) != 2:
            raise InputError(f"cue '({body})' must be '(pause SECONDS)', e.g. '(pause 0.8)'",
                             source, line)
        try:
            seconds = float(words[1])
        except ValueError:
            raise InputError(f"pause length {words[1]!r} is not a number", source, line) from None
        if not (0.0 < seconds <= MAX_PAUSE_SECONDS):  # also rejects nan
            raise InputError(f"pause length {words[1]} must be > 0 and <= {MAX_PAUSE_SECONDS:g}"
                             " seconds", source, line)
        return Pause(seconds)
    kind = _CUE_ALIASES.get(words[0], words[0])
    if len(words) != 1 or kind not in CUES:
        known = ", ".join(f"({c})" for c in CUES) + ", (pause SECONDS)"
        raise InputError(f"unknown cue '({body.strip()})'; known cues: {known}", source, line)
    return Cue(kind)


def _segments(text: str, source: str, line: int) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    position = 0
    for match in _PAREN.finditer(text):
        before = text[position:match.start()].strip()
        if before:
            segments.append(Speech(before))
        segments.append(_parse_cue(match.group(1), source, line))
        position = match.end()
    rest = text[position:].strip()
    if rest:
        segments.append(Speech(rest))
    for segment in segments:
        if isinstance(segment, Speech) and ("(" in segment.text or ")" in segment.text):
            raise InputError("unbalanced parenthesis: cues look like '(laughs)'", source, line)
    return tuple(segments)


def _strip_comment(raw: str) -> str:
    # `\#` is a literal '#'; any other '#' starts a comment.
    out, k = [], 0
    while k < len(raw):
        if raw[k] == "\\" and raw[k + 1:k + 2] == "#":
            out.append("#")
            k += 2
            continue
        if raw[k] == "#":
            break
        out.append(raw[k])
        k += 1
    return "".join(out).strip()


def parse_script(text: str, source: str = "<script>",
                 problems: list[InputError] | None = None) -> Dialogue:
    """Parse script text. Errors are InputError('source:line: message'): the first one is
    raised, or, with a `problems` list, every bad line's error is appended to it, the line
    skipped and parsing goes on (what `avgen check` reports)."""
    names: list[str] = []
    keys: list[str] = []
    turns: list[Turn] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            turn = _parse_line(raw, source, number, names, keys)
        except InputError as exc:
            if problems is None:
                raise
            problems.append(exc)
            continue
        if turn is not None:
            turns.append(turn)
    if not turns:
        empty = InputError("script is empty: no 'NAME: words' lines", source)
        if problems is None:
            raise empty
        if not problems:
            problems.append(empty)
    return Dialogue(source, tuple(names), tuple(turns))


def _parse_line(raw: str, source: str, number: int, names: list[str], keys: list[str]
                ) -> Turn | None:
    """One script line -> Turn (None for blank and comment lines); a new speaker is added
    to `names`/`keys`."""
    content = _strip_comment(raw.lstrip("\ufeff"))
    if not content:
        return None
    tagged = _TAG_LINE.match(content)
    named = None if tagged else _NAME_LINE.match(content)
    if tagged:
        name, words = tagged.group(1).upper(), tagged.group(2)
    elif named and _NAME_OK.match(named.group(1).strip()):
        name, words = named.group(1).strip(), named.group(2)
    else:
        raise InputError("expected 'NAME: words' or '[S1] words' / '[S2] words', got "
                         f"{content[:40]!r}", source, number)
    inner_tag = _INNER_TAG.search(words)
    if inner_tag:
        raise InputError(f"speaker tag {inner_tag.group(0)!r} inside a line: start each "
                         "turn on a line of its own", source, number)
    key = name.casefold()
    if key not in keys and len(keys) == NUM_PEOPLE:
        raise InputError(f"third speaker {name!r}: a dialogue has at most two people "
                         f"({names[0]}, {names[1]})", source, number)
    if key not in keys:  # a speaker is numbered by the first line naming them, good or bad
        keys.append(key)
        names.append(name)
    segments = _segments(words.strip(), source, number)
    if not segments:
        raise InputError(f"line for {name} has no text", source, number)
    return Turn(keys.index(key), number, words.strip(), segments)


def read_script(path: str | Path) -> Dialogue:
    """Read and parse a script file; '-' reads standard input."""
    text, source = read_script_text(path)
    return parse_script(text, source)


def read_script_text(path: str | Path) -> tuple[str, str]:
    """(text, source name) of a script file; '-' reads standard input. A photo or other
    binary file given as the script is a one-line InputError naming it."""
    import sys

    if str(path) == "-":
        return sys.stdin.read(), "<stdin>"
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a script", str(path)) from None
    kind = binary_kind(data)
    if kind:
        raise InputError(f"is {kind}, not a dialogue script (photos go after --ref)", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError("not UTF-8 text", str(path), line) from None
    return text, str(path)


_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"GIF8", "a GIF image"), (b"II*\x00", "a TIFF image"),
          (b"MM\x00*", "a TIFF image"), (b"PK\x03\x04", "a zip or .npz file"),
          (b"\x93NUMPY", "a .npy file"))


def binary_kind(data: bytes) -> str | None:
    """'a PNG image' etc. when `data` starts like an image or array file; else None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:2] == b"BM" and data[6:10] == b"\0\0\0\0":  # reserved bytes: text has none
        return "a BMP image"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    if data[4:8] == b"ftyp":
        return "a video (MP4/MOV/HEIC)"
    return None
