"""SEAL training pairs: a query (or a piece of a document) -> an n-gram the model should generate.

SEAL's model learns to write n-grams that occur in relevant documents. Two kinds of pairs:

* **supervised**, from a qrels split: each (query, relevant document) gives the document's title
  and ``ngrams_per_pair`` random spans of the document as targets;
* **unsupervised**, from the corpus alone (so a collection without training queries can still be
  indexed): a span of ``source_words`` words of a document -> another span of the same document,
  or its title.

Spans are whole words, ``ngram_min_words`` to ``ngram_max_words`` long (uniform); the model's
tokenizer cuts them to tokens later. Sampling is seeded: the same config gives the same pairs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from genir.indexer.collection import Collection, Document

TextPair = tuple[str, str]
"""(source text, target n-gram text)."""


@dataclass
class SealPairConfig:
    ngram_min_words: int = 3
    ngram_max_words: int = 10
    ngrams_per_pair: int = 10  # targets per (query, relevant document)
    unsupervised_per_doc: int = 4  # (span -> span or title) pairs per document
    source_words: int = 48  # length of an unsupervised pair's source span
    queries_split: str = "train"  # "" for unsupervised pairs only
    seed: int = 0


def _span(words: list[str], length: int, rng: random.Random) -> str:
    start = rng.randrange(0, len(words) - length + 1) if len(words) > length else 0
    return " ".join(words[start:start + length])


def _targets(doc: Document, count: int, config: SealPairConfig, rng: random.Random) -> list[str]:
    """The title (if any) and ``count`` random spans of the document's text."""
    words = doc.text.split()
    targets = [doc.title.strip()] if doc.title.strip() else []
    if words:
        targets += [_span(words, rng.randint(config.ngram_min_words, config.ngram_max_words), rng) for _ in range(count)]
    return targets


def supervised_pairs(collection: Collection, docs: dict[str, Document], config: SealPairConfig) -> list[TextPair]:
    """(query, n-gram of a relevant document) for every positive judgement of ``config.queries_split``."""
    rng = random.Random(config.seed)
    queries = collection.queries
    pairs: list[TextPair] = []
    for qid, judged in collection.qrels(config.queries_split).items():
        for doc_id, grade in judged.items():
            if grade > 0 and doc_id in docs:
                pairs += [(queries[qid], t) for t in _targets(docs[doc_id], config.ngrams_per_pair, config, rng)]
    return pairs


def unsupervised_pairs(docs: Sequence[Document], config: SealPairConfig) -> list[TextPair]:
    """(span of a document, another span or the title of it), ``unsupervised_per_doc`` per document."""
    rng = random.Random(config.seed + 1)
    pairs: list[TextPair] = []
    for doc in docs:
        words = doc.text.split()
        if not words:
            continue
        for target in _targets(doc, config.unsupervised_per_doc, config, rng)[: config.unsupervised_per_doc]:
            pairs.append((_span(words, config.source_words, rng), target))
    return pairs


def seal_training_pairs(collection: Collection, docs: Sequence[Document], config: SealPairConfig) -> list[TextPair]:
    """Supervised pairs (if ``queries_split``) and unsupervised pairs, shuffled with ``config.seed``."""
    pairs = unsupervised_pairs(docs, config)
    if config.queries_split:
        pairs += supervised_pairs(collection, {d.id: d for d in docs}, config)
    random.Random(config.seed).shuffle(pairs)
    return pairs
