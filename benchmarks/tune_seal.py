"""Choose SEAL's search settings on a training split, never on the test queries.

Loads a seal (or seal-hybrid) index and evaluates every combination of the given settings on
the queries of ``--split`` (default ``train``): keys are computed once per combination of the
settings that change them (``query_ngram_prob``, ``query_ngram_words``, ``generated_ngrams``,
``query_ngrams``) and ranked once per combination of the others (``alpha``, ``beta``,
``max_occurrences``). With ``--bm25 INDEX``, every SEAL run is also fused with BM25 for each
``--hybrid-weights`` value. Prints a table (best first) and writes JSON.

Usage: python benchmarks/tune_seal.py --index IDX --collection ../shared/data/scifact \
           --grid alpha=1,2,3 --grid beta=0,0.5,0.8 [--bm25 BM25_IDX --hybrid-weights 0.2,0.3,0.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

from genir.indexer.collection import Collection
from genir.retrieval.evaluation import evaluate
from genir.retrieval.searcher import Searcher, parse_config
from genir.seal.hybrid import fuse

KEY_SETTINGS = ("query_ngram_prob", "query_ngram_words", "generated_ngrams", "query_ngrams")
DEPTH = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (repeatable)")
    parser.add_argument("--bm25", type=Path, help="a bm25 index of the same corpus, to tune the hybrid weight")
    parser.add_argument("--hybrid-weights", default="0.1,0.2,0.3,0.4,0.5")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tune_seal.json")
    args = parser.parse_args()

    collection = Collection.open(args.collection)
    queries = collection.split_queries(args.split)
    qrels = collection.qrels(args.split)
    searcher = Searcher.load(args.index)
    grid = {key: values.split(",") for key, values in (g.split("=", 1) for g in args.grid)}
    bm25 = Searcher.load(args.bm25).batch_search(list(queries.values()), DEPTH) if args.bm25 else None
    texts = list(queries.values())

    rows = []
    names = list(grid)
    cached_settings, cached_keys = None, []
    for combo in itertools.product(*grid.values()):
        settings = dict(zip(names, combo))
        config = parse_config(type(searcher.config), {**dataclasses.asdict(searcher.config), **settings})
        searcher.config = config
        key_settings = {k: getattr(config, k) for k in KEY_SETTINGS}
        if key_settings != cached_settings:
            started = time.perf_counter()
            cached_keys = [keys for s in range(0, len(texts), 16) for keys in searcher.keys(texts[s:s + 16])]
            cached_settings = key_settings
            print(f"keys for {key_settings}: {time.perf_counter() - started:.1f} s")
        seal = [searcher.rank(keys, DEPTH) for keys in cached_keys]
        runs = {"seal": seal}
        if bm25 is not None:
            for w in (float(x) for x in args.hybrid_weights.split(",")):
                runs[f"hybrid w={w}"] = [fuse((s, b), (w, 1 - w), "interp") for s, b in zip(seal, bm25)]
        for name, ranked in runs.items():
            scores = evaluate(dict(zip(queries, ranked)), qrels).aggregate
            rows.append({"run": name, **settings, "nDCG@10": scores["nDCG@10"], "R@10": scores["R@10"]})
    rows.sort(key=lambda r: -r["nDCG@10"])
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"index": str(args.index), "split": args.split, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
