"""nDCG@10 and bytes of a zero-shot DSI index with its docid tables in float32, float16 and bfloat16.

The model is the one the zero-shot recipe keeps on SciFact (conditions ``dsi-atomic-zero-shot`` and
its rq twin: every build chose epoch 0, the untrained dense start, on its dev set, README): the docid
scheme's rows from the dense index's embeddings (``embeddings_from``), a zero residual, scale 20. It is
built here directly, without the training views a build encodes and then does not use, and written
and loaded as an index's model is (:func:`genir.seq2seq.model_io.save_seq2seq` after
:func:`genir.seq2seq.table_dtype.set_table_dtype`, as a build with ``table_dtype`` writes it). Each
dtype's test run is compared with float32's: nDCG@10, the queries whose top 10 changed, model bytes
on disk and table bytes in memory.

    genir index -m dense -c data/scifact -o out/dense
    python benchmarks/bench_table_dtype.py --collection data/scifact --dense out/dense [--schemes atomic,rq]

Writes ``benchmarks/results/table_dtype.json``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from genir.dsi.config import DSIConfig
from genir.dsi.decoding import DocidDecoder
from genir.dsi.docids import DocidScheme
from genir.encoding.stored import stored_embeddings
from genir.indexer.collection import Collection
from genir.measures import evaluate
from genir.retrieval.searcher import Hit
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.model_io import WEIGHTS, load_seq2seq, save_seq2seq
from genir.seq2seq.table_dtype import TABLE_DTYPES, set_table_dtype, table_bytes

RESULTS = Path(__file__).resolve().parent / "results"


def measure(scheme_name: str, collection: Collection, dense: Path, split: str) -> list[dict]:
    docs = list(collection.docs())
    qrels = collection.qrels(split)
    queries = {qid: text for qid, text in collection.queries.items() if qid in qrels}
    embeddings = stored_embeddings(dense, [d.id for d in docs])
    config = DSIConfig(docids=scheme_name)
    scheme = DocidScheme.from_config(config)
    scheme.assign(docs, embeddings)
    built = build_seq2seq(config.model, scheme.vocab_size, docid_embeddings=scheme.token_vectors(embeddings), dense_start=True,
                          position_starts=scheme.position_starts(), seed=config.seed)
    trie = scheme.trie()
    rows, reference = [], None
    for dtype in TABLE_DTYPES:
        model = copy.deepcopy(built.model)
        set_table_dtype(model, dtype)
        with tempfile.TemporaryDirectory() as tmp:
            save_seq2seq(model, Path(tmp) / "model")
            disk = (Path(tmp) / "model" / WEIGHTS).stat().st_size
            model = load_seq2seq(Path(tmp) / "model")
        decoder = DocidDecoder(model, built.tokenizer, scheme, trie)
        started = time.perf_counter()
        rankings = decoder.search(list(queries.values()), 10, config)
        seconds = time.perf_counter() - started
        run = {qid: [Hit(docid, score) for docid, score in ranking] for qid, ranking in zip(queries, rankings)}
        top = {qid: [hit.docid for hit in hits] for qid, hits in run.items()}
        reference = reference or top
        ndcg = evaluate(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
        rows.append({"scheme": scheme_name, "table_dtype": dtype, "docs": len(docs), "queries": len(queries),
                     "ndcg10": round(ndcg, 4), "top10_changed": sum(top[q] != reference[q] for q in top),
                     "model_bytes_on_disk": disk, "table_bytes": table_bytes(model),
                     "ms_per_query": round(1000 * seconds / len(queries), 1)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["ndcg10"]
    for row in rows:
        row["ndcg10_minus_float32"] = round(row["ndcg10"] - base, 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--dense", required=True, help="a dense index of the collection (its embeddings are the rows)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--schemes", default="atomic,rq")
    parser.add_argument("--output", type=Path, default=RESULTS / "table_dtype.json",
                        help="the JSON to write (another split: another file, e.g. table_dtype_train.json)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    collection = Collection.open(args.collection)
    rows = [row for scheme in args.schemes.split(",") for row in measure(scheme, collection, Path(args.dense), args.split)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = args.output
    out.write_text(json.dumps({
        "provenance": {"date": datetime.date.today().isoformat(),
                       "machine": f"{torch.get_num_threads()} CPU cores (shared, loaded), {platform.machine()}",
                       "commit": commit, "note": "commit: the code measured; the zero-shot recipe's kept model (epoch 0)"},
        "collection": collection.name, "split": args.split, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}; median ms/query {statistics.median(r['ms_per_query'] for r in rows)}")


if __name__ == "__main__":
    main()
