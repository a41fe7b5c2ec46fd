"""Reading collections: BEIR directories, JSONL, TSV and CSV corpora, folders of text files,
documents given in memory, and the built-in corpus.

Everything is validated here, where data enters genir, so the rest of the code can assume
well-formed input. Each problem raises :class:`~genir.errors.InputError` naming file and line (or,
for documents given in memory, their position).

Corpus layouts (:meth:`Collection.open`):

* a BEIR directory: ``corpus.jsonl``, optionally ``queries.jsonl`` and ``qrels/<split>.tsv``;
* a ``.jsonl`` file, one JSON object per line: BEIR's ``{"_id", "title", "text"}`` or pyserini's
  ``{"id", "contents"}`` (``_id``/``id`` is the id, ``text`` or else ``contents`` the text,
  ``title`` optional);
* a ``.tsv`` or ``.csv`` file: ``id, text`` or ``id, title, text`` rows, or any columns under a
  header row that names an id column (``id``, ``_id``, ``docid``, ``doc_id``) and a text column
  (``text``, ``contents``, ``body``) or a ``title`` (case-insensitive; other columns are ignored).
  A first row whose first field names an id column but that names no text or title column is an
  error (a document whose id is literally ``id`` cannot start such a file). TSV fields are split
  on tabs, unquoted; CSV follows the csv module (quoted fields may hold commas and newlines);
* a folder of ``.txt``/``.md`` files (searched recursively, hidden files and folders skipped,
  other files skipped with a warning): a document per file, its id the path below the folder
  without the extension (``notes/cats.md`` -> ``notes/cats``), its title the first non-empty line
  (a Markdown heading's ``#`` marks dropped), its text the rest; an empty file is an empty document;
* :meth:`Collection.from_documents`: :class:`Document` objects in memory (checked like a file's).

What is an error and what is a warning:

* errors: non-UTF-8 bytes, a malformed JSON or CSV line, a line that is not a JSON object, a missing or
  empty id, an id (of a document or query) with whitespace in it (TREC run and qrels files
  are whitespace-separated, so such an id could not be written or read back), a ``title``/``text`` that is not a string, a duplicate document or query id, an
  empty document (no title and no text), an empty query, a qrels line with the wrong number of
  columns or a non-integer score, a qrels line naming an unknown query or document, a TSV/CSV row
  with a number of columns that fits neither layout nor its header.
* accepted: a UTF-8 byte order mark at the start of any file (it is dropped, in every reader:
  :func:`decoded_lines`).
* warnings (logged, the data is kept): an empty document when the collection is opened with
  ``allow_empty_docs=True`` (Cranfield has two: ids 471 and 995), and a qrels file that judges
  no document as relevant for some query (it is left out of evaluation).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from genir.errors import GenirError, InputError
from genir.indexer.builtin_corpus import BUILTIN_PREFIX, builtin_folder

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


Source = Path | str
"""Where documents come from: a file (errors give its line) or, for documents given in memory, a
description such as "the documents to add" (errors give the document's position)."""


def _where(source: Source, number: int | None) -> str:
    if number is None:
        return str(source)
    return f"{source}:{number}" if isinstance(source, Path) else f"{source}, document {number}"


def _error(source: Source, number: int | None, reason: str) -> InputError:
    if isinstance(source, Path):
        return InputError(source, number, reason)  # keeps path and line apart for callers
    return InputError(f"{_where(source, number)}: {reason}")


def check_id(value: str, what: str, source: Source, number: int | None) -> str:
    """``value`` if it is a usable id: not empty, no whitespace (TREC files are whitespace-separated)."""
    if not value.strip():
        raise _error(source, number, f"empty {what}")
    if any(c.isspace() for c in value):
        raise _error(source, number, f"{what} {value!r} contains whitespace, which TREC run and qrels files "
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


_DOCUMENT_LINE = '{"_id": ..., "title": ..., "text": ...} (BEIR) or {"id": ..., "contents": ...} (pyserini)'
_QUERY_LINE = '{"_id": ..., "text": ...}'


def _required_id(record: dict, path: Path, number: int, layout: str) -> str:
    """The record's ``_id`` (BEIR), or else its ``id`` (pyserini); an integer is read as a string."""
    key = "_id" if "_id" in record else "id"
    value = record.get(key)
    if value is None:
        raise InputError(path, number, f'missing "_id" (or "id"): each line is {layout}')
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, number, f'"{key}" must be a non-empty string, got {value!r}')
    return check_id(value, f'"{key}"', path, number)


def _optional_str(record: dict, key: str, path: Path, number: int) -> str:
    value = record.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(path, number, f'"{key}" must be a string, got {type(value).__name__}')
    return value


def _jsonl_document(record: dict, path: Path, number: int) -> Document:
    text_key = "contents" if "text" not in record and "contents" in record else "text"
    return Document(_required_id(record, path, number, _DOCUMENT_LINE), _optional_str(record, "title", path, number),
                    _optional_str(record, text_key, path, number))


# -- TSV and CSV ------------------------------------------------------------------------------
_ID_COLUMNS = ("id", "_id", "docid", "doc_id")
_TEXT_COLUMNS = ("text", "contents", "body")
_TITLE_COLUMN = "title"


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line a row starts on, its fields) for every row of a ``.tsv`` (tab-split) or ``.csv`` file."""
    if path.suffix.lower() != ".csv":
        yield from ((number, line.split("\t")) for number, line in decoded_lines(path))
        return
    consumed = 0  # lines the CSV reader has taken: a quoted field may span several

    def lines() -> Iterator[str]:
        nonlocal consumed
        for number, line in decoded_lines(path):
            consumed = number
            yield line + "\n"

    reader = csv.reader(lines(), strict=True)  # strict: an unclosed quote is an error, not a field to the end
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(path, start, f"malformed CSV in the row starting on this line ({e})") from None
        yield start, row


def _header(fields: list[str], path: Path, number: int) -> dict[str, int | None] | None:
    """Column positions (``id``, ``title``, ``text``) if ``fields`` is a header row, else None.

    Raises:
        InputError: the row names an id column first but no text or title column, or a kind twice.
    """
    names = [f.strip().lower() for f in fields]
    ids = [i for i, n in enumerate(names) if n in _ID_COLUMNS]
    if not ids:
        return None
    texts = [i for i, n in enumerate(names) if n in _TEXT_COLUMNS]
    titles = [i for i, n in enumerate(names) if n == _TITLE_COLUMN]
    if not texts and not titles:
        if ids[0] != 0:
            return None
        raise InputError(path, number, f"a header row naming an id column ({fields[0].strip()!r}) must also name a text "
                                       f"column ({', '.join(_TEXT_COLUMNS)}) or a {_TITLE_COLUMN!r} column")
    for kind, found in (("id", ids), ("text", texts), ("title", titles)):
        if len(found) > 1:
            raise InputError(path, number, f"the header names {len(found)} {kind} columns "
                                           f"({', '.join(repr(fields[i].strip()) for i in found)}); keep one")
    return {"id": ids[0], "title": titles[0] if titles else None, "text": texts[0] if texts else None, "width": len(fields)}


def _delimited_docs(path: Path) -> Iterator[tuple[int, Document]]:
    sep = "," if path.suffix.lower() == ".csv" else "<TAB>"
    columns: dict[str, int | None] | None = None
    first = True
    for number, fields in _rows(path):
        if not any(f.strip() for f in fields):
            continue
        if first:
            first = False
            columns = _header(fields, path, number)
            if columns is not None:
                header_line = number
                continue
        if columns is not None:
            if len(fields) != columns["width"]:
                raise InputError(path, number, f"expected {columns['width']} columns, as the header on line "
                                               f"{header_line} names, found {len(fields)}")
            doc_id = fields[columns["id"]]
            title = fields[columns["title"]] if columns["title"] is not None else ""
            text = fields[columns["text"]] if columns["text"] is not None else ""
        elif len(fields) == 2:
            doc_id, title, text = fields[0], "", fields[1]
        elif len(fields) == 3:
            doc_id, title, text = fields
        else:
            raise InputError(path, number, f"expected id{sep}text or id{sep}title{sep}text (or a header row naming "
                                           f"id, title and text columns), found {len(fields)} column(s)")
        yield number, Document(check_id(doc_id, "document id", path, number), title, text)


# -- folders of text files ------------------------------------------------------------------------
_TEXT_SUFFIXES = (".txt", ".md")


def _folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """The ``.txt``/``.md`` files under ``folder`` and the other files, sorted; hidden ones left out."""
    texts, others = [], []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        (texts if path.suffix.lower() in _TEXT_SUFFIXES else others).append(path)
    return texts, others


def _file_document(folder: Path, path: Path) -> Document:
    doc_id = check_id(path.relative_to(folder).with_suffix("").as_posix(),
                      "document id (the file's path without its extension)", path, None)
    lines = [line for _, line in decoded_lines(path)]
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return Document(doc_id, "", "")
    title = lines[first].strip()
    if path.suffix.lower() == ".md":
        title = title.lstrip("#").strip() or title
    return Document(doc_id, title, "\n".join(lines[first + 1:]).strip())


# -- checks every document goes through ----------------------------------------------------------
def _given_records(docs: Iterable[Document], source: str) -> Iterator[tuple[Source, int | None, Document]]:
    """Documents given in memory, each checked to be a :class:`Document` of strings with a usable id."""
    if isinstance(docs, (Document, str, bytes)):
        raise InputError(f"{source}: expected an iterable of Document objects, got one {type(docs).__name__}")
    for number, doc in enumerate(docs, start=1):
        if not isinstance(doc, Document):
            raise _error(source, number, f"expected a Document, got {type(doc).__name__}")
        for name in ("id", "title", "text"):
            if not isinstance(getattr(doc, name), str):
                raise _error(source, number, f"its {name} must be a string, got {type(getattr(doc, name)).__name__}")
        yield source, number, Document(check_id(doc.id, "document id", source, number), doc.title, doc.text)


def _checked(records: Iterable[tuple[Source, int | None, Document]], source: Source, allow_empty_docs: bool,
             warned: set[str]) -> Iterator[Document]:
    """``records`` ((where, line or position, document)) as documents: no id twice, no empty document
    unless ``allow_empty_docs`` (then each is warned about once, ``warned`` holding the ids), at least one."""
    seen: set[str] = set()
    for where, number, doc in records:
        if doc.id in seen:
            raise _error(where, number, f"duplicate document id {doc.id!r}")
        seen.add(doc.id)
        if not doc.title.strip() and not doc.text.strip():
            if not allow_empty_docs:
                raise _error(where, number, f"document {doc.id!r} is empty (no title, no text); pass --allow-empty-docs "
                                            "(allow_empty_docs=True from Python) to keep it")
            if doc.id not in warned:
                warned.add(doc.id)
                log.warning("%s: document %r is empty; kept, but no method can retrieve it by content",
                            _where(where, number), doc.id)
        yield doc
    if not seen:
        raise _error(source, None, "the corpus has no documents" if isinstance(source, Path) else "there are none")


def check_documents(docs: Iterable[Document], allow_empty_docs: bool = False,
                    source: str = "the documents given") -> list[Document]:
    """``docs`` as a list, checked as the documents of a corpus file are (:class:`Collection`): each a
    :class:`Document` of strings, ids not empty, without whitespace and not repeated, no empty
    document unless ``allow_empty_docs``, at least one document.

    Raises:
        InputError: naming ``source`` and the document's position (1-based).
    """
    return list(_checked(_given_records(docs, source), source, allow_empty_docs, set()))


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Collection:
    """A corpus with, optionally, queries and relevance judgements per split.

    Documents are streamed (``docs()``) and validated while they stream; ids are kept in memory
    to detect duplicates and to check qrels.

    Args:
        corpus_path: ``corpus.jsonl`` (BEIR) or another ``.jsonl``, ``.tsv`` or ``.csv`` corpus, or a
            folder of ``.txt``/``.md`` files (module docstring); None for :meth:`from_documents`.
        queries_path: ``queries.jsonl`` or None.
        qrels_dir: directory of ``<split>.tsv`` files or None.
        allow_empty_docs: keep documents with neither title nor text (with a warning) instead
            of failing.
    """

    def __init__(
        self,
        corpus_path: Path | None,
        queries_path: Path | None = None,
        qrels_dir: Path | None = None,
        name: str | None = None,
        allow_empty_docs: bool = False,
    ):
        self.corpus_path = Path(corpus_path) if corpus_path is not None else None
        self.queries_path = queries_path
        self.qrels_dir = qrels_dir
        self.name = name or self._default_name()
        self.allow_empty_docs = allow_empty_docs
        self._given: list[Document] | None = None  # the documents of from_documents
        self._warned_empty: set[str] = set()  # the corpus may be streamed several times; warn once
        self._qrels: dict[str, Qrels] = {}

    def _default_name(self) -> str:
        if self.corpus_path is None:
            return "documents"
        return self.corpus_path.parent.name if self.corpus_path.name == "corpus.jsonl" else self.corpus_path.stem

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, location: str | Path, allow_empty_docs: bool = False) -> Collection:
        """Open a BEIR directory, a ``.jsonl``/``.tsv``/``.csv`` corpus, a folder of ``.txt``/``.md``
        files, or ``builtin:<name>`` (module docstring)."""
        text = str(location)
        if text.startswith(BUILTIN_PREFIX):
            return cls.open(builtin_folder(text[len(BUILTIN_PREFIX):]), allow_empty_docs)
        path = Path(location)
        if path.is_dir():
            corpus = path / "corpus.jsonl"
            if not corpus.is_file():
                return cls._text_folder(path, allow_empty_docs)
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
            if path.suffix.lower() not in {".tsv", ".csv", ".jsonl"}:
                raise InputError(path, None, "expected a BEIR directory, a .jsonl, .tsv or .csv corpus, or a folder of "
                                             ".txt/.md files")
            return cls(path, allow_empty_docs=allow_empty_docs)
        raise InputError(path, None, "no such collection (expected a BEIR directory, a .jsonl, .tsv or .csv file, a "
                                     "folder of .txt/.md files, or builtin:stdlib / builtin:pydocs / builtin:toy)")

    @classmethod
    def _text_folder(cls, folder: Path, allow_empty_docs: bool) -> Collection:
        if (folder / "queries.jsonl").exists() or (folder / "qrels").is_dir():  # not notes that happen to have a README
            raise InputError(folder, None, "not a BEIR collection: it has queries.jsonl or qrels/ but corpus.jsonl is missing")
        texts, others = _folder_files(folder)
        if not texts:
            raise InputError(folder, None, "not a collection: no corpus.jsonl (a BEIR directory) and no .txt or .md "
                                           "files")
        if others:
            log.warning("%s: skipped %d files that are not .txt or .md (%s%s)", folder, len(others),
                        others[0].relative_to(folder).as_posix(), ", ..." if len(others) > 1 else "")
        return cls(folder, name=folder.name, allow_empty_docs=allow_empty_docs)

    @classmethod
    def from_documents(cls, docs: Iterable[Document], name: str = "documents", allow_empty_docs: bool = False) -> Collection:
        """A collection of :class:`Document` objects given in memory, checked as a corpus file's
        documents are (:func:`check_documents`); it has no queries.

        Raises:
            InputError: a bad document, named by its position among ``docs``.
        """
        collection = cls(None, name=name, allow_empty_docs=allow_empty_docs)
        collection._given = check_documents(docs, allow_empty_docs, "the documents given")
        return collection

    @property
    def resolved_path(self) -> str | None:
        """The corpus file or folder as an absolute path (None for documents given in memory)."""
        return str(self.corpus_path.resolve()) if self.corpus_path is not None else None

    # -- documents -----------------------------------------------------------------------
    def docs(self) -> Iterator[Document]:
        """Stream every document, validating as it goes."""
        source: Source = self.corpus_path if self.corpus_path is not None else "the documents given"
        return _checked(self._records(), source, self.allow_empty_docs, self._warned_empty)

    def _records(self) -> Iterator[tuple[Source, int | None, Document]]:
        path = self.corpus_path
        if path is None:
            yield from (("the documents given", number, doc) for number, doc in enumerate(self._given or [], start=1))
        elif path.is_dir():
            yield from ((file, None, _file_document(path, file)) for file in _folder_files(path)[0])
        elif path.suffix.lower() in {".tsv", ".csv"}:
            yield from ((path, number, doc) for number, doc in _delimited_docs(path))
        else:
            yield from ((path, number, _jsonl_document(record, path, number)) for number, record in _json_records(path))

    @cached_property
    def doc_ids(self) -> list[str]:
        """All document ids in corpus order (reads the corpus once)."""
        return [d.id for d in self.docs()]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the corpus: its file's bytes; for a folder, every text file's path and bytes; for
        documents given in memory, their fields. Identifies the exact corpus an index was built from."""
        if self.corpus_path is not None and not self.corpus_path.is_dir():
            return file_sha256(self.corpus_path)
        digest = hashlib.sha256()
        if self.corpus_path is None:
            for doc in self._given or []:
                digest.update(json.dumps([doc.id, doc.title, doc.text]).encode() + b"\n")
        else:
            for file in _folder_files(self.corpus_path)[0]:
                digest.update(file.relative_to(self.corpus_path).as_posix().encode() + b"\0" + file_sha256(file).encode())
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
            qid = _required_id(record, path, number, _QUERY_LINE)
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

