"""Docids that are a code of the document embedding, then the document itself (rq, semantic).

A document with embedding ``d`` (``[dim]`` float32) is named ``[t_1, ..., t_L, doc, eos]``:

* ``t_l`` is a token of code level ``l`` (position ``l - 1``); level ``l``'s tokens are the
  contiguous range ``[level_starts()[l - 1], level_starts()[l])``, every token its own vector
  (:meth:`CodedDocids.code_vectors`, ``[first_doc_token - 2, dim]`` float32: row ``t - 2`` is
  token ``t``'s). A subclass says how a document is coded (:meth:`CodedDocids.code`): residual
  quantization (:mod:`genir.dsi.rq_docids`) or a k-means tree (:mod:`genir.dsi.semantic_docids`).
  A new document is coded with the saved vectors, so old codes never change.
* ``doc`` is the document's own token, ``first_doc_token + position`` (as an atomic docid,
  offset), so every docid is unique without a disambiguation rule, and the vocabulary grows by one
  per document.

Output rows (:meth:`CodedDocids.token_vectors`): a code token's row is its vector; a document
token's row is the document's residual, ``d - (v(t_1) + ... + v(t_L))``. The rows of one docid sum
to ``d``, so with the dense start (:mod:`genir.seq2seq.dense_start`) the summed logits of a docid
before training are the dense score ``q . d``. Positions (:meth:`CodedDocids.position_starts`):
the ``L`` code levels, then the document tokens.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np

from genir.dsi.docids import Body, DocidScheme, DocidSettings
from genir.dsi.kmeans import embedding_matrix
from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.seq2seq.vocab import FIRST_TOKEN


class CodedDocids(DocidScheme):
    """A code of the document embedding, one token per level, then the document's token (module docstring)."""

    has_token_vectors = True

    @abstractmethod
    def level_starts(self) -> list[int]:
        """``[L + 1]``: the first token of each code level, then :attr:`first_doc_token`."""

    @abstractmethod
    def code_vectors(self) -> np.ndarray:
        """``[first_doc_token - 2, dim]`` float32: the vector of every code token (row ``t - 2``)."""

    @abstractmethod
    def code(self, x: np.ndarray) -> np.ndarray:
        """The code tokens of embeddings ``x`` ``[n, dim]`` float32 -> ``[n, L]`` int64 token ids."""

    @property
    def levels(self) -> int:
        return len(self.level_starts()) - 1

    @property
    def first_doc_token(self) -> int:
        return self.level_starts()[-1]

    @property
    def dim(self) -> int:
        return self.code_vectors().shape[1]

    @property
    def vocab_size(self) -> int:
        return self.first_doc_token + self.num_docs

    @property
    def needs_embeddings(self) -> bool:
        """Always: a document's code is a code of its embedding."""
        return True

    def position_starts(self) -> list[int]:
        """The first token of each position: the ``L`` code levels, then the document tokens."""
        return self.level_starts()

    def step_beams(self, config: DocidSettings) -> list[int]:
        """``code_beams`` at each of the ``L`` code levels: the document step lists only the documents
        under the kept prefixes (``~N * code_beams / K`` rows for rq's one level of ``K`` codes)."""
        return [config.code_beams] * self.levels

    def _extend_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        return self._bodies_of(embedding_matrix(embeddings, len(docs), dim=self.dim))

    def _bodies_of(self, x: np.ndarray) -> list[Body]:
        first = self.first_doc_token + self.num_docs
        return [(*(int(t) for t in row), first + i) for i, row in enumerate(self.code(x))]

    def token_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """The output row of every token (module docstring), pad and eos zero.

        Args:
            embeddings: ``[num_docs, dim]`` float32, the documents in assignment order.
        Returns:
            ``[vocab_size, dim]`` float32.
        """
        x = embedding_matrix(embeddings, self.num_docs, dim=self.dim)
        rows = np.zeros((self.vocab_size, x.shape[1]), dtype=np.float32)
        rows[FIRST_TOKEN:self.first_doc_token] = self.code_vectors()
        rows[self.first_doc_token:] = self.residuals(x, 0)
        return rows

    def new_token_vectors(self, embeddings: np.ndarray, start: int) -> np.ndarray:
        """The new documents' own tokens' rows: their residuals (:meth:`residuals`); code tokens never change."""
        return self.residuals(embeddings, start)

    def residuals(self, x: np.ndarray, start: int) -> np.ndarray:
        """Document rows ``[n, dim]``: ``x`` (the documents at positions ``start..start+n-1``) minus their code vectors."""
        codes = np.array([self._bodies[start + i][:-1] for i in range(len(x))], dtype=np.int64).reshape(len(x), self.levels)
        return (x - self.code_vectors()[codes - FIRST_TOKEN].sum(axis=1)).astype(np.float32)

    def _check_restored(self, path: Path) -> None:
        starts = self.level_starts()  # read once: every docid of a loaded index is checked against them
        levels, first = len(starts) - 1, starts[-1]
        for position, docid, body in self.live_positions():
            good = (len(body) == levels + 1 and body[-1] == first + position
                    and all(starts[level] <= t < starts[level + 1] for level, t in enumerate(body[:-1]))
                    and self._code_is_valid(body[:-1]))
            if not good:
                raise GenirError(f"{path}: document {docid!r} at position {position} does not have a {self.name} docid "
                                 f"({levels} code tokens, then token {first + position})")

    def _forget(self, rows: list[int], bodies: list[Body], tokens: set[int]) -> None:
        """A code token no live document has any more is a cluster of deleted documents only (a
        singleton's centroid is its embedding): its vector becomes zero (:meth:`_zero_code_vectors`).
        A new document coded into it later gets its whole embedding in its own token's row."""
        code = sorted(t for t in tokens if FIRST_TOKEN <= t < self.first_doc_token)
        if code:
            self._zero_code_vectors(np.array(code, dtype=np.int64) - FIRST_TOKEN)

    @abstractmethod
    def _zero_code_vectors(self, rows: np.ndarray) -> None:
        """Set the vectors of code tokens ``rows + 2`` (rows of :meth:`code_vectors`) to zero."""

    def _code_is_valid(self, code: Body) -> bool:
        """Whether a code (in-range tokens, one per level) is one this scheme could give; any, by default."""
        return True
