"""Index directories: a ``manifest.json`` plus plain files, written atomically, verified on load.

The manifest records the genir version, the method, its configuration, build statistics, the
collection it was built from, and every file with its size and sha256. Invariants:

* Writing (:func:`atomic_directory`): a directory is built under a temporary name beside its
  destination and renamed into place only when complete, so a crash, a kill or an input error
  leaves the previous index (or nothing), never half of one. The whole build holds an exclusive
  lock on the destination (``.NAME.lock`` beside it, ``fcntl.flock``): a second writer of the
  same destination fails at once, and the holder deletes the staging folders killed builds left.
* Replacing: only an empty folder or a genir index is ever replaced, a genir index being a folder
  whose manifest parses as one and which holds no file the manifest does not list. This is
  checked when the build starts and again just before the final rename.
* Reading (:func:`read_manifest`): the manifest is checked field by field, and every file it
  names must be a relative path that stays inside the index directory (no ``..``, no absolute
  path, no symbolic link), all of them checked before any file is opened. A reader sees one
  version: what it read is discarded and read again when a writer swapped a new version in
  meanwhile (:func:`read_consistently`).
* Interrupted replacements: where the platform cannot swap two directories in one step, a writer
  killed between renaming the old version aside and the new one into place leaves no index at the
  destination; the next reader or writer puts the old version back (:func:`restore_interrupted`).
* Nothing here unpickles: loading reads JSON and checks hashes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from genir._version import __version__
from genir.atomic_files import atomic_dir, stale_temporaries
from genir.errors import CorruptIndexError, GenirError
from genir.indexer.collection import file_sha256

T = TypeVar("T")

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    method: str
    config: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    collection: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    genir_version: str = __version__
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "genir_version": self.genir_version,
            "format_version": self.format_version,
            "method": self.method,
            "config": self.config,
            "stats": self.stats,
            "collection": self.collection,
            "files": self.files,
        }


def _data_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Hash every file under ``directory`` into ``manifest`` and write ``manifest.json``."""
    manifest.files = {
        p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in _data_files(directory)
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory: str | Path, verify: bool = True) -> Manifest:
    """Read and check an index directory's manifest, all of it from one version of the index.

    Args:
        verify: also check every listed file's size and sha256 (reads all the data once).
    Raises:
        CorruptIndexError: the directory is not a complete genir index.
        GenirError: the directory is missing while another process replaces it (see
            :func:`restore_interrupted`), or it was replaced again and again while being read.
    """
    return read_consistently(Path(directory), lambda d: _checked_manifest(d, verify))


def _checked_manifest(directory: Path, verify: bool) -> Manifest:
    manifest = _parse_manifest(directory)
    files = {name: index_file(directory, name) for name in manifest.files}  # all checked before any is opened
    for name, file in files.items():
        entry = manifest.files[name]
        if not file.is_file():
            raise CorruptIndexError(f"{directory}: file {name} listed in the manifest is missing")
        if file.stat().st_size != entry["bytes"]:
            raise CorruptIndexError(f"{directory}: file {name} has {file.stat().st_size} bytes, manifest says {entry['bytes']}")
        if verify and file_sha256(file) != entry["sha256"]:
            raise CorruptIndexError(f"{directory}: file {name} does not match its sha256 in the manifest")
    return manifest


_READ_ATTEMPTS = 5  # a version replaced this many times while it is being read: give up


def read_consistently(directory: Path, read: Callable[[Path], T], discard: Callable[[T], None] = lambda _: None) -> T:
    """``read(directory)``, all of whose file reads came from one version of the index at ``directory``.

    Writers replace an index directory as a whole (a new directory renamed into place), so a reader
    that opened the manifest of one version and a data file of the next would see a false size or
    sha256 mismatch, or a loader would fail on files that do not belong together. The directory is
    held open while ``read`` runs, so its inode cannot be reused; if the directory at the path is
    still that one afterwards, nothing was swapped in between and the result stands. Otherwise the
    result is discarded (``discard``) or the error dropped, and ``read`` runs again on the version
    now in place. A missing directory that a killed writer left renamed aside is put back first.

    Raises:
        CorruptIndexError: ``directory`` is not a directory; or what ``read`` raised on one version.
        GenirError: ``directory`` was replaced during every one of several attempts.
    """
    for _ in range(_READ_ATTEMPTS):
        try:
            held = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            if restore_interrupted(directory):
                continue
            raise CorruptIndexError(f"{directory}: no such index directory") from None
        try:
            try:
                result = read(directory)
            except Exception:
                if _still_at(directory, held):
                    raise
                continue  # the error may come from mixing two versions: read the new one
            if _still_at(directory, held):
                return result
            discard(result)
        finally:
            os.close(held)
    raise GenirError(f"{directory} was replaced {_READ_ATTEMPTS} times while it was being read; try again")


