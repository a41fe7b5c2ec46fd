"""Do SE-DSI's rehearsal contents pick the sentences that queries are about?

For every (train query, relevant document) pair of a collection, the *oracle* sentence is the
document sentence (title included) that shares the most idf-weighted words with the query. Each
ranking method orders the document's sentences; we report how often it ranks the oracle first
(P@1) and the mean reciprocal rank of the oracle (MRR). Methods: genir's salience ranking
(tf·idf / sqrt(length), :mod:`genir.views.salience`), document order (title, then the first
sentences: what "first-k tokens" memorizes), and random order (mean of 20 shuffles).

Usage: python benchmarks/bench_rehearsal.py [--collection ../shared/data/scifact] [--split train]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from genir.indexer.collection import Collection
from genir.views.salience import Salience, split_sentences, word_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"))
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_rehearsal.json")
    args = parser.parse_args()
    coll = Collection.open(args.collection)
    docs = {d.id: d for d in coll.docs()}
    salience = Salience(docs.values())
    queries = coll.queries
    rng = random.Random(0)
    scores: dict[str, list[tuple[float, float]]] = {"salience": [], "document order": [], "random order": []}
    for qid, judged in coll.qrels(args.split).items():
        query_words = set(word_tokens(queries[qid]))
        for doc_id, _grade in judged.items():
            doc = docs[doc_id]
            order = ([doc.title] if doc.title.strip() else []) + split_sentences(doc.text)
            if len(order) < 2:
                continue
            overlap = [sum(salience.idf(w) for w in set(word_tokens(s)) & query_words) for s in order]
            oracle = order[max(range(len(order)), key=overlap.__getitem__)]
            rankings = {"salience": [salience.ranked_sentences(doc)], "document order": [order],
                        "random order": [rng.sample(order, len(order)) for _ in range(20)]}
            for method, orders in rankings.items():
                ranks = [o.index(oracle) + 1 for o in orders]
                scores[method].append((statistics.mean(r == 1 for r in ranks), statistics.mean(1 / r for r in ranks)))
    rows = {m: {"P@1": statistics.mean(p for p, _ in v), "MRR": statistics.mean(r for _, r in v), "pairs": len(v)}
            for m, v in scores.items()}
    print(f"{coll.name} {args.split}: oracle sentence = most idf-weighted overlap with the query")
    print("| ranking | P@1 (oracle first) | MRR of oracle | pairs |\n|---|---:|---:|---:|")
    for method, row in rows.items():
        print(f"| {method} | {row['P@1']:.3f} | {row['MRR']:.3f} | {row['pairs']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"collection": coll.name, "split": args.split, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
