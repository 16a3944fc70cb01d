"""Subtitles (SRT or WebVTT) from a dialogue timeline: one cue per sentence, timed by its
first and last phrase on the model clock, with the words as written in the script (cues
such as `(smiles)` left out) and the speaker's name. Where a turn's sentences cannot be
matched to its phrases (a timeline read from a tokens file keeps no phrase timings), the
turn is one cue from its start to its end."""

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


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def _sentence_spans(sentences: list[str], phrases: list[tuple[int, int]]
                    ) -> list[tuple[int, int]] | None:
    """(start, end) frames per sentence, or None when the sentences' phrase counts (as the
    text frontend splits them) do not add up to the turn's timed phrases."""
    from avgen.text.normalize import normalize
    from avgen.text.phrases import split_phrases

    counts = [len(split_phrases(normalize(s))) for s in sentences]
    if sum(counts) != len(phrases) or not all(counts):
        return None
    spans, k = [], 0
    for count in counts:
        spans.append((phrases[k][0], phrases[k + count - 1][1]))
        k += count
    return spans


def subtitle_cues(timeline) -> list[SubtitleCue]:
    """One cue per sentence (per turn where the timeline has no phrase timings); a turn of
    only '(nods)' shows nothing."""
    cues = []
    fps = FRAMES_PER_SECOND
    for index, turn in enumerate(timeline.turns):
        text = re.sub(r"\s+", " ", _STAGE_CUE.sub(" ", turn.text)).strip()
        if not text:
            continue
        speaker = timeline.names[turn.person]
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        phrases = [(a, b) for t, a, b in getattr(timeline, "phrases", ()) if t == index]
        spans = _sentence_spans(sentences, phrases) if phrases else None
        if spans is None:
            cues.append(SubtitleCue(turn.start_frame / fps, turn.end_frame / fps, speaker, text))
            continue
        cues += [SubtitleCue(a / fps, b / fps, speaker, sentence)
                 for sentence, (a, b) in zip(sentences, spans)]
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
