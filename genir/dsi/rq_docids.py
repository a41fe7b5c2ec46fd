"""Residual-quantization docids (RIPOR, PAG): the codes of a document's embedding, then the document.

A document with embedding ``d`` (``[dim]`` float32) is named ``[c_1, ..., c_L, doc, eos]``:

* ``c_l`` is level ``l``'s code of ``d`` under residual quantization with ``L`` codebooks of ``K``
  vectors each (``codebooks``: ``[L, K, dim]`` float32, trained with faiss'
  ``ResidualQuantizer``): ``c_1`` the codeword nearest ``d``, ``c_2`` the one nearest
  ``d - codebook[0, c_1]``, and so on (greedy; a new document is coded the same way with the same
  codebooks, so old codes never change). Level ``l``'s code ``c`` is token ``2 + l * K + c``.
* ``doc`` is the document's own token, ``2 + L * K + position`` (as an atomic docid, offset), so
  every docid is unique without a disambiguation rule, and the vocabulary grows by one per
  document.

Output rows (:meth:`RQDocids.token_vectors`): a code token's row is its codeword; a document
token's row is the document's residual after its codes, ``d - (codeword_1 + ... + codeword_L)``.
The rows of one docid sum to ``d``, so with the dense start (:mod:`genir.seq2seq.dense_start`)
the summed logits of a docid before training are the dense score ``q . d``. Positions:
:meth:`RQDocids.position_starts` (position ``l < L``: level ``l``'s ``K`` tokens; position ``L``:
document tokens).

Arrays (``docid_scheme.npz``): ``codebooks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genir.dsi.docids import Body, DocidScheme
from genir.dsi.semantic_docids import (
    embedding_matrix,
    nearest_centroid,
    one_openmp_thread,
)
from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.seq2seq.vocab import FIRST_TOKEN, SPECIAL_TOKEN_NAMES


class RQDocids(DocidScheme):
    """Residual-quantization codes then the document's own token (module docstring).

    Args:
        levels: codebooks ``L`` (code positions before the document token).
        codes: codewords ``K`` per codebook, a power of two (faiss stores codes in ``log2 K`` bits).
        seed: seeds faiss' training.
    """

    scheme = "rq"
    array_names = ("codebooks",)

    def __init__(self, levels: int = 1, codes: int = 256, seed: int = 0):
        super().__init__()
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
            raise GenirError(f"rq docids need an integer levels >= 1, got {levels!r}")
        if not isinstance(codes, int) or isinstance(codes, bool) or codes < 2 or codes & (codes - 1):
            raise GenirError(f"rq docids need codes = a power of two >= 2, got {codes!r}")
        self.levels, self.codes, self.seed = levels, codes, seed
        self.codebooks = np.zeros((levels, codes, 0), dtype=np.float32)

    @property
    def first_doc_token(self) -> int:
        return FIRST_TOKEN + self.levels * self.codes

    @property
    def vocab_size(self) -> int:
        return self.first_doc_token + self.num_docs

    def position_starts(self) -> list[int]:
        """The first token of each position: ``L`` code levels, then the document tokens."""
        return [FIRST_TOKEN + level * self.codes for level in range(self.levels)] + [self.first_doc_token]

    def token_names(self) -> list[str]:
        codes = [f"<l{level}:{c}>" for level in range(self.levels) for c in range(self.codes)]
        return SPECIAL_TOKEN_NAMES + codes + [f"<doc:{docid}>" for docid in self._docids]

    def config(self) -> dict[str, Any]:
        return {"levels": self.levels, "codes": self.codes, "seed": self.seed}

    # -- naming documents ------------------------------------------------------------------
    def _assign_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        import faiss

        x = embedding_matrix(embeddings, len(docs), dim=None)
        if len(docs) < self.codes:
            raise GenirError(f"rq docids with codes={self.codes} need at least {self.codes} documents, got {len(docs)} "
                             "(choose fewer codes)")
        quantizer = faiss.ResidualQuantizer(x.shape[1], self.levels, int(np.log2(self.codes)))
        quantizer.max_beam_size = 1  # greedy coding, as extend() codes new documents
        quantizer.train_type = faiss.ResidualQuantizer.Train_default  # k-means per level (no PCA warm-up, which needs n > dim)
        quantizer.cp.seed = self.seed
        with one_openmp_thread():
            quantizer.train(x)
        self.codebooks = faiss.vector_to_array(quantizer.codebooks).reshape(self.levels, self.codes, x.shape[1]).astype(np.float32)
        return self._bodies_of(x)

    def _extend_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        return self._bodies_of(embedding_matrix(embeddings, len(docs), dim=self.codebooks.shape[2]))

    def _bodies_of(self, x: np.ndarray) -> list[Body]:
        codes = self.encode(x)  # [n, L]
        offsets = FIRST_TOKEN + self.codes * np.arange(self.levels)  # [L]
        first = self.first_doc_token + self.num_docs
        return [(*(int(t) for t in row + offsets), first + i) for i, row in enumerate(codes)]

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Greedy residual codes of ``x`` ``[n, dim]`` float32 -> ``[n, L]`` int64."""
        residual = np.array(x, dtype=np.float32)
        codes = np.zeros((len(x), self.levels), dtype=np.int64)
        for level, codebook in enumerate(self.codebooks):
            codes[:, level] = nearest_centroid(codebook, residual)
            residual -= codebook[codes[:, level]]
        return codes

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """``[n, L]`` int64 codes -> ``[n, dim]`` float32, the sum of their codewords."""
        return self.codebooks[np.arange(self.levels), codes].sum(axis=1)

    def token_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """The output row of every token (module docstring), pad and eos zero.

        Args:
            embeddings: ``[num_docs, dim]`` float32, the documents in assignment order.
        Returns:
            ``[vocab_size, dim]`` float32.
        """
        x = embedding_matrix(embeddings, self.num_docs, dim=self.codebooks.shape[2])
        rows = np.zeros((self.vocab_size, x.shape[1]), dtype=np.float32)
        rows[FIRST_TOKEN:self.first_doc_token] = self.codebooks.reshape(-1, x.shape[1])
        rows[self.first_doc_token:] = self.residuals(x, 0)
        return rows

    def residuals(self, x: np.ndarray, start: int) -> np.ndarray:
        """Document rows ``[n, dim]``: ``x`` (the documents at positions ``start..start+n-1``) minus their codewords."""
        codes = np.array([self._bodies[start + i][:self.levels] for i in range(len(x))], dtype=np.int64).reshape(len(x), self.levels)
        codes -= FIRST_TOKEN + self.codes * np.arange(self.levels)
        return (x - self.reconstruct(codes)).astype(np.float32)

    # -- persistence -----------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"codebooks": self.codebooks}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        codebooks = arrays["codebooks"]
        if codebooks.dtype != np.float32 or codebooks.ndim != 3 or codebooks.shape[:2] != (self.levels, self.codes):
            raise GenirError(f"{path}: codebooks must be [{self.levels}, {self.codes}, dim] float32, "
                             f"got {list(codebooks.shape)} {codebooks.dtype}")
        self.codebooks = codebooks

    def _check_restored(self, path: Path) -> None:
        for position, (docid, body) in enumerate(zip(self._docids, self._bodies)):
            codes = body[:-1]
            good = len(body) == self.levels + 1 and body[-1] == self.first_doc_token + position and all(
                FIRST_TOKEN + level * self.codes <= t < FIRST_TOKEN + (level + 1) * self.codes for level, t in enumerate(codes))
            if not good:
                raise GenirError(f"{path}: document {docid!r} at position {position} does not have an rq docid "
                                 f"({self.levels} codes of {self.codes}, then token {self.first_doc_token + position})")
