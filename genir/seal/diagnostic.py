"""Does SEAL's model read the query? A number per query set, not a hope.

For each query of a split: the model's ``top`` generated n-grams (the prefixes its beams held,
``SEALSearcher._generated``, by decreasing ``log P(n|q)``), decoded
to text, and whether they hold an informative word of the query, or of a document judged relevant
to it. A model that ignores its input writes the same generic n-grams for every query ("the",
"of", "have been shown to") and fails both.

* **Words**: lower-cased runs of letters and digits; an n-gram that starts or ends inside a word
  (a word piece) holds that word's piece, which matches nothing.
* **Informative**: a word in at most ``max_df`` of the corpus' documents. Stopwords and the
  corpus' generic words are in more, so that a query is never "read" through "the" or "of".

Run: ``python -m genir.seal.diagnostic INDEX --collection DIR --split test`` prints the shares of
queries (``reads_query``, ``reads_relevant``, ``reads_either``) and writes the per-query
diagnoses as JSON with ``--out``; a seal-hybrid index is diagnosed through its SEAL component.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genir.errors import GenirError
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher
from genir.seal.searcher import QUERY_BATCH, SEALSearcher, seal_component
from genir.seq2seq.vocab import FIRST_TOKEN

DEFAULT_TOP = 10
DEFAULT_MAX_DF = 0.05
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Diagnosis:
    """One query's top generated n-grams and the informative words they share with it.

    Attributes:
        qid: the query's id.
        ngrams: the top generated n-grams as text, best first.
        query_words: informative words of the query found in them, sorted.
        relevant_words: informative words of the query's relevant documents found in them, sorted.
    """

    qid: str
    ngrams: list[str]
    query_words: list[str]
    relevant_words: list[str]

    @property
    def reads(self) -> bool:
        """Whether an n-gram holds an informative word of the query or of a relevant document."""
        return bool(self.query_words or self.relevant_words)


def words(text: str) -> set[str]:
    """The lower-cased words of ``text`` (module docstring)."""
    return set(_WORD.findall(text.lower()))


def document_frequencies(texts: Iterable[str]) -> tuple[Counter[str], int]:
    """How many of ``texts`` hold each word, and how many texts there are."""
    frequencies: Counter[str] = Counter()
    count = 0
    for text in texts:
        frequencies.update(words(text))
        count += 1
    return frequencies, count


def diagnose_query(qid: str, ngrams: Sequence[str], query: str, relevant: Sequence[str], frequencies: Counter[str],
                   most_docs: float) -> Diagnosis:
    """The :class:`Diagnosis` of one query.

    Args:
        ngrams: its top generated n-grams as text.
        relevant: the texts of its relevant documents.
        frequencies: document frequency of each corpus word (:func:`document_frequencies`).
        most_docs: a word in more documents than this is not informative.
    """
    generated = set().union(*(words(n) for n in ngrams)) if ngrams else set()
    informative = {w for w in generated if frequencies[w] <= most_docs}
    in_relevant = set().union(*(words(t) for t in relevant)) if relevant else set()
    return Diagnosis(qid, list(ngrams), sorted(informative & words(query)), sorted(informative & in_relevant))


def diagnose(searcher: SEALSearcher, collection: Collection, split: str, top: int = DEFAULT_TOP,
             max_df: float = DEFAULT_MAX_DF) -> list[Diagnosis]:
    """Diagnose every query of ``split`` that has a relevant document (module docstring).

    Raises:
        GenirError: the index has no model, ``top`` is below 1 or ``max_df`` outside ``(0, 1]``.
    """
    if searcher.model is None or not searcher.config.use_model:
        raise GenirError("this seal index has no model (use_model=false): it generates no n-grams to diagnose")
    if top < 1 or not 0.0 < max_df <= 1.0:
        raise GenirError(f"top={top}, max_df={max_df}: need top >= 1 and 0 < max_df <= 1")
    texts = {doc.id: doc.contents for doc in collection.docs()}
    frequencies, num_docs = document_frequencies(texts.values())
    qrels = collection.qrels(split)
    queries = {qid: text for qid, text in collection.split_queries(split).items()
               if any(grade > 0 for grade in qrels.get(qid, {}).values())}
    ids, batch = list(queries), list(queries.values())
    diagnoses = []
    for start in range(0, len(batch), QUERY_BATCH):
        for qid, generated in zip(ids[start:start + QUERY_BATCH], searcher._generated(batch[start:start + QUERY_BATCH])):
            best = sorted(generated, key=lambda row: -row[1])[:top]
            ngrams = [searcher.tokenizer.decode([t - FIRST_TOKEN for t in row[0]]) for row in best]
            relevant = [texts[d] for d, grade in qrels[qid].items() if grade > 0 and d in texts]
            diagnoses.append(diagnose_query(qid, ngrams, queries[qid], relevant, frequencies, max_df * num_docs))
    return diagnoses


def shares(diagnoses: Sequence[Diagnosis]) -> dict[str, Any]:
    """The share of queries whose top n-grams hold a query word, a relevant document's word, either."""
    n = len(diagnoses)

    def share(hit) -> float:
        return sum(1 for d in diagnoses if hit(d)) / n if n else 0.0

    return {"queries": n, "reads_query": share(lambda d: d.query_words), "reads_relevant": share(lambda d: d.relevant_words),
            "reads_either": share(lambda d: d.reads)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP)
    parser.add_argument("--max-df", type=float, default=DEFAULT_MAX_DF)
    parser.add_argument("--out", type=Path, help="per-query diagnoses as JSON")
    args = parser.parse_args(argv)
    try:
        diagnoses = diagnose(seal_component(Searcher.load(args.index)), Collection.open(args.collection), args.split, args.top, args.max_df)
    except GenirError as e:
        parser.exit(2, f"error: {e}\n")
    summary = shares(diagnoses)
    print(f"{args.index}: top {args.top} generated n-grams, informative = in at most {args.max_df:.0%} of documents")
    print(f"{summary['queries']} queries: reads the query {summary['reads_query']:.1%}, a relevant document "
          f"{summary['reads_relevant']:.1%}, either {summary['reads_either']:.1%}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"index": str(args.index), "split": args.split, "top": args.top,
                                        "max_df": args.max_df, **summary,
                                        "per_query": [dataclasses.asdict(d) for d in diagnoses]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
