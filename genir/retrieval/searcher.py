"""The one interface every retrieval method implements, and the registry that finds them.

A method is a :class:`Searcher` subclass plus a configuration dataclass. ``genir index``,
``run``, ``eval`` and ``bench`` only ever talk to this interface, so a new method joins them by
adding one line to :data:`METHODS`.

One rule for ``k``, whatever the method: ``k`` must be a positive integer, and a ``k`` larger than
the corpus asks for every document there is (a method may still return fewer, e.g. SEAL returns
only documents that hold a generated n-gram). :meth:`Searcher.batch_search` checks and clamps
``k`` once; methods implement :meth:`Searcher._batch_search`, which never sees a ``k`` above
:attr:`Searcher.num_docs`.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from genir.devices import resolve_device, using_device
from genir.errors import GenirError, InputError
from genir.indexer.artifact import Manifest, atomic_directory, read_manifest, write_manifest
from genir.indexer.collection import Collection


@dataclass(frozen=True)
class Hit:
    docid: str
    score: float


class Searcher(ABC):
    """A searchable index.

    Subclasses set :attr:`method` and :attr:`Config`, build from a collection into a directory
    (:meth:`build`), open a built directory (their constructor, through :meth:`from_files`), copy
    their files (:meth:`write_files`) and search (:meth:`_batch_search`).
    """

    method: ClassVar[str]
    Config: ClassVar[type]
    description: ClassVar[str] = ""

    def __init__(self, config: Any, manifest: Manifest):
        self.config = config
        self.manifest = manifest

    # -- searching ---------------------------------------------------------------------
    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The ``k`` best documents for ``query``, best first (every document when ``k`` exceeds the corpus)."""
        return self.batch_search([query], k)[0]

    def batch_search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``search`` for many queries at once (faster than one by one).

        Raises:
            InputError: ``k`` is not a positive integer.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        return self._batch_search(queries, min(k, self.num_docs)) if self.num_docs else [[] for _ in queries]

    @property
    def num_docs(self) -> int:
        """Documents in the index."""
        return int(self.manifest.stats["num_docs"])

    @abstractmethod
    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """The ``k`` best documents per query, ``1 <= k <= num_docs``."""

    def doc_text(self, docid: str) -> str | None:
        """The stored text of a document, when the index keeps it (for display only)."""
        return None

    # -- building and persistence --------------------------------------------------------
    @classmethod
    @abstractmethod
    def build(cls, collection: Collection, config: Any, directory: Path, previous: Path | None) -> dict[str, Any]:
        """Write this method's files for ``collection`` into the empty ``directory``.

        Args:
            previous: the index directory being replaced at the same destination, if any, so
                expensive intermediate results (embeddings) can be reused after checking them.
        Returns:
            Statistics recorded in the manifest (e.g. number of documents).
        """

    @classmethod
    def from_files(cls, directory: Path, manifest: Manifest) -> Searcher:
        """Open an index directory whose manifest has been checked: ``cls(config, manifest, directory)``."""
        return cls(parse_config(cls.Config, manifest.config), manifest, directory)

    @abstractmethod
    def write_files(self, directory: Path) -> None:
        """Write this index's data files (not the manifest) into ``directory``."""

    def to(self, device: str | torch.device | None) -> Searcher:
        """Move this index's models to ``device`` (in place; a method without a model stays as it is)."""
        return self

    def save(self, directory: str | Path, overwrite: bool = False) -> None:
        """Write this index to ``directory`` atomically, with a fresh manifest."""
        with atomic_directory(directory, overwrite) as staging:
            self.write_files(staging)
            write_manifest(staging, dataclasses.replace(self.manifest))

    @staticmethod
    def load(directory: str | Path, verify: bool = True, device: str | torch.device | None = "auto") -> Searcher:
        """Open any genir index directory, whatever its method, with its models on ``device``
        (``auto``: the GPU when there is one; see :mod:`genir.devices`)."""
        directory = Path(directory)
        target = resolve_device(device)
        manifest = read_manifest(directory, verify=verify)
        return searcher_class(manifest.method).from_files(directory, manifest).to(target)


# Method name -> "module:Class"; imported lazily because each pulls in a heavy stack (Java, torch).
METHODS: dict[str, str] = {
    "bm25": "genir.retrieval.bm25:BM25Searcher",
    "dense": "genir.retrieval.dense:DenseSearcher",
    "dsi": "genir.dsi.searcher:DSISearcher",
    "se-dsi": "genir.dsi.searcher:SEDSISearcher",
    "seal": "genir.seal.searcher:SEALSearcher",
    "seal-hybrid": "genir.seal.hybrid:SEALHybridSearcher",
}


def searcher_class(method: str) -> type[Searcher]:
    if method not in METHODS:
        raise GenirError(f"unknown method {method!r} (available: {', '.join(METHODS)})")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def parse_config(config_cls: type, overrides: Sequence[str] | dict[str, Any] = ()) -> Any:
    """Build a config dataclass from ``KEY=VALUE`` strings (or a dict), converting to field types.

    Raises:
        GenirError: an unknown key or a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    items = overrides.items() if isinstance(overrides, dict) else (_split_assignment(o) for o in overrides)
    values: dict[str, Any] = {}
    for key, raw in items:
        if key not in fields:
            raise GenirError(f"unknown option {key!r} for {config_cls.__name__} (known: {', '.join(fields)})")
        values[key] = _convert(raw, fields[key].type, key)
    return config_cls(**values)


def _split_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise GenirError(f"option {text!r} is not of the form KEY=VALUE")
    return key.strip(), value.strip()


def _convert(raw: Any, annotation: Any, key: str) -> Any:
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(str(annotation), str)
    if not isinstance(raw, str):
        return raw
    if kind is bool:
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise GenirError(f"option {key}={raw!r}: expected true or false")
    try:
        return kind(raw)
    except ValueError:
        raise GenirError(f"option {key}={raw!r}: expected {kind.__name__}") from None


def build_index(
    method: str,
    collection: Collection,
    destination: str | Path,
    config: Any = None,
    overwrite: bool = False,
    device: str | None = "auto",
    devices: int = 1,
) -> Manifest:
    """Build an index of ``collection`` at ``destination`` (atomically) and return its manifest.

    Models (embedding, encoder states, training) run on ``device`` (:mod:`genir.devices`);
    ``devices > 1`` trains with one process per device (Lightning ``ddp_spawn``).
    """
    cls = searcher_class(method)
    config = config if config is not None else cls.Config()
    destination = Path(destination)
    previous = destination if overwrite and destination.is_dir() else None
    with using_device(device, devices), atomic_directory(destination, overwrite) as staging:
        started = time.perf_counter()
        stats = cls.build(collection, config, staging, previous)
        stats["build_seconds"] = round(time.perf_counter() - started, 3)
        manifest = Manifest(
            method=method,
            config=dataclasses.asdict(config),
            stats=stats,
            collection={"name": collection.name, "path": str(collection.corpus_path.resolve()), "sha256": collection.fingerprint},
        )
        write_manifest(staging, manifest)
    return manifest
