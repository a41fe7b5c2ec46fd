"""Reading test collections: BEIR directories, plain TSV corpora and the built-in corpus.

Everything is validated here, where data enters genir, so the rest of the code can assume
well-formed input. Each problem raises :class:`~genir.errors.InputError` naming file and line.

What is an error and what is a warning:

* errors: non-UTF-8 bytes, a malformed JSON line, a line that is not a JSON object, a missing or
  empty ``_id``, an id (of a document or query) with whitespace in it (TREC run and qrels files
  are whitespace-separated, so such an id could not be written or read back), a ``title``/``text`` that is not a string, a duplicate document or query id, an
  empty document (no title and no text), an empty query, a qrels line with the wrong number of
  columns or a non-integer score, a qrels line naming an unknown query or document, a TSV line
  without a tab.
* accepted: a UTF-8 byte order mark at the start of any file (it is dropped, in every reader:
  :func:`decoded_lines`).
* warnings (logged, the data is kept): an empty document when the collection is opened with
  ``allow_empty_docs=True`` (Cranfield has two: ids 471 and 995), and a qrels file that judges
  no document as relevant for some query (it is left out of evaluation).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from genir.errors import GenirError, InputError
from genir.indexer.builtin_corpus import BUILTIN_PREFIX, corpus_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """What retrieval models read: title and text joined by one space."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class Query:
    id: str
    text: str


Qrels = dict[str, dict[str, int]]
"""query id -> document id -> relevance grade."""


def decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without the newline), failing on non-UTF-8 bytes.

    Every genir reader of text files reads through this, so all accept a byte order mark alike.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, number, f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
            yield number, line.rstrip("\r\n")


def check_id(value: str, what: str, path: Path, number: int) -> str:
    """``value`` if it is a usable id: not empty, no whitespace (TREC files are whitespace-separated)."""
    if not value.strip():
        raise InputError(path, number, f"empty {what}")
    if any(c.isspace() for c in value):
        raise InputError(path, number, f"{what} {value!r} contains whitespace, which TREC run and qrels files "
                                       "cannot hold; rename it")
    return value


def _json_records(path: Path) -> Iterator[tuple[int, dict]]:
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, number, f"malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise InputError(path, number, "expected a JSON object")
        yield number, record


def _required_id(record: dict, path: Path, number: int) -> str:
    value = record.get("_id")
    if value is None:
        raise InputError(path, number, 'missing "_id"')
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, number, f'"_id" must be a non-empty string, got {value!r}')
    return check_id(value, '"_id"', path, number)


def _optional_str(record: dict, key: str, path: Path, number: int) -> str:
    value = record.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(path, number, f'"{key}" must be a string, got {type(value).__name__}')
    return value


