"""One evaluation for every method, on ir_measures.

Scores are averaged over the queries of the qrels that have at least one relevant document; a
query the run does not answer scores 0 (trec_eval would silently skip it). ``Hits@k`` is the
share of queries with a relevant document in the top k, as DSI papers report it (ir_measures'
``Success@k``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ir_measures
from ir_measures import RR, R, Success, nDCG

from genir.errors import GenirError
from genir.indexer.collection import Qrels
from genir.retrieval.searcher import Run

log = logging.getLogger(__name__)

MEASURES = {
    "nDCG@10": nDCG @ 10,
    "RR@10": RR @ 10,
    "R@1": R @ 1,
    "R@10": R @ 10,
    "R@100": R @ 100,
    "Hits@1": Success @ 1,
    "Hits@10": Success @ 10,
}
DEFAULT_MEASURES = tuple(MEASURES)


@dataclass
class Evaluation:
    """Mean scores and the per-query scores behind them (for significance tests)."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]

    @property
    def num_queries(self) -> int:
        return len(self.per_query)


def evaluate(run: Run, qrels: Qrels, measures: Sequence[str] = DEFAULT_MEASURES) -> Evaluation:
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise GenirError(f"unknown measure(s) {', '.join(unknown)} (known: {', '.join(MEASURES)})")
    judged = {qid: docs for qid, docs in qrels.items() if any(g > 0 for g in docs.values())}
    if run and judged and not run.keys() & judged.keys():
        log.warning("none of the run's %d queries is judged in these qrels (a run of another collection or "
                    "split?); every score is 0", len(run))
    scores = {qid: {m: 0.0 for m in measures} for qid in judged}
    by_measure = {MEASURES[m]: m for m in measures}
    run_scores = _score_dicts(run, judged)
    for metric in ir_measures.iter_calc(list(by_measure), judged, run_scores):
        scores[metric.query_id][by_measure[metric.measure]] = float(metric.value)
    count = max(len(scores), 1)
    aggregate = {m: sum(q[m] for q in scores.values()) / count for m in measures}
    return Evaluation(aggregate, scores)


def _score_dicts(run: Run, judged: Mapping[str, object]) -> dict[str, dict[str, float]]:
    """Scores as ir_measures wants them; like trec_eval, ties are then broken by docid."""
    out: dict[str, dict[str, float]] = {}
    for qid, hits in run.items():
        if qid in judged:
            scores = out.setdefault(qid, {})
            for hit in hits:
                scores.setdefault(hit.docid, hit.score)  # a repeated docid keeps its best score
    return out
