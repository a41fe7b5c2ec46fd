"""DSI++'s continual-learning metrics over an accuracy matrix.

``a[n, j]`` is a score (Hits@10, nDCG@10, indexing accuracy...) on the evaluation items of corpus
part ``D_j`` after the model was updated with ``D_n`` (``n = 0`` is the model trained on ``D0``).
Only ``j <= n`` is defined: part ``D_j`` is not indexed before step ``j``, so the matrix is lower
triangular and its upper triangle holds NaN. A part with nothing to score (no queries of the
evaluation split) is NaN in its column too, and every mean below leaves NaN entries out; a mean
of nothing is NaN.

* average accuracy ``A_n = mean_{j <= n} a[n, j]``: how well every part indexed so far is served;
* forgetting ``F_n = mean_{j < n} max_{l < n} (a[l, j] - a[n, j])``: how far each earlier part fell
  from its best score before step ``n`` (``l`` ranges over ``j <= l < n``, where ``a[l, j]`` is
  defined); 0 when nothing was forgotten, negative when later updates helped;
* learning accuracy ``LA_n = mean_{j <= n} a[j, j]``: how well each part was learned when it arrived.
"""

from __future__ import annotations

import numpy as np

from genir.errors import GenirError


def accuracy_matrix(rows: list[list[float]]) -> np.ndarray:
    """``[n + 1, n + 1]`` float64 matrix from rows ``rows[n] = [a[n, 0], ..., a[n, n]]`` (NaN above).

    Raises:
        GenirError: row ``n`` does not hold ``n + 1`` scores.
    """
    size = len(rows)
    matrix = np.full((size, size), np.nan, dtype=np.float64)
    for n, row in enumerate(rows):
        if len(row) != n + 1:
            raise GenirError(f"accuracy row {n} must hold {n + 1} scores (parts D0..D{n}), got {len(row)}")
        matrix[n, : n + 1] = np.array(row, dtype=np.float64)  # None (an undefined score) becomes NaN
    return matrix


def _mean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN if there are none (without numpy's empty-slice warning)."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def _check(a: np.ndarray, n: int) -> None:
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise GenirError(f"the accuracy matrix must be square, got shape {list(a.shape)}")
    if not 0 <= n < a.shape[0]:
        raise GenirError(f"step n={n} is outside the accuracy matrix (steps 0..{a.shape[0] - 1})")


def average_accuracy(a: np.ndarray, n: int) -> float:
    """``A_n``: the mean of ``a[n, 0..n]``.

    Args:
        a: ``[steps, steps]`` float accuracy matrix (NaN above the diagonal).
        n: the step.
    """
    _check(a, n)
    return _mean(a[n, : n + 1])


def forgetting(a: np.ndarray, n: int) -> float:
    """``F_n``: the mean over ``j < n`` of ``max_{j <= l < n} a[l, j] - a[n, j]``; NaN for ``n = 0``.

    Args:
        a: ``[steps, steps]`` float accuracy matrix (NaN above the diagonal).
        n: the step.
    """
    _check(a, n)
    if n == 0:
        return float("nan")  # nothing has been indexed before D0, so nothing can be forgotten
    drops = []
    for j in range(n):
        earlier = a[j:n, j][~np.isnan(a[j:n, j])]
        drops.append(earlier.max() - a[n, j] if earlier.size else np.nan)
    return _mean(np.array(drops, dtype=np.float64))


def learning_accuracy(a: np.ndarray, n: int) -> float:
    """``LA_n``: the mean of the diagonal ``a[0, 0], ..., a[n, n]``.

    Args:
        a: ``[steps, steps]`` float accuracy matrix (NaN above the diagonal).
        n: the step.
    """
    _check(a, n)
    return _mean(np.diag(a)[: n + 1])


def summary(a: np.ndarray, n: int | None = None) -> dict[str, float]:
    """``{"A": A_n, "F": F_n, "LA": LA_n}`` at step ``n`` (the last step by default)."""
    n = a.shape[0] - 1 if n is None else n
    return {"A": average_accuracy(a, n), "F": forgetting(a, n), "LA": learning_accuracy(a, n)}
