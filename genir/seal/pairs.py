"""SEAL training pairs: a query (or a piece of a document) -> an n-gram the model should generate.

SEAL's model learns to write n-grams that occur in relevant documents. Two kinds of pairs:

* **supervised**, from a qrels split: each (query, relevant document) gives the document's title
  and ``ngrams_per_pair`` random spans of the document as targets; with ``dev_fraction`` above 0,
  the split's dev carve (:func:`genir.indexer.dev_split.split_dev` with ``seed``) is left out, so
  that search settings can be chosen on queries the model never saw;
* **unsupervised**, from the corpus alone (so a collection without training queries can still be
  indexed): a span of ``source_words`` words of a document -> another span of the same document,
  or its title;
* **pseudo-query** pairs, from the corpus and a query generator (:mod:`genir.views.querygen`:
  keyword queries from a document's salient sentences, or a trained generator): each of a
  document's ``pseudo_queries`` queries -> its title or a span anchored on the query's words, as a
  supervised pair's targets are. Span sources alone teach the model to continue a 48-word passage;
  a real query is a few words (or a paragraph) that the model must map to n-grams of the documents
  it asks for, which these pairs ask of it without any real query (zero-shot).

Spans are whole words, ``ngram_min_words`` to ``ngram_max_words`` long (uniform); the model's
tokenizer cuts them to tokens later. With ``anchored`` (the default), a target span starts near a
document word that also occurs in the source (a content word, four letters or more), when there
is one: the model then learns first to read its input and continue a phrase of it in the corpus'
words, which a random span of a long document rarely asks of it (a model trained on random spans
alone learned the corpus' language model and ignored the query, see the README). Sampling is
seeded: the same config gives the same pairs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from genir.errors import GenirError
from genir.indexer.collection import Collection, Document
from genir.indexer.dev_split import split_dev
from genir.views.querygen import QueryGenerator

TextPair = tuple[str, str]
"""(source text, target n-gram text)."""


@dataclass
class SealPairConfig:
    ngram_min_words: int = 3
    ngram_max_words: int = 10
    ngrams_per_pair: int = 10  # targets per (query, relevant document)
    unsupervised_per_doc: int = 4  # (span -> span or title) pairs per document
    source_words: int = 48  # length of an unsupervised pair's source span
    queries_split: str = "train"  # "" for unsupervised (and pseudo-query) pairs only
    pseudo_queries: int = 0  # pseudo-query pairs per document (resolved: the config's auto is the searcher's)
    dev_fraction: float = 0.0  # the share of queries_split held out (its dev carve), never trained on
    anchored: bool = True  # target spans start near a word shared with the source
    seed: int = 0


def _content_words(text: str) -> set[str]:
    """Lower-cased words of four letters or more, punctuation stripped (what anchors a span)."""
    return {w for w in (word.strip(".,;:()[]\"'").lower() for word in text.split()) if len(w) >= 4}


def _span(words: list[str], length: int, rng: random.Random, anchors: list[int] | None = None) -> str:
    """A span of ``length`` words: random, or containing a random one of the ``anchors`` positions."""
    if anchors:
        at = rng.choice(anchors)
        start = max(0, min(at - rng.randrange(0, length), len(words) - length))
    else:
        start = rng.randrange(0, len(words) - length + 1) if len(words) > length else 0
    return " ".join(words[start:start + length])


def _targets(doc: Document, source: str, count: int, config: SealPairConfig, rng: random.Random) -> list[str]:
    """The title (if any) and ``count`` spans of the document's text (anchored on ``source``'s words)."""
    words = doc.text.split()
    targets = [doc.title.strip()] if doc.title.strip() else []
    if words:
        shared = _content_words(source) if config.anchored else set()
        anchors = [i for i, w in enumerate(words) if w.strip(".,;:()[]\"'").lower() in shared]
        targets += [_span(words, rng.randint(config.ngram_min_words, config.ngram_max_words), rng, anchors)
                    for _ in range(count)]
    return targets


def supervised_pairs(collection: Collection, docs: dict[str, Document], config: SealPairConfig) -> list[TextPair]:
    """(query, n-gram of a relevant document) for every positive judgement of ``config.queries_split``
    outside its dev carve."""
    rng = random.Random(config.seed)
    queries = collection.queries
    pairs: list[TextPair] = []
    for qid, judged in split_dev(collection, config.queries_split, config.dev_fraction, config.seed).train.items():
        for doc_id, grade in judged.items():
            if grade > 0 and doc_id in docs:
                query = queries[qid]
                pairs += [(query, t) for t in _targets(docs[doc_id], query, config.ngrams_per_pair, config, rng)]
    return pairs


def unsupervised_pairs(docs: Sequence[Document], config: SealPairConfig) -> list[TextPair]:
    """(span of a document, another span or the title of it), ``unsupervised_per_doc`` per document."""
    rng = random.Random(config.seed + 1)
    pairs: list[TextPair] = []
    for doc in docs:
        words = doc.text.split()
        if not words:
            continue
        for _ in range(config.unsupervised_per_doc):
            source = _span(words, config.source_words, rng)
            # Half the targets are the title (when there is one), half a span anchored on the source.
            target = _targets(doc, source, 1, config, rng)
            pairs.append((source, target[0] if len(target) == 1 or rng.random() < 0.5 else target[-1]))
    return pairs


def pseudo_query_pairs(docs: Sequence[Document], generator: QueryGenerator, config: SealPairConfig) -> list[TextPair]:
    """(pseudo-query, its document's title or a span anchored on the query's words), one pair per
    pseudo-query, ``pseudo_queries`` written per document by ``generator`` (seeded with ``config.seed``)."""
    if not config.pseudo_queries:
        return []
    rng = random.Random(config.seed + 2)
    pairs: list[TextPair] = []
    for doc, queries in zip(docs, generator.pseudo_queries(docs, config.pseudo_queries, config.seed)):
        for query in (q for q in queries if q.strip()):
            targets = _targets(doc, query, 1, config, rng)
            # as unsupervised pairs: half the targets are the title (when there is one), half an anchored span
            pairs.append((query, targets[0] if len(targets) == 1 or rng.random() < 0.5 else targets[-1]))
    return pairs


def seal_training_pairs(collection: Collection, docs: Sequence[Document], config: SealPairConfig,
                        generator: QueryGenerator | None = None) -> list[TextPair]:
    """Supervised pairs (if ``queries_split``), unsupervised pairs and pseudo-query pairs (if
    ``pseudo_queries``; ``generator`` writes them), shuffled with ``config.seed``.

    Raises:
        GenirError: ``pseudo_queries`` above 0 without a ``generator``.
    """
    pairs = unsupervised_pairs(docs, config)
    if config.pseudo_queries:
        if generator is None:
            raise GenirError("pseudo_queries above 0 needs a query generator to write them")
        pairs += pseudo_query_pairs(docs, generator, config)
    if config.queries_split:
        pairs += supervised_pairs(collection, {d.id: d for d in docs}, config)
    random.Random(config.seed).shuffle(pairs)
    return pairs
