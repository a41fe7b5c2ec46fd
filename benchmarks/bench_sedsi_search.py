"""SE-DSI's ``rescore`` search, this tree against an older one: queries/s, rankings, scores, nDCG@10.

Both trees search the same index with the same queries through the public API
(``Searcher.load(...).batch_search``), each in its own Python process (one ``genir`` package per
process) whose ``PYTHONPATH`` is that tree: ``--old`` is a checkout of the code to compare with
(``git worktree add /tmp/sebound-old edc2ccb``), the new one is this file's tree. Runs alternate
old, new, old, new... (``--repeats`` of each, at each ``k``) so that a machine shared with other work
loads both alike; the time of a run is one ``batch_search`` over the queries after the index is
loaded and one query searched (model start-up not counted), and the median is reported. The
rankings of the first run of each tree are compared: the same documents in the same order (top 10
and all ``k``), and the largest difference of a document's score. Each run also counts the real
positions (padding left out) its teacher-forced scoring computed, per query: ``full`` through the
whole output layer, ``bound`` through a query's bound set alone
(:func:`genir.kernels.candidate_scores.candidate_scores`' ``counts``; a tree whose kernel has none is
counted at its model calls, every one of which is ``full``).

Usage:
    python benchmarks/bench_sedsi_search.py --index bench-out/sedsi-quick \\
        --collection ../shared/data/scifact --old /tmp/sebound-old --queries 20 --k 10 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def worker(args: argparse.Namespace) -> None:
    """One timed ``batch_search`` in this process's ``genir``: prints ``{seconds, rankings, genir}`` as JSON."""
    import torch

    import genir
    from genir.indexer.collection import Collection
    from genir.retrieval.searcher import Searcher

    torch.set_num_threads(args.threads)
    k = args.k[0]
    queries = list(Collection.open(args.collection).split_queries(args.split).items())[:args.queries]
    searcher = Searcher.load(args.index, device="cpu")
    searcher.batch_search([queries[0][1]], k)  # warm: descriptions and caches built once
    counts = count_positions()
    started = time.perf_counter()
    results = searcher.batch_search([text for _, text in queries], k)
    seconds = time.perf_counter() - started
    rankings = {qid: [[hit.docid, hit.score] for hit in hits] for (qid, _), hits in zip(queries, results)}
    positions = {kind: round(n / len(queries), 1) for kind, n in counts.items()}
    print(json.dumps({"seconds": seconds, "rankings": rankings, "positions_per_query": positions,
                      "genir": str(Path(genir.__file__).parent)}))


def count_positions() -> dict[str, int]:
    """A dict that gains the real positions this process's rescore scores from now on (module docstring)."""
    import inspect

    import genir.dsi.decoding as decoding
    import genir.kernels.candidate_scores as kernel
    from genir.seq2seq.vocab import EOS, PAD

    counts: dict[str, int] = {"full": 0, "bound": 0}
    if "counts" in inspect.signature(kernel.candidate_scores).parameters:
        scores = decoding.candidate_scores
        decoding.candidate_scores = lambda *args, **kwargs: scores(*args, counts=counts, **kwargs)
    else:  # an older kernel: every model call is the whole output layer. Position 0 is its call without a
        # cache (one per query); after it, a real position reads neither pad nor eos.
        forward = kernel._forward

        def counted(model, outputs, mask, inputs, cache):
            counts["full"] += inputs.shape[0] if cache is None else int(((inputs != PAD) & (inputs != EOS)).sum())
            return forward(model, outputs, mask, inputs, cache)

        kernel._forward = counted
    return counts


def run_worker(tree: Path, args: argparse.Namespace, k: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--index", str(args.index), "--collection",
               str(args.collection), "--split", args.split, "--queries", str(args.queries), "--k", str(k),
               "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["genir"]) != tree / "genir":
        raise SystemExit(f"the worker imported {result['genir']}, not {tree / 'genir'}: check PYTHONPATH")
    return result


def compare(old: dict[str, list], new: dict[str, list]) -> dict:
    """Rankings of both trees: same top 10 and same full lists per query, largest score difference."""
    top10 = sum(o[:10] == n[:10] for o, n in ((
        [d for d, _ in old[q]], [d for d, _ in new[q]]) for q in old))
    full = sum([d for d, _ in old[q]] == [d for d, _ in new[q]] for q in old)
    differences = [abs(score - dict(new[q]).get(docid, float("nan"))) for q in old for docid, score in old[q]]
    return {"queries": len(old), "same_top10": top10, "same_ranking": full,
            "max_abs_score_difference": max(differences) if differences else 0.0}


def ndcg10(rankings: dict[str, list], collection: str, split: str) -> float:
    from genir.indexer.collection import Collection
    from genir.measures import evaluate
    from genir.retrieval.searcher import Hit

    qrels = {q: rels for q, rels in Collection.open(collection).qrels(split).items() if q in rankings}
    run = {q: [Hit(d, s) for d, s in hits] for q, hits in rankings.items()}
    return evaluate(run, qrels, ("nDCG@10",)).aggregate["nDCG@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--collection", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--old", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--queries", type=int, default=16, help="the split's first N queries")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="the machine's state, said in the provenance")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_sedsi_search.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    args.index, args.collection = args.index.resolve(), args.collection.resolve()
    trees = {"new": ROOT, **({"old": args.old.resolve()} if args.old else {})}
    rows = []
    for k in args.k:
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            for name in sorted(trees, reverse=True):  # old first, then new, alternating
                runs[name].append(run_worker(trees[name], args, k))
                print(f"k={k} run {repeat + 1} {name}: {args.queries / runs[name][-1]['seconds']:.3f} queries/s", flush=True)
        row = {"k": k, "queries": args.queries}
        for name, done in runs.items():
            seconds = [r["seconds"] for r in done]
            row[f"{name}_seconds"] = [round(s, 3) for s in seconds]
            row[f"{name}_queries_per_second"] = round(args.queries / statistics.median(seconds), 3)
            row[f"{name}_ndcg10"] = round(ndcg10(done[0]["rankings"], str(args.collection), args.split), 4)
            row[f"{name}_positions_per_query"] = done[0]["positions_per_query"]
        if "old" in runs:
            row["speedup"] = round(row["new_queries_per_second"] / row["old_queries_per_second"], 2)
            row.update(compare(runs["old"][0]["rankings"], runs["new"][0]["rankings"]))
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_result(args, rows)  # after each k: a long run stopped early keeps what it measured


def write_result(args: argparse.Namespace, rows: list[dict]) -> None:
    """``args.out``: the rows measured so far, with the provenance of this tree."""
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    result = {
        "provenance": {
            "date": datetime.now(timezone.utc).date().isoformat(),
            "machine": f"{os.cpu_count()} CPU cores ({args.threads} torch threads), {platform.machine()}, torch {torch.__version__}",
            "commit": commit + ("+" if dirty else ""),
            "note": "commit: the new tree's; " + (args.note or "old and new runs alternate, medians of the runs"),
        },
        "config": {"index": str(args.index), "collection": str(args.collection), "split": args.split,
                   "old": str(args.old or ""), "repeats": args.repeats},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
