"""Index directories: a ``manifest.json`` plus plain files, written atomically, verified on load.

The manifest records the genir version, the method, its configuration, build statistics, the
collection it was built from, and every file with its size and sha256. A directory is built
under a temporary name beside its destination and renamed into place only when complete, so a
crash or an input error leaves the previous index (or nothing), never half of one. Nothing here
unpickles: loading reads JSON and checks hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genir import __version__
from genir.atomic_files import atomic_dir
from genir.errors import GenirError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class CorruptIndexError(GenirError):
    """An index directory that is missing, incomplete or altered."""


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Hash every file under ``directory`` into ``manifest`` and write ``manifest.json``."""
    manifest.files = {
        p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in _data_files(directory)
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory: str | Path, verify: bool = True) -> Manifest:
    """Read and check an index directory's manifest.

    Args:
        verify: also check every listed file's size and sha256 (reads all the data once).
    Raises:
        CorruptIndexError: the directory is not a complete genir index.
    """
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise CorruptIndexError(f"{directory}: no such index directory")
    if not path.is_file():
        raise CorruptIndexError(f"{directory}: not a genir index (no {MANIFEST_NAME})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(
            method=raw["method"], config=raw["config"], stats=raw.get("stats", {}),
            collection=raw.get("collection", {}), files=raw["files"],
            genir_version=raw["genir_version"], format_version=raw["format_version"],
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CorruptIndexError(f"{path}: unreadable manifest ({e})") from None
    if manifest.format_version != FORMAT_VERSION:
        raise CorruptIndexError(
            f"{path}: index format {manifest.format_version} is not supported by genir {__version__} "
            f"(format {FORMAT_VERSION}); rebuild the index"
        )
    for name, entry in manifest.files.items():
        file = directory / name
        if not file.is_file():
            raise CorruptIndexError(f"{directory}: file {name} listed in the manifest is missing")
        if file.stat().st_size != entry["bytes"]:
            raise CorruptIndexError(f"{directory}: file {name} has {file.stat().st_size} bytes, manifest says {entry['bytes']}")
        if verify and _sha256(file) != entry["sha256"]:
            raise CorruptIndexError(f"{directory}: file {name} does not match its sha256 in the manifest")
    return manifest


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

    :func:`genir.atomic_files.atomic_dir` with the checks an index destination needs first.

    Raises:
        GenirError: ``destination`` exists and ``overwrite`` is false, or it exists and is
            neither empty nor a genir index (so a typo cannot wipe unrelated data).
    """
    destination = Path(destination)
    if destination.exists():
        if not overwrite:
            raise GenirError(f"{destination} already exists; pass --overwrite to replace it")
        if not destination.is_dir() or (any(destination.iterdir()) and not (destination / MANIFEST_NAME).is_file()):
            raise GenirError(f"{destination} exists and is not a genir index; refusing to replace it")
    with atomic_dir(destination, replace=overwrite) as staging:
        yield staging