def _still_at(directory: Path, held: int) -> bool:
    """Whether the directory open as ``held`` is still the one at the path ``directory``."""
    try:
        now = os.stat(directory)
    except OSError:
        return False
    mine = os.fstat(held)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def restore_interrupted(destination: Path) -> bool:
    """Put back the previous version of a missing ``destination`` that a killed writer left renamed aside.

    Only where directories cannot be swapped in one step (:func:`genir.atomic_files.atomic_dir`) can
    a writer killed between its two renames leave the old version as a hidden ``.NAME.<8 hex>.old``
    sibling and nothing at ``destination``. That sibling is renamed back (a complete index: its
    manifest and file sizes check; the one retired last if there are several) under the
    destination's lock, instead of being deleted as a stale temporary by the next build.

    Returns:
        whether a version was put back (False: ``destination`` exists or no retired version does).
    Raises:
        GenirError: another genir process holds the lock: it is replacing ``destination`` now.
    """
    if destination.exists() or destination.is_symlink() or not _retired_versions(destination):
        return False
    try:
        with destination_lock(destination):
            return _put_back_retired(destination)
    except GenirError:
        raise GenirError(f"{destination} is missing while another genir process replaces it; "
                         "open it again when that process is done") from None
    except OSError:  # the lock cannot be created (a read-only folder): leave it to a writer
        return False


def _retired_versions(destination: Path) -> list[Path]:
    return [p for p in stale_temporaries(destination) if p.name.endswith(".old")]


def _put_back_retired(destination: Path) -> bool:
    """:func:`restore_interrupted`'s work, for a caller that holds the destination's lock."""
    if destination.exists() or destination.is_symlink():
        return False
    complete = []
    for retired in _retired_versions(destination):
        try:
            _checked_manifest(retired, verify=False)
        except CorruptIndexError:
            continue
        complete.append(retired)
    if not complete:
        return False
    os.rename(max(complete, key=lambda p: p.stat().st_ctime), destination)  # a rename sets st_ctime
    return True


_MANIFEST_FIELDS = {"genir_version": str, "method": str, "config": dict, "files": dict}
_OPTIONAL_FIELDS = {"stats": dict, "collection": dict}
_SHA256 = re.compile("[0-9a-f]{64}")


def _parse_manifest(directory: Path) -> Manifest:
    """The manifest of ``directory``, its fields and file entries checked (not the files themselves)."""
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise CorruptIndexError(f"{directory}: no such index directory")
    if not path.is_file():
        raise CorruptIndexError(f"{directory}: not a genir index (no {MANIFEST_NAME})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptIndexError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(raw, dict):
        raise CorruptIndexError(f"{path}: unreadable manifest (not a JSON object)")
    version = raw.get("format_version")
    if type(version) is not int:
        raise CorruptIndexError(f"{path}: unreadable manifest (format_version {version!r} is not an integer)")
    if version != FORMAT_VERSION:
        raise CorruptIndexError(
            f"{path}: index format {version} is not supported by genir {__version__} "
            f"(format {FORMAT_VERSION}); rebuild the index"
        )
    for key, kind in {**_MANIFEST_FIELDS, **_OPTIONAL_FIELDS}.items():
        if key not in raw and key in _OPTIONAL_FIELDS:
            continue
        if not isinstance(raw.get(key), kind):
            found = "missing" if key not in raw else f"a {type(raw[key]).__name__}"
            raise CorruptIndexError(f"{path}: unreadable manifest ({key!r} must be a JSON {'object' if kind is dict else 'string'}, found {found})")
    for name, entry in raw["files"].items():
        if not (isinstance(entry, dict) and type(entry.get("bytes")) is int and entry["bytes"] >= 0
                and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])):
            raise CorruptIndexError(f"{path}: unreadable manifest (the entry of file {name!r} is not "
                                    '{"bytes": <size>, "sha256": <64 hex digits>})')
    return Manifest(
        method=raw["method"], config=raw["config"], stats=raw.get("stats", {}), collection=raw.get("collection", {}),
        files=raw["files"], genir_version=raw["genir_version"], format_version=version,
    )


