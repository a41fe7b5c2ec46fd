"""The dev set a DSI build chooses its checkpoint on, and the training queries left to it.

* supervised (the collection has ``queries_split``): :func:`genir.indexer.dev_split.split_dev`
  holds out ``dev_fraction`` of the judged training queries (seeded); the model trains on the rest.
* zero-shot (no such split): ``dev_pseudo_queries`` documents (seeded) each get one
  pseudo-query from the build's query generator, drawn with another seed; a dev query's one
  relevant document is the one it was written from. These documents get no pseudo-queries in
  training (:attr:`DevSet.held_out_docs`; they keep their indexing views), so dev asks what test
  asks: queries of a kind never trained on for their document. (Pseudo-queries are not real
  queries: the README reports how well this dev predicts test, and never tunes on test.)

The dev score is nDCG@10 of the model's own search (:class:`genir.dsi.decoding.DocidDecoder`). SE-DSI's
``rescore`` weights under ``auto`` are chosen on the same dev set, together with the checkpoint
(:func:`choose_rescore_weights`); the build stores the pair in its manifest (``rescore_weights``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.dsi.config import DSIConfig
from genir.dsi.decoding import DocidDecoder, Ranking
from genir.dsi.docids import DocidScheme
from genir.indexer.collection import Collection, Document, Qrels
from genir.indexer.dev_split import split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Hit
from genir.retrieval.teacher import SoftLabels
from genir.views.querygen import QueryGenerator

DEV_SEED_OFFSET = 7919  # pseudo-queries for dev are drawn with seed + this, apart from the trained ones


@dataclass(frozen=True)
class DevSet:
    """Dev queries (id -> text) with their judgements, and the training queries' judgements."""

    queries: dict[str, str]
    qrels: Qrels
    train_qrels: Qrels
    kind: str  # "held-out training queries" | "held-out pseudo-queries" (judged by the teacher) | "none"
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


def teacher_judged(dev: DevSet, labels: Sequence[SoftLabels]) -> DevSet:
    """``dev`` (held-out pseudo-queries) judged by a teacher instead of by the document each was written
    from: a query's relevant documents are the teacher's candidates, graded by rank (the first of
    ``n`` gets ``n``, the last 1), so dev nDCG@10 measures agreement with the teacher's ranking,
    what a distilled build trains toward. ``labels``: :func:`genir.retrieval.teacher.teacher_labels`
    of ``dev.queries``' texts, in their order."""
    qrels = {qid: {docid: len(ranked) - rank for rank, (docid, _) in enumerate(ranked)}
             for qid, ranked in zip(dev.queries, labels, strict=True) if ranked}
    return dataclasses.replace(dev, qrels=qrels, queries={q: t for q, t in dev.queries.items() if q in qrels},
                               kind="held-out pseudo-queries judged by the teacher")


def dev_evaluator(dev: DevSet, tokenizer: PreTrainedTokenizerBase, scheme: DocidScheme, config: DSIConfig,
                  grid: Sequence[tuple[float, float]] = ()):
    """``evaluate(model) -> per-query nDCG@10`` on ``dev`` (in dev order) with the index's own search;
    None for an empty dev set. With a ``grid`` of rescore weights (:meth:`genir.dsi.config.DSIConfig.rescore_grid`,
    more than one cell), a checkpoint is scored with its best cell (:func:`choose_rescore_weights`),
    so the checkpoint and the weights it is searched with are chosen together."""
    if not dev.queries:
        return None
    trie = scheme.trie()
    ids, texts = list(dev.queries), list(dev.queries.values())

    def score(model: PreTrainedModel) -> list[float]:
        decoder = DocidDecoder(model, tokenizer, scheme, trie)
        if len(grid) > 1:
            return choose_rescore_weights(decoder, dev, config, grid).per_query
        return _per_query_ndcg(decoder.search(texts, 10, config), ids, dev.qrels)

    return score


@dataclass(frozen=True)
class RescoreChoice:
    """The rescore weights best on dev, and dev's nDCG@10 per query (dev order) with them."""

    weights: tuple[float, float]  # (plan_weight, dense_weight)
    per_query: list[float]

    @property
    def score(self) -> float:
        return sum(self.per_query) / max(len(self.per_query), 1)


def choose_rescore_weights(decoder: DocidDecoder, dev: DevSet, config: DSIConfig,
                           grid: Sequence[tuple[float, float]]) -> RescoreChoice:
    """The cell of ``grid`` whose ``rescore`` ranking scores best on ``dev`` (mean nDCG@10; a tie keeps
    the earlier cell). Every term is scored once per dev query (dense candidates too where a cell
    has a dense weight) and each cell only re-ranks them, exactly as search would rank."""
    ids = list(dev.queries)
    terms = decoder.rescore_terms([dev.queries[qid] for qid in ids], config,
                                  dense_candidates=any(dense > 0 for _, dense in grid))
    best: RescoreChoice | None = None
    for weights in grid:
        choice = RescoreChoice(weights, _per_query_ndcg(terms.rankings(weights, 10, decoder.docids), ids, dev.qrels))
        if best is None or choice.score > best.score:
            best = choice
    return best


def _per_query_ndcg(rankings: Sequence[Ranking], ids: Sequence[str], qrels: Qrels) -> list[float]:
    """nDCG@10 of each query's ranking, in ``ids`` order."""
    run = {qid: [Hit(docid, s) for docid, s in ranking] for qid, ranking in zip(ids, rankings)}
    per_query = evaluate(run, qrels, ("nDCG@10",)).per_query
    return [per_query[qid]["nDCG@10"] for qid in ids]
