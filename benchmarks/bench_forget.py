"""Deleting is forgetting, measured (issue 30): atomic DSI on SciFact, supervised, ``genir delete
--forget mask|unlearn|reindex`` of a random share of the documents.

SciFact less a held-out 1 % of its documents (never indexed: the non-members of the membership
attacks; their judgements and the queries only they answer go with them) is indexed as the condition
``dsi-atomic`` builds it (a dense index for the rows, then dsi with ``embeddings_from``). A forget set
(``--fractions``, of the indexed documents; their training queries go with them) is deleted from a
copy in each mode, and measured:

* leaked: forgotten documents in the top 100 for their own text (title and text) and for their
  training queries (must be 0 in every mode);
* utility: nDCG@10 on the test queries, judged on the remaining documents (queries left with no
  relevant document dropped);
* membership inference, two attacks, each an AUC of members (forgotten documents, trained on once)
  against non-members (the never-indexed documents); MUSE's PrivLeak compares it with ``reindex``'s,
  whose model never saw either set:

  - ``mia_auc``, on the documents' texts: the model's confidence (minus the entropy of its first
    decoding step over the live docid tokens: a text the decoder was trained on points somewhere sharply);
  - ``mia_query_auc``, on their training queries (those the build trained on, not its dev queries):
    the attacker knows a document's text, so its row (its public MiniLM embedding, as the index made
    it) and puts it back among the live rows: the score is the model's log-probability of that row
    for the query. ``mask`` zeroes the row but keeps the decoder that learnt to point the query at it;
    this attack asks whether it still does. Members are few at 1 % (``query_members``): read it at 5 and 10 %;
* time: the whole ``delete_documents`` call, wall seconds on 2 shared, loaded cores.

Sustainability (``--sequential N``): the ``--sequential-fraction`` forget set is cut into ``N``
requests deleted one after another from one copy (``mask``, ``unlearn``), each measured as above
(the forgotten set: every request so far); ``reindex`` of their union is the ``--fractions`` row of
the same share (its forget set is the same sample).

A ``reindex`` copy is kept (``<work>/delete-<fraction>-reindex`` and its ``.json``: the deleted ids,
the time and statistics) and measured again by a later run for the same ids instead of being built
again (its time is the one measured when it was built; ``reindex_reused`` says so).

    nice -n 5 python benchmarks/bench_forget.py [--data ../shared/data/scifact] [--fractions 0.01,0.05,0.1] [--sequential 5]

Writes ``benchmarks/results/bench_forget.json`` (after each row, so a cut-short run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from genir.dsi.dev import dev_set
from genir.encoding.encoder import DEFAULT_ENCODER, TextEncoder
from genir.encoding.stored import stored_embeddings
from genir.evaluation.bench import source_commit
from genir.indexer.artifact import read_manifest
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


@dataclass(frozen=True)
class Probe:
    """What the measurements read besides an index: every document's text, the training queries the
    build trained on per document (its dev queries left out), the held-out documents and their rows."""

    base: Collection
    text: dict[str, str]
    trained_queries: dict[str, list[str]]  # doc id -> texts of the training queries judged relevant to it
    held: list[str]
    rows: dict[str, np.ndarray]  # doc id -> its embedding as the index's row (held-out and indexed documents)

    @classmethod
    def make(cls, full: Collection, base: Collection, held: list[str], work: Path, index: Path) -> Probe:
        docs = {d.id: d for d in full.docs()}
        config = parse_config(searcher_class("dsi").Config, read_manifest(index, verify=False).config)
        dev = set(dev_set(base, list(base.docs()), config, True, None).queries)
        trained: dict[str, list[str]] = {}
        for q, judged in full.qrels("train").items():
            for d, grade in judged.items():
                if grade > 0 and q not in dev:
                    trained.setdefault(d, []).append(full.queries[q])
        dense = read_manifest(work / "dense", verify=False).config
        encoder = TextEncoder(dense.get("model", DEFAULT_ENCODER), int(dense.get("max_length", 256)))
        rows = dict(zip(base.doc_ids, stored_embeddings(work / "dense", base.doc_ids)))
        rows.update(zip(held, encoder.encode([docs[d].contents for d in held])))
        return cls(base, {d: f"{docs[d].title} {docs[d].text}".strip() for d in docs}, trained, held, rows)


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


@torch.inference_mode()
def own_row_scores(searcher: Searcher, pairs: list[tuple[str, str]], rows: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """``[len(pairs)]``: for each (query, doc id), the first step's log-probability of the document's
    row ``rows[doc]`` put back among the live rows (its own live row, if it has one, left out), under
    the dense-start head (``exp(log_scale) * z . row``)."""
    model, tokenizer, decoder = searcher.model.eval(), searcher.tokenizer, searcher.model.get_decoder()
    positions = {docid: p for p, docid in enumerate(searcher.scheme.position_ids()) if docid is not None}
    live = sorted(FIRST_TOKEN + p for p in positions.values())
    column = {token: c for c, token in enumerate(live)}
    table = model.get_output_embeddings().weight[torch.tensor(live)].float()  # [L, H]
    max_length = int(searcher.manifest.config.get("max_source_len", 64))
    out = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start:start + batch]
        enc = tokenizer([q for q, _ in chunk], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        states = model.get_encoder()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        hidden = decoder.bert(input_ids=torch.full((len(chunk), 1), DECODER_START), encoder_hidden_states=states,
                              encoder_attention_mask=enc["attention_mask"]).last_hidden_state
        z = decoder.vectors(hidden, states, enc["attention_mask"])[:, 0].float()  # [b, H]
        scale = decoder.log_scale.exp().float()
        own = scale * (z * torch.as_tensor(np.stack([rows[d] for _, d in chunk])).float()).sum(-1)  # [b]
        logits = scale * z @ table.T  # [b, L]
        for i, (_, d) in enumerate(chunk):
            if d in positions:
                logits[i, column[FIRST_TOKEN + positions[d]]] = -torch.inf
        out.append((own - torch.logsumexp(torch.cat([logits, own[:, None]], 1), 1)).numpy())
    return np.concatenate(out)


def auc(members: np.ndarray, others: np.ndarray) -> float:
    """P(a member scores above a non-member), ties half (the Mann-Whitney AUC)."""
    m, o = members[:, None], others[None, :]
    return float(((m > o).sum() + 0.5 * (m == o).sum()) / (m.size * o.size))


def measure(index: Path, gone: list[str], probe: Probe) -> dict:
    searcher = Searcher.load(index)
    try:
        base, text = probe.base, probe.text
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
        members, others = confidence(searcher, [text[d] for d in gone]), confidence(searcher, [text[d] for d in probe.held])
        asked = [(q, d) for d in gone for q in probe.trained_queries.get(d, [])]
        unseen = [(q, d) for d in probe.held for q in probe.trained_queries.get(d, [])]
        query_auc = auc(own_row_scores(searcher, asked, probe.rows), own_row_scores(searcher, unseen, probe.rows))
        return {"leaked_rankings": leaked, "leak_queries": len(queries), "ndcg10": round(ndcg, 4), "test_queries": len(test),
                "mia_auc": round(auc(members, others), 4), "mia_query_auc": round(query_auc, 4), "query_members": len(asked),
                "query_others": len(unseen)}
    finally:
        searcher.close()


def forget_set(base: Collection, fraction: float, seed: int) -> list[str]:
    """The ``fraction`` of ``base``'s documents to forget, in the order drawn (sequential requests cut it in turn)."""
    return random.Random(seed + 1).sample(base.doc_ids, max(1, round(fraction * len(base.doc_ids))))


