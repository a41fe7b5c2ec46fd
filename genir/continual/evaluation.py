"""One row of the accuracy matrix: every part indexed so far, scored with the index after a step.

Two kinds of evaluation items per part ``D_j``:

* **indexing accuracy** (DSI++'s memorization measure): each document's indexing view (its first
  words, exactly what the model was trained to map to the docid) is the query and the document
  itself the only relevant one; ``index Hits@1`` and ``index Hits@10``.
* **queries**: the queries of a qrels split that belong to ``D_j`` (see
  :mod:`genir.continual.protocol`), with their judgements; ``SPLIT Hits@10`` and ``SPLIT nDCG@10``.

Both are searched through the index's own :class:`~genir.retrieval.searcher.Searcher` and scored
by :func:`genir.measures.evaluate`, as ``genir eval`` would score them. A part with
no queries of the split scores NaN there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from genir.indexer.collection import Qrels
from genir.measures import evaluate
from genir.retrieval.searcher import Searcher

INDEX_MEASURES = {"Hits@1": "index Hits@1", "Hits@10": "index Hits@10"}
QUERY_MEASURES = ("Hits@10", "nDCG@10")


def query_measure_names(split: str) -> list[str]:
    return [f"{split} {m}" for m in QUERY_MEASURES]


def measure_names(split: str) -> list[str]:
    """Every measure a row holds, in report order."""
    return [*INDEX_MEASURES.values(), *query_measure_names(split)]


def evaluate_parts(
    searcher: Searcher,
    doc_views: Sequence[dict[str, str]],
    part_qrels: Sequence[Qrels],
    queries: dict[str, str],
    split: str,
    k: int = 10,
) -> dict[str, list[float]]:
    """Scores of parts ``0..n`` (``n + 1 = len(doc_views)``) under ``searcher``.

    Args:
        searcher: the index after step ``n``.
        doc_views: per part, document id -> its indexing view (the memorization query).
        part_qrels: per part, the judgements of its queries of ``split``.
        queries: query id -> text.
        split: the qrels split's name (for the measure names).
        k: hits searched per query (at most the number of indexed documents).
    Returns:
        measure name -> ``[a[n, 0], ..., a[n, n]]``.
    """
    texts: list[str] = []
    for views in doc_views:
        texts += views.values()
    for qrels in part_qrels:
        texts += (queries[qid] for qid in qrels)
    hits = iter(searcher.batch_search(texts, k))
    row: dict[str, list[float]] = {name: [] for name in measure_names(split)}
    for views in doc_views:
        run = {doc_id: next(hits) for doc_id in views}
        scores = evaluate(run, {doc_id: {doc_id: 1} for doc_id in views}, measures=list(INDEX_MEASURES)).aggregate
        for measure, name in INDEX_MEASURES.items():
            row[name].append(scores[measure] if views else math.nan)
    for qrels in part_qrels:
        run = {qid: next(hits) for qid in qrels}
        scores = evaluate(run, qrels, measures=list(QUERY_MEASURES)).aggregate
        for measure, name in zip(QUERY_MEASURES, query_measure_names(split)):
            row[name].append(scores[measure] if qrels else math.nan)
    return row
