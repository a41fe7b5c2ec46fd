"""Salient sentences of a document: SE-DSI's rehearsal contents and the unsupervised pseudo-queries.

A sentence is salient when it holds words that are frequent in its document and rare in the
corpus. Its score is ``sum over its distinct words w of tf(w, doc) * idf(w) / sqrt(len)``, with
``idf(w) = log(N / df(w))`` over the corpus; the square root rewards content without letting long
sentences win by length alone.

Without a trained query generator, a pseudo-query is the ``words`` highest-tf·idf words of one of
the document's most salient sentences, kept in sentence order: a keyword query, the kind users
type, that names what the document is about.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable

from genir.indexer.collection import Document

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"\w+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (a regex split after ., ! or ? before a capital, digit or bracket)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (regex \\w+), as salience counts them."""
    return _WORD.findall(text.lower())


class Salience:
    """Document frequencies of a corpus, and salience rankings of its documents' sentences."""

    def __init__(self, docs: Iterable[Document]):
        self.df: Counter[str] = Counter()
        self.num_docs = 0
        for doc in docs:
            self.df.update(set(word_tokens(doc.contents)))
            self.num_docs += 1

    def idf(self, word: str) -> float:
        return math.log(max(self.num_docs, 1) / max(self.df[word], 1))

    def _weights(self, doc: Document) -> dict[str, float]:
        tf = Counter(word_tokens(doc.contents))
        return {w: count * self.idf(w) for w, count in tf.items()}

    def ranked_sentences(self, doc: Document) -> list[str]:
        """The document's sentences (title first, if any), most salient first."""
        weights = self._weights(doc)
        candidates = ([doc.title] if doc.title.strip() else []) + split_sentences(doc.text)

        def score(sentence: str) -> float:
            words = set(word_tokens(sentence))
            return sum(weights.get(w, 0.0) for w in words) / math.sqrt(max(len(words), 1))

        return sorted(candidates, key=score, reverse=True)

    def rehearsal_contents(self, doc: Document, n: int) -> list[str]:
        """SE-DSI's rehearsal contents: the ``n`` most salient sentences."""
        return self.ranked_sentences(doc)[:n]

    def keyword_queries(self, doc: Document, n: int, words: int = 8, seed: int = 0) -> list[str]:
        """``n`` keyword pseudo-queries, each from one of the ``n`` most salient sentences."""
        weights = self._weights(doc)
        rng = random.Random(f"{seed}:{doc.id}")
        queries = []
        for sentence in self.ranked_sentences(doc)[:n]:
            tokens = list(dict.fromkeys(word_tokens(sentence)))
            keep = set(sorted(tokens, key=lambda w: (-weights.get(w, 0.0), rng.random()))[:words])
            queries.append(" ".join(w for w in tokens if w in keep))
        return queries

