"""A seeded dev split carved from a collection's training queries.

Every setting genir chooses by measurement (a DSI checkpoint, a hybrid's weight) is chosen on
queries that no model trained on and that are not test queries. When a collection has a training
split, ``dev_fraction`` of its judged queries are held out, chosen by ``seed``: the same
``(collection, split, fraction, seed)`` always gives the same dev queries, so an index trained on
the rest and a hybrid tuned on the dev part agree on which queries are which.

Invariant: ``train`` and ``dev`` partition the split's judged queries (those with at least one
positive judgement); with a fraction above 0 and at least two such queries, both are non-empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from genir.errors import GenirError
from genir.indexer.collection import Collection, Qrels

DEFAULT_DEV_FRACTION = 0.1
DevFraction = Annotated[float, Field(ge=0, lt=1, description="the share of queries_split's judged queries held out as dev (seeded by seed)")]
"""The type of every config's ``dev_fraction`` (what :func:`split_dev` accepts)."""


@dataclass(frozen=True)
class QuerySplit:
    """Training queries and the dev queries held out of them (qrels restricted to each)."""

    train: Qrels
    dev: Qrels

    def dev_queries(self, collection: Collection) -> dict[str, str]:
        """The dev queries' texts (id -> text), in dev order."""
        return {qid: collection.queries[qid] for qid in self.dev}


def split_dev(collection: Collection, split: str, fraction: float = DEFAULT_DEV_FRACTION, seed: int = 0) -> QuerySplit:
    """Hold out ``fraction`` of ``split``'s judged queries as dev (module docstring).

    Args:
        collection: the collection whose qrels ``split`` is read.
        split: the training split (``train``).
        fraction: the share of queries held out, in ``[0, 1)``; 0 gives an empty dev split.
        seed: chooses which queries (sorted ids, then a seeded permutation).
    Raises:
        GenirError: ``fraction`` outside ``[0, 1)`` or a split without qrels.
    """
    if not 0.0 <= fraction < 1.0:
        raise GenirError(f"dev_fraction={fraction}: choose a share in [0, 1)")
    qrels = collection.qrels(split)
    judged = sorted(qid for qid, grades in qrels.items() if any(g > 0 for g in grades.values()))
    held = math.ceil(fraction * len(judged)) if len(judged) > 1 else 0
    order = np.random.default_rng(seed).permutation(len(judged))
    dev_ids = {judged[i] for i in order[:held]}
    train = {qid: grades for qid, grades in qrels.items() if qid not in dev_ids}
    dev = {qid: qrels[qid] for qid in sorted(dev_ids)}
    return QuerySplit(train=train, dev=dev)
