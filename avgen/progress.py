"""Progress of long stages, reported through one small interface.

Library code calls `progress.stage(name, total, unit)` and gets back an `update(n)`
function; it never decides how progress looks. The command line picks the reporter:
`BarProgress` (tqdm bars) on a terminal, `LineProgress` (a few plain lines per stage, no
carriage returns) when stderr is a file or a pipe, `NullProgress` for --quiet.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO


class NullProgress:
    """Reports nothing (the library default and --quiet)."""

    terminal = False

    @contextmanager
    def stage(self, name: str, total: float | None = None, unit: str = "it"
              ) -> Iterator[Callable[[float], None]]:
        yield lambda n=1: None

    def note(self, message: str) -> None:
        """A detail only --verbose shows (chosen voices, a stage's timing)."""


class LineProgress(NullProgress):
    """Plain lines for logs: 'joint model: 50% (1.2 s)' at most every `every` of the
    stage (and never more often than `min_seconds`), then 'joint model: done in 2.4 s'."""

    def __init__(self, stream: TextIO | None = None, every: float = 0.25,
                 min_seconds: float = 1.0, verbose: bool = False) -> None:
        self.stream = stream
        self.every = every
        self.min_seconds = min_seconds
        self.verbose = verbose

    def _print(self, line: str) -> None:
        stream = self.stream or sys.stderr
        print(line, file=stream, flush=True)

    @contextmanager
    def stage(self, name: str, total: float | None = None, unit: str = "it"
              ) -> Iterator[Callable[[float], None]]:
        started = time.perf_counter()
        state = {"done": 0.0, "shown": 0.0, "at": started}
        self._print(f"{name}: started" + (f" ({total:g} {unit})" if total else ""))

        def update(n: float = 1) -> None:
            state["done"] += n
            if not total:
                return
            fraction = min(state["done"] / total, 1.0)
            now = time.perf_counter()
            if (fraction - state["shown"] >= self.every and fraction < 1.0
                    and now - state["at"] >= self.min_seconds):
                state["shown"], state["at"] = fraction, now
                self._print(f"{name}: {100 * fraction:.0f}% ({now - started:.1f} s)")

        yield update
        self._print(f"{name}: done in {time.perf_counter() - started:.1f} s")

    def note(self, message: str) -> None:
        if self.verbose:
            self._print(message)


class BarProgress(LineProgress):
    """A tqdm bar per stage on a terminal."""

    terminal = True

    @contextmanager
    def stage(self, name: str, total: float | None = None, unit: str = "it"
              ) -> Iterator[Callable[[float], None]]:
        from tqdm import tqdm

        started = time.perf_counter()
        with tqdm(total=total, desc=name, unit=unit, file=self.stream or sys.stderr,
                  dynamic_ncols=True, leave=False,
                  bar_format=None if total else "{desc}: {elapsed}") as bar:
            yield bar.update
        if self.verbose:
            self._print(f"{name}: {time.perf_counter() - started:.1f} s")


def for_stream(stream: TextIO | None = None, quiet: bool = False, verbose: bool = False
               ) -> NullProgress:
    """The reporter a command wants: nothing when quiet, bars on a terminal, lines
    otherwise."""
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if getattr(stream, "isatty", lambda: False)():
        return BarProgress(stream, verbose=verbose)
    return LineProgress(stream, verbose=verbose)
