"""``genir bench``: build, run and evaluate several methods on one collection, into one table."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from genir._version import __version__
from genir.errors import GenirError
from genir.evaluation.runs import write_run
from genir.indexer.artifact import index_size_bytes, read_manifest
from genir.indexer.collection import Collection
from genir.measures import evaluate
from genir.retrieval.searcher import Searcher, build_index, searcher_class
from genir.settings import Settings, parse_config


@dataclass
class BenchRow:
    method: str  # the entry's label (the method's name unless LABEL=METHOD)
    base_method: str
    ndcg10: float
    r10: float
    rr10: float
    hits1: float
    build_seconds: float
    size_mb: float
    queries_per_second: float
    num_queries: int
    index_dir: str
    run_file: str
    config: dict
    dev: str = ""  # what the build chose on its dev split (dev_summary), empty if it chose nothing


COLUMNS = [
    ("method", "method", "{}"),
    ("nDCG@10", "ndcg10", "{:.4f}"),
    ("R@10", "r10", "{:.4f}"),
    ("RR@10", "rr10", "{:.4f}"),
    ("Hits@1", "hits1", "{:.4f}"),
    ("build s", "build_seconds", "{:.1f}"),
    ("index MB", "size_mb", "{:.1f}"),
    ("queries/s", "queries_per_second", "{:.1f}"),
    ("chosen on dev", "dev", "{}"),
]


def dev_summary(stats: dict) -> str:
    """What a build chose on its dev split, from its manifest ``stats``: a seq2seq index's checkpoint
    (``dev_best`` = [epochs, steps, dev nDCG@10]; epoch 0 is the untrained start) with SE-DSI's
    rescore weights chosen beside it, a hybrid's weight."""
    best = stats.get("dev_best")
    if isinstance(best, list) and len(best) == 3:
        weights = stats.get("rescore_weights")
        chosen = f", plan {weights[0]:g} dense {weights[1]:g}" if weights else ""
        return f"epoch {best[0]}{chosen} (dev nDCG@10 {best[2]:.4f}, {stats.get('dev_queries', '?')} queries)"
    if stats.get("weight_source") == "dev":
        return f"weight {stats['weight']:.2f} (dev nDCG@10 {stats['dev_ndcg10']:.4f})"
    return ""


def parse_entries(entries: Sequence[str]) -> dict[str, str]:
    """``METHOD`` or ``LABEL=METHOD`` entries -> {label: method}; labels name rows and index dirs."""
    parsed: dict[str, str] = {}
    for entry in entries:
        label, sep, method = entry.partition("=")
        label, method = label.strip(), (method if sep else label).strip()
        if not label or not method:
            raise GenirError(f"bench entry {entry!r} must be METHOD or LABEL=METHOD")
        if label in parsed:
            raise GenirError(f"bench entry label {label!r} is used twice")
        searcher_class(method)  # fail early on an unknown method
        parsed[label] = method
    return parsed


def split_overrides(labels: Sequence[str], assignments: Sequence[str]) -> dict[str, list[str]]:
    """Route ``LABEL.KEY=VALUE`` assignments to their entry."""
    routed: dict[str, list[str]] = {label: [] for label in labels}
    for assignment in assignments:
        label, dot, rest = assignment.partition(".")
        if not dot or label not in routed:
            raise GenirError(f"bench option {assignment!r} must be LABEL.KEY=VALUE with LABEL one of {', '.join(labels)}")
        routed[label].append(rest)
    return routed


#: Config fields that name another index an entry copies from (a model, a component, embeddings).
SOURCE_FIELDS = ("of_from", "model_from", "embeddings_from")


def _reusable(directory: Path, method: str, config: Settings, collection: Collection) -> bool:
    """Whether the index at ``directory`` was built by ``method`` with ``config`` from ``collection``, after
    every index its config copies from was last written (a source rebuilt since, e.g. a SEAL index that
    a ``seal-hybrid`` copies, makes the copy stale although its config reads the same)."""
    if not (directory / "manifest.json").is_file():
        return False
    try:
        manifest = read_manifest(directory, verify=False)
    except GenirError:
        return False
    built = (directory / "manifest.json").stat().st_mtime
    sources = [Path(value) / "manifest.json" for value in (getattr(config, f, "") for f in SOURCE_FIELDS) if value]
    return (
        manifest.method == method
        and _same_config(config, manifest.config)
        and manifest.collection.get("sha256") == collection.fingerprint
        and all(not source.is_file() or source.stat().st_mtime <= built for source in sources)
    )


