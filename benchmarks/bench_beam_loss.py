"""What beam search loses: a DSI index's beam-searched top-10 against the exhaustive ranking.

For each test query, every live docid of the index is scored teacher-forced with the index's own
score (:func:`genir.kernels.exhaustive.exhaustive_scores`: summed logits for a dense-start index),
which is the ranking beam search approximates. Then the index is searched with beam widths 10, 100
and 1000 (top 10). The table gives nDCG@10 of each, and how many of the exhaustive top 10 each
beam width finds (mean share). Exhaustive scoring costs one decoder pass per (query, docid):
``--queries`` takes the first N queries of the split (all by default).

    python benchmarks/bench_beam_loss.py --index bench-out/dsi13/indexes/rq-sup \
        --collection ../shared/data/scifact --queries 100

Prints one table; writes ``benchmarks/results/beam_loss-<index name>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genir.indexer.collection import Collection
from genir.kernels.exhaustive import exhaustive_scores, pad_docids
from genir.measures import evaluate
from genir.retrieval.searcher import Hit, Searcher
from genir.seq2seq.dense_start import is_dense_start
from genir.seq2seq.vocab import DECODER_START, PAD

RESULTS = Path(__file__).resolve().parent / "results"


def exhaustive_run(searcher, queries: dict[str, str], score: str, k: int = 100) -> dict[str, list[Hit]]:
    """Every live docid of ``searcher`` scored for each query; the ``k`` best per query."""
    decoder = searcher.decoder
    sequences = list(decoder.scheme.sequences().values())
    table = pad_docids(sequences, PAD)  # [N, L]
    run = {}
    for qid, text in queries.items():
        batch = decoder.tokenizer([text], truncation=True, max_length=searcher.config.max_source_len, return_tensors="pt")
        scores = exhaustive_scores(decoder.model, batch["input_ids"], batch["attention_mask"], table,
                                   decoder_start_token_id=DECODER_START, pad_token_id=PAD, score=score)[0]
        top = torch.topk(scores, min(k, len(sequences)))
        run[qid] = [Hit(decoder.docids[i], float(v)) for v, i in zip(top.values.tolist(), top.indices.tolist())]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True, type=Path)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=0, help="first N queries of the split (0 = all)")
    parser.add_argument("--beams", default="10,100,1000")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    collection = Collection.open(args.collection)
    queries = collection.split_queries(args.split)
    if args.queries:
        queries = dict(list(queries.items())[:args.queries])
    qrels = {qid: collection.qrels(args.split)[qid] for qid in queries}
    searcher = Searcher.load(args.index, device="cpu")
    score = searcher.config.score_setting(is_dense_start(searcher.model))
    rows = []
    started = time.perf_counter()
    exhaustive = exhaustive_run(searcher, queries, score)
    seconds = time.perf_counter() - started
    best10 = {qid: {h.docid for h in hits[:10]} for qid, hits in exhaustive.items()}
    rows.append({"search": "exhaustive", "nDCG@10": evaluate(exhaustive, qrels, ("nDCG@10",)).aggregate["nDCG@10"],
                 "found_of_exhaustive_top10": 1.0, "seconds": round(seconds, 1)})
    for beams in (int(b) for b in args.beams.split(",")):
        searcher.config = searcher.config.replace(beams=beams, atomic_search="beam")
        started = time.perf_counter()
        hits = searcher.batch_search(list(queries.values()), 10)
        seconds = time.perf_counter() - started
        run = dict(zip(queries, hits))
        found = sum(len(best10[qid] & {h.docid for h in run[qid]}) / 10 for qid in queries) / len(queries)
        rows.append({"search": f"beam {beams}", "nDCG@10": evaluate(run, qrels, ("nDCG@10",)).aggregate["nDCG@10"],
                     "found_of_exhaustive_top10": found, "seconds": round(seconds, 1)})
    print(f"{args.index.name}: {len(queries)} {args.split} queries, score={score}")
    print(f"{'search':<12} {'nDCG@10':>8} {'found of exhaustive top 10':>27} {'seconds':>8}")
    for row in rows:
        print(f"{row['search']:<12} {row['nDCG@10']:>8.4f} {row['found_of_exhaustive_top10']:>27.3f} {row['seconds']:>8.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"beam_loss-{args.index.name}.json"
    out.write_text(json.dumps({"index": str(args.index), "collection": args.collection, "split": args.split,
                               "queries": len(queries), "score": score, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
