"""Choose rq docids' levels x codes on dev, at the dense start (before any training).

An untrained dense-start rq index ranks by summed logits, i.e. by the dense score of each document
its beam reaches (:mod:`genir.dsi.rq_docids`): what levels and codes change is how many relevant
documents the beam keeps. Each setting is scored on the dev split that a build holds out of the
training queries (:func:`genir.indexer.dev_split.split_dev`, same fraction and seed), never on test.

    python benchmarks/tune_rq.py --collection ../shared/data/scifact \
        --embeddings bench-out/dsi-scifact/indexes/dense [--levels 1,2,3] [--codes 16,64,256]

Prints one table (dev nDCG@10 at k=10 and R@100 at k=100 with 100 beams); writes
``benchmarks/results/tune_rq.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genir.dsi.config import DSIConfig
from genir.dsi.decoding import DocidDecoder
from genir.dsi.rq_docids import RQDocids
from genir.encoding.stored import stored_embeddings
from genir.indexer.collection import Collection
from genir.indexer.dev_split import DEFAULT_DEV_FRACTION, split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Hit
from genir.seq2seq.model import build_seq2seq

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--embeddings", required=True, type=Path, help="a dense index of the collection")
    parser.add_argument("--levels", default="1,2")
    parser.add_argument("--codes", default="64,256")
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    collection = Collection.open(args.collection)
    docs = list(collection.docs())
    vectors = stored_embeddings(args.embeddings, [d.id for d in docs])
    dev = split_dev(collection, args.split, DEFAULT_DEV_FRACTION, 0)
    queries = dev.dev_queries(collection)
    rows = []
    for levels in (int(v) for v in args.levels.split(",")):
        for codes in (int(v) for v in args.codes.split(",")):
            started = time.perf_counter()
            scheme = RQDocids(levels=levels, codes=codes)
            scheme.assign(docs, vectors)
            seq2seq = build_seq2seq("bert2bert:all-MiniLM-L6-v2", scheme.vocab_size, docid_embeddings=scheme.token_vectors(vectors),
                                    dense_start=True, position_starts=scheme.position_starts())
            trie = scheme.trie()
            decoder = DocidDecoder(seq2seq.model.eval(), seq2seq.tokenizer, scheme, trie)
            config = DSIConfig(docids="rq", beams=100)
            scores = {}
            for k, measure in ((10, "nDCG@10"), (100, "R@100")):
                rankings = decoder.search(list(queries.values()), k, config)
                run = {qid: [Hit(d, s) for d, s in ranking] for qid, ranking in zip(queries, rankings)}
                scores[measure] = evaluate(run, dev.dev, (measure,)).aggregate[measure]
            rows.append({"levels": levels, "codes": codes, **scores, "seconds": round(time.perf_counter() - started, 1)})
            print(f"levels {levels} codes {codes:>4}: dev nDCG@10 {scores['nDCG@10']:.4f}  R@100 {scores['R@100']:.4f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "tune_rq.json"
    out.write_text(json.dumps({"collection": collection.name, "dev_queries": len(queries), "beams": 100, "rows": rows},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
