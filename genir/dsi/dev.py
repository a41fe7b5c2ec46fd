"""The dev set a DSI build chooses its checkpoint on, and the training queries left to it.

* supervised (the collection has ``queries_split``): :func:`genir.indexer.dev_split.split_dev`
  holds out ``dev_fraction`` of the judged training queries (seeded); the model trains on the rest.
* zero-shot (no such split): ``dev_pseudo_queries`` documents (seeded) each get one
  pseudo-query from the build's query generator, drawn with another seed; a dev query's one
  relevant document is the one it was written from. These documents get no pseudo-queries in
  training (:attr:`DevSet.held_out_docs`; they keep their indexing views), so dev asks what test
  asks: queries of a kind never trained on for their document. (Pseudo-queries are not real
  queries: the README reports how well this dev predicts test, and never tunes on test.)

The dev score is nDCG@10 of the model's own search (:class:`genir.dsi.decoding.DocidDecoder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.dsi.config import DSIConfig
from genir.dsi.decoding import DocidDecoder
from genir.dsi.docids import DocidScheme
from genir.indexer.collection import Collection, Document, Qrels
from genir.indexer.dev_split import split_dev
from genir.kernels.trie import DocidTrie
from genir.retrieval.evaluation import evaluate
from genir.retrieval.searcher import Hit
from genir.seq2seq.vocab import EOS
from genir.views.querygen import QueryGenerator

DEV_SEED_OFFSET = 7919  # pseudo-queries for dev are drawn with seed + this, apart from the trained ones


@dataclass(frozen=True)
class DevSet:
    """Dev queries (id -> text) with their judgements, and the training queries' judgements."""

    queries: dict[str, str]
    qrels: Qrels
    train_qrels: Qrels
    kind: str  # "held-out training queries" | "held-out pseudo-queries" | "none"
    held_out_docs: frozenset[str] = frozenset()  # documents whose pseudo-queries are not trained


def dev_set(collection: Collection, docs: Sequence[Document], config: DSIConfig, supervised: bool,
            generator: QueryGenerator) -> DevSet:
    """The dev set of a build (module docstring); empty when ``select_on_dev`` is off or the dev set
    would have fewer than ``min_dev_queries`` queries (then every training query trains)."""
    if supervised:
        split = split_dev(collection, config.queries_split, config.dev_fraction, config.seed)
        if not config.select_on_dev or len(split.dev) < config.min_dev_queries:
            return DevSet({}, {}, collection.qrels(config.queries_split), "none")
        return DevSet(split.dev_queries(collection), split.dev, split.train, "held-out training queries")
    if not config.select_on_dev or min(config.dev_pseudo_queries, len(docs)) < config.min_dev_queries:
        return DevSet({}, {}, {}, "none")
    chosen = np.random.default_rng(config.seed).permutation(len(docs))[:config.dev_pseudo_queries]
    picked = [docs[i] for i in sorted(chosen)]
    written = generator.pseudo_queries(picked, 1, config.seed + DEV_SEED_OFFSET)
    queries, qrels = {}, {}
    for doc, texts in zip(picked, written):
        if texts and texts[0].strip():
            qid = f"dev-pq-{doc.id}"
            queries[qid], qrels[qid] = texts[0], {doc.id: 1}
    return DevSet(queries, qrels, {}, "held-out pseudo-queries", frozenset(d.id for d in picked))


def dev_evaluator(dev: DevSet, tokenizer: PreTrainedTokenizerBase, scheme: DocidScheme, config: DSIConfig):
    """``evaluate(model) -> per-query nDCG@10`` on ``dev`` (in dev order) with the index's own search;
    None for an empty dev set."""
    if not dev.queries:
        return None
    trie = DocidTrie.from_sequences(list(scheme.sequences().values()), eos_token_id=EOS, vocab_size=scheme.vocab_size)
    ids, texts = list(dev.queries), list(dev.queries.values())

    def score(model: PreTrainedModel) -> list[float]:
        rankings = DocidDecoder(model, tokenizer, scheme, trie).search(texts, 10, config)
        run = {qid: [Hit(docid, s) for docid, s in ranking] for qid, ranking in zip(ids, rankings)}
        per_query = evaluate(run, dev.qrels, ("nDCG@10",)).per_query
        return [per_query[qid]["nDCG@10"] for qid in ids]

    return score
