"""Atomic writes: content goes to a temporary sibling that is renamed into place when complete.

The invariant, for every helper here: a reader of ``path`` sees the old file (or none) or the
complete new one, never part of one; and a write that fails (any exception, KeyboardInterrupt
included) leaves ``path`` as it was and deletes its temporary file or directory.

Temporary names are unique per write (``.NAME.<random>.tmp``, created exclusively), so two
writers of one path never share a temporary file, and a hard crash (SIGKILL, power cut) leaves at
most one hidden sibling, never a fixed name that the next write would collide with. The
temporary sits in the destination's directory, so the final rename stays on one file system
(``os.replace`` is atomic there). Temporaries are created with the usual permissions (0666 or
0777 less the umask), so the renamed result has them too.

Nothing is fsync'd: the helpers protect against failed or interrupted writers and concurrent
readers, not against the file system losing recent writes in a power cut.

* :func:`atomic_write_text`, :func:`atomic_write_bytes`: the whole content at once.
* :func:`atomic_open`: a file object, for writers that stream.
* :func:`atomic_path`: a path, for writers that need a file name (``savefig``, ``np.save``).
* :func:`atomic_dir`: a directory of files, staged as a whole.
* :func:`stale_temporaries`: what killed writers of a path left behind, for a caller that knows
  no other writer of that path is running (it holds a lock) to delete.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_dir", "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text", "stale_temporaries"]

_NAME_KEEP = 200  # characters of the destination's name kept in a temporary name (NAME_MAX is 255)


def _sibling(path: Path, kind: str, create: Callable[[Path], None]) -> Path:
    """Create (with ``create``, which fails if it exists) and return a new hidden sibling of ``path``."""
    for _ in range(100):
        candidate = path.with_name(f".{path.name[:_NAME_KEEP]}.{secrets.token_hex(4)}.{kind}")
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def stale_temporaries(path: str | Path) -> list[Path]:
    """The hidden siblings that writes of ``path`` create (``.NAME.<8 hex>.tmp[SUFFIX]`` staging,
    ``.NAME.<8 hex>.old`` retired directories) and that exist now.

    A write removes its own when it ends, even by an exception; those that exist were left by a
    process that was killed, or belong to a write still running. Delete them only while no other
    writer of ``path`` can be running. Names longer than the kept prefix are never matched (their
    temporaries could be another path's).
    """
    path = Path(path)
    if len(path.name) > _NAME_KEEP or not path.parent.is_dir():
        return []
    kinds = "|".join(re.escape(k) for k in {"tmp", f"tmp{path.suffix}", "old"})
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.(?:{kinds})")
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new empty temporary file beside ``path``; it replaces ``path`` when the block succeeds.

    The temporary name ends with ``path``'s suffix, so writers that pick a format from the
    extension (``savefig``) or append one (``np.save`` adds ``.npy``) write where expected. The
    parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _sibling(path, f"tmp{path.suffix}", _new_file)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Yield a file open for writing (``"w"`` text, ``"wb"`` binary) that replaces ``path`` on success."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode must be 'w', 'wt' or 'wb', not {mode!r}")
    with atomic_path(path) as temporary, open(temporary, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path, "w", encoding) as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def _occupied(path: Path) -> bool:
    """Whether renaming a directory onto ``path`` would fail: it exists and is not an empty directory."""
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


@contextmanager
def atomic_dir(path: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a new empty staging directory beside ``path``; it becomes ``path`` when the block succeeds.

    With ``replace``, an existing ``path`` and the staging directory swap names in one atomic step
    where the platform has one (Linux ``renameat2(RENAME_EXCHANGE)``), and the old directory is then
    deleted: a reader sees the old directory or the new one, never none and never a mix, and a
    kill at any point leaves one of them at ``path``. Elsewhere (or on a file system that refuses
    the exchange) the old ``path`` is renamed aside to ``.NAME.<8 hex>.old``, the staging directory
    renamed into place, and the old one deleted: a reader may find no ``path`` between the two
    renames, and a writer killed there leaves the old version only under the ``.old`` name
    (:func:`genir.indexer.artifact.restore_interrupted` puts it back). An empty directory at
    ``path`` is replaced in any case.

    Raises:
        FileExistsError: ``path`` exists (and is not an empty directory) and ``replace`` is false,
            checked before the block runs and again when it ends (the staging is deleted).
    """
    path = Path(path)
    if not replace and _occupied(path):
        raise FileExistsError(errno.EEXIST, "already exists", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(path, "tmp", lambda p: os.mkdir(p, 0o777))
    try:
        yield staging
        _install_dir(staging, path, replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _install_dir(staging: Path, path: Path, replace: bool) -> None:
    """Rename ``staging`` to ``path`` (replacing an occupied ``path`` only if ``replace``)."""
    if replace and _occupied(path) and _exchange(staging, path):
        _discard(staging)  # now the old directory
        return
    retired: list[Path] = []
    try:
        while True:
            try:
                os.rename(staging, path)  # succeeds when ``path`` is absent or an empty directory
                return
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    if retired:  # put the last old directory back rather than lose both
                        try:
                            os.rename(retired.pop(), path)
                        except OSError:
                            pass
                    raise
                if not replace:
                    raise FileExistsError(errno.EEXIST, "already exists", str(path)) from None
            # A concurrent writer may move ``path`` or install its own between these renames: retry.
            try:
                retired.append(_retire(path))
            except FileNotFoundError:
                continue
    finally:
        for old in retired:
            _discard(old)


def _retire(path: Path) -> Path:
    """Rename ``path`` aside to a new ``.NAME.<8 hex>.old`` sibling and return that name."""
    old = path.with_name(f".{path.name[:_NAME_KEEP]}.{secrets.token_hex(4)}.old")
    os.rename(path, old)
    return old


def _discard(path: Path) -> None:
    """Delete what is at ``path`` (a folder tree, a file or a link), as far as possible."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(OSError):
            path.unlink()


_AT_FDCWD = -100  # <fcntl.h>: paths relative to the working directory
_RENAME_EXCHANGE = 2  # <linux/fs.h>


@cache
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2``, or None off Linux (or with a C library older than glibc 2.28)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(staging: Path, path: Path) -> bool:
    """Swap the names ``staging`` and ``path`` in one atomic step; False (nothing changed) where it
    could not be done.

    Any failure counts as "cannot": no such call (ENOSYS, or EPERM from a container's syscall
    filter), a file system without exchange (EINVAL), ``path`` moved meanwhile (ENOENT). A failure
    that is not about the exchange (permissions, I/O) recurs, with its own error, in the two-step
    renames the caller falls back to.
    """
    renameat2 = _renameat2()
    return renameat2 is not None and renameat2(
        _AT_FDCWD, os.fsencode(staging), _AT_FDCWD, os.fsencode(path), _RENAME_EXCHANGE) == 0
