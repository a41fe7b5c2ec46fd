"""What an update that trains learns from, per method: the new documents' examples, and what is replayed.

* ``finetune``: the examples of ``Dn`` alone (the lower bound: sequential fine-tuning).
* ``replay``: the examples of ``Dn`` plus ``replay_ratio`` times as many indexing examples drawn
  uniformly from earlier parts (experience replay: old examples kept in a buffer).
* ``genreplay``: the examples of ``Dn`` plus ``replay_ratio`` times as many *pseudo-queries* of
  earlier documents, drawn afresh at each update from a query generator (DSI++'s generative
  memory: nothing of the old training data is stored, only the documents).

(Re-indexing, the upper bound, builds a new index of every document instead:
:mod:`genir.continual.runner`.) Without a trained query generator, the generative memory writes
keyword queries from each document's salient sentences (:meth:`genir.views.salience.Salience.keyword_queries`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.views.pairs import TextPair
from genir.views.querygen import QueryGenerator

REPLAY_METHODS = ("finetune", "replay", "genreplay")


class GenerativeMemory:
    """Pseudo-queries for earlier documents, written afresh whenever they are replayed.

    Args:
        generator: the :class:`~genir.views.querygen.QueryGenerator` that writes them (for
            keyword queries, one built with ``pool`` > 0, so a document replayed several times
            gets varied queries).
    """

    def __init__(self, generator: QueryGenerator) -> None:
        self.generator = generator

    @property
    def kind(self) -> str:
        return self.generator.kind

    def sample(self, docs: Sequence[Document], count: int, seed: int) -> list[TextPair]:
        """``count`` (pseudo-query, document id) pairs for documents drawn uniformly from ``docs``.

        A document drawn several times gets that many queries (sampled, so they may differ).
        """
        if count <= 0 or not docs:
            return []
        rng = random.Random(seed)
        drawn: dict[int, int] = defaultdict(int)
        for _ in range(count):
            drawn[rng.randrange(len(docs))] += 1
        chosen = sorted(drawn)
        queries = self.generator.pseudo_queries([docs[i] for i in chosen], max(drawn.values()), seed)
        return [(q, docs[i].id) for i, qs in zip(chosen, queries) for q in qs[: drawn[i]] if q.strip()]


def update_examples(
    method: str,
    new: Sequence[TextPair],
    earlier_indexing: Sequence[TextPair],
    earlier_docs: Sequence[Document],
    replay_ratio: float,
    memory: GenerativeMemory,
    seed: int,
) -> list[TextPair]:
    """The training examples of one update, shuffled with ``seed``.

    Args:
        method: one of :data:`REPLAY_METHODS`.
        new: the examples of the new part (its indexing views and its training queries).
        earlier_indexing: the indexing examples of the earlier parts (the ``replay`` buffer).
        earlier_docs: the documents of the earlier parts (the generative memory's corpus).
        replay_ratio: replayed examples per new example (``replay``, ``genreplay``).
        memory: the generative memory (``genreplay``).
        seed: sampling and shuffling seed (use a different one per update).
    Raises:
        GenirError: an unknown method or a negative ratio.
    """
    if method not in REPLAY_METHODS:
        raise GenirError(f"unknown replay method {method!r} (choose from {', '.join(REPLAY_METHODS)})")
    if replay_ratio < 0:
        raise GenirError(f"replay_ratio must be >= 0, got {replay_ratio}")
    rng = random.Random(seed)
    count = round(replay_ratio * len(new))
    if method == "finetune":
        pairs = list(new)
    elif method == "replay":
        pairs = [*new, *rng.choices(list(earlier_indexing), k=count if earlier_indexing else 0)]
    else:
        pairs = [*new, *memory.sample(earlier_docs, count, seed)]
    rng.shuffle(pairs)
    return pairs