def delete_copy(index: Path, work: Path, label: str, gone: list[str], mode: Forget, base: Collection,
                unlearn: UnlearnSettings) -> tuple[Path, dict]:
    """Delete ``gone`` from a copy of ``index`` (``work/delete-<label>-<mode>``): the copy and its row
    figures (time, the change's statistics). A kept ``reindex`` copy of the same ids is reused."""
    copy = work / f"delete-{label}-{mode.value}"
    kept = copy.parent / f"{copy.name}.json"  # not with_suffix: the name holds the fraction's dot
    if mode is Forget.REINDEX and kept.is_file() and copy.is_dir():
        record = json.loads(kept.read_text(encoding="utf-8"))
        if sorted(record["gone"]) == sorted(gone):
            return copy, {**record["figures"], "reindex_reused": True}
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index, copy)
    started, cpu = time.perf_counter(), time.process_time()
    change = delete_documents(copy, gone, deletion=Deletion(mode, base, unlearn), keep_cache=True)
    figures = {"delete_seconds": round(time.perf_counter() - started, 1), "delete_cpu_seconds": round(time.process_time() - cpu, 1),
               **{k: v for k, v in change.stats.items() if k.startswith(("unlearn_", "reindex_", "zeroed_"))}}
    if mode is Forget.REINDEX:
        kept.write_text(json.dumps({"gone": sorted(gone), "figures": figures}) + "\n", encoding="utf-8")
    return copy, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "scifact")
    parser.add_argument("--work", type=Path, default=HERE.parent / "bench-out" / "forget")
    parser.add_argument("--fractions", default="0.01,0.05,0.1", help="forget-set shares of the indexed documents, comma-separated (none: '')")
    parser.add_argument("--modes", default="mask,unlearn,reindex")
    parser.add_argument("--sequential", type=int, default=5, help="sequential requests (0: none)")
    parser.add_argument("--sequential-fraction", type=float, default=0.05, help="the share the sequential requests delete in all")
    parser.add_argument("--held-out", type=float, default=0.01, help="share of the corpus never indexed (the attack's non-members)")
    parser.add_argument("--unlearn", default="", help="unlearn settings KEY=VALUE,... (genir delete --set)")
    parser.add_argument("--skip-before", action="store_true", help="no 'none (before)' rows (an earlier run measured them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bench_forget.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    args.work.mkdir(parents=True, exist_ok=True)
    full = Collection.open(args.data)
    base, held, index = build_base(args.data, args.work, args.held_out, args.seed)
    probe = Probe.make(full, base, held, args.work, index)
    unlearn = parse_config(UnlearnSettings, [s for s in args.unlearn.split(",") if s])
    modes = [Forget(m) for m in args.modes.split(",")]
    record = {"provenance": {"date": str(date.today()), "machine": f"2 shared CPU cores (loaded), {platform.machine()}, torch {torch.__version__}",
                             "commit": source_commit(), "note": "dsi-atomic (condition's build) on SciFact less a held-out 1 %; "
                             "times are wall seconds of the whole delete_documents call on 2 shared, loaded cores (other jobs "
                             "running); unlearn settings chosen on the training queries' dev carve, never on test"},
              "corpus": str(args.data), "indexed_docs": len(base.doc_ids), "held_out_docs": len(held),
              "unlearn_settings": unlearn.model_dump(mode="json"), "rows": [], "sequential": []}

    # every row this run does not measure again (another fraction or mode, a before row under --skip-before,
    # the sequential rows without --sequential) is kept from an earlier run of the same setup
    fractions = [float(f) for f in args.fractions.split(",") if f]
    earlier = json.loads(args.output.read_text(encoding="utf-8")) if args.output.is_file() else {}
    if all(earlier.get(k) == record[k] for k in ("corpus", "indexed_docs", "held_out_docs", "unlearn_settings")):
        names = {m.value for m in modes}
        measured = {(f, m) for f in fractions for m in [*names, *([] if args.skip_before else ["none (before)"])]}
        record["rows"] = [r for r in earlier.get("rows", []) if (r["fraction"], r["mode"]) not in measured]
        record["sequential"] = [r for r in earlier.get("sequential", []) if not args.sequential or r["mode"] not in names]
        if record["rows"] or record["sequential"]:
            record["provenance"]["note"] = (f"{earlier['provenance']['note']}; then (commit {record['provenance']['commit']}, "
                                            f"{record['provenance']['date']}) --modes {args.modes} --fractions {args.fractions} measured again")
    order = ["none (before)", *[m.value for m in Forget]]

    def keep(table: str, row: dict) -> None:
        print(json.dumps(row), flush=True)
        record[table].append(row)
        record[table].sort(key=lambda r: (r.get("fraction", 0), r.get("mode") != "none (before)" and order.index(r["mode"]),
                                          r.get("request", 0)) if table == "rows" else (order.index(r["mode"]), r["request"]))
        args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    for fraction in fractions:
        gone = sorted(forget_set(base, fraction, args.seed))
        # before deleting: the forget set is live (leaks by design), the reference for utility and leakage
        if not args.skip_before:
            keep("rows", {"fraction": fraction, "forgotten": len(gone), "mode": "none (before)", **measure(index, gone, probe)})
        for mode in modes:
            copy, figures = delete_copy(index, args.work, str(fraction), gone, mode, base, unlearn)
            keep("rows", {"fraction": fraction, "forgotten": len(gone), "mode": mode.value, **measure(copy, gone, probe), **figures})
            if mode is not Forget.REINDEX:
                shutil.rmtree(copy, ignore_errors=True)
    if args.sequential:
        drawn = forget_set(base, args.sequential_fraction, args.seed)
        requests = [sorted(drawn[i::args.sequential]) for i in range(args.sequential)]
        for mode in [m for m in modes if m is not Forget.REINDEX]:
            current, forgotten = index, []
            for number, request in enumerate(requests, 1):
                copy, figures = delete_copy(current, args.work, f"seq{number}", request, mode, base, unlearn)
                if current != index:
                    shutil.rmtree(current, ignore_errors=True)
                current, forgotten = copy, forgotten + request
                keep("sequential", {"request": number, "mode": mode.value, "forgotten": len(forgotten),
                                    **measure(copy, sorted(forgotten), probe), **figures})
            shutil.rmtree(current, ignore_errors=True)


if __name__ == "__main__":
    main()
