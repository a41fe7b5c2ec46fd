"""Choose SE-DSI's rescore weights on the dev carve, and measure what each term adds.

Loads a se-dsi index that keeps document vectors (built with ``dense_weight > 0``) and scores, once
per query, every term of ``rescore`` (:meth:`genir.dsi.decoding.DocidDecoder.rescore_terms`: the
exact description score, the plan and the dense similarity of each proposed and each dense-chosen
candidate); each ``plan_weight`` x ``dense_weight`` of the grid is then a ranking of those terms
(:meth:`~genir.dsi.decoding.RescoreTerms.fused`), exactly the one ``genir search`` would give with
those settings.

* ``--split dev`` (default): the queries of the index's own dev carve (``queries_split``,
  ``dev_fraction``, ``seed`` of its config: the queries it never trained on); every grid point is
  printed, best first: the grid a build chooses ``auto`` weights from (``PLAN_WEIGHTS`` x
  ``DENSE_WEIGHTS``, :func:`genir.dsi.dev.choose_rescore_weights`) unless told otherwise.
* ``--split test`` (or any qrels split): only the index's own weights (chosen on dev by its build,
  or its settings), their ablations (each
  term set to 0) and any ``--weights`` chosen on dev beforehand: the numbers to report; nothing
  is chosen here.

Prints a table and writes JSON.

Usage: python benchmarks/tune_sedsi.py --index IDX --collection ../shared/data/scifact \
           [--split dev] [--plan-weights 0,0.1,...] [--dense-weights 0,2,...] [--set candidates=200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from genir.dsi.config import DENSE_WEIGHTS, PLAN_WEIGHTS
from genir.dsi.docids import SearchMode
from genir.dsi.searcher import DSISearcher
from genir.indexer.collection import Collection
from genir.indexer.dev_split import split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Hit, Searcher

DEPTH = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--split", default="dev", help="dev (the index's own dev carve) or a qrels split such as test")
    parser.add_argument("--plan-weights", default=",".join(map(str, PLAN_WEIGHTS)), help="the dev grid's plan_weight values")
    parser.add_argument("--dense-weights", default=",".join(map(str, DENSE_WEIGHTS)), help="the dev grid's dense_weight values")
    parser.add_argument("--weights", action="append", default=[],
                        help="PLAN,DENSE (repeatable): more weights to report on a non-dev split, chosen on dev beforehand")
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="K=V",
                        help="a search setting for this run, as genir search --set (e.g. candidates=200)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    collection = Collection.open(args.collection)
    searcher = Searcher.load(args.index, settings=args.settings)
    if not isinstance(searcher, DSISearcher) or searcher.scheme.search_mode(searcher.config) is not SearchMode.RESCORE:
        parser.error(f"{args.index}: not an index searched by rescoring (se-dsi's elaborative docids, elaborative_search=rescore)")
    config = searcher.config
    weights = config.rescore_weights_setting(chosen=searcher.decoder.rescore_weights)  # the index's own
    if args.split == "dev":
        qrels = split_dev(collection, config.queries_split, config.dev_fraction, config.seed).dev
        grid = [(float(p), float(d)) for p in args.plan_weights.split(",") for d in args.dense_weights.split(",")]
    else:
        qrels = collection.qrels(args.split)
        plan_weight, dense_weight = weights
        grid = [weights, (0.0, dense_weight), (plan_weight, 0.0), (0.0, 0.0),
                *(tuple(float(w) for w in pair.split(",")) for pair in args.weights)]
    qids = list(qrels)
    started = time.perf_counter()
    terms = searcher.decoder.rescore_terms([collection.queries[q] for q in qids], config, dense_candidates=True)
    seconds = time.perf_counter() - started
    print(f"{args.index}: rescore terms of {len(qids)} {args.split} queries in {seconds:.0f} s")
    rows = []
    for plan_weight, dense_weight in dict.fromkeys(grid):
        rankings = terms.rankings((plan_weight, dense_weight), DEPTH, searcher.decoder.docids)
        run = {qid: [Hit(docid, s) for docid, s in ranking] for qid, ranking in zip(qids, rankings)}
        measured = evaluate(run, qrels).aggregate
        rows.append({"plan_weight": plan_weight, "dense_weight": dense_weight,
                     "nDCG@10": round(measured["nDCG@10"], 4), "R@100": round(measured["R@100"], 4)})
    if args.split == "dev":
        rows.sort(key=lambda row: -row["nDCG@10"])
    print("| plan_weight | dense_weight | nDCG@10 | R@100 |\n|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['plan_weight']} | {row['dense_weight']} | {row['nDCG@10']:.4f} | {row['R@100']:.4f} |")
    out = args.out or Path(__file__).parent / "results" / f"tune_sedsi_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"index": str(args.index), "collection": collection.name, "split": args.split,
                               "queries": len(qids), "terms_seconds": round(seconds, 1),
                               "index_weights": list(weights), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
