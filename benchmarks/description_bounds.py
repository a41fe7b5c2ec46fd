"""What SE-DSI's descriptions can say about their documents, before any model: a bound on dev.

Each description variant (``--variants``: ``keywords:WORDS:TOKENS``, ``title:TOKENS`` or
``title+keywords:WORDS:TOKENS``, the forms :func:`genir.dsi.searcher.describer` writes) replaces
every document by its description, cut to ``TOKENS`` MiniLM word pieces as the docids are; BM25
(k1 0.9, b 0.4, over word pieces) and MiniLM dense retrieval then search those texts with the
queries of SciFact's seeded dev carve (``--dev-fraction``, the carve a SE-DSI build holds out). A
decoder that writes descriptions retrieves on what they say; how far above these numbers a
trained model gets is what it learned beyond their words. Prints a table, writes JSON.

Usage: python benchmarks/description_bounds.py --collection ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genir.dsi.config import SEDSIConfig
from genir.dsi.searcher import describer
from genir.encoding.encoder import DEFAULT_ENCODER, TextEncoder
from genir.indexer.collection import Collection
from genir.indexer.dev_split import split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Hit
from genir.views.querygen import query_generator

VARIANTS = "keywords:8:16,keywords:16:32,title:32,title+keywords:8:32,title+keywords:8:64"
DEPTH = 100


def bm25_weights(counts: np.ndarray, k1: float = 0.9, b: float = 0.4) -> np.ndarray:
    """``[N, V]`` term counts -> BM25 document-side weights ``[N, V]``."""
    df = (counts > 0).sum(0)
    idf = np.log(1 + (len(counts) - df + 0.5) / (df + 0.5))
    lengths = counts.sum(1, keepdims=True)
    return counts * (k1 + 1) / (counts + k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))) * idf


def run_of(scores: np.ndarray, qids: list[str], ids: list[str]) -> dict[str, list[Hit]]:
    """``[Q, N]`` scores -> each query's ``DEPTH`` best documents."""
    top = np.argsort(-scores, axis=1)[:, :DEPTH]
    return {q: [Hit(ids[j], float(scores[r, j])) for j in top[r]] for r, q in enumerate(qids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "description_bounds.json")
    args = parser.parse_args()
    collection = Collection.open(args.collection)
    qrels = split_dev(collection, "train", args.dev_fraction, args.seed).dev
    qids = list(qrels)
    docs = list(collection.docs())
    ids = [d.id for d in docs]
    encoder = TextEncoder(DEFAULT_ENCODER)
    tokenizer = encoder.tokenizer
    queries = np.asarray(encoder.encode([collection.queries[q] for q in qids]))  # [Q, H]
    query_terms = np.zeros((len(qids), tokenizer.vocab_size), np.float32)  # [Q, V]
    for r, q in enumerate(qids):
        query_terms[r, tokenizer(collection.queries[q], add_special_tokens=False).input_ids] = 1
    rows = []
    print(f"dev nDCG@10 of retrieval over the descriptions alone ({len(qids)} queries)")
    print("| variant | mean tokens | BM25 | dense |\n|---|---:|---:|---:|")
    for variant in args.variants.split(","):
        kind, *numbers = variant.split(":")
        words, tokens = (8, int(numbers[0])) if kind == "title" else (int(numbers[0]), int(numbers[1]))
        if kind == "title":
            texts = [d.title for d in docs]
        else:
            config = SEDSIConfig(description=kind, description_tokens=tokens)
            texts = describer(config, query_generator("", docs, words))(docs)
        pieces = [tokenizer(t, add_special_tokens=False, truncation=True, max_length=tokens).input_ids for t in texts]
        counts = np.zeros((len(docs), tokenizer.vocab_size), np.float32)  # [N, V]
        for i, p in enumerate(pieces):
            np.add.at(counts[i], p, 1)
        lexical = evaluate(run_of(query_terms @ bm25_weights(counts).T, qids, ids), qrels).aggregate
        dense = np.asarray(encoder.encode([tokenizer.decode(p) for p in pieces]))  # [N, H]
        semantic = evaluate(run_of(queries @ dense.T, qids, ids), qrels).aggregate
        rows.append({"variant": variant, "mean_tokens": float(np.mean([len(p) for p in pieces])),
                     "bm25_ndcg10": lexical["nDCG@10"], "dense_ndcg10": semantic["nDCG@10"],
                     "bm25_r100": lexical["R@100"], "dense_r100": semantic["R@100"]})
        print(f"| {variant} | {rows[-1]['mean_tokens']:.1f} | {lexical['nDCG@10']:.4f} | {semantic['nDCG@10']:.4f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"collection": collection.name, "dev_queries": len(qids), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
