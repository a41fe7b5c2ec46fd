"""What genir costs at 10k / 30k / 100k real-text documents (issue 31): build, bytes, memory, queries/s.

The corpus is ``builtin:pydocs`` (:mod:`genir.indexer.builtin_corpus`: docstrings of the standard
library and of the installed packages, split into passages; no download), and the sizes are nested
prefixes of it. For each size and method the index is built by the CLI in a child process
(``genir index``; wall time, that child's CPU seconds and ``ru_maxrss`` from ``os.wait4`` = its
peak resident memory, bytes of the index folder), then searched in another child
(``Searcher.batch_search`` of the same 200 queries at k=10 and at k=100, after a warm-up batch of
5; wall and process CPU time per query). On a shared, oversubscribed machine a niced child gets a
small share of the cores, so the CPU times are the steadier measure of cost; wall times include
the wait. Queries are the first
sentences of every 5th of the first 1,000 passages, the same at every size (each holds their
passages). Quality is not measured (there are no judged queries); cost does not need it.

Methods and their builds (none trains: every build is zero-shot and trains no step):

* ``bm25``: Lucene (pyserini), defaults.
* ``dense``: all-MiniLM-L6-v2 + FAISS Flat. Encodings are kept in the run's one ``$GENIR_CACHE``
  (``<work>/cache``), so a larger size encodes only the passages a smaller one did not: each row
  says how many passages its build encoded (``encoded``), and the first build of a size is the
  only one whose time includes them.
* ``dsi-atomic``, ``dsi-rq``: DSI with its docid rows from the dense index of the same size
  (``embeddings_from``: no encoding in their build time), ``queries_split=`` ``max_epochs=0``
  ``select_on_dev=false`` (no training steps, no dev carve: the untrained decoder, whose search
  cost does not depend on its weights).
* ``seal``: the FM-index with the query's own n-grams as keys, ``use_model=false`` (no model: its
  zero-shot build fits the query start from the frozen encoder's states of 4 spans per passage,
  four times dense's encoding; the model's beams per query are a fixed cost beside the index's).

Growth exponents ``a`` (cost ∝ N^a) are fitted per method by least squares on log cost against
log N over the sizes measured. Each measurement records the 1-minute load average before and after:
on a shared machine the times are under that load.

    OMP_NUM_THREADS=2 python benchmarks/bench_scale.py [--sizes 10000,30000,100000]
        [--methods bm25,dense,dsi-atomic,dsi-rq,seal] [--work bench-out/scale] [--nice 5]

Resumable: a (size, method) already in the output JSON is not measured again (``--redo`` forces it).
Writes ``benchmarks/results/bench_scale.json`` after every measurement.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUERIES = 200
QUERY_POOL = 1000  # queries are drawn from the first QUERY_POOL passages, which every size holds
WARMUP = 5
KS = (10, 100)

# method label -> (genir method, build settings; {dense} is the dense index of the same size)
ZERO_SHOT = ["queries_split=", "max_epochs=0"]
METHODS: dict[str, tuple[str, list[str]]] = {
    "bm25": ("bm25", []),
    "dense": ("dense", []),
    "dsi-atomic": ("dsi", ["docids=atomic", "embeddings_from={dense}", *ZERO_SHOT, "select_on_dev=false"]),
    "dsi-rq": ("dsi", ["docids=rq", "embeddings_from={dense}", *ZERO_SHOT, "select_on_dev=false"]),
    # the model left out: its zero-shot build fits the query start from the frozen encoder's states of
    # 4 spans per passage, four times dense's encoding, which 2 loaded cores cannot do at 100k
    "seal": ("seal", ["use_model=false", "queries_split="]),
}
LARGE = 10_000
METRICS = ("build_seconds", "build_cpu_seconds", "build_seconds_in_genir", "index_bytes", "peak_rss_mb", "ms_per_query_k10", "ms_per_query_k100",
           "cpu_ms_per_query_k10", "cpu_ms_per_query_k100")


def first_sentence(text: str, words: int = 24) -> str:
    """The passage's first sentence, at most ``words`` words: a short query that names its passage."""
    sentence = re.split(r"(?<=[.!?:])\s", text, maxsplit=1)[0]
    return " ".join(sentence.split()[:words])


