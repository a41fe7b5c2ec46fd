"""Semantic docids: a k-means tree over the document embeddings, every cluster a token tied to its centroid.

A :class:`~genir.dsi.coded_docids.CodedDocids` scheme (docid layout, output rows and positions
there): a document's code is its path down a tree of ``L`` levels (``levels``), then the
document's own token.

* The tree: the corpus is clustered into at most ``k`` groups (``faiss.Kmeans``, fixed seed,
  :func:`genir.dsi.kmeans.kmeans_split`), every group again into at most ``k``, down to depth
  ``L``; every leaf is at depth ``L``, so position ``l`` always holds a level-``l`` cluster (the
  per-position softmax of the dense start needs this; DSI's tree, whose leaves hold at most ``c``
  documents at any depth, is :mod:`genir.dsi.digit_semantic_docids`).
* Tokens: one per cluster (node), numbered level by level, parents in order, so level ``l``'s
  tokens are one contiguous range. A node's vector is its centroid minus its parent's (a level-1
  node: its centroid), so a path's vectors sum to its leaf's centroid and, with the document's
  residual as its last row, to the document's embedding.
* Coding (first and later documents alike): at every level, the child whose centroid is nearest
  (squared L2) to the embedding, as the clustering labelled them; old codes never change.

Arrays (``docid_scheme.npz``): ``parent`` ``[nodes]`` int64 (the parent node's index, ``-1`` at
level 1; each parent before its children, levels in order) and ``centroids`` ``[nodes, dim]``
float32 (each node's centroid, not the difference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genir.dsi.coded_docids import CodedDocids
from genir.dsi.docids import Body, DocidSettings
from genir.dsi.kmeans import embedding_matrix, kmeans_split, nearest_centroid
from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.seq2seq.vocab import FIRST_TOKEN, SPECIAL_TOKEN_NAMES


class SemanticDocids(CodedDocids):
    """k-means tree codes then the document's own token (module docstring).

    Args:
        k: most clusters per node.
        levels: depth ``L`` of the tree (code positions before the document token).
        seed: seed of every k-means run; the same embeddings and seed give the same docids.
        niter: k-means iterations per node.
    """

    name = "semantic"
    array_names = ("parent", "centroids")

    def __init__(self, k: int = 10, levels: int = 2, seed: int = 0, niter: int = 25):
        super().__init__()
        for name, value, least in (("k", k, 2), ("levels", levels, 1), ("niter", niter, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise GenirError(f"semantic docids need an integer {name} >= {least}, got {value!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise GenirError(f"semantic docids need an integer seed, got {seed!r}")
        self.k, self.tree_levels, self.seed, self.niter = k, levels, seed, niter
        self._set_tree(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))

    @classmethod
    def from_config(cls, config: DocidSettings) -> SemanticDocids:
        """A tree of ``semantic_levels`` levels of at most ``semantic_k`` clusters, with the config's seed."""
        return cls(k=config.semantic_k, levels=config.semantic_levels, seed=config.seed)

    def _set_tree(self, parent: np.ndarray, centroids: np.ndarray) -> None:
        self.parent, self.centroids = parent, centroids
        self._children: dict[int, np.ndarray] = {}
        for p in np.unique(parent):
            self._children[int(p)] = np.nonzero(parent == p)[0]
        depth = np.zeros(len(parent), dtype=np.int64)
        for i, p in enumerate(parent):
            depth[i] = 0 if p < 0 else depth[p] + 1
        self._depth = depth
        counts = np.bincount(depth, minlength=self.tree_levels)[:self.tree_levels]
        self._starts = [FIRST_TOKEN + int(s) for s in np.concatenate([[0], np.cumsum(counts)])]
        vectors = centroids.copy()
        inner = parent >= 0
        vectors[inner] -= centroids[parent[inner]]
        self._vectors = vectors

    def level_starts(self) -> list[int]:
        return self._starts

    def code_vectors(self) -> np.ndarray:
        return self._vectors

    def token_names(self) -> list[str]:
        nodes = [f"<l{depth}:{i}>" for i, depth in enumerate(self._depth)]
        return SPECIAL_TOKEN_NAMES + nodes + [f"<doc:{docid or '(deleted)'}>" for docid in self._docids]

    def _zero_code_vectors(self, rows: np.ndarray) -> None:
        """Zero the centroids of those nodes (a node's token is ``2 + node``), then their vectors follow."""
        centroids = self.centroids.copy()
        centroids[rows] = 0.0
        self._set_tree(self.parent, centroids)

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "levels": self.tree_levels, "seed": self.seed, "niter": self.niter}

    def _assign_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        x = embedding_matrix(embeddings, len(docs), dim=None)
        parent: list[int] = []
        centroids: list[np.ndarray] = []
        frontier = [(-1, np.arange(len(docs)))]  # (node, its documents' rows); -1 = the root
        for _ in range(self.tree_levels):
            below = []
            for node, rows in frontier:
                node_centroids, labels = kmeans_split(x[rows], self.k, self.seed, self.niter)
                for j, centroid in enumerate(node_centroids):
                    below.append((len(parent), rows[labels == j]))
                    parent.append(node)
                    centroids.append(centroid)
            frontier = below
        self._set_tree(np.array(parent, dtype=np.int64), np.stack(centroids).astype(np.float32))
        return self._bodies_of(x)

    def code(self, x: np.ndarray) -> np.ndarray:
        tokens = np.zeros((len(x), self.tree_levels), dtype=np.int64)
        current = np.full(len(x), -1, dtype=np.int64)
        for level in range(self.tree_levels):
            for node in np.unique(current):
                rows = np.nonzero(current == node)[0]
                children = self._children[int(node)]
                tokens[rows, level] = children[nearest_centroid(self.centroids[children], x[rows])]
            current = tokens[:, level]
        return tokens + FIRST_TOKEN

    def _code_is_valid(self, code: Body) -> bool:
        nodes = [t - FIRST_TOKEN for t in code]
        return all(self.parent[node] == (nodes[level - 1] if level else -1) for level, node in enumerate(nodes))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"parent": self.parent, "centroids": self.centroids}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        parent, centroids = arrays["parent"], arrays["centroids"]
        n = len(parent)
        if (parent.ndim != 1 or parent.dtype.kind != "i" or centroids.dtype != np.float32 or centroids.ndim != 2
                or len(centroids) != n or (n and not ((parent >= -1) & (parent < np.arange(n))).all())):
            raise GenirError(f"{path}: inconsistent docid tree arrays (parent {parent.shape} {parent.dtype}, "
                             f"centroids {centroids.shape} {centroids.dtype}): each node needs a parent listed before it")
        self._set_tree(parent.astype(np.int64), centroids)
        depth = self._depth
        inner = np.unique(parent[parent >= 0])
        if n and ((np.diff(depth) < 0).any() or depth.max() != self.tree_levels - 1
                  or len(inner) != int((depth < self.tree_levels - 1).sum())):
            raise GenirError(f"{path}: the docid tree is not {self.tree_levels} levels deep with its nodes level by level "
                             "and every node above the last level a parent")
