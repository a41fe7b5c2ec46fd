"""DSI's semantic docids (``docids=semantic-digits``): hierarchical k-means, shared digit tokens.

The DSI paper's layout, kept as its baseline; genir's ``semantic`` docids
(:mod:`genir.dsi.semantic_docids`) give every cluster its own token, tied to its centroid.

The corpus is clustered into ``k`` groups (``faiss.Kmeans``, fixed seed), and every group larger
than ``c`` documents is clustered again, recursively. A group of at most ``c`` documents is a
leaf, and its documents are numbered ``0..size-1`` in corpus order. A docid is the path of
cluster indices from the root, then the document's leaf position, one token per level; documents
with similar embeddings share docid prefixes.

Tokens are shared across levels, as DSI shares its digits: token ``2 + v`` means the number
``v`` wherever it stands, a cluster index (``v < k``) or a leaf position (``v < c``), so the
vocabulary is ``2 + max(k, c)`` (102 for the defaults). A docid's depth in the tree decides what
each token means, and the trie's prefix structure keeps the levels apart.

Robustness (:func:`genir.dsi.kmeans.kmeans_split`): clusters that k-means leaves empty are
dropped and the rest renumbered, so every cluster index in use names documents; a group that
k-means cannot split (identical embeddings) is split into runs in corpus order, so the recursion
always ends.

Extending (continual indexing): a new document descends from the root to the nearest centroid
at each internal node (the same squared-L2 rule that placed the first documents) and takes its
leaf's next free position. The centroids of every internal node are saved for this. A leaf never
splits, since that would change old docids; once a leaf holds ``c`` documents, positions go on in
bijective base ``c``: positions ``c .. c + c^2 - 1`` are written as two tokens ``[2 + q, 2 + r]``
(``position - c = q * c + r``), the next ``c^3`` as three tokens, and so on. Each position has
exactly one spelling and two positions of one leaf never share a spelling, so new docids stay
unique and decodable, and the vocabulary never grows; only the sequences of documents that land
in a full leaf get longer. A corpus that grows far past its first assignment is better served by
assigning again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genir.dsi.docids import FIRST_TOKEN, SPECIAL_TOKEN_NAMES, Body, DocidScheme
from genir.dsi.kmeans import embedding_matrix, kmeans_split, nearest_centroid
from genir.errors import GenirError
from genir.indexer.collection import Document


@dataclass(eq=False)
class _Node:
    """A cluster: internal (``centroids`` of its children) or a leaf (``size`` positions taken)."""

    centroids: np.ndarray | None = None  # [len(children), d] float32; None for a leaf
    children: list[_Node] = field(default_factory=list)
    size: int = 0


class DigitSemanticDocids(DocidScheme):
    """Hierarchical k-means docids in DSI's layout.

    Args:
        k: clusters per internal node (DSI: 10).
        c: most documents in a leaf (DSI: 100).
        seed: seed of every k-means run; the same embeddings and seed give the same docids.
        niter: k-means iterations per node.
    """

    name = "semantic-digits"
    array_names = ("parent", "leaf_size", "centroids")
    grows_without_training = True  # a new document descends the saved tree (module docstring)

    def __init__(self, k: int = 10, c: int = 100, seed: int = 0, niter: int = 25):
        super().__init__()
        for name, value, least in (("k", k, 2), ("c", c, 1), ("niter", niter, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise GenirError(f"semantic docids need an integer {name} >= {least}, got {value!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise GenirError(f"semantic docids need an integer seed, got {seed!r}")
        self.k, self.c, self.seed, self.niter = k, c, seed, niter
        self._root = _Node()
        self._dim = 0

    @property
    def vocab_size(self) -> int:
        return FIRST_TOKEN + max(self.k, self.c)

    @property
    def needs_embeddings(self) -> bool:
        """Always: a document's path is chosen by its embedding."""
        return True

    def token_names(self) -> list[str]:
        return SPECIAL_TOKEN_NAMES + [str(v) for v in range(max(self.k, self.c))]

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "c": self.c, "seed": self.seed, "niter": self.niter}

    # -- first assignment ------------------------------------------------------------------
    def _assign_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        x = embedding_matrix(embeddings, len(docs), dim=None)
        root = _Node()
        bodies: list[Body] = [()] * len(docs)
        pending: list[tuple[_Node, np.ndarray, Body]] = [(root, np.arange(len(docs)), ())]
        # Each node depends only on its own rows, so the processing order does not matter.
        while pending:
            node, rows, path = pending.pop()
            if len(rows) <= self.c:
                node.size = len(rows)
                for position, row in enumerate(rows):
                    bodies[row] = path + position_tokens(position, self.c)
                continue
            node.centroids, labels = kmeans_split(x[rows], self.k, self.seed, self.niter)
            node.children = [_Node() for _ in range(len(node.centroids))]
            for j, child in enumerate(node.children):
                pending.append((child, rows[labels == j], path + (FIRST_TOKEN + j,)))
        self._root, self._dim = root, x.shape[1]
        return bodies

    # -- continual indexing ----------------------------------------------------------------
    def _extend_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        x = embedding_matrix(embeddings, len(docs), dim=self._dim)
        bodies = []
        for row in x:
            node, path = self._root, []
            while node.children:
                j = int(nearest_centroid(node.centroids, row[None])[0])
                path.append(FIRST_TOKEN + j)
                node = node.children[j]
            bodies.append(tuple(path) + position_tokens(node.size, self.c))
            node.size += 1
        return bodies

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"dim": self._dim}

    def _arrays(self) -> dict[str, np.ndarray]:
        """The tree in breadth-first order (a parent before its children, siblings by index).

        ``parent``: ``[nodes]`` int64, ``-1`` for the root; ``leaf_size``: ``[nodes]`` int64,
        positions taken in each leaf (0 for internal nodes); ``centroids``: ``[nodes - 1, d]``
        float32, the centroid of node ``i`` in row ``i - 1``.
        """
        order, parent, rows = [self._root], [-1], []
        for i, node in enumerate(order):  # grows while iterating: a breadth-first walk
            for j, child in enumerate(node.children):
                order.append(child)
                parent.append(i)
                rows.append(node.centroids[j])
        centroids = np.stack(rows) if rows else np.zeros((0, self._dim), dtype=np.float32)
        return {
            "parent": np.array(parent, dtype=np.int64),
            "leaf_size": np.array([node.size for node in order], dtype=np.int64),
            "centroids": centroids.astype(np.float32),
        }

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        dim = state.get("dim")
        parent, leaf_size, centroids = arrays["parent"], arrays["leaf_size"], arrays["centroids"]
        n = len(parent)
        # dim is 0 only for a scheme saved before its first assignment.
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise GenirError(f"{path}: semantic state needs a non-negative integer 'dim', got {dim!r}")
        if (
            parent.ndim != 1 or n < 1 or parent.dtype.kind != "i" or parent[0] != -1
            or leaf_size.shape != (n,) or leaf_size.dtype.kind != "i" or (leaf_size < 0).any()
            or centroids.shape != (n - 1, dim) or centroids.dtype != np.float32
        ):
            raise GenirError(
                f"{path}: inconsistent docid tree arrays (parent {parent.shape} {parent.dtype}, "
                f"leaf_size {leaf_size.shape} {leaf_size.dtype}, centroids {centroids.shape} {centroids.dtype}, dim {dim})"
            )
        if not (parent[1:] >= 0).all() or not (parent[1:] < np.arange(1, n)).all():
            raise GenirError(f"{path}: docid tree arrays do not list each parent before its children")
        nodes = [_Node(size=int(size)) for size in leaf_size]
        rows: list[list[int]] = [[] for _ in range(n)]
        for i in range(1, n):
            nodes[parent[i]].children.append(nodes[i])
            rows[parent[i]].append(i - 1)
        for node, node_rows in zip(nodes, rows):
            if node_rows:
                node.centroids, node.size = centroids[node_rows], 0
        self._root, self._dim = nodes[0], dim

    def _forget(self, rows: list[int], bodies: list[Body], tokens: set[int]) -> None:
        """A cluster that no live document is in any more held deleted documents only (a
        singleton's centroid is its embedding): its centroid becomes zero. Leaves keep their sizes
        (positions stay reserved)."""
        live = {id(node) for _, _, body in self.live_positions() for node in self._path(body)}
        for body in bodies:
            for parent, j, child in self._edges(body):
                if id(child) not in live:
                    parent.centroids = parent.centroids.copy()
                    parent.centroids[j] = 0.0

    def _edges(self, body: Body) -> list[tuple[_Node, int, _Node]]:
        """``(parent, child index, child)`` down the tree along ``body``'s cluster tokens."""
        edges, node = [], self._root
        for token in body:
            j = token - FIRST_TOKEN
            if not node.children or not 0 <= j < len(node.children):
                break
            edges.append((node, j, node.children[j]))
            node = node.children[j]
        return edges

    def _path(self, body: Body) -> list[_Node]:
        return [child for _, _, child in self._edges(body)]

    def _check_restored(self, path: Path) -> None:
        for _, docid, body in self.live_positions():
            node, depth = self._root, 0
            while node.children and depth < len(body) and body[depth] - FIRST_TOKEN < len(node.children):
                node = node.children[body[depth] - FIRST_TOKEN]
                depth += 1
            position = position_from_tokens(body[depth:], self.c) if not node.children else None
            if position is None or position >= node.size:
                raise GenirError(f"{path}: the sequence of document {docid!r} does not lead to a taken position of a leaf of the docid tree")


def position_tokens(position: int, c: int) -> Body:
    """A leaf position in bijective base ``c``: one token below ``c``, then two, three ...

    ``0..c-1`` -> ``[2 + p]``; ``c..c+c^2-1`` -> two tokens; every position has one spelling.
    """
    length, span = 1, c
    while position >= span:
        position -= span
        length += 1
        span *= c
    digits = []
    for _ in range(length):
        position, digit = divmod(position, c)
        digits.append(FIRST_TOKEN + digit)
    return tuple(reversed(digits))


def position_from_tokens(tokens: Body, c: int) -> int | None:
    """Inverse of :func:`position_tokens`; None if ``tokens`` is not a position's spelling."""
    if not tokens or not all(FIRST_TOKEN <= t < FIRST_TOKEN + c for t in tokens):
        return None
    offset = sum(c**i for i in range(1, len(tokens)))
    value = 0
    for t in tokens:
        value = value * c + t - FIRST_TOKEN
    return offset + value
