"""The continual-indexing protocol: a collection cut into an initial corpus D0 and updates D1..Dn.

Documents are shuffled with a seed (SciFact's corpus order is by id, which says nothing about
arrival), ``D0`` takes ``d0_fraction`` of them and ``D1..Dn`` split the rest into ``n`` parts of
equal size (sizes differ by at most one). A model is trained on ``D0`` and updated with
``D1, ..., Dn`` in order.

Queries follow their documents. A query of a qrels split belongs to the part of its relevant
documents; when they fall in several parts it belongs to the *latest* one, the first step at
which every document it asks for is indexed. Its judgements are kept whole. A query with a
relevant document outside the selected corpus (when only a subset is used) is left out, and
counted.

To fit a CPU budget the protocol can run on a subset: ``max_docs`` documents sampled with the
seed, from the whole corpus or (``judged_only``) from the documents that some query of the
chosen splits judges relevant, so that every part has queries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from genir.errors import GenirError
from genir.indexer.collection import Collection, Document, Qrels


@dataclass
class ContinualSplit:
    """``D0..Dn`` and, per qrels split, the judgements of each part's queries.

    Attributes:
        parts: ``parts[j]`` is ``D_j``, documents in arrival order.
        qrels: ``qrels[split][j]`` holds the judgements of the queries of ``split`` that belong to ``D_j``.
        dropped_queries: per split, queries left out because a relevant document is outside the corpus used.
    """

    parts: list[list[Document]]
    qrels: dict[str, list[Qrels]]
    dropped_queries: dict[str, int]

    @property
    def steps(self) -> int:
        """Updates after D0 (``n``)."""
        return len(self.parts) - 1

    def part_of(self) -> dict[str, int]:
        """Document id -> the index of its part."""
        return {d.id: j for j, part in enumerate(self.parts) for d in part}

    def describe(self) -> dict[str, object]:
        """Sizes, as JSON: documents per part, queries per part and split, dropped queries."""
        return {
            "documents": [len(part) for part in self.parts],
            "queries": {split: [len(q) for q in per_part] for split, per_part in self.qrels.items()},
            "dropped_queries": dict(self.dropped_queries),
        }


def split_collection(
    collection: Collection,
    steps: int = 5,
    d0_fraction: float = 0.5,
    query_splits: Sequence[str] = ("train", "test"),
    max_docs: int = 0,
    judged_only: bool = False,
    seed: int = 0,
) -> ContinualSplit:
    """Cut ``collection`` into ``D0`` and ``steps`` equal updates, with the queries of each part.

    Args:
        collection: the collection (its qrels splits must include ``query_splits``).
        steps: the number of updates ``n`` (``D1..Dn``).
        d0_fraction: the share of documents in ``D0``, in ``(0, 1)``.
        query_splits: the qrels splits whose queries are assigned to parts.
        max_docs: use only this many documents (0: all).
        judged_only: draw the documents from those judged relevant in ``query_splits``.
        seed: the shuffling and sampling seed.
    Raises:
        GenirError: bad sizes, or too few documents for one per part.
    """
    if not isinstance(steps, int) or steps < 1:
        raise GenirError(f"steps must be a positive integer, got {steps!r}")
    if not 0.0 < d0_fraction < 1.0:
        raise GenirError(f"d0_fraction must lie strictly between 0 and 1, got {d0_fraction!r}")
    if max_docs < 0:
        raise GenirError(f"max_docs must be 0 (all documents) or positive, got {max_docs}")
    judgements = {split: collection.qrels(split) for split in query_splits}
    docs = list(collection.docs())
    if judged_only:
        relevant = {d for qrels in judgements.values() for judged in qrels.values() for d, g in judged.items() if g > 0}
        docs = [d for d in docs if d.id in relevant]
    rng = random.Random(seed)
    rng.shuffle(docs)
    if max_docs:
        docs = docs[:max_docs]
    n0 = round(len(docs) * d0_fraction)
    if n0 < 1 or len(docs) - n0 < steps:
        raise GenirError(f"{len(docs)} documents cannot make D0 ({d0_fraction:.0%}) and {steps} non-empty updates")
    rest = docs[n0:]
    bounds = [round(i * len(rest) / steps) for i in range(steps + 1)]
    parts = [docs[:n0]] + [rest[bounds[i]:bounds[i + 1]] for i in range(steps)]
    part = {d.id: j for j, p in enumerate(parts) for d in p}
    per_split: dict[str, list[Qrels]] = {}
    dropped: dict[str, int] = {}
    for split, qrels in judgements.items():
        per_part: list[Qrels] = [{} for _ in parts]
        dropped[split] = 0
        for qid, judged in qrels.items():
            relevant = [d for d, g in judged.items() if g > 0]
            if not relevant:
                continue  # evaluation ignores it too (see genir.measures)
            if any(d not in part for d in relevant):
                dropped[split] += 1
                continue
            per_part[max(part[d] for d in relevant)][qid] = {d: g for d, g in judged.items() if d in part}
        per_split[split] = per_part
    return ContinualSplit(parts, per_split, dropped)
