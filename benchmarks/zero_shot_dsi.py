"""Zero-shot DSI by distillation, chosen across collections: the recipe never sees the target's queries.

For each collection (default: cranfield, msmarco-trecdl19-5k, scifact; SciFact zero-shot, its train
queries unused), one ``genir bench`` (reusing what it built before) of:

* the baselines: ``bm25``, ``dense``, and the teacher ``teacher`` = their hybrid (weight 0.5, as a
  zero-shot hybrid gets without dev queries);
* ``dsi``: atomic DSI zero-shot with its defaults (keyword pseudo-queries labelled by their own
  document, the dense start kept unless held-out pseudo-queries show a gain);
* one ``dsi`` per cell of the grid (``--grid KEY=V1,V2``, DSI settings) with ``teacher`` = that
  collection's teacher index (:mod:`genir.retrieval.teacher`), and each fused with BM25 (weight 0.5).

Then the cross-collection protocol: for each collection, the cell chosen is the one with the best
mean nDCG@10 over the *other* collections' real test queries, and that cell's score on this
collection is what is reported (its own queries never choose anything). Writes JSON.

Usage: python benchmarks/zero_shot_dsi.py --grid teacher_temperature=0.1,0.3 [--collections cranfield,scifact]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path
from statistics import mean

from genir.evaluation.bench import BenchRow, run_bench, source_commit
from genir.indexer.collection import Collection

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COLLECTIONS = ("cranfield", "msmarco-trecdl19-5k", "scifact")
ZERO_SHOT_WEIGHT = 0.5  # a zero-shot hybrid's weight: no dev queries to choose it on (genir.baselines.hybrid)


def cells(grid: list[str]) -> list[dict[str, str]]:
    """Every combination of ``KEY=V1,V2`` settings, as ``{key: value}``."""
    axes = [(key, values.split(",")) for key, values in (g.split("=", 1) for g in grid)]
    return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]


def label(cell: dict[str, str]) -> str:
    """The bench label of a cell, e.g. ``distill-teacher_temperature-0_1`` (no dot or =: a bench option is LABEL.KEY=VALUE)."""
    return "distill" + "".join(f"-{k}-{v}".replace(".", "_") for k, v in cell.items())


def bench_collection(name: str, grid: list[dict[str, str]], workdir: Path, distill_sets: list[str],
                     default_dsi: bool = True) -> list[BenchRow]:
    """One collection's bench (module docstring): the baselines, default DSI, and each distilled cell ± BM25."""
    folder = workdir.resolve() / name
    indexes = folder / "indexes"
    # The dense index is built once: the teacher's first component is a copy of it, and every DSI's docid
    # rows are its embeddings.
    dense = indexes / "dense"
    entries = ["bm25", "dense", "teacher=hybrid"] + (["dsi=dsi"] if default_dsi else [])
    common = ["queries_split=", f"embeddings_from={dense}"]
    sets = ["teacher.of=dense", f"teacher.of_from={dense}", f"teacher.weight={ZERO_SHOT_WEIGHT}", *[f"dsi.{s}" for s in common if default_dsi]]
    common += distill_sets
    for cell in grid:
        name_ = label(cell)
        entries += [f"{name_}=dsi", f"{name_}+bm25=hybrid"]
        sets += [f"{name_}.teacher={indexes / 'teacher'}", *[f"{name_}.{k}={v}" for k, v in cell.items()],
                 *[f"{name_}.{s}" for s in common],
                 f"{name_}+bm25.of=dsi", f"{name_}+bm25.of_from={indexes / name_}", f"{name_}+bm25.weight={ZERO_SHOT_WEIGHT}"]
    return run_bench(Collection.open(DATA / name, allow_empty_docs=True), "test", entries, folder, sets, reuse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... DSI settings of the distilled cells (repeatable)")
    parser.add_argument("--collections", default=",".join(COLLECTIONS))
    parser.add_argument("--distill-set", action="append", default=[], help="KEY=VALUE for every distilled cell")
    parser.add_argument("--no-default-dsi", action="store_true", help="leave out the dsi entry with its defaults (its cost)")
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/zero-shot"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "zero_shot_dsi.json")
    args = parser.parse_args()
    grid = cells(args.grid) or [{}]
    names = args.collections.split(",")
    started = time.perf_counter()
    tables = {name: bench_collection(name, grid, args.workdir, args.distill_set, not args.no_default_dsi) for name in names}
    scores = {name: {row.method: row.ndcg10 for row in rows} for name, rows in tables.items()}
    protocol = []
    for target in names:
        others = [n for n in names if n != target]
        for suffix in ("", "+bm25") if others else ():
            best = max(grid, key=lambda c: mean(scores[o][label(c) + suffix] for o in others))
            protocol.append({"collection": target, "entry": "distilled" + (" + BM25" if suffix else ""),
                             "chosen": label(best), "chosen_on": " + ".join(others),
                             "their_mean_ndcg10": round(mean(scores[o][label(best) + suffix] for o in others), 4),
                             **{key: round(scores[target][entry], 4) for key, entry in
                                (("ndcg10", label(best) + suffix), ("bm25", "bm25"), ("dense", "dense"), ("teacher", "teacher"))}})
    result = {
        "provenance": {"date": time.strftime("%Y-%m-%d"), "machine": f"2 shared CPU cores, {platform.machine()}",
                       "commit": source_commit(), "seconds": round(time.perf_counter() - started, 1),
                       "note": "zero-shot: no collection's queries train anything; each collection's cell is chosen on the others' test queries"},
        "grid": grid,
        "collections": {name: [{"method": r.method, "ndcg10": round(r.ndcg10, 4), "r10": round(r.r10, 4),
                                "build_seconds": round(r.build_seconds, 1), "queries_per_second": round(r.queries_per_second, 1),
                                "dev": r.dev} for r in rows] for name, rows in tables.items()},
        "protocol": protocol,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, rows in tables.items():
        print(f"\n{name}")
        for r in rows:
            print(f"  {r.method:40s} {r.ndcg10:.4f}  build {r.build_seconds:7.1f} s  {r.queries_per_second:7.1f} q/s  {r.dev}")
    print(json.dumps(protocol, indent=1))


if __name__ == "__main__":
    main()
