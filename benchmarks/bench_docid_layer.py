"""The docid layer alone: output-table bytes and search latency of atomic vs rq vs semantic docids.

Documents are random unit vectors (the cost of the docid layer and the trie, not of retrieval
quality): at SciFact's size (5,183) and at 1,000,000. For each size and scheme a dense-start
model (:mod:`genir.seq2seq.dense_start`, MiniLM encoder, 2-layer decoder) is built with the
vectors as its rows (rq, semantic: code vectors and residuals), then searched: atomic by one decoder
step and a top-k (``atomic_search=first``), rq and semantic by summed-logit beam search over their trie
with ``max(k, 100)`` beams. Each scheme has the recipe's settings (``DSIConfig``: rq 1 x 64, semantic
2 levels of at most 10 clusters). Bytes are the LM head and the decoder's input embedding (float32) plus the saved trie.

    python benchmarks/bench_docid_layer.py [--sizes 5183,1000000] [--queries 20]

Prints one table; writes ``benchmarks/results/docid_layer.json``. On 2 CPU cores the 1M rows
take several minutes (the models alone hold 3 GB of rows each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genir.dsi.config import DSIConfig
from genir.dsi.decoding import DocidDecoder
from genir.dsi.docids import DocidScheme
from genir.indexer.collection import Document
from genir.seq2seq.model import build_seq2seq

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = ["effects of vitamin d on bone density", "gene expression in tumour cells", "antibiotic resistance",
           "sleep and memory consolidation", "immune response to viral infection", "insulin signalling pathway",
           "protein folding diseases", "air pollution and asthma", "stem cell differentiation", "dietary fibre"]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(scheme_name: str, vectors: np.ndarray, queries: list[str], ks: tuple[int, ...]) -> dict:
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
    head, embed = model.get_output_embeddings().weight, model.get_decoder().get_input_embeddings().weight
    with tempfile.TemporaryDirectory() as tmp:
        trie.save(Path(tmp) / "trie")
        trie_bytes = sum(p.stat().st_size for p in (Path(tmp) / "trie").rglob("*") if p.is_file())
    decoder = DocidDecoder(model, seq2seq.tokenizer, scheme, trie)
    config = DSIConfig(docids=scheme_name, atomic_search="first", beams=100)
    latency = {}
    for k in ks:
        decoder.search(queries[:1], k, config)  # warm-up
        times = []
        for query in queries:
            started = time.perf_counter()
            decoder.search([query], k, config)
            times.append(time.perf_counter() - started)
        latency[f"k={k}"] = round(1000 * statistics.median(times), 1)
    return {"scheme": scheme_name, "docs": len(vectors), "vocab": scheme.vocab_size,
            "table_bytes": (head.numel() + embed.numel()) * head.element_size(), "trie_bytes": trie_bytes,
            "median_ms_per_query": latency, "setup_seconds": round(setup, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5183,1000000")
    parser.add_argument("--queries", type=int, default=10)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    queries = (QUERIES * (1 + args.queries // len(QUERIES)))[:args.queries]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        vectors = unit_vectors(size, 384)
        for scheme in ("atomic", "rq", "semantic"):
            rows.append(measure(scheme, vectors, queries, (10, 100)))
            row = rows[-1]
            print(f"{row['scheme']:<8} {row['docs']:>9,} docs  table {row['table_bytes'] / 2**20:>8.1f} MiB  "
                  f"trie {row['trie_bytes'] / 2**20:>7.1f} MiB  k=10 {row['median_ms_per_query']['k=10']:>8.1f} ms  "
                  f"k=100 {row['median_ms_per_query']['k=100']:>8.1f} ms  (setup {row['setup_seconds']} s)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "docid_layer.json"
    out.write_text(json.dumps({"queries": len(queries), "threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
