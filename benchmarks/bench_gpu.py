"""GPU benchmark in one script: top-k kernels, constrained beam search, and build + search of the four methods.

Sections (each skipped with a reason when what it needs is missing):

* ``topk``: the fused Triton constrained top-k vs the torch path at decoding shapes, and which
  one ``auto`` picks (medians of CUDA-event timings);
* ``beam``: trie- and FM-index-constrained beam search of a small T5 (random weights), queries/s
  on the GPU and on the CPU;
* ``dsi``: ``genir index -m dsi`` of a collection (SciFact) on the GPU, once per ``--dsi`` variant
  (default: the default recipe), searched with beam search, the exact atomic search and ``first``;
* ``dense``: FAISS dense retrieval (documents and queries embedded on the GPU), when faiss is installed;
* ``seal``: a SEAL index with a short training budget (``--seal-set``, default ``max_time`` 1
  minute: the model's size, not its quality, sets the search speed), or the one at ``--seal-index``;
* ``bm25``: Lucene BM25, where Java and pyserini are installed (run last: the JVM starts after
  every Lightning run of the script).

Every method section builds its index on the device (Lucene: the CPU; stage times from the manifest), then
searches every test query at k = 10 and k = 100, queries/s after a warm-up of 16 queries; each
k = 100 run is written to ``OUT/run-ENTRY.trec`` so it can be scored where ir_measures is
installed (``genir eval``).

Time on one GPU (the issue's limit: 8 minutes), SciFact, by design: topk + beam ~0.75 min and
dsi (default recipe) ~1.5 min (130 s together on an H200, 71.5 s of it the dsi build); dense
~0.5 min (5,183 documents); seal ~1.5 min of building (1 minute of training) and at most ~2.3 min
of search (2 x (300 + 16 warm-up) queries even at SEAL's 2-core CPU rate, 4.7 queries/s); bm25
~0.5 min where Java is: about 7 minutes at worst. ``seconds`` in the JSON records each section's
wall time.

Usage: ``python benchmarks/bench_gpu.py --collection ../shared/data/scifact --out bench-out/gpu``;
``--quick`` runs small shapes and tiny dsi/seal training on any device (a CPU smoke test; pair it
with a small collection). Prints the kernel tables and one search table (every method, queries/s
at k = 10 and 100), writes ``OUT/bench_gpu.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from genir.devices import resolve_device
from genir.errors import GenirError
from genir.evaluation.runs import write_run
from genir.indexer.collection import Collection
from genir.kernels.beam_search import beam_search
from genir.kernels.constraint import Candidates
from genir.kernels.topk import TRITON_MAX_K, constrained_topk, use_triton
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.retrieval.searcher import Searcher, build_index, parse_config, searcher_class
from genir.seq2seq.model import build_seq2seq

Row = dict[str, Any]
#: Sections whose rows form the one search table (every method: build, then queries/s at k = 10, 100).
METHOD_SECTIONS = ("bm25", "dense", "dsi", "seal")
#: Training settings --quick adds (before the user's): one epoch of few pairs (SEAL: of a tiny T5).
QUICK_DSI = ["max_epochs=1", "spans=0", "warmup_steps=0"]
QUICK_SEAL = ["model=t5-config:tiny", "max_epochs=1", "warmup_steps=0", "ngrams_per_pair=2", "unsupervised_per_doc=1"]


def _time_ms(fn, device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` runs after two warm-ups."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _candidates(rows: int, vocab: int, max_degree: int, device: torch.device, seed: int) -> Candidates:
    """Distinct random tokens per row, 1..max_degree of them; states = the tokens."""
    g = torch.Generator().manual_seed(seed)
    degrees = torch.randint(1, max_degree + 1, (rows,), generator=g)
    tokens = torch.cat([torch.randperm(vocab, generator=g)[:int(d)] for d in degrees])
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), degrees.cumsum(0)])
    return Candidates(row_ptr.to(device), tokens.to(device), tokens.unsqueeze(1).to(device))


def bench_topk(device: torch.device, quick: bool) -> list[Row]:
    shapes = [(100, 32128, 10, 20, torch.float32), (320, 32128, 10, 20, torch.bfloat16), (150, 32128, 1000, 20, torch.float32),
              (150, 32128, 2000, 20, torch.float32), (150, 32128, 1000, 64, torch.float32), (1500, 32128, 1000, 20, torch.bfloat16),
              (150, 32128, 1000, 128, torch.float32), (64, 100000, 100, 200, torch.float32), (200, 30522, 300, 20, torch.float32)]
    if quick:
        shapes = [(8, 1000, 50, 20, torch.float32), (8, 1000, 50, 128, torch.float32)]
    rows = []
    for n, vocab, degree, k, dtype in shapes:
        logits = torch.randn(n, vocab, generator=torch.Generator().manual_seed(n)).to(device=device, dtype=dtype)
        cands = _candidates(n, vocab, degree, device, seed=k)
        widest = int((cands.row_ptr[1:] - cands.row_ptr[:-1]).max())
        row: Row = {"shape": f"[{n}, {vocab}] {str(dtype).removeprefix('torch.')}", "max_candidates": degree, "k": k,
                    "torch_ms": _time_ms(lambda: constrained_topk(logits, cands, k, backend="torch"), device, 20),
                    "auto_picks": "triton" if use_triton(device, k, widest) else "torch"}
        row["auto_ms"] = _time_ms(lambda: constrained_topk(logits, cands, k), device, 20)
        # The kernel itself only where it finishes (k above TRITON_MAX_K hung on an H200).
        if device.type == "cuda" and k <= TRITON_MAX_K:
            row["triton_ms"] = _time_ms(lambda: constrained_topk(logits, cands, k, backend="triton"), device, 20)
            row["triton_speedup"] = row["torch_ms"] / row["triton_ms"]
        rows.append(row)
    return rows


def _t5(vocab_out: int, device: torch.device) -> torch.nn.Module:
    from genir.encoding.encoder import resolve_model

    return build_seq2seq("t5-config:small", vocab_out, tokenizer=resolve_model("all-MiniLM-L6-v2")).model.to(device).eval()


def bench_beam(device: torch.device, quick: bool) -> list[Row]:
    """Beam search queries/s under a 3-level trie (codes 256 each) and under an FM-index, GPU and CPU."""
    n_docs, queries, beams = (2000, 16, 4) if quick else (100_000, 256, 10)
    g = torch.Generator().manual_seed(0)
    codes = torch.unique(torch.randint(2, 258, (n_docs, 3), generator=g), dim=0)
    sequences = [row + [1] for row in codes.tolist()]
    trie = DocidTrie.from_sequences(sequences, eos_token_id=1, vocab_size=258)
    ids = torch.randint(1000, 20000, (queries, 24), generator=g)
    rows = []
    for dev in dict.fromkeys([device, torch.device("cpu")]):
        model = _t5(258, dev)
        constraint = DocidTrieConstraint(trie, dev)
        batch = ids.to(dev)

        def run() -> None:
            for start in range(0, queries, 64):
                beam_search(model, batch[start:start + 64], constraint, num_beams=beams, max_new_tokens=4)

        seconds = _time_ms(run, dev, 3 if dev.type == "cuda" else 1) / 1000
        rows.append({"constraint": f"trie, {len(sequences):,} docids x 3 codes", "device": str(dev), "beams": beams,
                     "queries_per_s": queries / seconds})
    try:
        from genir.kernels.fm_constraint import FMIndexConstraint
        from genir.kernels.fmindex import FMIndex
    except ImportError as e:
        return rows + [{"constraint": "fm-index", "skipped": f"needs pydivsufsort ({e})"}]
    docs = [torch.randint(2, 5000, (200,), generator=g).numpy() for _ in range(500 if quick else 5000)]
    index = FMIndex.build(docs)
    for dev in dict.fromkeys([device, torch.device("cpu")]):
        model = _t5(5000, dev)
        constraint = FMIndexConstraint(index, eos_token_id=1)
        batch = ids[: min(queries, 64)].to(dev)
        seconds = _time_ms(lambda: beam_search(model, batch, constraint, num_beams=beams, max_new_tokens=6), dev, 3) / 1000
        rows.append({"constraint": f"fm-index, {index.num_tokens:,} tokens", "device": str(dev), "beams": beams,
                     "queries_per_s": batch.shape[0] / seconds})
    return rows


def _search_rate(searcher, queries: list[str], k: int) -> tuple[float, list]:
    searcher.batch_search(queries[:16], k)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    hits = searcher.batch_search(queries, k)
    return len(queries) / (time.perf_counter() - started), hits


def bench_index(method: str, label: str, args: argparse.Namespace, device: torch.device, settings: list[str],
                search_modes: tuple[str, ...] = ("",)) -> list[Row]:
    """Build one index of ``args.collection`` on ``device`` into ``args.index_dir/LABEL``, then :func:`bench_search` it."""
    collection = Collection.open(args.collection)
    destination = args.index_dir / label
    started = time.perf_counter()
    manifest = build_index(method, collection, destination, parse_config(searcher_class(method).Config, settings),
                           overwrite=True, device=str(device))
    built = {"build_s": time.perf_counter() - started,
             "stages": {key: value for key, value in manifest.stats.items()
                        if (key.endswith("_seconds") and key != "build_seconds") or key == "train_steps"}}
    return bench_search(destination, label, collection, args.out, device, built, search_modes)


def bench_search(index_dir: Path, label: str, collection: Collection, out: Path, device: torch.device, built: Row,
                 search_modes: tuple[str, ...] = ("",)) -> list[Row]:
    """Search every test query (else the first split's) at k = 10 and 100, once per search mode (dsi's
    ``atomic_search``); one row per mode, ``built`` in front; each k = 100 run goes to ``out/run-NAME.trec``."""
    split = "test" if "test" in collection.splits() else collection.splits()[0]
    queries = collection.split_queries(split)
    rows = []
    for mode in search_modes:
        searcher = Searcher.load(index_dir, device=device)
        if mode:
            searcher.config = searcher.config.replace(atomic_search=mode)
        name = f"{label}-{mode}" if mode else label
        row: Row = {"entry": name, "device": str(device), **built}
        for k in (10, 100):
            rate, hits = _search_rate(searcher, list(queries.values()), k)
            row[f"queries_per_s_k{k}"] = rate
            if k == 100:
                write_run(dict(zip(queries, hits)), out / f"run-{name}.trec", tag=f"genir-{name}")
        searcher.close()
        rows.append(row)
    return rows


def _bm25(args: argparse.Namespace) -> list[Row]:
    """Lucene runs on the CPU whatever ``--device`` says."""
    from genir.baselines.bm25 import ensure_java

    if importlib.util.find_spec("pyserini") is None:
        return [{"entry": "bm25", "skipped": "pyserini is not installed here"}]
    try:
        ensure_java()
    except GenirError as e:
        return [{"entry": "bm25", "skipped": str(e)}]
    return bench_index("bm25", "bm25", args, torch.device("cpu"), [])


def _dense(args: argparse.Namespace, device: torch.device) -> list[Row]:
    if importlib.util.find_spec("faiss") is None:
        return [{"entry": "dense", "skipped": "faiss is not installed here"}]
    return bench_index("dense", "dense", args, device, [])


def _dsi(args: argparse.Namespace, device: torch.device) -> list[Row]:
    """Every ``--dsi LABEL:KEY=VALUE,...`` variant, searched with beam search, the exact atomic search and first."""
    rows = []
    for variant in args.dsi:
        label, _, options = variant.partition(":")
        settings = (QUICK_DSI if args.quick else []) + [o for o in options.split(",") if o] + args.set
        rows += bench_index("dsi", label, args, device, settings, ("beam", "exact", "first"))
    return rows


def _seal(args: argparse.Namespace, device: torch.device) -> list[Row]:
    """The index at ``--seal-index`` (searched as it is), else one built with a 1-minute training budget."""
    if args.seal_index is not None:
        collection = Collection.open(args.collection)
        return bench_search(args.seal_index, "seal", collection, args.out, device, {"index": str(args.seal_index)})
    settings = ["max_time=00:00:01:00"] + (QUICK_SEAL if args.quick else []) + args.seal_set
    return bench_index("seal", "seal", args, device, settings)


def _print_table(title: str, rows: list[Row]) -> None:
    """A markdown table: one column per key any row has (dict values, e.g. ``stages``, stay in the JSON)."""
    keys = list(dict.fromkeys(key for row in rows for key, value in row.items() if not isinstance(value, dict)))
    print(f"\n## {title}")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{row[key]:.3g}" if isinstance(row.get(key), float) else str(row.get(key, "")) for key in keys]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--out", type=Path, default=Path("bench-out/gpu"))
    parser.add_argument("--device", default="auto")
    # bm25 last: Lucene's JVM starts only after every Lightning run of the process.
    parser.add_argument("--sections", default="topk,beam,dsi,dense,seal,bm25", help="comma-separated, run in this order")
    parser.add_argument("--quick", action="store_true", help="small shapes and tiny training: a smoke test that runs on a CPU too")
    parser.add_argument("--set", action="append", default=[], help="dsi option KEY=VALUE for every variant (repeatable)")
    parser.add_argument("--dsi", action="append", default=[],
                        help="a dsi variant LABEL:KEY=VALUE,... (repeatable; default: dsi, the default recipe)")
    parser.add_argument("--seal-set", action="append", default=[], help="seal option KEY=VALUE (repeatable)")
    parser.add_argument("--seal-index", type=Path, default=None, help="search this seal index instead of building one")
    parser.add_argument("--index-dir", type=Path, default=None, help="where the indexes go (default OUT/indexes)")
    args = parser.parse_args()
    runs = {
        "topk": lambda: bench_topk(device, args.quick),
        "beam": lambda: bench_beam(device, args.quick),
        "dsi": lambda: _dsi(args, device),
        "dense": lambda: _dense(args, device),
        "seal": lambda: _seal(args, device),
        "bm25": lambda: _bm25(args),
    }
    sections = args.sections.split(",")
    unknown = [section for section in sections if section not in runs]
    if unknown:
        parser.error(f"unknown sections {unknown}: choose from {', '.join(runs)}")
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    args.dsi = args.dsi or ["dsi:"]
    args.index_dir = args.index_dir or args.out / "indexes"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results: dict[str, Any] = {"device": name, "torch": torch.__version__, "seconds": {}}
    for section in sections:
        started = time.perf_counter()
        results[section] = runs[section]()
        results["seconds"][section] = round(time.perf_counter() - started, 1)
        # Written after every section, so a run stopped at its time limit keeps what it measured.
        (args.out / "bench_gpu.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"# {name}, torch {torch.__version__}; seconds per section: {results['seconds']}")
    for section in ("topk", "beam"):
        if section in results:
            _print_table(section, results[section])
    searched = [row for section in METHOD_SECTIONS if section in results for row in results[section]]
    if searched:
        _print_table("search (queries/s at k = 10 and 100; stages in the JSON)", searched)


if __name__ == "__main__":
    main()
