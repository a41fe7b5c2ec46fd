"""Search speed and quality of one atomic-docid DSI index under each ``atomic_search`` mode.

Opens the index once per mode (``first``, ``exact``, ``beam``), searches every query of a split at
k = 10 and k = 100 (one ``batch_search`` each, after a warm-up of 16 queries), and scores the k = 100
run with the harness's measures. Prints a table and writes JSON.

Usage: ``python benchmarks/bench_dsi_search.py --index indexes/scifact-dsi
--collection ../shared/data/scifact --split test`` (the README's "Searching a DSI index" table).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from genir.indexer.collection import Collection
from genir.measures import evaluate
from genir.retrieval.searcher import Searcher

MODES = ("first", "exact", "beam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="a dsi index with atomic docids")
    parser.add_argument("--collection", default="../shared/data/scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_dsi_search.json"))
    args = parser.parse_args()
    collection = Collection.open(args.collection)
    queries = collection.split_queries(args.split)
    texts = list(queries.values())
    rows = []
    for mode in MODES:
        searcher = Searcher.load(args.index, device=args.device)
        searcher.config = searcher.config.replace(atomic_search=mode)
        searcher.batch_search(texts[:16], 10)
        row = {"atomic_search": mode}
        for k in (10, 100):
            started = time.perf_counter()
            hits = searcher.batch_search(texts, k)
            row[f"queries_per_s_k{k}"] = round(len(texts) / (time.perf_counter() - started), 1)
        scores = evaluate(dict(zip(queries, hits)), collection.qrels(args.split), ("nDCG@10", "R@100")).aggregate
        rows.append({**row, **{name: round(value, 4) for name, value in scores.items()}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"index": str(args.index), "split": args.split, "device": args.device, "rows": rows},
                                   indent=1) + "\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in keys) + " |")


if __name__ == "__main__":
    main()
