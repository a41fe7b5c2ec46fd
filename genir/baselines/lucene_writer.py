"""Build a Lucene index folder, or add documents to it or delete documents from it in place: the child
process that :class:`genir.baselines.bm25.BM25Searcher` runs for ``index``, ``add`` and ``delete``.

Run as ``python -m genir.baselines.lucene_writer build LUCENE_DIR DOCS_DIR STORE_RAW THREADS``,
``... add LUCENE_DIR DOCS.jsonl STORE_RAW THREADS`` or ``... delete LUCENE_DIR IDS.json``; it prints
``{"num_docs": N}`` (the documents in the index, deleted ones excluded) on its last line. A child process:
Lucene's writers (Anserini's ``IndexCollection`` and ``SimpleIndexer``, ``IndexWriter`` and its merge
threads) in the process that also searches and runs torch made it crash later (SIGSEGV) in the test
suite, and a child is stopped with genir however genir ends (:func:`genir.subprocesses.run_child`). It
is a top-level module that imports only pyserini's JVM bridge (``pyserini.pyclass``): neither torch nor
the rest of genir, nor ``pyserini.index``, whose import costs a second more CPU per build.

All three write with the same settings: the default English analyzer, ``DefaultLuceneDocumentGenerator``
(``JsonCollection`` documents ``{"id", "contents"}``), positions, document vectors, raw text if asked.

* build: Anserini's ``IndexCollection`` over the JSONL files of ``DOCS_DIR`` into a new ``LUCENE_DIR``.
* add: Anserini's ``SimpleIndexer`` in append mode.
* delete: ``IndexWriter.deleteDocuments`` on the ``id`` field, then ``forceMergeDeletes`` with
  ``forceMergeDeletesPctAllowed`` 0, so that every segment holding a deleted document is rewritten
  and no deleted document is left in the term statistics: scores are a fresh build's.
"""

from __future__ import annotations

import json
import sys


def settings(lucene_dir: str, docs: str, store_raw: bool, threads: int) -> list[str]:
    """Anserini's arguments for writing ``docs`` (a folder of JSONL files, or "" for documents given one
    by one) into ``lucene_dir``: the same for a build and an add."""
    return ["-index", lucene_dir, "-input", docs, "-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator",
            "-threads", str(max(1, threads)), "-storePositions", "-storeDocvectors"] + (["-storeRaw"] if store_raw else [])


def build(lucene_dir: str, docs_dir: str, store_raw: bool, threads: int) -> None:
    from pyserini.pyclass import autoclass  # pyserini's JVM, on Anserini's jar; lighter than pyserini.index

    autoclass("io.anserini.index.IndexCollection").main(settings(lucene_dir, docs_dir, store_raw, threads))


def add(lucene_dir: str, docs_file: str, store_raw: bool, threads: int) -> None:
    from pyserini.pyclass import autoclass

    indexer = autoclass("io.anserini.index.SimpleIndexer")([*settings(lucene_dir, "", store_raw, threads), "-append"])
    try:
        with open(docs_file, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not indexer.addRawDocument(line.rstrip("\n")):
                    raise SystemExit(f"Anserini refused document {number} of {docs_file}")
    finally:
        indexer.close()


def delete(lucene_dir: str, ids_file: str) -> None:
    from pyserini.pyclass import autoclass

    with open(ids_file, encoding="utf-8") as f:
        ids = json.load(f)
    term, term_query = autoclass("org.apache.lucene.index.Term"), autoclass("org.apache.lucene.search.TermQuery")
    config = autoclass("org.apache.lucene.index.IndexWriterConfig")()
    config.setOpenMode(autoclass("org.apache.lucene.index.IndexWriterConfig$OpenMode").APPEND)
    # forceMergeDeletes rewrites only segments with more than forceMergeDeletesPctAllowed % deleted
    # documents (10 by default): below that, a deleted document's terms stayed in docFreq, docCount
    # and the average length, and scores differed from a fresh build. At 0 every segment with a
    # deletion is rewritten.
    policy = autoclass("org.apache.lucene.index.TieredMergePolicy")()
    policy.setForceMergeDeletesPctAllowed(0.0)
    config.setMergePolicy(policy)
    folder = autoclass("org.apache.lucene.store.FSDirectory").open(autoclass("java.nio.file.Paths").get(lucene_dir))
    try:
        writer = autoclass("org.apache.lucene.index.IndexWriter")(folder, config)
        try:
            for docid in ids:
                # A TermQuery, not a Term: pyjnius resolves the varargs overload only for Query.
                writer.deleteDocuments(term_query(term("id", docid)))
            writer.forceMergeDeletes()
            writer.commit()
        finally:
            writer.close()
    finally:
        folder.close()


def live_docs(lucene_dir: str) -> int:
    from pyserini.pyclass import autoclass

    folder = autoclass("org.apache.lucene.store.FSDirectory").open(autoclass("java.nio.file.Paths").get(lucene_dir))
    try:
        reader = autoclass("org.apache.lucene.index.DirectoryReader").open(folder)
        try:
            return int(reader.numDocs())
        finally:
            reader.close()
    finally:
        folder.close()


def main(argv: list[str]) -> None:
    operation, lucene_dir = argv[0], argv[1]
    if operation in ("build", "add"):
        (build if operation == "build" else add)(lucene_dir, argv[2], argv[3] == "true", int(argv[4]))
    elif operation == "delete":
        delete(lucene_dir, argv[2])
    else:
        raise SystemExit(f"unknown operation {operation!r}")
    print(json.dumps({"num_docs": live_docs(lucene_dir)}))


if __name__ == "__main__":
    main(sys.argv[1:])
