"""Growing indexes on SciFact: time ``add`` and ``delete`` of 1,000 documents (issue 15).

For each method an index is built of SciFact without its last 1,000 documents (the slice is
written as a BEIR folder under ``--work``), then the 1,000 are added (``add_documents``) and
deleted again (``delete_documents``). Times are the whole change as the CLI runs it: opening the
index, writing the new version atomically (staging folder, manifest hashes, rename) and opening it
again. DSI's index is the default recipe's files with ``max_epochs=0`` (the decoder untrained: add
and delete never train, and their cost does not depend on the weights), its document rows reused
from the dense index (``embeddings_from``); ``--dsi-index`` uses a trained index instead (copied).

    python benchmarks/bench_growth.py [--data ../shared/data/scifact] [--work bench-out/growth]

Prints a table and writes ``benchmarks/results/bench_growth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from genir.indexer.artifact import read_manifest
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher, add_documents, build_index, delete_documents, parse_config, searcher_class

HERE = Path(__file__).resolve().parent


def write_slice(corpus: Path, target: Path, lines: list[str]) -> Path:
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    (target / "corpus.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (target / "queries.jsonl").write_text("", encoding="utf-8")
    (target / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    return target


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "scifact")
    parser.add_argument("--work", type=Path, default=HERE.parent / "bench-out" / "growth")
    parser.add_argument("--count", type=int, default=1000, help="documents added and deleted")
    parser.add_argument("--methods", default="bm25,dense,dsi")
    parser.add_argument("--dsi-index", type=Path, default=HERE.parent / "indexes" / "scifact-dsi",
                        help="a trained SciFact DSI index to copy, if it exists")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bench_growth.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))

    lines = [line for line in (args.data / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    base = write_slice(args.data, args.work / "base", lines[:-args.count])
    new = write_slice(args.data, args.work / "new", lines[-args.count:])
    new_ids = [json.loads(line)["_id"] for line in lines[-args.count:]]
    base_collection = Collection.open(base)
    rows = []
    dense_dir = args.work / "indexes" / "dense"
    for method in args.methods.split(","):
        built = args.work / "indexes" / method
        if method == "dsi" and (args.dsi_index / "manifest.json").is_file():
            source = f"copy of {args.dsi_index}"
            built = args.dsi_index
        elif not (built / "manifest.json").is_file():
            settings = []
            if method == "dsi":
                settings = ["queries_split=", "max_epochs=0", f"embeddings_from={dense_dir}"]
            config = parse_config(searcher_class(method).Config, settings)
            _, seconds = timed(build_index, method, base_collection, built, config, overwrite=True, device="cpu")
            print(f"built {method} of {len(lines) - args.count:,} documents in {seconds:.1f} s", flush=True)
            source = "built here" + (" (max_epochs=0, rows from the dense index)" if method == "dsi" else "")
        else:
            source = "built here earlier"
        work = args.work / "runs" / method
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(built, work)
        before = Searcher.load(work, device="cpu").num_docs
        added, add_seconds = timed(add_documents, work, new, device="cpu")
        deleted, delete_seconds = timed(delete_documents, work, new_ids, device="cpu")
        after = read_manifest(work, verify=False).stats["num_docs"]
        row = {
            "method": method, "index": source, "docs_before": before, "docs_after_add": added.num_docs_after,
            "docs_after_delete": after,
            "add_seconds": round(add_seconds, 2), "add_change_seconds": added.seconds,
            "add_embedding_seconds": added.stats.get("add_embedding_seconds", added.stats.get("add_encoding_seconds")),
            "add_optimizer_steps": added.stats.get("add_optimizer_steps", 0),
            "delete_seconds": round(delete_seconds, 2), "delete_change_seconds": deleted.seconds,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output.is_file():  # rows of methods not measured this time are kept
        measured = {r["method"] for r in rows}
        kept = [r for r in json.loads(args.output.read_text(encoding="utf-8")).get("rows", []) if r["method"] not in measured]
        rows = kept + rows
    header = ("method", "docs", "add 1,000 (s)", "of which embedding (s)", "delete 1,000 (s)", "optimizer steps")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        embed = "" if r["add_embedding_seconds"] is None else f"{r['add_embedding_seconds']:.1f}"
        print(f"| {r['method']} | {r['docs_before']:,} -> {r['docs_after_add']:,} -> {r['docs_after_delete']:,} | "
              f"{r['add_seconds']:.1f} ({r['add_change_seconds']:.1f} in the change) | {embed} | "
              f"{r['delete_seconds']:.1f} ({r['delete_change_seconds']:.1f} in the change) | {r['add_optimizer_steps']} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"rows": rows, "count": args.count, "corpus": str(args.data), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "note": "times: the whole add_documents/delete_documents call (open, write atomically, reopen); "
                      "'in the change': Searcher.add/delete alone (write + reopen)"}
    args.output.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
