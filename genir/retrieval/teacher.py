"""Soft labels from a teacher index: what a zero-shot build distills instead of "the source document".

A pseudo-query written from document ``d`` is not a query whose one answer is ``d``: other documents
may answer it as well or better, and a model trained to put ``d`` first learns the query writer's
habits (held-out pseudo-queries rose on dev while real test queries fell). RIPOR and PAG train a
generative retriever by distillation from a stronger ranker instead, and GPL labels generated
queries with a teacher's scores. Here the teacher is any built index of the same collection (for
the zero-shot recipe, the BM25 + dense hybrid, which beats both and needs no judgements): each
query's ``depth`` best documents by the teacher become weighted training pairs,

    weight(d | q) = softmax over the teacher's top ``depth`` of  s(d, q) / temperature,

with the teacher's scores ``s`` min-max normalized within the query's list to ``[0, 1]`` (a list
whose scores are all equal normalizes to 1), so one temperature means the same for a teacher
whose raw scores are BM25's tens or a hybrid's fractions. A query's weights sum to 1: trained with
:func:`genir.seq2seq.training.weighted_token_loss`, its pairs count as one example, and the loss
is the cross-entropy from the teacher's distribution to the student's (for atomic docids, the
listwise KL divergence up to the teacher's entropy).
"""

from __future__ import annotations

import math
from collections.abc import Collection as Container
from collections.abc import Sequence
from pathlib import Path

from genir.errors import GenirError
from genir.retrieval.searcher import Searcher

SoftLabels = list[tuple[str, float]]
"""One query's ``(docid, weight)`` pairs, in the teacher's order, weights summing to 1."""


def soft_labels(scores: Sequence[float], temperature: float) -> list[float]:
    """The weights of one query's candidates (module docstring), from the teacher's scores in its order."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    spread = high - low
    normalized = [(s - low) / spread if spread > 0 else 1.0 for s in scores]
    top = max(normalized)
    exps = [math.exp((n - top) / temperature) for n in normalized]
    total = sum(exps)
    return [e / total for e in exps]


def teacher_labels(teacher: str | Path, queries: Sequence[str], depth: int, temperature: float,
                   docids: Container[str], batch_size: int = 256) -> list[SoftLabels]:
    """Each query's soft labels from the index at ``teacher`` (module docstring).

    Args:
        teacher: a built index of the collection being indexed (any method).
        queries: the queries to label.
        depth: candidates per query.
        temperature: of the softmax over the normalized scores (lower: nearer the teacher's top 1).
        docids: the collection's document ids; a document the teacher returns that is not one of them
            is left out (a teacher built before some documents were deleted: a re-index after
            ``genir delete`` is distilled from the same teacher without them).
    Raises:
        GenirError: the teacher cannot be opened, or most documents it returns are not the
            collection's (an index of another collection).
    """
    searcher = Searcher.load(teacher)
    labels: list[SoftLabels] = []
    returned = strangers = 0
    try:
        for start in range(0, len(queries), batch_size):
            for hits in searcher.batch_search(queries[start:start + batch_size], depth):
                known = [h for h in hits if h.docid in docids]
                returned, strangers = returned + len(hits), strangers + len(hits) - len(known)
                labels.append(list(zip([h.docid for h in known], soft_labels([h.score for h in known], temperature))))
    finally:
        searcher.close()
    if strangers * 2 > returned:
        raise GenirError(f"{strangers} of the {returned} documents the teacher index {teacher} returned are not in this "
                         "collection: a teacher must be an index of the collection being indexed")
    return labels
