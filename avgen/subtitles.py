"""Subtitles (SRT or WebVTT) from a dialogue timeline: one cue per turn, timed by the
turn's start and end on the model clock, with the words as written in the script (cues
such as `(smiles)` left out) and the speaker's name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from avgen.constants import FRAMES_PER_SECOND
from avgen.errors import InputError

FORMATS = (".srt", ".vtt")
_STAGE_CUE = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class SubtitleCue:
    start: float  # seconds
    end: float
    speaker: str
    text: str


def check_path(path: str | Path) -> None:
    """InputError unless `path` ends in .srt or .vtt and its folder exists."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError("subtitles must end in .srt or .vtt", str(path))
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", str(path.parent))


def subtitle_cues(timeline) -> list[SubtitleCue]:
    """One cue per turn that has words (a turn of only '(nods)' shows nothing)."""
    cues = []
    for turn in timeline.turns:
        text = re.sub(r"\s+", " ", _STAGE_CUE.sub(" ", turn.text)).strip()
        if not text:
            continue
        cues.append(SubtitleCue(turn.start_frame / FRAMES_PER_SECOND,
                                turn.end_frame / FRAMES_PER_SECOND,
                                timeline.names[turn.person], text))
    return cues


def _stamp(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def srt(cues: list[SubtitleCue]) -> str:
    blocks = [f"{k}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.speaker}: {c.text}\n"
              for k, c in enumerate(cues, start=1)]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(cues: list[SubtitleCue]) -> str:
    blocks = ["WEBVTT\n"] + [
        f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n"
        f"<v {_vtt_escape(c.speaker)}>{_vtt_escape(c.text)}\n" for c in cues]
    return "\n".join(blocks)


def write_subtitles(path: str | Path, timeline) -> int:
    """Write SRT or WebVTT (by the file's suffix) atomically; returns the cue count."""
    from avgen.formats import atomic_write_bytes

    check_path(path)
    cues = subtitle_cues(timeline)
    text = vtt(cues) if Path(path).suffix.lower() == ".vtt" else srt(cues)
    atomic_write_bytes(path, text.encode("utf-8"))
    return len(cues)
