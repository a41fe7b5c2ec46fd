"""Residual-quantization docids (RIPOR, PAG): the codes of a document's embedding, then the document.

A :class:`~genir.dsi.coded_docids.CodedDocids` scheme (docid layout, output rows and positions
there). Level ``l``'s code of a document with embedding ``d`` is the codeword of codebook ``l``
nearest the residual left by the levels before it, under residual quantization with ``L``
codebooks of ``K`` vectors each (``codebooks``: ``[L, K, dim]`` float32, trained with faiss'
``ResidualQuantizer``): ``c_1`` the codeword nearest ``d``, ``c_2`` the one nearest
``d - codebook[0, c_1]``, and so on (greedy; a new document is coded the same way with the same
codebooks). Level ``l``'s code ``c`` is token ``2 + l * K + c``; its vector is the codeword.

Arrays (``docid_scheme.npz``): ``codebooks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genir.dsi.coded_docids import CodedDocids
from genir.dsi.docids import Body, DocidSettings
from genir.dsi.kmeans import embedding_matrix, nearest_centroid, one_openmp_thread
from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.seq2seq.vocab import FIRST_TOKEN, SPECIAL_TOKEN_NAMES


class RQDocids(CodedDocids):
    """Residual-quantization codes then the document's own token (module docstring).

    Args:
        levels: codebooks ``L`` (code positions before the document token).
        codes: codewords ``K`` per codebook, a power of two (faiss stores codes in ``log2 K`` bits).
        seed: seeds faiss' training.
    """

    name = "rq"
    array_names = ("codebooks",)

    def __init__(self, levels: int = 1, codes: int = 256, seed: int = 0):
        super().__init__()
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
            raise GenirError(f"rq docids need an integer levels >= 1, got {levels!r}")
        if not isinstance(codes, int) or isinstance(codes, bool) or codes < 2 or codes & (codes - 1):
            raise GenirError(f"rq docids need codes = a power of two >= 2, got {codes!r}")
        self.rq_levels, self.codes, self.seed = levels, codes, seed
        self.codebooks = np.zeros((levels, codes, 0), dtype=np.float32)

    @classmethod
    def from_config(cls, config: DocidSettings) -> RQDocids:
        """``rq_levels`` codebooks of ``rq_codes`` codewords, trained with the config's seed."""
        return cls(levels=config.rq_levels, codes=config.rq_codes, seed=config.seed)

    def level_starts(self) -> list[int]:
        return [FIRST_TOKEN + level * self.codes for level in range(self.rq_levels + 1)]

    def code_vectors(self) -> np.ndarray:
        return self.codebooks.reshape(self.rq_levels * self.codes, self.codebooks.shape[2])

    def _zero_code_vectors(self, rows: np.ndarray) -> None:
        table = self.codebooks.reshape(-1, self.codebooks.shape[2]).copy()
        table[rows] = 0.0
        self.codebooks = table.reshape(self.codebooks.shape)

    def token_names(self) -> list[str]:
        codes = [f"<l{level}:{c}>" for level in range(self.rq_levels) for c in range(self.codes)]
        return SPECIAL_TOKEN_NAMES + codes + [f"<doc:{docid or '(deleted)'}>" for docid in self._docids]

    def config(self) -> dict[str, Any]:
        return {"levels": self.rq_levels, "codes": self.codes, "seed": self.seed}

    def _assign_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        import faiss

        x = embedding_matrix(embeddings, len(docs), dim=None)
        if len(docs) < self.codes:
            raise GenirError(f"rq docids with codes={self.codes} need at least {self.codes} documents, got {len(docs)} "
                             "(choose fewer codes)")
        quantizer = faiss.ResidualQuantizer(x.shape[1], self.rq_levels, int(np.log2(self.codes)))
        quantizer.max_beam_size = 1  # greedy coding, as code() codes new documents
        quantizer.train_type = faiss.ResidualQuantizer.Train_default  # k-means per level (no PCA warm-up, which needs n > dim)
        quantizer.cp.seed = self.seed
        with one_openmp_thread():
            quantizer.train(x)
        self.codebooks = faiss.vector_to_array(quantizer.codebooks).reshape(self.rq_levels, self.codes, x.shape[1]).astype(np.float32)
        return self._bodies_of(x)

    def code(self, x: np.ndarray) -> np.ndarray:
        return self.encode(x) + np.array(self.level_starts()[:-1], dtype=np.int64)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Greedy residual codes of ``x`` ``[n, dim]`` float32 -> ``[n, L]`` int64 codeword indices."""
        residual = np.array(x, dtype=np.float32)
        codes = np.zeros((len(x), self.rq_levels), dtype=np.int64)
        for level, codebook in enumerate(self.codebooks):
            codes[:, level] = nearest_centroid(codebook, residual)
            residual -= codebook[codes[:, level]]
        return codes

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"codebooks": self.codebooks}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        codebooks = arrays["codebooks"]
        if codebooks.dtype != np.float32 or codebooks.ndim != 3 or codebooks.shape[:2] != (self.rq_levels, self.codes):
            raise GenirError(f"{path}: codebooks must be [{self.rq_levels}, {self.codes}, dim] float32, "
                             f"got {list(codebooks.shape)} {codebooks.dtype}")
        self.codebooks = codebooks