def write_prefix(lines: list[str], folder: Path) -> Path:
    """A BEIR folder of the first ``len(lines)`` passages (no queries)."""
    if not (folder / "corpus.jsonl").is_file():
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        (folder / "queries.jsonl").write_text("", encoding="utf-8")
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
        staging = folder / "corpus.jsonl.tmp"
        staging.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        staging.rename(folder / "corpus.jsonl")
    return folder


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (what ``du --apparent-size`` counts)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_child(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command``; its wall seconds, peak RSS (MB, this child alone: ``os.wait4``) and load averages."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command)} exited {code}:\n{tail}")
    return {"seconds": round(seconds, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss: KiB on Linux
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def search_child(index: str, queries_file: str) -> None:
    """In a child process: open ``index``, time ``batch_search`` of the queries at each k; print JSON."""
    import torch

    from genir.retrieval.searcher import Searcher

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    queries = json.loads(Path(queries_file).read_text(encoding="utf-8"))
    started = time.perf_counter()
    searcher = Searcher.load(index, device="cpu")
    result: dict[str, Any] = {"open_seconds": round(time.perf_counter() - started, 2)}
    searcher.batch_search(queries[:WARMUP], max(KS))
    for k in KS:
        started, cpu_started = time.perf_counter(), time.process_time()
        hits = searcher.batch_search(queries, k)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        result[f"queries_per_second_k{k}"] = round(len(queries) / seconds, 2)
        result[f"ms_per_query_k{k}"] = round(1000 * seconds / len(queries), 2)
        result[f"cpu_ms_per_query_k{k}"] = round(1000 * cpu_seconds / len(queries), 2)  # all threads: less load-bound
        result[f"mean_hits_k{k}"] = sum(map(len, hits)) / len(hits)
    print("RESULT " + json.dumps(result), flush=True)


def fit_exponent(sizes: list[int], values: list[float]) -> float | None:
    """The least-squares slope of log(value) on log(size): cost ∝ N^slope (None below two sizes)."""
    points = [(math.log(n), math.log(v)) for n, v in zip(sizes, values) if v and v > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / sxx, 3)


def exponents(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method, the exponents fitted over every size measured and, where it holds two sizes and
    differs, over the issue's sizes (>= 10k: fixed costs such as starting Python and loading models
    weigh less there)."""
    fitted = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["docs"])
        large = [r for r in mine if r["docs"] >= LARGE]
        for chosen in [mine] + ([large] if len(large) >= 2 and len(large) < len(mine) else []):
            fitted.append({"method": method, "sizes": [r["docs"] for r in chosen],
                           **{m: fit_exponent([r["docs"] for r in chosen], [r.get(m) for r in chosen]) for m in METRICS}})
    return fitted


def corpus_stats(lines: list[str], sizes: list[int]) -> dict[str, Any]:
    """Passages and mean words of the corpus and of each size's prefix (passages lengthen along it)."""
    words = [len(json.loads(line)["text"].split()) for line in lines]
    return {"passages": len(lines), "mean_words": round(sum(words) / len(words), 1),
            "prefix_mean_words": {str(n): round(sum(words[:n]) / n, 1) for n in sorted(set(sizes))}}


def commit() -> str:
    described = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    return described + ("+" if dirty.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--work", type=Path, default=ROOT / "bench-out" / "scale")
    parser.add_argument("--nice", type=int, default=5, help="niceness of the build and search children")
    parser.add_argument("--redo", action="store_true", help="measure again what the output JSON already holds")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bench_scale.json")
    parser.add_argument("--refit", action="store_true", help="measure nothing: fit the output's exponents again from its rows")
    parser.add_argument("--search-child", nargs=2, metavar=("INDEX", "QUERIES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search_child:
        search_child(*args.search_child)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown} (known: {', '.join(METHODS)})")
    work = args.work.resolve()
    env = {**os.environ, "GENIR_CACHE": str(work / "cache"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    os.environ["GENIR_CACHE"] = env["GENIR_CACHE"]
    from genir.indexer.builtin_corpus import builtin_folder

    corpus_folder = builtin_folder("pydocs")
    corpus, corpus_name = corpus_folder / "corpus.jsonl", corpus_folder.name
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.refit:
        record = json.loads(args.output.read_text(encoding="utf-8"))
        record["corpus"].update(corpus_stats(lines, [r["docs"] for r in record["rows"]]))
        args.output.write_text(json.dumps({**record, "exponents": exponents(record["rows"])}, indent=1) + "\n", encoding="utf-8")
        return
    if len(lines) < sizes[-1]:
        parser.error(f"builtin:pydocs has {len(lines):,} passages here, fewer than {sizes[-1]:,}")
    if sizes[0] < QUERY_POOL:
        parser.error(f"the smallest size must hold the {QUERY_POOL:,} passages the queries are drawn from")
    step = QUERY_POOL // QUERIES
    queries = [first_sentence(json.loads(lines[i * step])["text"]) for i in range(QUERIES)]
    queries_file = work / "queries.json"
    queries_file.write_text(json.dumps(queries, indent=0), encoding="utf-8")

    done = json.loads(args.output.read_text(encoding="utf-8"))["rows"] if args.output.is_file() else []
    nice = ["nice", "-n", str(args.nice)] if args.nice else []
    genir = [*nice, sys.executable, "-m", "genir.cli.main"]
    for size in sizes:
        folder = write_prefix(lines[:size], work / f"corpus-{size}")
        for method in methods:
            if not args.redo and any(r["method"] == method and r["docs"] == size for r in done):
                continue
            name, settings = METHODS[method]
            index = work / "indexes" / f"{method}-{size}"
            dense = work / "indexes" / f"dense-{size}"
            if "{dense}" in " ".join(settings) and not (dense / "manifest.json").is_file():
                print(f"skip {method} at {size:,}: it reads the dense index of that size, not built", flush=True)
                continue
            cached_before = cached_rows(work / "cache")
            shutil.rmtree(index, ignore_errors=True)  # not --overwrite: dense would reuse the old index's embeddings
            command = [*genir, "index", "-m", name, "-c", str(folder), "-o", str(index), "--device", "cpu"]
            for setting in settings:
                command += ["--set", setting.format(dense=dense)]
            print(f"{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S} building {method} of {size:,} passages", flush=True)
            build = run_child(command, env, work / f"build-{method}-{size}.log")
            searched = run_child([*nice, sys.executable, str(Path(__file__).resolve()), "--search-child", str(index), str(queries_file)],
                                 env, work / f"search-{method}-{size}.log")
            result = json.loads(next(line for line in (work / f"search-{method}-{size}.log").read_text(encoding="utf-8").splitlines()
                                     if line.startswith("RESULT "))[len("RESULT "):])
            stats = json.loads((index / "manifest.json").read_text(encoding="utf-8"))["stats"]
            row = {"method": method, "docs": size, "build_seconds": build["seconds"], "build_cpu_seconds": build["cpu_seconds"],
                   "build_seconds_in_genir": stats.get("build_seconds"),
                   "encoded": cached_rows(work / "cache") - cached_before if method == "dense" else 0,
                   "index_bytes": folder_bytes(index), "peak_rss_mb": build["peak_rss_mb"], **result,
                   "search_peak_rss_mb": searched["peak_rss_mb"],
                   "load_build": [build["load_before"], build["load_after"]],
                   "load_search": [searched["load_before"], searched["load_after"]],
                   "command": " ".join(["genir", *command[len(genir):]]).replace(str(work), "<work>")}
            print(json.dumps(row), flush=True)
            save_row(args.output, row, {
                "provenance": {"date": f"{datetime.date.today()}", "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, shared with other jobs and "
                               "oversubscribed (load_build/load_search: 1-minute load averages)",
                               "commit": commit(), "note": "commit: the code that measured; children ran at nice "
                               f"{args.nice} with OMP_NUM_THREADS={env['OMP_NUM_THREADS']}"},
                "corpus": {"name": f"builtin:pydocs ({corpus_name})", **corpus_stats(lines, [1000, 3000, 10_000, 30_000, 100_000, *sizes]),
                           "made": "docstrings of the standard library and the installed packages, parsed with ast, "
                                   "split into passages of <= 150 words at paragraph breaks, deduplicated "
                                   "(genir.indexer.builtin_corpus)", "sizes": "nested prefixes"},
                "queries": f"{QUERIES} first sentences (<= 24 words) of passages 0, {step}, {2 * step}, ... "
                           f"(the same queries at every size); {WARMUP} searched first as a warm-up",
                "training": "none: dsi builds are zero-shot with max_epochs=0 (no training steps, no encoder states), "
                            "seal has use_model=false (FM-index, query n-gram keys, no model)",
                "encoding": "dense encodings are cached across sizes in one $GENIR_CACHE: a dense row's build time "
                            "includes encoding its 'encoded' passages only (all of them at the smallest size: "
                            "a cold build); dsi rows read the dense index's rows and encode nothing",
            }, work / "output.lock")
    print(f"wrote {args.output}")


def save_row(output: Path, row: dict[str, Any], header: dict[str, Any], lock_file: Path) -> None:
    """Write ``row`` into ``output`` (replacing the same method and size), re-read under ``lock_file``'s
    lock: runs of different methods may share one output file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(output.read_text(encoding="utf-8"))["rows"] if output.is_file() else []
        rows = [r for r in rows if not (r["method"] == row["method"] and r["docs"] == row["docs"])] + [row]
        rows.sort(key=lambda r: (list(METHODS).index(r["method"]), r["docs"]))
        staging = output.with_suffix(".tmp")
        staging.write_text(json.dumps({**header, "rows": rows, "exponents": exponents(rows)}, indent=1) + "\n", encoding="utf-8")
        staging.rename(output)


def cached_rows(cache: Path) -> int:
    """Inputs held by the cache's document-embedding row banks (``<bank>/<shard>/digests.npy`` ``[n, 16]``,
    :mod:`genir.encoding.row_bank`), to count what a build encoded."""
    import numpy as np

    return sum(np.load(path, mmap_mode="r").shape[0] for path in (cache / "embeddings").glob("*/*/digests.npy"))


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashed child leaves no core file in the work folder
    main()