class Collection:
    """A corpus with, optionally, queries and relevance judgements per split.

    Documents are streamed (``docs()``) and validated while they stream; ids are kept in memory
    to detect duplicates and to check qrels.

    Args:
        corpus_path: ``corpus.jsonl`` (BEIR) or a ``.tsv`` file (``id<TAB>text`` or
            ``id<TAB>title<TAB>text``).
        queries_path: ``queries.jsonl`` or None.
        qrels_dir: directory of ``<split>.tsv`` files or None.
        allow_empty_docs: keep documents with neither title nor text (with a warning) instead
            of failing.
    """

    def __init__(
        self,
        corpus_path: Path,
        queries_path: Path | None = None,
        qrels_dir: Path | None = None,
        name: str | None = None,
        allow_empty_docs: bool = False,
    ):
        self.corpus_path = Path(corpus_path)
        self.queries_path = queries_path
        self.qrels_dir = qrels_dir
        self.name = name or (self.corpus_path.parent.name if self.corpus_path.name == "corpus.jsonl" else self.corpus_path.stem)
        self.allow_empty_docs = allow_empty_docs
        self._warned_empty: set[str] = set()  # the corpus may be streamed several times; warn once
        self._qrels: dict[str, Qrels] = {}

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, location: str | Path, allow_empty_docs: bool = False) -> Collection:
        """Open a BEIR directory, a TSV corpus file, or ``builtin:<name>``."""
        text = str(location)
        if text.startswith(BUILTIN_PREFIX):
            corpus, name = corpus_file(text[len(BUILTIN_PREFIX):])
            return cls(corpus, name=name, allow_empty_docs=allow_empty_docs)
        path = Path(location)
        if path.is_dir():
            corpus = path / "corpus.jsonl"
            if not corpus.is_file():
                raise InputError(path, None, "not a BEIR collection: corpus.jsonl is missing")
            queries = path / "queries.jsonl"
            qrels = path / "qrels"
            return cls(
                corpus,
                queries if queries.is_file() else None,
                qrels if qrels.is_dir() else None,
                name=path.name,
                allow_empty_docs=allow_empty_docs,
            )
        if path.is_file():
            if path.suffix not in {".tsv", ".jsonl"}:
                raise InputError(path, None, "expected a BEIR directory, a .tsv corpus or a corpus .jsonl")
            return cls(path, allow_empty_docs=allow_empty_docs)
        raise InputError(path, None, "no such collection (expected a BEIR directory, a .tsv file or builtin:stdlib)")

    # -- documents -----------------------------------------------------------------------
    def docs(self) -> Iterator[Document]:
        """Stream every document, validating as it goes."""
        seen: set[str] = set()
        records = self._tsv_docs() if self.corpus_path.suffix == ".tsv" else self._jsonl_docs()
        for number, doc in records:
            if doc.id in seen:
                raise InputError(self.corpus_path, number, f"duplicate document id {doc.id!r}")
            seen.add(doc.id)
            if not doc.title.strip() and not doc.text.strip():
                if not self.allow_empty_docs:
                    raise InputError(
                        self.corpus_path, number,
                        f"document {doc.id!r} is empty (no title, no text); pass --allow-empty-docs to keep it",
                    )
                if doc.id not in self._warned_empty:
                    self._warned_empty.add(doc.id)
                    log.warning("%s:%d: document %r is empty; kept, but no method can retrieve it by content",
                                self.corpus_path, number, doc.id)
            yield doc
        if not seen:
            raise InputError(self.corpus_path, None, "the corpus has no documents")

    def _jsonl_docs(self) -> Iterator[tuple[int, Document]]:
        path = self.corpus_path
        for number, record in _json_records(path):
            yield number, Document(
                _required_id(record, path, number),
                _optional_str(record, "title", path, number),
                _optional_str(record, "text", path, number),
            )

    def _tsv_docs(self) -> Iterator[tuple[int, Document]]:
        path = self.corpus_path
        for number, line in decoded_lines(path):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) == 2:
                doc_id, title, text = fields[0], "", fields[1]
            elif len(fields) == 3:
                doc_id, title, text = fields
            else:
                raise InputError(path, number, f"expected id<TAB>text or id<TAB>title<TAB>text, found {len(fields)} column(s)")
            yield number, Document(check_id(doc_id, "document id", path, number), title, text)

    @cached_property
    def doc_ids(self) -> list[str]:
        """All document ids in corpus order (reads the corpus once)."""
        return [d.id for d in self.docs()]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the corpus file: identifies the exact corpus an index was built from."""
        digest = hashlib.sha256()
        with open(self.corpus_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    # -- queries and judgements ----------------------------------------------------------
    @cached_property
    def queries(self) -> dict[str, str]:
        """query id -> text, for every query of the collection."""
        if self.queries_path is None:
            raise GenirError(f"collection {self.name!r} has no queries.jsonl")
        path = self.queries_path
        queries: dict[str, str] = {}
        for number, record in _json_records(path):
            qid = _required_id(record, path, number)
            text = _optional_str(record, "text", path, number)
            if qid in queries:
                raise InputError(path, number, f"duplicate query id {qid!r}")
            if not text.strip():
                raise InputError(path, number, f"query {qid!r} is empty")
            queries[qid] = text
        return queries

    def splits(self) -> list[str]:
        if self.qrels_dir is None:
            return []
        return sorted(p.stem for p in self.qrels_dir.glob("*.tsv"))

    def qrels(self, split: str) -> Qrels:
        """Relevance judgements of one split, checked against the queries and the corpus (read once)."""
        if split not in self._qrels:
            self._qrels[split] = self._read_qrels(split)
        return self._qrels[split]

    def _read_qrels(self, split: str) -> Qrels:
        if self.qrels_dir is None or not (self.qrels_dir / f"{split}.tsv").is_file():
            available = ", ".join(self.splits()) or "none"
            raise GenirError(f"collection {self.name!r} has no qrels for split {split!r} (available: {available})")
        path = self.qrels_dir / f"{split}.tsv"
        queries = self.queries
        doc_ids = set(self.doc_ids)
        qrels: Qrels = {}
        for number, line in decoded_lines(path):
            if not line.strip():
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if number == 1 and fields[0] == "query-id":
                continue
            if len(fields) == 4:  # TREC layout: qid iteration docid grade
                fields = [fields[0], fields[2], fields[3]]
            if len(fields) != 3:
                raise InputError(path, number, f"expected query-id<TAB>corpus-id<TAB>score, found {len(fields)} column(s)")
            qid, doc_id, grade = fields
            try:
                relevance = int(grade)
            except ValueError:
                raise InputError(path, number, f"score {grade!r} is not an integer") from None
            if qid not in queries:
                raise InputError(path, number, f"unknown query id {qid!r}")
            if doc_id not in doc_ids:
                raise InputError(path, number, f"unknown document id {doc_id!r}")
            qrels.setdefault(qid, {})[doc_id] = relevance
        for qid, judged in qrels.items():
            if not any(grade > 0 for grade in judged.values()):
                log.warning("%s: query %r has no relevant document; it is left out of evaluation", path, qid)
        return qrels

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries judged in ``split`` (id -> text), in qrels order."""
        queries = self.queries
        return {qid: queries[qid] for qid in self.qrels(split)}


def write_beir(path: Path, docs: Sequence[Document], queries: dict[str, str], qrels: dict[str, Qrels]) -> None:
    """Write a BEIR folder at ``path``: ``docs``, the queries some ``qrels`` split judges (texts from
    ``queries``), and ``qrels/<split>.tsv`` per split. Written beside and renamed into place, so a
    reader sees the whole folder or none (an existing folder at ``path`` is replaced)."""
    from genir.atomic_files import atomic_dir

    with atomic_dir(path, replace=True) as staging:
        (staging / "qrels").mkdir()
        with (staging / "corpus.jsonl").open("w", encoding="utf-8") as out:
            for d in docs:
                out.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
        asked = sorted({qid for judged in qrels.values() for qid in judged})
        with (staging / "queries.jsonl").open("w", encoding="utf-8") as out:
            for qid in asked:
                out.write(json.dumps({"_id": qid, "text": queries[qid]}) + "\n")
        for split, judged in qrels.items():
            lines = [f"{qid}\t{doc}\t{grade}\n" for qid, grades in judged.items() for doc, grade in grades.items()]
            (staging / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(lines), encoding="utf-8")