def _same_config(config: Settings, built: dict[str, object]) -> bool:
    """Whether a manifest's config is ``config``, compared as parsed (an older manifest's text values
    read as the numbers they stand for; a field added since as its default)."""
    try:
        return parse_config(type(config), built) == config
    except GenirError:
        return False


def run_bench(
    collection: Collection,
    split: str,
    entries: Sequence[str],
    workdir: Path,
    assignments: Sequence[str] = (),
    reuse: bool = False,
    k: int = 100,
    log=print,
    device: str = "auto",
) -> list[BenchRow]:
    """Build (or, with ``reuse``, reopen) each entry's index, search every query, evaluate.

    An entry is a method name, or ``LABEL=METHOD`` to compare configurations of one method
    (``atomic=dsi,semantic=dsi`` with ``--set atomic.docids=atomic``...).

    Query throughput is the wall time of one ``batch_search`` over all queries of the split,
    after the index is loaded (model and JVM start-up are not counted).
    """
    methods = parse_entries(entries)
    overrides = split_overrides(list(methods), assignments)
    configs = {label: parse_config(searcher_class(m).Config, overrides[label]) for label, m in methods.items()}
    queries = collection.split_queries(split)
    qrels = collection.qrels(split)
    rows = []
    for label, method in methods.items():
        index_dir = workdir / "indexes" / label
        if reuse and _reusable(index_dir, method, configs[label], collection):
            log(f"[{label}] reusing {index_dir}")
        else:
            log(f"[{label}] building {index_dir}")
            build_index(method, collection, index_dir, configs[label], overwrite=True, device=device)
        searcher = Searcher.load(index_dir, device=device)
        log(f"[{label}] searching {len(queries)} queries")
        started = time.perf_counter()
        results = searcher.batch_search(list(queries.values()), k)
        elapsed = time.perf_counter() - started
        run = dict(zip(queries, results))
        run_file = workdir / "runs" / f"{collection.name}-{split}-{label}.trec"
        write_run(run, run_file, tag=f"genir-{label}")
        scores = evaluate(run, qrels).aggregate
        rows.append(BenchRow(
            method=label, base_method=method,
            ndcg10=scores["nDCG@10"], r10=scores["R@10"], rr10=scores["RR@10"], hits1=scores["Hits@1"],
            build_seconds=float(searcher.manifest.stats["build_seconds"]),
            size_mb=index_size_bytes(index_dir) / 2**20,
            queries_per_second=len(queries) / elapsed,
            num_queries=len(queries), index_dir=str(index_dir), run_file=str(run_file),
            config=searcher.manifest.config, dev=dev_summary(searcher.manifest.stats),
        ))
        log(f"[{label}] nDCG@10 {scores['nDCG@10']:.4f}")
    return rows


def markdown_table(rows: Sequence[BenchRow]) -> str:
    header = "| " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|"
    body = ["| " + " | ".join(fmt.format(getattr(r, attr)) for _, attr, fmt in COLUMNS) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def write_report(rows: Sequence[BenchRow], collection: Collection, split: str, workdir: Path) -> tuple[Path, Path]:
    """Write ``bench.md`` and ``bench.json`` (with the machine they were measured on)."""
    environment = {
        "genir_version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "commit": source_commit(),
    }
    title = f"genir bench: {collection.name}, split {split}, {rows[0].num_queries if rows else 0} queries"
    markdown = f"## {title}\n\n{markdown_table(rows)}\n\nMeasured {environment['date']} on {environment['cpu_count']} CPU(s), torch {environment['torch']}.\n"
    md_path, json_path = workdir / "bench.md", workdir / "bench.json"
    md_path.write_text(markdown, encoding="utf-8")
    payload = {"collection": collection.name, "split": split, "environment": environment,
               "rows": [dataclasses.asdict(r) for r in rows]}
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return md_path, json_path


def source_commit() -> str | None:
    """The git commit genir runs from (``+`` when the work tree has changes), None outside a git checkout:
    every measured number carries the code that produced it."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+" if dirty else "")
