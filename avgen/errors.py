"""Errors a user can act on. The CLI prints them as one line and exits with `exit_code`."""

from __future__ import annotations


class AvgenError(Exception):
    """Base class: the message is complete and meant for the user."""

    exit_code = 1


class InputError(AvgenError):
    """Bad user input (script, file, argument). Exit code 2, nothing written."""

    exit_code = 2

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        self.source = source
        self.line = line
        self.reason = message
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + message)


class ConfigError(InputError, ValueError):
    """A setting out of its range, raised by the config dataclass that owns it (so the
    command line and Python callers get the same check). Exit code 2."""


class FormatError(InputError):
    """A file between stages has the wrong format, version or contents."""


class WeightsError(AvgenError):
    """A checkpoint is missing, corrupt or unknown."""

    exit_code = 3
