"""Errors that reach the user: the CLI prints them in one line and exits with status 2.

Every problem with what the user supplies (files, arguments, index directories) raises a
:class:`GenirError` subclass with the whole explanation in its message; anything else escaping
genir is a bug.
"""

from __future__ import annotations

from pathlib import Path


class GenirError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class InputError(GenirError):
    """Bad input: malformed data located by file and (1-based) line, or a bad argument.

    ``InputError(path, line, reason)`` for data (``line`` may be None), ``InputError(reason)``
    for an argument (``path`` and ``line`` are then None).
    """

    def __init__(self, path: str | Path, line: int | None = None, reason: str | None = None):
        if reason is None:
            self.path, self.line, self.reason = None, None, str(path)
            super().__init__(self.reason)
            return
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


class CorruptIndexError(GenirError, ValueError):
    """An index directory, or a saved file in one, that is missing, incomplete, altered or foreign.

    Also a ``ValueError``: the kernels' loaders (:meth:`genir.kernels.trie.DocidTrie.load`,
    :meth:`genir.kernels.fmindex.FMIndex.load`) document that they raise one.
    """
