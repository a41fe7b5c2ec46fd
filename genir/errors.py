"""Errors that reach the user: the CLI prints them in one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class GenirError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class InputError(GenirError):
    """Malformed input data, located by file and (1-based) line."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