def index_file(directory: Path, name: str) -> Path:
    """``directory / name`` for a file an index names, once it is known to stay inside ``directory``.

    ``name`` must be a relative POSIX path without ``.``, ``..`` or empty parts, and no part of it
    below ``directory`` may be a symbolic link. Nothing is opened.

    Raises:
        CorruptIndexError: ``name`` points, or may point, outside the index.
    """
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if (not parts or name.startswith("/") or "\\" in name or "\x00" in name or name != "/".join(parts)
            or any(part in {".", ".."} for part in parts)):
        raise CorruptIndexError(f"{directory}: file {name!r} named by the index is not a relative path inside it")
    current = directory
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise CorruptIndexError(f"{directory}: file {name!r} named by the index goes through a symbolic link")
    return current


def read_json_record(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Read a genir JSON file whose ``format`` and ``format_version`` fields identify it.

    Raises:
        GenirError: the file is missing, not JSON, not a ``fmt`` file, or of another version.
    """
    if not path.is_file():
        raise GenirError(f"{path}: no such file (not a saved {what})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GenirError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise GenirError(f"{path}: not a genir {what} file")
    if record.get("format_version") != version:
        raise GenirError(f"{path}: {what} format {record.get('format_version')!r} is not supported (expected {version})")
    return record


def index_size_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@contextmanager
def atomic_directory(destination: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``destination`` only on success.

    :func:`genir.atomic_files.atomic_dir` with what an index destination needs: the destination
    is locked for the whole block (:func:`destination_lock`), staging folders of killed builds are
    deleted, and the destination is checked (:func:`check_destination`) before the block and again
    just before the final rename. Parent folders created for it are removed again on failure.

    Raises:
        GenirError: the destination is locked by another build, or it exists and either
            ``overwrite`` is false or it is neither empty nor a genir index (so a typo cannot
            wipe unrelated data).
    """
    destination = Path(destination)
    created = _make_parents(destination.parent)
    installing = False
    try:
        with destination_lock(destination):
            _put_back_retired(destination)  # a version a killed writer left aside is not stale
            check_destination(destination, overwrite)
            for stale in stale_temporaries(destination):
                shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
            try:
                with atomic_dir(destination, replace=overwrite) as staging:
                    yield staging
                    check_destination(destination, overwrite)
                    installing = True
            except FileExistsError:  # atomic_dir's own recheck, at the rename
                if not installing:
                    raise
                raise GenirError(f"{destination} appeared during the build; it was left as it is "
                                 "and the new index discarded") from None
    except BaseException:
        for folder in reversed(created):  # deepest first; stops at the first that is not empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def check_destination(destination: Path, overwrite: bool) -> None:
    """Raise :class:`GenirError` unless a new index may be installed at ``destination``."""
    if not (destination.exists() or destination.is_symlink()):
        return
    if destination.is_dir() and not destination.is_symlink() and not any(destination.iterdir()):
        return  # an empty folder holds nothing to lose
    if not overwrite:
        raise GenirError(f"{destination} already exists; pass --overwrite (overwrite=True from Python) to replace it")
    if destination.is_symlink() or not destination.is_dir():
        raise GenirError(f"{destination} exists and is not a genir index (not a folder); refusing to replace it")
    try:
        manifest = _parse_manifest(destination)
        listed = {index_file(destination, name).relative_to(destination).as_posix() for name in manifest.files}
    except CorruptIndexError as e:
        raise GenirError(f"{destination} exists and is not a genir index ({e}); refusing to replace it") from None
    unexpected = sorted(set(_entries(destination)) - listed - {MANIFEST_NAME})
    if unexpected:
        shown = ", ".join(unexpected[:5]) + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
        raise GenirError(f"{destination} holds files its genir manifest does not list ({shown}); "
                         "refusing to replace it")


def _entries(directory: Path) -> Iterator[str]:
    """Everything under ``directory`` but folders: files, links (not followed), other special files."""
    for root, folders, files in os.walk(directory):
        base = Path(root)
        names = files + [f for f in folders if (base / f).is_symlink()]
        for name in names:
            yield (base / name).relative_to(directory).as_posix()


@contextmanager
def destination_lock(destination: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``destination`` (the file ``.NAME.lock`` beside it) for the block.

    The lock file is deleted when the block ends. A lock taken on a file that another holder
    has just deleted would lock nothing, so the file locked must still be the one at the path.

    Raises:
        GenirError: another process holds the lock.
    """
    lock = destination.with_name(f".{destination.name[:200]}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise GenirError(f"{destination} is being written by another genir process (it holds {lock}); "
                             "wait for it to finish, or write elsewhere") from None
        try:
            locked = os.stat(lock)
            mine = os.fstat(fd)
            if (locked.st_dev, locked.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        created.append(path)
    return created
