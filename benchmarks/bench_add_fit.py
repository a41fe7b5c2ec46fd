"""What ``genir add --fit`` costs over plain ``genir add`` (issue 30, item 4).

A dense-start atomic DSI index (the default recipe, ``max_epochs=0``: the fit's cost does not depend
on the weights) of the first ``--base`` documents of the built-in stdlib corpus, which keeps a full
sample of fit pairs (2,000 first-words views), then ``--count`` more documents added to a copy of it,
plain and with ``--fit`` (one row per ``fit_old_queries`` given), interleaved, ``--reps`` times each.
Times are the whole ``add_documents`` call (open, add, fit, write the new version, reopen); the
documents' embeddings are cached after the first add, so plain add's median is the change without
embedding. No SciFact: the fit's cost is its encoder pass over the kept pairs (at most 2,000 texts,
whatever the corpus) and the new documents' pairs, and L-BFGS over the new rows.

    OMP_NUM_THREADS=2 nice -n 5 python benchmarks/bench_add_fit.py [--work bench-out/add-fit]

Prints each run and writes ``benchmarks/results/bench_add_fit.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from genir.dsi.row_fit import RowFitSettings
from genir.evaluation.bench import source_commit
from genir.indexer.collection import Collection
from genir.retrieval.searcher import add_documents, build_index, parse_config, searcher_class

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE.parent / "bench-out" / "add-fit")
    parser.add_argument("--base", type=int, default=2200, help="documents of the index added to")
    parser.add_argument("--count", type=int, default=100, help="documents added")
    parser.add_argument("--old", default="2000,500", help="fit_old_queries of the --fit rows (comma-separated)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bench_add_fit.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    docs = list(Collection.open("builtin:stdlib").docs())
    base, new = docs[: args.base], docs[args.base: args.base + args.count]
    index = args.work / "base"
    if not (index / "manifest.json").is_file():  # reused: its build is not what is measured
        config = parse_config(searcher_class("dsi").Config, ["max_epochs=0", "queries_split="])
        build_index("dsi", base, index, config, overwrite=index.exists(), device="cpu")
    variants = {"add": None, **{f"add --fit (fit_old_queries={n})": RowFitSettings(fit_old_queries=int(n)) for n in args.old.split(",")}}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for rep in range(args.reps):
        for name, fit in variants.items():  # interleaved: every variant sees the same load, in turn
            target = args.work / "copy"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(index, target)
            started = time.perf_counter()
            change = add_documents(target, new, device="cpu", fit=fit)
            seconds = time.perf_counter() - started
            runs[name].append({"seconds": round(seconds, 2), **{k: v for k, v in change.stats.items() if k.startswith("fit")}})
            print(name, rep, json.dumps(runs[name][-1]), flush=True)
    shutil.rmtree(args.work / "copy", ignore_errors=True)
    plain = statistics.median(r["seconds"] for r in runs["add"])
    rows = []
    for name, measured in runs.items():
        median = statistics.median(r["seconds"] for r in measured)
        fit_seconds = [r["fit_seconds"] for r in measured if "fit_seconds" in r]
        first = measured[0]
        rows.append({"change": name, "median_seconds": round(median, 1), "of_plain_add": round(median / plain, 1),
                     "median_fit_seconds": round(statistics.median(fit_seconds), 1) if fit_seconds else None,
                     "fit_queries": first.get("fit_queries"), "fit_old_queries": first.get("fit_old_queries"),
                     "fit_objective": f"{first['fit_objective_before']} -> {first['fit_objective_after']}" if fit_seconds else None,
                     "seconds": [r["seconds"] for r in measured]})
    record = {"provenance": {"date": str(date.today()), "machine": f"2 shared CPU cores (loaded), {platform.machine()}, torch {torch.__version__}",
                             "commit": source_commit(), "note": (
                                 f"builtin:stdlib, dense-start atomic dsi (max_epochs=0) of {len(base)} documents, {len(new)} added; "
                                 f"{args.reps} interleaved runs per row, wall seconds of the whole add_documents call on 2 shared, "
                                 "loaded cores (other jobs running); embeddings cached after the first add")},
              "base_docs": len(base), "added_docs": len(new), "rows": rows}
    args.output.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
