"""Choose ``code_beams`` (beams kept at each code level of rq and semantic docids) on dev.

The document step of an rq or semantic search scores only the documents under the code prefixes the
beam keeps (:mod:`genir.dsi.decoding`); ``code_beams`` at least a level's codes keeps them all, and the
search is then the one before the setting existed (the same rankings and scores, ``tests/test_dsi_scale.py``).
For one built index, every value of ``--grid`` is scored on the dev split its build held out of the
training queries (:func:`genir.indexer.dev_split.split_dev` with the index's ``dev_fraction`` and
``seed``; never test): nDCG@10 at k=10, R@100 at k=100, and the document rows the document step read
per query (mean, at k=10). The default is the smallest value whose dev nDCG@10 is within ``--tolerance``
of the full search's. ``--test VALUE`` then scores the full search and ``VALUE`` once on test.

    python benchmarks/tune_code_beams.py --index bench-out/scifact-rq -c ../shared/data/scifact \
        [--grid 1,2,4,8,16,32,100] [--test 8]

Writes ``benchmarks/results/tune_code_beams-<docids>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
from bench_docid_layer import RowCounter

from genir.indexer.collection import Collection
from genir.indexer.dev_split import split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Hit, Searcher

RESULTS = Path(__file__).resolve().parent / "results"


def score(searcher, counter: RowCounter, queries: dict[str, str], qrels, code_beams: int) -> dict:
    config = searcher.config.model_copy(update={"code_beams": code_beams})
    out: dict = {"code_beams": code_beams}
    for k, measure in ((10, "nDCG@10"), (100, "R@100")):
        counter.rows = 0
        timings, rankings = [], []
        for text in queries.values():
            started = time.perf_counter()
            rankings.extend(searcher.decoder.search([text], k, config))
            timings.append(1000 * (time.perf_counter() - started))
        run = {qid: [Hit(d, s) for d, s in ranking] for qid, ranking in zip(queries, rankings)}
        out[measure] = round(evaluate(run, qrels, (measure,)).aggregate[measure], 4)
        out[f"rows_per_query_k{k}"] = round(counter.rows / len(queries), 1)
        out[f"ms_per_query_k{k}"] = round(statistics.median(timings), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True, type=Path, help="a built dsi index with rq or semantic docids")
    parser.add_argument("-c", "--collection", required=True)
    parser.add_argument("--grid", default="1,2,4,8,16,32,100")
    parser.add_argument("--tolerance", type=float, default=0.002, help="dev nDCG@10 a narrower search may lose")
    parser.add_argument("--test", type=int, default=0, help="a code_beams scored on test beside the full search (0: none)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    collection = Collection.open(args.collection)
    searcher = Searcher.load(args.index, device="cpu")
    config, scheme = searcher.config, searcher.decoder.scheme
    counter = RowCounter(searcher.model.get_decoder(), scheme.levels)
    dev = split_dev(collection, config.queries_split, config.dev_fraction, config.seed)
    grid = [int(v) for v in args.grid.split(",")]
    full = max(grid)
    rows = []
    for code_beams in grid:
        rows.append(score(searcher, counter, dev.dev_queries(collection), dev.dev, code_beams))
        print(json.dumps(rows[-1]), flush=True)
    best = next(r for r in rows if r["code_beams"] == full)["nDCG@10"]
    chosen = min(r["code_beams"] for r in rows if r["nDCG@10"] >= best - args.tolerance)
    test = []
    if args.test:
        queries = {qid: collection.queries[qid] for qid in collection.qrels("test")}
        for code_beams in (full, args.test):
            test.append(score(searcher, counter, queries, collection.qrels("test"), code_beams))
            print("test", json.dumps(test[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = RESULTS / f"tune_code_beams-{config.docids}.json"
    out.write_text(json.dumps({
        "provenance": {"date": datetime.date.today().isoformat(),
                       "machine": f"{torch.get_num_threads()} CPU cores, {platform.machine()} (shared with other jobs, loaded)",
                       "commit": commit, "note": "commit: the code measured; ms: loaded machine, not a speed measurement; "
                                                 f"code_beams={full} is the full search (every code kept)"},
        "index": str(args.index), "collection": collection.name, "docids": config.docids, "dev_queries": len(dev.dev),
        "tolerance": args.tolerance, "chosen_on_dev": chosen, "dev": rows, "test": test}, indent=2) + "\n")
    print(f"chosen on dev: code_beams={chosen}; wrote {out}")


if __name__ == "__main__":
    main()
