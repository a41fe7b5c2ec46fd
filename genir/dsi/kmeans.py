"""k-means pieces shared by the docid schemes that cluster document embeddings (semantic, rq).

Every function takes and returns float32 numpy arrays; faiss runs on one OpenMP thread
(:func:`one_openmp_thread`), so a clustering is deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from genir.errors import GenirError


def kmeans_split(points: np.ndarray, k: int, seed: int, niter: int) -> tuple[np.ndarray, np.ndarray]:
    """Partition ``points`` into at most ``k`` non-empty clusters, at least two when there are two points.

    Clusters that k-means leaves empty are dropped and the rest renumbered ``0..g-1``. If k-means
    puts every point into one cluster (identical or near-identical embeddings), the points are
    split into ``min(k, m)`` runs of equal size in their order instead, with the runs' means as
    centroids, so a recursion over clusters always makes progress.

    Args:
        points: ``[m, d]`` float32, ``m >= 1``.
    Returns:
        centroids ``[g, d]`` float32 and labels ``[m]`` int64 in ``[0, g)``, every label in use;
        ``g = 1`` only for ``m = 1``.
    """
    import faiss  # only the schemes that cluster need it: other schemes load without FAISS

    m, d = points.shape
    if m == 1:
        return np.ascontiguousarray(points, dtype=np.float32), np.zeros(1, dtype=np.int64)
    k = min(k, m)
    # min_points_per_centroid=1: small nodes are expected here; faiss would warn about each.
    kmeans = faiss.Kmeans(d, k, niter=niter, seed=seed, min_points_per_centroid=1)
    with one_openmp_thread():
        kmeans.train(points)
    labels = nearest_centroid(kmeans.centroids, points)
    used = np.unique(labels)
    if len(used) >= 2:
        return np.ascontiguousarray(kmeans.centroids[used]), np.searchsorted(used, labels)
    labels = np.repeat(np.arange(k), [len(run) for run in np.array_split(np.arange(m), k)])
    centroids = np.stack([points[labels == j].mean(axis=0) for j in range(k)]).astype(np.float32)
    return centroids, labels


def nearest_centroid(centroids: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared L2; ties to the lowest index) of each point.

    Args:
        centroids: ``[g, d]`` float32.
        points: ``[m, d]`` float32.
    Returns:
        ``[m]`` int64.
    """
    # ||x||^2 is the same for every centroid of a point, so it does not change the argmin.
    distances = (centroids * centroids).sum(axis=1)[None, :] - 2.0 * (points @ centroids.T)
    return distances.argmin(axis=1).astype(np.int64)


@contextmanager
def one_openmp_thread() -> Iterator[None]:
    """Run faiss on one thread, then restore its thread count.

    faiss trains on at most ``256 * k`` sampled points per node, so threads gain little, while
    OpenMP's waiting threads cost much on shared cores: the 17 k-means runs of SciFact's 5,183
    docs took 13.6 s on 2 busy cores with 2 threads and 0.3 s with one.
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def embedding_matrix(embeddings: np.ndarray | None, n: int, dim: int | None) -> np.ndarray:
    """Check and return ``embeddings`` as a contiguous ``[n, dim]`` float32 array."""
    if embeddings is None:
        raise GenirError("these docids need document embeddings ([num_docs, dim] float32)")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n or x.shape[1] < 1:
        raise GenirError(f"expected embeddings of shape [{n}, dim] for {n} documents, got {list(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise GenirError(f"expected {dim}-dimensional embeddings (as at assignment), got {x.shape[1]}")
    if not np.isfinite(x).all():
        raise GenirError("document embeddings contain NaN or infinite values")
    return x
