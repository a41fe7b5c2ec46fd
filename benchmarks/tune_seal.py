"""Choose SEAL's search settings on a training split, never on the test queries.

Loads a seal index (or the seal component of a seal-hybrid index, its ``first/``) and evaluates
every combination of the given settings on the queries of ``--split`` (default ``train``), or with
``--dev-fraction`` on its dev carve (the queries a SEAL built with that ``dev_fraction`` and
``seed`` never trained on): keys are computed once per combination of the
settings that change them (``query_ngram_prob``, ``query_ngram_words``, ``generated_ngrams``,
``query_ngrams``, ``pmi_lambda``, ``beams``) and ranked once per combination of the others (``alpha``, ``beta``,
``max_occurrences``). With ``--bm25 INDEX``, every SEAL run is also fused with BM25 for each
``--hybrid-weights`` value (a seal-hybrid index's own BM25 component when ``--bm25`` is not
given). Prints a table (best first) and writes JSON.

Usage: python benchmarks/tune_seal.py --index IDX --collection ../shared/data/scifact \
           --grid alpha=1,2,3 --grid beta=0,0.5,0.8 [--bm25 BM25_IDX --hybrid-weights 0.2,0.3,0.5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from genir.baselines.hybrid import HybridSearcher, fuse
from genir.indexer.collection import Collection
from genir.indexer.dev_split import split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Searcher
from genir.seal.searcher import seal_component

KEY_SETTINGS = ("query_ngram_prob", "query_ngram_words", "generated_ngrams", "query_ngrams", "pmi_lambda", "beams")
DEPTH = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--dev-fraction", type=float, default=0.0,
                        help="above 0: tune on the dev carve of --split (genir.indexer.dev_split.split_dev)")
    parser.add_argument("--seed", type=int, default=0, help="the dev carve's seed")
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (repeatable)")
    parser.add_argument("--bm25", type=Path, help="a bm25 index of the same corpus, to tune the hybrid weight")
    parser.add_argument("--hybrid-weights", default="0.1,0.2,0.3,0.4,0.5")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tune_seal.json")
    args = parser.parse_args()

    collection = Collection.open(args.collection)
    if args.dev_fraction > 0:
        qrels = split_dev(collection, args.split, args.dev_fraction, args.seed).dev
        queries = {qid: collection.queries[qid] for qid in qrels}
    else:
        queries = collection.split_queries(args.split)
        qrels = collection.qrels(args.split)
    loaded = Searcher.load(args.index)
    searcher = seal_component(loaded)
    grid = {key: values.split(",") for key, values in (g.split("=", 1) for g in args.grid)}
    bm25_searcher = Searcher.load(args.bm25) if args.bm25 else loaded.bm25 if isinstance(loaded, HybridSearcher) else None
    bm25 = bm25_searcher.batch_search(list(queries.values()), DEPTH) if bm25_searcher is not None else None
    texts = list(queries.values())

    rows = []
    names = list(grid)
    cached_settings, cached_keys = None, []
    for combo in itertools.product(*grid.values()):
        settings = dict(zip(names, combo))
        config = searcher.config.replace(**settings)
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
    args.out.write_text(json.dumps({"index": str(args.index), "split": args.split, "dev_fraction": args.dev_fraction,
                                    "seed": args.seed, "queries": len(queries), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
