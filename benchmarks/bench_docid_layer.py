"""The docid layer alone: output-table bytes and search latency of atomic vs rq vs semantic docids.

Documents are random unit vectors (the cost of the docid layer and the trie, not of retrieval
quality): at 10,000, 100,000 and 1,000,000 (a latency curve, its growth exponent fitted per scheme).
For each size and scheme a dense-start
model (:mod:`genir.seq2seq.dense_start`, MiniLM encoder, 2-layer decoder) is built with the
vectors as its rows (rq, semantic: code vectors and residuals), then searched: atomic by one decoder
step and a top-k (``atomic_search=first``), rq and semantic by summed-logit beam search over their trie
with ``max(k, 100)`` beams, ``code_beams`` (its default) at each code level. Each scheme has the recipe's
settings (``DSIConfig``: rq 1 x 64, semantic 2 levels of at most 10 clusters). Bytes are the LM head and
the decoder's input embedding plus the saved trie.

rq and semantic search scores each beam's trie children alone (``genir.kernels.beam_search``'s
``scorer``), the documents under the kept code prefixes: ``rows_per_query`` counts the document rows
read (k=10). The search that keeps every code (``code_beams=100``: the rankings and scores of the
search before ``code_beams`` existed) is timed beside the default on the same queries, interleaved
(``all_codes_ms`` vs ``default_ms``, k=10, with its ``all_codes_rows_per_query``); with
``--full-queries``, so is the full output layer's beam search (every document row times every beam,
``full_layer_ms`` vs ``candidates_ms``). Each model is timed with float32 tables, then with its tables
cast to ``--table-dtype`` (latency and bytes).
The decoder's residual is given random weights (``std 0.05``), as a trained one has, so that every beam
has its own vector (an untrained one gives every beam the query's vector).

    python benchmarks/bench_docid_layer.py [--sizes 10000,100000,1000000] [--queries 10] [--schemes atomic,rq,semantic]

Prints one line per size and scheme; writes ``benchmarks/results/docid_layer.json`` (rows, and per
scheme the exponent ``b`` of ``ms = a * N^b`` fitted over the sizes). On 2 CPU cores the 1M rows take
many minutes (the models alone hold 3 GB of float32 rows each).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genir.dsi.config import DSIConfig
from genir.dsi.decoding import DocidDecoder
from genir.dsi.docids import DocidScheme
from genir.indexer.collection import Document
from genir.seq2seq.dense_start import DenseStartDecoder
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.table_dtype import set_table_dtype, table_bytes

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = ["effects of vitamin d on bone density", "gene expression in tumour cells", "antibiotic resistance",
           "sleep and memory consolidation", "immune response to viral infection", "insulin signalling pathway",
           "protein folding diseases", "air pollution and asthma", "stem cell differentiation", "dietary fibre"]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return 1000 * (time.perf_counter() - started)


def latencies(decoder: DocidDecoder, config: DSIConfig, queries: list[str], ks: tuple[int, ...]) -> dict[str, float]:
    out = {}
    for k in ks:
        decoder.search(queries[:1], k, config)  # warm-up
        out[f"k={k}"] = round(statistics.median(timed(lambda: decoder.search([q], k, config)) for q in queries), 1)
    return out


class RowCounter:
    """Counts the document rows the dense start's candidate scorer reads at the document step (position ``levels``)."""

    def __init__(self, decoder: DenseStartDecoder, levels: int):
        self.rows, self.levels, self._scored = 0, levels, decoder.candidate_logits
        decoder.candidate_logits = self._counted

    def _counted(self, z: torch.Tensor, row_ptr: torch.Tensor, tokens: torch.Tensor, position: int) -> torch.Tensor:
        if position == self.levels:
            self.rows += tokens.shape[0]
        return self._scored(z, row_ptr, tokens, position)


def all_codes_latency(decoder: DocidDecoder, config: DSIConfig, queries: list[str], counter: RowCounter) -> dict[str, float]:
    """Median ms/query at k=10 of the search keeping every code (``code_beams=100``) and of ``config``'s,
    interleaved, and the mean document rows each read per query."""
    every = config.model_copy(update={"code_beams": 100})
    times: dict[str, list[float]] = {"all_codes": [], "default": []}
    rows = dict.fromkeys(times, 0)
    for query in queries:
        for name, setting in (("all_codes", every), ("default", config)):
            counter.rows = 0
            times[name].append(timed(lambda: decoder.search([query], 10, setting)))  # noqa: B023 (called at once)
            rows[name] += counter.rows
    return {"all_codes_ms": round(statistics.median(times["all_codes"]), 1), "default_ms": round(statistics.median(times["default"]), 1),
            "all_codes_rows_per_query": rows["all_codes"] / len(queries), "rows_per_query": rows["default"] / len(queries)}


