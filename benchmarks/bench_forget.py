"""Deleting is forgetting, measured (issue 30): atomic DSI on SciFact, supervised, ``genir delete
--forget mask|unlearn|reindex`` of a random share of the documents.

SciFact less a held-out 1 % of its documents (never indexed: the non-members of the membership
attack; their judgements and the queries only they answer go with them) is indexed as the condition
``dsi-atomic`` builds it (a dense index for the rows, then dsi with ``embeddings_from``). A forget set
(``--fractions``, of the indexed documents; their training queries go with them) is deleted from a
copy in each mode, and measured:

* leaked: forgotten documents in the top 100 for their own text (title and text) and for their
  training queries (must be 0 in every mode);
* utility: nDCG@10 on the test queries, judged on the remaining documents (queries left with no
  relevant document dropped);
* membership inference: for each document's text, the model's confidence (minus the entropy of its
  first decoding step over the live docid tokens: a text the decoder was trained on points somewhere
  sharply); AUC of forgotten (members once) against never-indexed documents. MUSE's PrivLeak compares
  it with ``reindex``'s, whose model never saw either set (about 0.5);
* time: the whole ``delete_documents`` call, wall seconds on 2 shared, loaded cores.

    nice -n 5 python benchmarks/bench_forget.py [--data ../shared/data/scifact] [--fractions 0.01,0.1]

Writes ``benchmarks/results/bench_forget.json`` (after each fraction, so a cut-short run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from genir.evaluation.bench import source_commit
from genir.indexer.collection import Collection
from genir.measures import evaluate
from genir.retrieval.searcher import (
    Deletion,
    Forget,
    Searcher,
    build_index,
    delete_documents,
    remaining_collection,
    searcher_class,
)
from genir.seq2seq.settings import UnlearnSettings
from genir.seq2seq.vocab import DECODER_START, FIRST_TOKEN
from genir.settings import parse_config

HERE = Path(__file__).resolve().parent


def build_base(data: Path, work: Path, held_out_share: float, seed: int) -> tuple[Collection, list[str], Path]:
    """The indexed collection (SciFact less the held-out documents), the held-out ids, the built DSI index."""
    full = Collection.open(data)
    ids = full.doc_ids
    held = sorted(random.Random(seed).sample(ids, max(1, round(held_out_share * len(ids)))))
    base = remaining_collection(full, [d for d in ids if d not in set(held)], work / "indexed") if not (work / "indexed").is_dir() \
        else Collection.open(work / "indexed")
    for method, settings in (("dense", []), ("dsi", [f"embeddings_from={work / 'dense'}"])):
        if not (work / method / "manifest.json").is_file():
            started = time.perf_counter()
            build_index(method, base, work / method, parse_config(searcher_class(method).Config, settings))
            print(f"built {method} in {time.perf_counter() - started:.0f} s", flush=True)
    return base, held, work / "dsi"


@torch.inference_mode()
def confidence(searcher: Searcher, texts: list[str], batch: int = 64) -> np.ndarray:
    """``[len(texts)]``: minus the entropy of the first decoding step over the live docid tokens."""
    model, tokenizer = searcher.model.eval(), searcher.tokenizer
    live = torch.tensor(sorted(FIRST_TOKEN + p for p, docid in enumerate(searcher.scheme.position_ids()) if docid is not None))
    out = []
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start:start + batch], truncation=True, max_length=256, padding=True, return_tensors="pt")
        start_tokens = torch.full((enc["input_ids"].shape[0], 1), DECODER_START, dtype=torch.long)
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], decoder_input_ids=start_tokens).logits[:, 0]
        logp = torch.log_softmax(logits[:, live].float(), dim=-1)
        out.append((logp.exp() * logp).sum(-1).numpy())  # minus the entropy
    return np.concatenate(out)


def auc(members: np.ndarray, others: np.ndarray) -> float:
    """P(a member scores above a non-member), ties half (the Mann-Whitney AUC)."""
    m, o = members[:, None], others[None, :]
    return float(((m > o).sum() + 0.5 * (m == o).sum()) / (m.size * o.size))


def measure(index: Path, base: Collection, gone: list[str], held: list[str], full: Collection) -> dict:
    searcher = Searcher.load(index)
    try:
        docs = {d.id: d for d in full.docs()}
        text = {d: f"{docs[d].title} {docs[d].text}".strip() for d in docs}
        train = base.qrels("train")
        training_queries = sorted({q for q, judged in train.items() if set(judged) & set(gone)})
        queries = [text[d] for d in gone] + [base.queries[q] for q in training_queries]
        hits = searcher.batch_search(queries, k=100)
        gone_set = set(gone)
        leaked = sum(bool({h.docid for h in row} & gone_set) for row in hits)
        test = {q: {d: g for d, g in judged.items() if d not in gone_set} for q, judged in base.qrels("test").items()}
        test = {q: judged for q, judged in test.items() if any(g > 0 for g in judged.values())}
        run = dict(zip(test, searcher.batch_search([base.queries[q] for q in test], k=10)))
        ndcg = evaluate(run, test, ["nDCG@10"]).aggregate["nDCG@10"]
        members, others = confidence(searcher, [text[d] for d in gone]), confidence(searcher, [text[d] for d in held])
        return {"leaked_rankings": leaked, "leak_queries": len(queries), "ndcg10": round(ndcg, 4), "test_queries": len(test),
                "mia_auc": round(auc(members, others), 4)}
    finally:
        searcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "scifact")
    parser.add_argument("--work", type=Path, default=HERE.parent / "bench-out" / "forget")
    parser.add_argument("--fractions", default="0.01", help="forget-set shares of the indexed documents, comma-separated")
    parser.add_argument("--modes", default="mask,unlearn,reindex")
    parser.add_argument("--held-out", type=float, default=0.01, help="share of the corpus never indexed (the attack's non-members)")
    parser.add_argument("--unlearn", default="", help="unlearn settings KEY=VALUE,... (genir delete --set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bench_forget.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    args.work.mkdir(parents=True, exist_ok=True)
    full = Collection.open(args.data)
    base, held, index = build_base(args.data, args.work, args.held_out, args.seed)
    unlearn = parse_config(UnlearnSettings, [s for s in args.unlearn.split(",") if s])
    record = {"provenance": {"date": str(date.today()), "machine": f"2 shared CPU cores (loaded), {platform.machine()}, torch {torch.__version__}",
                             "commit": source_commit(), "note": "dsi-atomic (condition's build) on SciFact less a held-out 1 %; "
                             "times are wall seconds of the whole delete_documents call on 2 shared, loaded cores"},
              "corpus": str(args.data), "indexed_docs": len(base.doc_ids), "held_out_docs": len(held),
              "unlearn_settings": unlearn.model_dump(mode="json"), "rows": []}
    for fraction in [float(f) for f in args.fractions.split(",")]:
        gone = sorted(random.Random(args.seed + 1).sample(base.doc_ids, max(1, round(fraction * len(base.doc_ids)))))
        # before deleting: the forget set is live (leaks by design), the reference for utility and leakage
        row = {"fraction": fraction, "forgotten": len(gone), "mode": "none (before)", **measure(index, base, gone, held, full)}
        print(json.dumps(row), flush=True)
        record["rows"].append(row)
        for mode in [Forget(m) for m in args.modes.split(",")]:
            copy = args.work / f"delete-{fraction}-{mode.value}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(index, copy)
            started = time.perf_counter()
            change = delete_documents(copy, gone, deletion=Deletion(mode, base, unlearn), keep_cache=True)
            seconds = time.perf_counter() - started
            row = {"fraction": fraction, "forgotten": len(gone), "mode": mode.value, "delete_seconds": round(seconds, 1),
                   **measure(copy, base, gone, held, full),
                   **{k: v for k, v in change.stats.items() if k.startswith(("unlearn_", "reindex_", "zeroed_"))}}
            print(json.dumps(row), flush=True)
            record["rows"].append(row)
            args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    main()
