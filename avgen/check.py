"""Check a dialogue script without loading any model: every problem of every line, and
what each line will say after text normalisation (what `avgen check` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field

from avgen.errors import InputError
from avgen.text.script import Cue, Pause, Speech, parse_script


@dataclass(frozen=True)
class LineCheck:
    """One speaking line: who, what was written, and the words that will be spoken
    (cues kept in parentheses); `error` is set when the text frontend cannot speak it."""

    line: int
    speaker: str
    written: str
    spoken: str
    error: str | None = None


@dataclass(frozen=True)
class ScriptCheck:
    source: str
    names: tuple[str, ...]
    lines: tuple[LineCheck, ...]
    problems: tuple[str, ...] = field(default=())  # one-line errors, in line order

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"source": self.source, "ok": self.ok, "names": list(self.names),
                "problems": list(self.problems),
                "lines": [{"line": c.line, "speaker": c.speaker, "written": c.written,
                           "spoken": c.spoken, "error": c.error} for c in self.lines]}


def _speak(text: str, source: str, line: int) -> str:
    """Normalised words of one speech segment; InputError if they cannot be spoken."""
    from avgen.text.normalize import normalize
    from avgen.text.phrases import to_phrases
    from avgen.text.symbols import phones_to_ids

    for phrase in to_phrases(text, source, line):  # normalises, checks, phonemises
        phones_to_ids(phrase.phones, source, line)
    return normalize(text)


def check_script(text: str, source: str = "<script>") -> ScriptCheck:
    """Parse `text` collecting every bad line instead of stopping at the first, then run
    each good line through the text frontend (normalise, phonemise, symbol table)."""
    problems: list[tuple[int, str]] = []
    parse_errors: list[InputError] = []
    dialogue = parse_script(text, source, parse_errors)
    problems += [(e.line or 0, str(e)) for e in parse_errors]
    lines = []
    for turn in dialogue.turns:
        spoken, error = [], None
        for segment in turn.segments:
            if isinstance(segment, Speech):
                try:
                    spoken.append(_speak(segment.text, source, turn.line))
                except InputError as exc:
                    error = str(exc)
                    spoken.append(segment.text)
            elif isinstance(segment, Pause):
                spoken.append(f"(pause {segment.seconds:g})")
            elif isinstance(segment, Cue):
                spoken.append(f"({segment.kind})")
        if error:
            problems.append((turn.line, error))
        lines.append(LineCheck(turn.line, dialogue.names[turn.person], turn.text,
                               " ".join(spoken), error))
    problems.sort(key=lambda p: p[0])
    return ScriptCheck(source, dialogue.names, tuple(lines), tuple(m for _, m in problems))