def full_layer_latency(decoder: DocidDecoder, config: DSIConfig, queries: list[str]) -> tuple[float, float]:
    """Median ms/query at k=10 of the full output layer's beam search and of the candidate scorer, interleaved."""
    beam_search_module = sys.modules["genir.kernels.beam_search"]
    decoding = sys.modules["genir.dsi.decoding"]
    full, new = [], []
    for query in queries:
        new.append(timed(lambda: decoder.search([query], 10, config)))
        decoding.beam_search = lambda *a, **kw: beam_search_module.beam_search(*a, **{**kw, "scorer": None})
        try:
            full.append(timed(lambda: decoder.search([query], 10, config)))
        finally:
            decoding.beam_search = beam_search_module.beam_search
    return round(statistics.median(full), 1), round(statistics.median(new), 1)


def measure(scheme_name: str, vectors: np.ndarray, queries: list[str], ks: tuple[int, ...], table_dtype: str,
            full_queries: int) -> dict:
    docs = [Document(str(i), "", "") for i in range(len(vectors))]
    scheme = DocidScheme.from_config(DSIConfig(docids=scheme_name))
    started = time.perf_counter()
    scheme.assign(docs, vectors)
    rows, starts = scheme.token_vectors(vectors), scheme.position_starts()
    trie = scheme.trie()
    seq2seq = build_seq2seq("bert2bert:all-MiniLM-L6-v2", scheme.vocab_size, docid_embeddings=rows,
                            dense_start=True, position_starts=starts)
    del rows
    setup = time.perf_counter() - started
    model = seq2seq.model.eval()
    torch.manual_seed(3)
    model.get_decoder().residual.weight.normal_(std=0.05)  # a trained decoder's beams each have their own vector
    with tempfile.TemporaryDirectory() as tmp:
        trie.save(Path(tmp) / "trie")
        trie_bytes = sum(p.stat().st_size for p in (Path(tmp) / "trie").rglob("*") if p.is_file())
    decoder = DocidDecoder(model, seq2seq.tokenizer, scheme, trie)
    config = DSIConfig(docids=scheme_name, atomic_search="first", beams=100)
    row = {"scheme": scheme_name, "docs": len(vectors), "vocab": scheme.vocab_size, "table_bytes": table_bytes(model),
           "trie_bytes": trie_bytes, "median_ms_per_query": latencies(decoder, config, queries, ks)}
    if scheme_name != "atomic":
        row["code_beams"] = config.code_beams
        row.update(all_codes_latency(decoder, config, queries, RowCounter(model.get_decoder(), scheme.levels)))
        row["all_codes_over_default"] = round(row["all_codes_ms"] / row["default_ms"], 2)
    if scheme_name != "atomic" and full_queries:
        row["full_layer_ms"], row["candidates_ms"] = full_layer_latency(decoder, config, queries[:full_queries])
        row["full_over_candidates"] = round(row["full_layer_ms"] / row["candidates_ms"], 1)
    set_table_dtype(model, table_dtype)
    row[f"table_bytes_{table_dtype}"] = table_bytes(model)
    row[f"median_ms_per_query_{table_dtype}"] = latencies(decoder, config, queries, ks)
    row["setup_seconds"] = round(setup, 1)
    return row


def exponents(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    """Per scheme and k, ``b`` of the least-squares fit ``log ms = log a + b log N`` over the sizes measured."""
    out: dict[str, dict[str, float]] = {}
    for scheme in dict.fromkeys(r["scheme"] for r in rows):
        mine = [r for r in rows if r["scheme"] == scheme]
        if len({r["docs"] for r in mine}) < 2:
            continue
        for k in mine[0][key]:
            slope = np.polyfit(np.log([r["docs"] for r in mine]), np.log([r[key][k] for r in mine]), 1)[0]
            out.setdefault(scheme, {})[k] = round(float(slope), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--full-queries", type=int, default=0, help="queries timed on the full output layer too (0: none)")
    parser.add_argument("--table-dtype", default="float16", choices=("float16", "bfloat16"))
    parser.add_argument("--schemes", default="atomic,rq,semantic")
    parser.add_argument("--merge", action="store_true", help=(
        "keep the rows of the results file that this run does not measure (sizes run one at a time, same code)"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    queries = (QUERIES * (1 + args.queries // len(QUERIES)))[:args.queries]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        vectors = unit_vectors(size, 384)
        for scheme in args.schemes.split(","):
            rows.append(measure(scheme, vectors, queries, (10, 100), args.table_dtype, args.full_queries))
            print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "docid_layer.json"
    if args.merge and out.exists():
        measured = {(r["scheme"], r["docs"]) for r in rows}
        kept = [r for r in json.loads(out.read_text())["rows"] if (r["scheme"], r["docs"]) not in measured]
        rows = sorted(kept + rows, key=lambda r: (r["docs"], r["scheme"]))
    out.write_text(json.dumps({
        "provenance": {"date": datetime.date.today().isoformat(),
                       "machine": f"{torch.get_num_threads()} CPU cores, {platform.machine()} (shared with other jobs, loaded)",
                       "commit": commit, "note": "commit: the code measured"},
        "queries": len(queries), "threads": torch.get_num_threads(), "table_dtype": args.table_dtype, "rows": rows,
        "latency_exponent": exponents(rows, "median_ms_per_query"),
        f"latency_exponent_{args.table_dtype}": exponents(rows, f"median_ms_per_query_{args.table_dtype}")}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
