"""BM25 through pyserini (Lucene): the sparse baseline.

pyserini 0.25.0 is used because its Anserini runs on Java 17, which Debian 12 ships; newer
releases need Java 21. Documents are indexed as ``title + " " + text`` with Anserini's default
English analyzer (Porter stemming, stopwords), as pyserini's BEIR "flat" indexes are.

Queries of any length are searched whole: a query is one Lucene clause per distinct term, and
Lucene's limit of 1,024 clauses (``IndexSearcher.setMaxClauseCount``, process-wide) is raised to
its maximum when an index is opened, so no term is dropped.

Growing (:meth:`Searcher.add` / ``delete``): the Lucene folder is copied into the new version
and changed there by a child process (:mod:`genir.baselines.lucene_writer`). Adds go through Anserini's
``SimpleIndexer`` in append mode with the build's settings (same analyzer and document generator:
positions, document vectors, raw text); deletes are Lucene's ``IndexWriter.deleteDocuments`` on the
``id`` field, followed by ``forceMergeDeletes`` with no share of deleted documents allowed, so that
every segment holding a deleted document is rewritten and none is left in the term statistics
(document frequencies, document count, average length) or in :attr:`num_docs`. (With Lucene's
default of 10 %, a segment with fewer deletions kept them in the statistics.)
Either way the other documents' BM25 scores change a little, as corpus statistics (idf, average
length) do: exactly as in an index built from scratch on the same documents (the same scores;
documents with equal scores may come in another order, Lucene breaking ties by its internal order).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field
from rich.console import Console

from genir.errors import CorruptIndexError, GenirError
from genir.indexer.collection import Collection, Document
from genir.retrieval.searcher import Addition, Deletion, Hit, Opening, Searcher
from genir.settings import Settings
from genir.subprocesses import run_child

LUCENE_DIR = "lucene"
LUCENE_WRITER = "genir.baselines.lucene_writer"  # the child process that writes Lucene folders
MAX_CLAUSES = 2**31 - 1  # Lucene's default is 1,024 (TooManyClauses beyond it)


def ensure_java() -> None:
    """Point ``JAVA_HOME`` at a JDK 17+ before pyserini starts the JVM."""
    if os.environ.get("JAVA_HOME"):
        return
    candidates = sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*")) if Path("/usr/lib/jvm").is_dir() else []
    java = shutil.which("java")
    if candidates:
        os.environ["JAVA_HOME"] = str(candidates[0])
    elif java:
        os.environ["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
    else:
        raise GenirError("BM25 needs Java 17: install it with `apt-get install openjdk-17-jdk-headless` (or set JAVA_HOME)")


class BM25Config(Settings):
    # k1 < 0 or b outside [0, 1] build an index whose scores are not BM25 (and can be negative).
    k1: float = Field(0.9, ge=0, description="term-frequency saturation (0: term presence only)")
    b: float = Field(0.4, ge=0, le=1, description="document-length normalization (0: none, 1: full)")
    threads: int = Field(2, ge=1, description="Lucene indexing threads")
    store_raw: bool = Field(True, description="keep each document's raw text in the index (shown by genir search)")


class BM25Searcher(Searcher):
    method = "bm25"
    Config = BM25Config
    description = "Lucene BM25 via pyserini (title + text, k1=0.9, b=0.4)"
    search_settings = ("k1", "b", "threads")

    def __init__(self, opening: Opening):
        super().__init__(opening)
        self.lucene_dir = lucene_dir = opening.directory / LUCENE_DIR
        if not lucene_dir.is_dir():
            raise CorruptIndexError(f"{opening.directory}: no {LUCENE_DIR}/ folder (not a BM25 index)")
        ensure_java()
        from pyserini.search.lucene import LuceneSearcher

        self._lucene = LuceneSearcher(str(lucene_dir))
        self._lucene.set_bm25(self.config.k1, self.config.b)
        from jnius import autoclass  # pyserini's bridge to the JVM it started

        autoclass("org.apache.lucene.search.IndexSearcher").setMaxClauseCount(MAX_CLAUSES)

    @classmethod
    def build(cls, collection: Collection, config: BM25Config, directory: Path, previous: Path | None) -> dict[str, Any]:
        ensure_java()
        staging = directory / "_jsonl"
        staging.mkdir()
        count = 0
        with open(staging / "docs.jsonl", "w", encoding="utf-8") as f:
            for doc in collection.docs():
                f.write(json.dumps({"id": doc.id, "contents": doc.contents}) + "\n")
                count += 1
        command = [sys.executable, "-m", LUCENE_WRITER, "build", str(directory / LUCENE_DIR), str(staging),
                   "true" if config.store_raw else "false", str(config.threads)]
        with Console(stderr=True).status(f"Lucene is indexing {count:,} documents"):
            done = run_child(command, env=os.environ.copy())  # stopped with genir, however genir ends
        shutil.rmtree(staging)
        if done.returncode != 0:
            raise GenirError(f"Anserini indexing failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return {"num_docs": count}

    def write_files(self, directory: Path) -> None:
        shutil.copytree(self.lucene_dir, directory / LUCENE_DIR)

    @property
    def num_docs(self) -> int:
        return self._lucene.num_docs

    def close(self) -> None:
        self._lucene.close()

    # -- growing and shrinking -----------------------------------------------------------
    def _present(self, ids: Sequence[str]) -> set[str]:
        return {docid for docid in ids if self._lucene.doc(docid) is not None}

    def _write_added(self, docs: list[Document], staging: Path, addition: Addition) -> dict[str, Any]:
        docs_file = staging / "_docs.jsonl"
        docs_file.write_text("".join(json.dumps({"id": d.id, "contents": d.contents}) + "\n" for d in docs), encoding="utf-8")
        args = [str(docs_file), "true" if self.config.store_raw else "false", str(self.config.threads)]
        return self._edit_copy("add", staging, args, docs_file, f"adding {len(docs):,} documents")

    def _write_deleted(self, ids: list[str], staging: Path, deletion: Deletion) -> dict[str, Any]:
        ids_file = staging / "_ids.json"
        ids_file.write_text(json.dumps(ids), encoding="utf-8")
        return self._edit_copy("delete", staging, [str(ids_file)], ids_file, f"deleting {len(ids):,} documents")

    def _edit_copy(self, operation: str, staging: Path, args: list[str], payload: Path, what: str) -> dict[str, Any]:
        """Copy the Lucene folder into ``staging`` and change the copy in a child process (:mod:`genir.baselines.lucene_writer`)."""
        target = staging / LUCENE_DIR
        shutil.copytree(self.lucene_dir, target)
        command = [sys.executable, "-m", LUCENE_WRITER, operation, str(target), *args]
        with Console(stderr=True).status(f"Lucene is {what}"):
            done = run_child(command, env=os.environ.copy())  # stopped with genir, however genir ends
        payload.unlink()
        if done.returncode != 0:
            raise GenirError(f"Lucene could not {operation} documents (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return {"num_docs": json.loads(done.stdout.strip().splitlines()[-1])["num_docs"]}

    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        ids = [str(i) for i in range(len(queries))]
        results = self._lucene.batch_search(list(queries), ids, k=k, threads=self.config.threads)
        failed = [i for i in ids if i not in results]  # pyserini drops a query whose search threw
        if failed:
            raise GenirError(f"Lucene could not search query {int(failed[0]) + 1} of {len(ids)}: {queries[int(failed[0])][:80]!r}")
        return [[Hit(h.docid, float(h.score)) for h in results[i]] for i in ids]

    def doc_text(self, docid: str) -> str | None:
        doc = self._lucene.doc(docid)
        if doc is None or not doc.raw():
            return None
        return json.loads(doc.raw()).get("contents")

