"""Training views: what a DSI model reads to memorize each document, and query -> docid pairs.

* **indexing** examples map a view of a document to its docid: the first ``first_words`` words
  (DSI's "FirstP"), plus ``spans`` random spans of ``span_words`` words each, so that the model
  sees more than the opening of long documents.
* **rehearsal contents** (SE-DSI): the ``rehearsal`` most salient sentences of each document
  (:mod:`genir.views.salience`).
* **pseudo-queries**: ``pseudo_queries`` queries per document from a
  :class:`~genir.views.querygen.QueryGenerator` (a trained model, or keyword queries drawn from
  the document's salient sentences: :func:`~genir.views.querygen.query_generator` picks).
* **retrieval** examples map a real query of a qrels split (e.g. ``train``) to each document
  judged relevant for it.

DSI's indexing:retrieval ratio is set by repeating the retrieval examples ``retrieval_repeats``
times per epoch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from genir.indexer.collection import Collection, Document, Qrels
from genir.settings import AUTO
from genir.views.querygen import QueryGenerator
from genir.views.salience import Salience

TextPair = tuple[str, str]
"""(source text, docid)."""

ZERO_SHOT_PSEUDO_QUERIES = 4
"""Pseudo-queries per document under ``pseudo_queries=auto`` without training queries: DSI's and
SEAL's zero-shot default (with training queries, auto is 0)."""


def pseudo_queries_setting(setting: int | str, supervised: bool) -> int:
    """A ``pseudo_queries`` setting resolved: a count as given; ``auto`` = 0 with training queries,
    :data:`ZERO_SHOT_PSEUDO_QUERIES` without."""
    if setting == AUTO:
        return 0 if supervised else ZERO_SHOT_PSEUDO_QUERIES
    return int(setting)


@dataclass
class ViewConfig:
    first_words: int = 64
    spans: int = 2
    span_words: int = 32
    rehearsal: int = 0
    pseudo_queries: int = 0
    pseudo_query_words: int = 8  # length of the keyword fallback's queries
    queries_split: str = "train"  # "" trains on indexing examples only
    retrieval_repeats: int = 1
    seed: int = 0


def indexing_examples(docs: Sequence[Document], config: ViewConfig) -> list[TextPair]:
    """The first words of every document, plus random spans of the longer ones."""
    rng = random.Random(config.seed)
    pairs: list[TextPair] = []
    for doc in docs:
        words = doc.contents.split()
        if not words:
            continue  # an empty document (kept by --allow-empty-docs) has nothing to memorize
        pairs.append((" ".join(words[:config.first_words]), doc.id))
        if len(words) > config.first_words:
            for _ in range(config.spans):
                start = rng.randrange(0, len(words) - config.span_words + 1) if len(words) > config.span_words else 0
                pairs.append((" ".join(words[start:start + config.span_words]), doc.id))
    return pairs


def retrieval_examples(collection: Collection, qrels: Qrels) -> list[TextPair]:
    """(query, relevant docid) for every positive judgement of ``qrels`` (of ``collection``'s queries)."""
    queries = collection.queries
    return [
        (queries[qid], doc_id)
        for qid, judged in qrels.items()
        for doc_id, grade in judged.items()
        if grade > 0
    ]


def salient_examples(docs: Sequence[Document], config: ViewConfig, generator: QueryGenerator,
                     no_pseudo_queries: frozenset[str] = frozenset()) -> list[TextPair]:
    """Rehearsal contents and pseudo-queries (written by ``generator``) of every document, but no
    pseudo-queries for the documents in ``no_pseudo_queries`` (e.g. those whose queries are dev queries)."""
    salience = Salience(docs)
    pairs = [(s, d.id) for d in docs for s in salience.rehearsal_contents(d, config.rehearsal)]
    return pairs + pseudo_query_examples(docs, config, generator, no_pseudo_queries)


def pseudo_query_examples(docs: Sequence[Document], config: ViewConfig, generator: QueryGenerator,
                          no_pseudo_queries: frozenset[str] = frozenset()) -> list[TextPair]:
    """``config.pseudo_queries`` (pseudo-query, the document it was written from) pairs per document, none
    for the documents in ``no_pseudo_queries``."""
    if not config.pseudo_queries:
        return []
    queries = generator.pseudo_queries(docs, config.pseudo_queries, config.seed)
    return [(q, d.id) for d, qs in zip(docs, queries) if d.id not in no_pseudo_queries for q in qs if q.strip()]


def training_pairs(collection: Collection, docs: Sequence[Document], config: ViewConfig,
                   generator: QueryGenerator, queries: Qrels | None = None,
                   no_pseudo_queries: frozenset[str] = frozenset()) -> list[TextPair]:
    """All views of the configuration, shuffled with ``config.seed``; ``generator`` writes the pseudo-queries.

    The retrieval examples are those of ``queries`` (judgements) when given, e.g. the training split
    less its dev part; else of the ``queries_split`` qrels. Documents in ``no_pseudo_queries`` get
    no pseudo-queries (:func:`salient_examples`).
    """
    pairs = indexing_examples(docs, config)
    if config.rehearsal or config.pseudo_queries:
        pairs += salient_examples(docs, config, generator, no_pseudo_queries)
    if queries is None and config.queries_split:
        queries = collection.qrels(config.queries_split)
    if queries:
        pairs += retrieval_examples(collection, queries) * config.retrieval_repeats
    random.Random(config.seed).shuffle(pairs)
    return pairs
