"""The one interface every retrieval method implements, and the registry that finds them.

A method is a :class:`Searcher` subclass plus a configuration model (:class:`genir.settings.Settings`). ``genir index``,
``run``, ``eval`` and ``bench`` only ever talk to this interface, so a new method joins them by
adding one line to :data:`METHODS`.

One rule for ``k``, whatever the method: ``k`` must be a positive integer, and a ``k`` larger than
the corpus asks for every document there is (a method may still return fewer, e.g. SEAL returns
only documents that hold a generated n-gram). :meth:`Searcher.batch_search` checks and clamps
``k`` once; methods implement :meth:`Searcher._batch_search`, which never sees a ``k`` above
:attr:`Searcher.num_docs`.

A searcher is opened from an :class:`Opening` (its directory, checked manifest, search settings and
device: everything :meth:`Searcher.load` knows), which its constructor receives whole and reads its
index from; nothing is set on a searcher after construction.

Indexes grow and shrink in place (:meth:`Searcher.add`, :meth:`Searcher.delete`, and
:func:`add_documents` / :func:`delete_documents` on a directory): each change writes a complete
new version of the index through :func:`~genir.indexer.artifact.atomic_directory`, so the old
version answers until the new one is renamed into place, and a kill leaves one or the other.
The searcher then opens the new version through its constructor again (:meth:`Searcher._reopen`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from genir.cache import forget_document_rows
from genir.devices import resolve_device, using_device
from genir.errors import CorruptIndexError, GenirError, InputError
from genir.indexer.artifact import (
    Manifest,
    atomic_directory,
    read_consistently,
    read_manifest,
    write_manifest,
)
from genir.indexer.collection import Collection, Document, check_documents, write_beir
from genir.seq2seq.settings import UnlearnSettings
from genir.settings import Settings, SettingsError, parse_config, split_assignment

if TYPE_CHECKING:
    from genir.dsi.row_fit import RowFitSettings


@dataclass(frozen=True)
class Hit:
    docid: str
    score: float


Run = dict[str, list[Hit]]
"""query id -> hits, best first."""


@dataclass(frozen=True)
class Change:
    """What :meth:`Searcher.add` or :meth:`Searcher.delete` did to an index."""

    operation: str  # "add" | "delete"
    documents: int  # documents added or deleted
    num_docs_before: int
    num_docs_after: int
    seconds: float  # the whole change: writing the new version and opening it
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)  # the method's own figures


class Forget(str, Enum):
    """What ``genir delete`` does to a trained model that has seen the deleted documents
    (``--forget``). Whatever the mode, nothing of a deleted document stays in the index's files
    (its text, n-grams, token ids, embedding, docid row, description, trie entry) nor in
    ``$GENIR_CACHE``; the modes differ in the model's weights.

    * ``mask``: the model is kept as it was trained, less the rows that were the deleted documents'
      own (:meth:`Searcher.delete`); its other weights have seen the documents (a membership attack
      on its losses, or its generations, may still tell). Fast: no step of training.
    * ``unlearn``: a bounded number of optimizer steps that push the model's likelihood of the
      deleted documents' training pairs down to a floor (a dense-start model's: its start, the
      pretrained dense retriever) while keeping its loss on the others' (the retain term): MUSE's
      NPO_RT (:mod:`genir.seq2seq.unlearn`); then ``mask``. Approximate.
    * ``reindex``: the index is built again from the remaining documents with the same settings:
      exact, the gold standard the others are measured against; as slow as a build.

    An index without a trained model (bm25, dense, the hybrids' BM25 part, seal with
    ``use_model=false``) deletes exactly in every mode.
    """

    MASK = "mask"
    UNLEARN = "unlearn"
    REINDEX = "reindex"


@dataclass(frozen=True)
class Deletion:
    """How :meth:`Searcher.delete` treats what a model learned of the deleted documents.

    Attributes:
        forget: the mode (:class:`Forget`).
        collection: where the documents' texts, queries and judgements are read from for ``unlearn``
            (the deleted documents' training pairs, the retained ones') and ``reindex`` (the
            remaining documents); None: the collection the index was built from, as its manifest
            records it (it must still hold every document of the index).
        unlearn: the ``unlearn`` steps' settings.
    """

    forget: Forget = Forget.MASK
    collection: Collection | None = None
    unlearn: UnlearnSettings = dataclasses.field(default_factory=UnlearnSettings)


ROW_FIT_INDEXES = "atomic docids and the dense start (the default recipe: a bert2bert model, docid_embeddings frozen or init)"
"""The indexes whose added rows can be fitted, as messages name them."""


@dataclass(frozen=True)
class Addition:
    """What :meth:`Searcher.add` does beside adding the documents.

    Attributes:
        collection: the collection the documents come from, whose training queries (its qrels of the
            index's ``queries_split``) judging them come with them: an index that keeps a sample of
            training pairs (dsi, atomic docids, dense start: :mod:`genir.dsi.fit_pairs`) keeps theirs,
            and a fit pulls a new document's row toward them. None: the documents alone.
        fit: fit the new documents' docid rows (:mod:`genir.dsi.row_fit`, ``genir add --fit``) with
            these settings; None: no fit (a new row is where the method places it).
    """

    collection: Collection | None = None
    fit: RowFitSettings | None = None


@dataclass(frozen=True)
class Opening:
    """What a searcher is opened with: everything :meth:`Searcher.load` knows about an index.

    Attributes:
        directory: the index directory (a fusion's component: its folder there), which the searcher
            reads its files from and where :meth:`Searcher.add` and :meth:`Searcher.delete` write.
        manifest: its manifest, checked (a component's is made from the fusion's record of it).
        settings: ``KEY=VALUE`` search settings (the method's :attr:`Searcher.search_settings`) that
            replace the manifest's config values for this session.
        device: where the searcher's models run.
    """

    directory: Path
    manifest: Manifest
    settings: tuple[str, ...] = ()
    device: torch.device = torch.device("cpu")


class Searcher(ABC):
    """A searchable index.

    Subclasses set :attr:`method` and :attr:`Config`, build from a collection into a directory
    (:meth:`build`), open a built directory (their constructor), copy their files
    (:meth:`write_files`) and search (:meth:`_batch_search`).

    A subclass's constructor takes the :class:`Opening` alone, calls ``super().__init__(opening)``
    first, then reads its index from ``opening.directory`` and puts its models on
    ``opening.device``. It sets every attribute the searcher has (nothing else sets any), so that
    running it again opens another version of the index in place (:meth:`_reopen`).
    """

    method: ClassVar[str]
    Config: ClassVar[type[Settings]]
    description: ClassVar[str] = ""
    #: Config fields that only change how a built index is searched: :meth:`load`'s ``settings``
    #: (``genir search/run --set``) may give them for one session; the manifest keeps the built ones.
    search_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, opening: Opening):
        """Keep ``opening`` and set :attr:`config`: the manifest's with ``opening.settings`` applied.

        Raises:
            CorruptIndexError: the manifest's config is not one of this method's (older indexes' text values,
                ``"auto"`` or ``"0.3"``, are).
            GenirError: a setting that is not one of :attr:`search_settings`, or a bad value (SettingsError).
        """
        self.opening = opening
        try:
            built = parse_config(self.Config, opening.manifest.config)
        except SettingsError as e:
            raise CorruptIndexError(f"{opening.directory}: its manifest's config is not a valid {self.method} config ({e})") from None
        self.config = built.replace(**search_overrides(type(self), opening.settings))

    @property
    def directory(self) -> Path:
        """The index directory this searcher was opened from (where :meth:`add` and :meth:`delete` write)."""
        return self.opening.directory

    @property
    def manifest(self) -> Manifest:
        """The manifest of the version of the index this searcher holds."""
        return self.opening.manifest

    # -- searching ---------------------------------------------------------------------
    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The ``k`` best documents for ``query``, best first (every document when ``k`` exceeds the corpus)."""
        return self.batch_search([query], k)[0]

    def batch_search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``search`` for many queries at once (faster than one by one).

        Raises:
            InputError: ``k`` is not a positive integer, or a query is empty or not a string
                (:func:`check_queries`).
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        queries = check_queries(queries)
        return self._batch_search(queries, min(k, self.num_docs)) if self.num_docs else [[] for _ in queries]

    @property
    def num_docs(self) -> int:
        """Documents in the index."""
        return int(self.manifest.stats["num_docs"])

    @abstractmethod
    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """The ``k`` best documents per query, ``1 <= k <= num_docs``."""

    def doc_text(self, docid: str) -> str | None:
        """The stored text of a document, when the index keeps it (for display: ``genir search`` shows it).

        bm25 keeps it (``store_raw``, the default), and so do the hybrids, through their bm25 part;
        dense, dsi, se-dsi and seal indexes keep none (seal's FM-index holds tokenizer tokens, not text).
        """
        return None

    def parts(self) -> tuple[Searcher, ...]:
        """The searchers whose rankings this one returns: itself, or a fusion's components."""
        return (self,)

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

    @abstractmethod
    def write_files(self, directory: Path) -> None:
        """Write this index's data files (not the manifest) into ``directory``."""

    def to(self, device: str | torch.device | None) -> Searcher:
        """Move this index's models to ``device`` (in place; a method without a model stays as it is)."""
        return self

    def close(self) -> None:
        """Release what the index holds open (files, readers); the searcher is not used afterwards."""

    # -- growing and shrinking -----------------------------------------------------------
    def add(self, docs: Iterable[Document], allow_empty_docs: bool = False, addition: Addition = Addition()) -> Change:
        """Add documents to this index, on disk and in this searcher (and fit their rows, as ``addition`` says).

        The index directory this searcher was opened from is replaced atomically by a new version
        holding the old documents and ``docs``; the old version answers until the new one is in
        place. Old documents keep their docids. Afterwards this searcher is the new version (or, if
        writing failed, still the old one, as on disk), opened with the same settings and device.

        ``docs`` are checked as a corpus file's documents are
        (:func:`~genir.indexer.collection.check_documents`: ids not empty and without whitespace,
        no empty document unless ``allow_empty_docs``), before anything is written.

        Raises:
            GenirError: the method cannot add documents, or cannot fit as ``addition.fit`` asks,
                ``docs`` is empty, a document is bad, an id is already in the index or repeats
                (checked before anything is written), or the index on disk changed since this
                searcher opened it.
        """
        docs = check_documents(docs, allow_empty_docs)
        if addition.fit is not None:
            self.check_row_fit(needs_pairs=True)
        ids = [d.id for d in docs]
        present = self._present(ids)
        if present:
            first = next(i for i in ids if i in present)
            raise GenirError(f"document {first!r} is already in {self.directory}"
                             + (f" (and {len(present) - 1} more of the {len(ids)} documents to add)" if len(present) > 1 else "")
                             + "; delete it first to replace it")
        return self._change("add", ids, lambda staging: self._write_added(docs, staging, addition))

    def delete(self, ids: Iterable[str], deletion: Deletion = Deletion(), keep_cache: bool = False) -> Change:
        """Delete documents from this index, on disk and in this searcher (atomically, as :meth:`add`).

        A deleted document is never returned again, and nothing of it stays in the new version's
        files: each method writes its files without the document's data (its text, n-grams,
        token ids, embedding, docid row, description, trie entry), not beside a tombstone.
        ``deletion.forget`` says what happens to a trained model (:class:`Forget`). Methods whose
        docids are positions (DSI's atomic, naive, rq and semantic docids) keep a deleted document's
        position reserved (a placeholder with no id and no sequence): it is never given again.
        Unless ``keep_cache``, every cache entry computed from a document's text is removed
        afterwards (:func:`genir.cache.forget_document_rows`).

        Raises:
            GenirError: the method cannot delete documents, or cannot forget in ``deletion.forget``'s
                mode, ``ids`` is one string rather than a list of them, ``ids`` is empty, an id is
                not in the index or repeats (checked before anything is written), the deletion
                would leave the index empty, the documents' collection is needed and not found, or
                the index on disk changed since this searcher opened it.
        """
        ids = _id_list(ids)
        if not ids:
            raise GenirError("no document ids to delete")
        _refuse_repeats(ids, "among the ids to delete")
        if deletion.forget not in self.forget_modes():
            raise GenirError(f"{self.method} indexes cannot delete with --forget {deletion.forget.value} "
                             f"(they can: {', '.join(mode.value for mode in self.forget_modes())})")
        present = self._present(ids)
        absent = [i for i in ids if i not in present]
        if absent:
            raise GenirError(f"document {absent[0]!r} is not in {self.directory}"
                             + (f" (nor are {len(absent) - 1} more of the {len(ids)} ids to delete)" if len(absent) > 1 else ""))
        if len(ids) >= self.num_docs:
            raise GenirError(f"deleting {len(ids)} documents would leave {self.directory} empty; build a new index instead")
        change = self._change("delete", ids, lambda staging: {**self._write_deleted(ids, staging, deletion),
                                                              "forget": deletion.forget.value})
        if not keep_cache:
            removed = forget_document_rows()
            change = dataclasses.replace(change, stats={**change.stats, "cache_files_removed": sum(removed.values())})
        return change

    def forget_modes(self) -> tuple[Forget, ...]:
        """The :class:`Forget` modes this index can delete with: every one for an index without a
        trained model (all three are exact there); a trained method lists those it implements."""
        return tuple(Forget)

    def check_row_fit(self, needs_pairs: bool) -> None:
        """Raise :class:`GenirError` unless an add can fit the new documents' docid rows
        (:mod:`genir.dsi.row_fit`): only a dsi index with atomic docids and the dense start has such rows;
        ``needs_pairs``: and it keeps the earlier documents' pairs to fit against (:mod:`genir.dsi.fit_pairs`)."""
        raise GenirError(f"fitting the docid rows of added documents (--fit) needs a dsi index with {ROW_FIT_INDEXES}; "
                         f"{self.directory} is a {self.method} index")

    def _present(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that are documents of this index (live ones, not deleted)."""
        raise GenirError(f"{self.method} indexes do not support adding or deleting documents yet")

    def _write_added(self, docs: list[Document], staging: Path, addition: Addition) -> dict[str, Any]:
        """Write this index's data files plus ``docs`` (new ids, checked) into the empty ``staging``;
        ``addition.fit`` only where :meth:`check_row_fit` passed.

        May change this searcher's state: it is reopened from disk afterwards, success or not (:meth:`_reopen`).
        Returns:
            Manifest statistics that change (``num_docs`` at least) and the method's own figures.
        """
        raise GenirError(f"{self.method} indexes do not support adding documents yet")

    def _write_deleted(self, ids: list[str], staging: Path, deletion: Deletion) -> dict[str, Any]:
        """Write this index's data files less the documents ``ids`` (present, checked) into ``staging``,
        with nothing of them left in any file, and its model forgotten as ``deletion`` says."""
        raise GenirError(f"{self.method} indexes do not support deleting documents yet")

    def _reindex(self, live: Sequence[str], ids: list[str], staging: Path, deletion: Deletion) -> dict[str, Any]:
        """``--forget reindex``: build this index again into ``staging`` from its documents ``live`` less
        ``ids``, read from :func:`documents_source`, with the config it was built with."""
        gone = set(ids)
        collection = documents_source(self, deletion, live)
        with tempfile.TemporaryDirectory(prefix="genir-reindex-") as folder:
            remaining = remaining_collection(collection, [d for d in live if d not in gone], Path(folder) / "corpus")
            started = time.perf_counter()
            stats = type(self).build(remaining, parse_config(self.Config, self.manifest.config), staging, None)
        return {**stats, "reindex_seconds": round(time.perf_counter() - started, 3)}

    def _change(self, operation: str, ids: list[str], write: Callable[[Path], dict[str, Any]]) -> Change:
        """Write a new version of the index through ``write`` atomically, then reopen it."""
        directory = self.directory
        before = self.num_docs
        started = time.perf_counter()
        try:
            with atomic_directory(directory, overwrite=True) as staging:
                # The lock is held from here to the rename: a version written by another process
                # since this searcher opened the index must not be silently replaced.
                if read_manifest(directory, verify=False).files != self.manifest.files:
                    raise GenirError(f"{directory} changed since this searcher opened it; open it again and retry")
                stats = write(staging)
                manifest = dataclasses.replace(
                    self.manifest,
                    stats={**self.manifest.stats, **stats},
                    collection=_changed_collection(self.manifest.collection, operation, ids),
                    files={},
                )
                write_manifest(staging, manifest)
        finally:
            self._reopen()
        seconds = time.perf_counter() - started
        return Change(operation, len(ids), before, self.num_docs, round(seconds, 3), stats)

    def _reopen(self) -> None:
        """Make this searcher the version of the index now at its directory (the one just written, or
        the old one if writing failed), with the same settings and device: its constructor runs
        again, on an :class:`Opening` that differs only by the manifest. As every constructor sets
        all of its searcher's state, nothing of the old version is left.

        Raises:
            GenirError: the directory now holds an index of another method (replaced by another
                process, as the manifest check of :meth:`_change` reports); or as the constructor,
                after which this searcher is not usable (open the directory again).
        """
        manifest = read_manifest(self.directory, verify=False)  # just written (or untouched) by this process
        if manifest.method != self.manifest.method:
            raise GenirError(f"{self.directory} now holds a {manifest.method} index, not {self.manifest.method}; open it again")
        self.close()
        self.__init__(dataclasses.replace(self.opening, manifest=manifest))

    def save(self, directory: str | Path, overwrite: bool = False) -> None:
        """Write this index to ``directory`` atomically, with a fresh manifest."""
        with atomic_directory(directory, overwrite) as staging:
            self.write_files(staging)
            write_manifest(staging, dataclasses.replace(self.manifest))

    @staticmethod
    def load(directory: str | Path, verify: bool = True, device: str | torch.device | None = "auto",
             settings: Sequence[str] = ()) -> Searcher:
        """Open any genir index directory, whatever its method, with its models on ``device``
        (``auto``: the GPU when there is one; see :mod:`genir.devices`), searched with ``settings``
        (``KEY=VALUE`` of its method's :attr:`search_settings`) instead of the built ones.

        The manifest and every file are read from one version of the index, even while another
        process replaces it (:func:`~genir.indexer.artifact.read_consistently`): the searcher is
        the version before the replacement or the one after.

        Raises:
            GenirError: a setting that is not one of its method's search settings, or a bad value.
        """
        directory = Path(directory)
        target = resolve_device(device)

        def open_version(path: Path) -> Searcher:
            manifest = read_manifest(path, verify=verify)
            return searcher_class(manifest.method)(Opening(path, manifest, tuple(settings), target))

        return read_consistently(directory, open_version, discard=lambda stale: stale.close())


def check_queries(queries: Sequence[str]) -> list[str]:
    """``queries`` as a list, each a string with a non-blank character: every search goes through this.

    Raises:
        InputError: ``queries`` is one string (not a list of them), or a query is not a string or is empty.
    """
    if isinstance(queries, (str, bytes)):
        raise InputError(f"queries must be a list of strings, not one string ({queries[:80]!r}); search() takes one query")
    queries = list(queries)
    for number, query in enumerate(queries, start=1):
        which = "the query" if len(queries) == 1 else f"query {number} of {len(queries)}"
        if not isinstance(query, str):
            raise InputError(f"{which} is not a string (got {type(query).__name__})")
        if not query.strip():
            raise InputError(f"{which} is empty: a query needs at least one word")
    return queries


def _id_list(ids: Iterable[str]) -> list[str]:
    """Document ids as a list of strings; one string is refused (iterating it would give its characters).

    Raises:
        InputError: ``ids`` is a ``str`` or ``bytes``.
    """
    if isinstance(ids, (str, bytes)):
        raise InputError(f"ids must be a list of document ids, not one string ({ids[:80]!r}); "
                         f"pass [{ids[:80]!r}] to name that one document")
    return [str(i) for i in ids]


def _refuse_repeats(ids: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    for docid in ids:
        if docid in seen:
            raise GenirError(f"document id {docid!r} appears twice {where}")
        seen.add(docid)


def _changed_collection(collection: dict[str, Any], operation: str, ids: Sequence[str]) -> dict[str, Any]:
    """The manifest's collection record after a change: a new fingerprint (so that no reuse check
    mistakes the changed index for one of the original corpus) and the change appended to its history."""
    changed = dict(collection)
    changed.setdefault("built_from_sha256", collection.get("sha256"))
    digest = hashlib.sha256(json.dumps([collection.get("sha256"), operation, list(ids)]).encode())
    changed["sha256"] = digest.hexdigest()
    changed["changes"] = [*collection.get("changes", []), {"operation": operation, "documents": len(ids)}]
    return changed


def open_collection(source: Collection | str | Path | Iterable[Document], allow_empty_docs: bool = False) -> Collection:
    """A collection object as it is, any path :meth:`Collection.open` reads, or ``Document`` objects
    (:meth:`Collection.from_documents`), as a :class:`Collection`.

    Raises:
        InputError: a path that is no collection, or a bad document among those given.
    """
    if isinstance(source, Collection):
        return source
    if isinstance(source, (str, Path)):
        return Collection.open(source, allow_empty_docs=allow_empty_docs)
    return Collection.from_documents(source, allow_empty_docs=allow_empty_docs)


def add_documents(index_dir: str | Path, docs: Collection | str | Path | Iterable[Document],
                  device: str | torch.device | None = "auto", allow_empty_docs: bool = False,
                  fit: RowFitSettings | None = None) -> Change:
    """Add documents (a collection, a collection path, or ``Document`` objects) to the index at
    ``index_dir``, atomically; see :meth:`Searcher.add`. The documents are read and checked before
    the index is opened; ``allow_empty_docs`` (or a collection opened with it) keeps empty ones.
    The collection's training queries come with its documents (:class:`Addition`); ``fit``: fit the
    new documents' rows with these settings (``genir add --fit``)."""
    collection = open_collection(docs, allow_empty_docs)
    documents = list(collection.docs())
    searcher = Searcher.load(index_dir, device=device)
    try:
        return searcher.add(documents, allow_empty_docs=collection.allow_empty_docs, addition=Addition(collection, fit))
    finally:
        searcher.close()


def delete_documents(index_dir: str | Path, ids: Iterable[str], device: str | torch.device | None = "auto",
                     deletion: Deletion = Deletion(), keep_cache: bool = False) -> Change:
    """Delete the documents ``ids`` (a list of ids, not one string) from the index at ``index_dir``,
    atomically; see :meth:`Searcher.delete`."""
    ids = _id_list(ids)  # before the index is opened
    searcher = Searcher.load(index_dir, device=device)
    try:
        return searcher.delete(ids, deletion, keep_cache)
    finally:
        searcher.close()


def documents_source(searcher: Searcher, deletion: Deletion, live: Iterable[str]) -> Collection:
    """The collection holding the texts of an index's documents, for ``unlearn`` and ``reindex``:
    ``deletion.collection``, else the one the index's manifest says it was built from.

    Raises:
        GenirError: no collection is given and the recorded one is gone, or the collection lacks
            one of the ``live`` documents (documents added from another collection: give one that
            holds them all).
    """
    collection = deletion.collection
    if collection is None:
        path = searcher.manifest.collection.get("path")
        if not path or not Path(path).exists():
            raise GenirError(f"--forget {deletion.forget.value} reads the documents' texts from the collection "
                             f"{searcher.directory} was built from ({path or 'not recorded'}), which is gone: "
                             "give one with --collection")
        # A BEIR folder's corpus is recorded as its corpus.jsonl: open the folder, queries and judgements with it.
        collection = Collection.open(Path(path).parent if Path(path).name == "corpus.jsonl" else path)
    have = set(collection.doc_ids)
    missing = [docid for docid in live if docid not in have]
    if missing:
        raise GenirError(f"--forget {deletion.forget.value}: {len(missing)} documents of {searcher.directory} are not in "
                         f"the collection {collection.name} (e.g. {missing[0]!r}); give one that holds them all with --collection")
    return collection


def remaining_collection(collection: Collection, keep: Iterable[str], folder: Path) -> Collection:
    """``collection`` less every document not in ``keep``, written as a BEIR folder at ``folder``:
    its judgements of the others, and only the queries something remaining answers (a deleted
    document's training queries go with it)."""
    keep = set(keep)
    docs = [d for d in collection.docs() if d.id in keep]
    qrels = {}
    for split in collection.splits():
        judged = {qid: {d: g for d, g in grades.items() if d in keep} for qid, grades in collection.qrels(split).items()}
        qrels[split] = {qid: grades for qid, grades in judged.items() if grades}
    write_beir(folder, docs, collection.queries, qrels)
    return Collection.open(folder)


def read_id_file(path: str | Path) -> list[str]:
    """Document ids, one per line (blank lines skipped, surrounding whitespace removed).

    Raises:
        GenirError: the file cannot be read, is not UTF-8, or an id repeats.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise GenirError(f"{path}: cannot read the ids ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise InputError(path, None, f"not valid UTF-8 ({e.reason})") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    _refuse_repeats(ids, f"in {path}")
    return ids


# Method name -> "module:Class"; imported lazily because each pulls in a heavy stack (Java, torch).
METHODS: dict[str, str] = {
    "bm25": "genir.baselines.bm25:BM25Searcher",
    "dense": "genir.baselines.dense:DenseSearcher",
    "dense-ft": "genir.baselines.dense_ft:DenseFTSearcher",
    "dsi": "genir.dsi.searcher:DSISearcher",
    "se-dsi": "genir.dsi.searcher:SEDSISearcher",
    "seal": "genir.seal.searcher:SEALSearcher",
    "seal-hybrid": "genir.baselines.seal_hybrid:SEALHybridSearcher",
    "hybrid": "genir.baselines.hybrid:HybridSearcher",
}


def searcher_class(method: str) -> type[Searcher]:
    if method not in METHODS:
        raise GenirError(f"unknown method {method!r} (available: {', '.join(METHODS)})")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def search_overrides(cls: type[Searcher], settings: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` search settings of ``cls`` as a dict.

    Raises:
        GenirError: a key that is not one of ``cls.search_settings`` (the others are fixed at build).
    """
    overrides = dict(split_assignment(text) for text in settings)
    for key in overrides:
        if key not in cls.search_settings:
            allowed = ", ".join(cls.search_settings) or "none"
            raise GenirError(f"{key!r} is not a search setting of {cls.method} indexes (those are: {allowed}); "
                             "the others are fixed when the index is built")
    return overrides


def build_index(
    method: str,
    collection: Collection | str | Path | Iterable[Document],
    destination: str | Path,
    config: Settings | None = None,
    overwrite: bool = False,
    device: str | None = "auto",
    devices: int = 1,
) -> Manifest:
    """Build an index of ``collection`` at ``destination`` (atomically) and return its manifest.

    ``collection`` is a :class:`Collection`, a path :meth:`Collection.open` reads, or ``Document``
    objects in memory (checked as a corpus file's are; such a collection has no queries, so a
    method that trains on queries is told to build without them, e.g. dsi ``queries_split=``).
    Models (embedding, encoder states, training) run on ``device`` (:mod:`genir.devices`);
    ``devices > 1`` embeds and trains with one process per device (Lightning ``ddp_spawn``).
    """
    collection = open_collection(collection)
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
            config=config.model_dump(mode="json"),
            stats=stats,
            collection={"name": collection.name, "path": collection.resolved_path, "sha256": collection.fingerprint},
        )
        write_manifest(staging, manifest)
    return manifest
