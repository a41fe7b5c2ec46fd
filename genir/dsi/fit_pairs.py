"""The training pairs a dense-start atomic DSI index keeps for ``genir add --fit`` (``fit_pairs.json``).

Fitting an added document's row (:mod:`genir.dsi.row_fit`) needs pairs of *earlier* documents that
must keep their documents: their training queries and first words (IncDSI's constraint). A built
index has no collection to read them from, so it keeps a seeded sample of them, at most
:data:`~genir.dsi.row_fit.STORED_FIT_PAIRS` (2,000): written by the build, grown by every add (the new
documents' first words and the training queries that came with them), and cut by every delete (every
pair of a deleted document goes: its first words, and its judgement by a query; a query that also
judges a kept document stays, for that document only).

**Text, not vectors.** What the fit compares is the *model's* query vector of each text, and the
model changes after the build: ``--forget unlearn`` moves the decoder, a continual ``finetune`` trains
it. Stored vectors would then describe a model the index no longer has; stored text is encoded again
by the model of the moment, at the cost of one encoder pass over at most 2,000 texts per fit. Text is
also what deleting can check and remove exactly (``tests/test_forgetting.py`` scans for it).

**A bottom-k sample keyed by a hash.** Every pair gets a key, the first 8 bytes of the sha256 of
(seed, text, document id) read as an integer, and the index keeps the pairs whose key is below a
threshold, chosen as high as keeps at most ``limit`` of them. That is a uniform random sample of
every pair the index has been given, seeded and independent of the order they came in; an add keeps
it one (the new pairs below the threshold join, and the threshold falls until ``limit`` are left);
a delete keeps it one of the remaining pairs (only pairs below the threshold are ever kept, so the
sample is never topped up with pairs above it, which the pairs lost before would have had to compete
with). After deletes the sample holds fewer than ``limit`` pairs until adds bring more.

The file is JSON (loading runs no code) and, like every file of an index, covered by the manifest's sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from genir.errors import CorruptIndexError
from genir.indexer.collection import Document
from genir.views.pairs import TextPair, ViewConfig, indexing_examples

FIT_PAIRS_FILE = "fit_pairs.json"
_FORMAT = "genir.dsi.fit_pairs"
_FORMAT_VERSION = 1
_ALL = 2**64  # a threshold above every key: every pair is kept


@dataclass(frozen=True)
class FitPairs:
    """A seeded sample of (text, document id) pairs of an index's documents (module docstring).

    Attributes:
        pairs: the kept pairs, by key (their order in the file).
        limit: most pairs kept.
        seed: seeds the keys.
        threshold: every pair with a key below it that the index was given is kept (unless deleted since).
    """

    pairs: tuple[TextPair, ...]
    limit: int
    seed: int
    threshold: int = _ALL

    @classmethod
    def sample(cls, pairs: Iterable[TextPair], limit: int, seed: int) -> FitPairs:
        """The sample of ``pairs`` (at most ``limit`` of them)."""
        return cls((), limit, seed).added(pairs)

    def key(self, pair: TextPair) -> int:
        """The pair's place in the sample's order: a seeded hash, ``0 <= key < 2**64``."""
        digest = hashlib.sha256(json.dumps([self.seed, pair[0], pair[1]]).encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def added(self, pairs: Iterable[TextPair]) -> FitPairs:
        """This sample after ``pairs`` join the pairs it samples."""
        candidates = dict.fromkeys([*self.pairs, *(p for p in pairs if self.key(p) < self.threshold)])
        ordered = sorted(candidates, key=self.key)
        if len(ordered) <= self.limit:
            return dataclasses.replace(self, pairs=tuple(ordered))
        threshold = self.key(ordered[self.limit])
        return dataclasses.replace(self, pairs=tuple(p for p in ordered[: self.limit] if self.key(p) < threshold),
                                   threshold=threshold)

    def without(self, ids: Iterable[str]) -> FitPairs:
        """This sample less every pair of the documents ``ids``."""
        gone = set(ids)
        return dataclasses.replace(self, pairs=tuple(p for p in self.pairs if p[1] not in gone))

    def save(self, directory: Path) -> None:
        """Write ``directory/fit_pairs.json``."""
        record = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "limit": self.limit, "seed": self.seed,
                  "threshold": self.threshold, "pairs": [list(p) for p in self.pairs]}
        (directory / FIT_PAIRS_FILE).write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> FitPairs | None:
        """The sample in ``directory``, or None where it keeps none (an index that cannot fit, or built before genir kept one).

        Raises:
            CorruptIndexError: the file is not a sample this version of genir wrote.
        """
        path = directory / FIT_PAIRS_FILE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            ok = (isinstance(record, dict) and record.get("format") == _FORMAT and record.get("format_version") == _FORMAT_VERSION
                  and all(type(record.get(k)) is int and record[k] >= 0 for k in ("limit", "seed", "threshold"))
                  and isinstance(record.get("pairs"), list)
                  and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in record["pairs"]))
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise CorruptIndexError(f"{path} is not a sample of training pairs genir wrote (format {_FORMAT} {_FORMAT_VERSION})")
        return cls(tuple((text, docid) for text, docid in record["pairs"]), record["limit"], record["seed"], record["threshold"])


def fit_pairs_of(docs: Sequence[Document], queries: Iterable[TextPair], first_words: int) -> list[TextPair]:
    """What a sample is given for ``docs``: each one's first ``first_words`` words (DSI's indexing view,
    without spans) with its id, and ``queries``, (query, document id) pairs of their training queries."""
    return [*indexing_examples(docs, ViewConfig(first_words=first_words, spans=0)), *queries]
