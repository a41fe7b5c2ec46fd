"""PMI-ranked decoding for SEAL: beams ranked by ``log P(n|q) - lambda * log P(n)``.

Beams ranked by ``log P(n|q)`` alone fill with the corpus' most frequent n-grams ("the", "of"),
whose SEAL weight is near zero. :class:`PMIConstraint` wraps SEAL's FM-index constraint and gives
each candidate a bias (:attr:`genir.kernels.constraint.Candidates.bias`), which the constrained
top-k adds to the candidate's logit when ranking and to the score it adds to its beam:

    bias(m -> n) = -lambda * (log F(n) - log F(m))

for a beam holding the n-gram ``m`` that emits a token and holds ``n``; ``F`` is the corpus count
(the width of the n-gram's FM-index ranges, summed over segments). The biases of a beam telescope
from the empty n-gram, whose count is ``T``, the corpus' tokens: a beam holding ``n`` scores

    sum of log p(token) + sum of biases = log P(n|q) - lambda * log P(n),   P(n) = F(n) / T.

Eos keeps the n-gram (bias 0). ``lambda = 1`` ranks by pointwise mutual information; ``lambda = 0``
by the model alone.

Invariants: the candidates are the wrapped constraint's (never an n-gram outside the corpus), every
bias is ``>= 0`` (an n-gram occurs at most as often as its prefix), and :meth:`PMIConstraint.log_prob`
recovers ``log P(n|q)`` from a beam's score, so SEAL's weights (:mod:`genir.seal.scoring`) are
computed from the model's probabilities exactly as without the bias.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from genir.errors import GenirError
from genir.kernels.constraint import Candidates, Constraint
from genir.seal.segments import SegmentConstraint, SegmentedFMIndex


def check_pmi_lambda(pmi_lambda: float) -> None:
    """Raise :class:`GenirError` unless ``pmi_lambda`` is a finite number ``>= 0``."""
    if not np.isfinite(pmi_lambda) or pmi_lambda < 0:
        raise GenirError(f"pmi_lambda={pmi_lambda}: choose a number >= 0 (0 ranks beams by the model alone)")


class PMIConstraint(Constraint):
    """SEAL's constraint with PMI biases (module docstring).

    Args:
        base: SEAL's constraint over ``index``'s segments.
        index: the segments, whose counts give ``F``.
        pmi_lambda: ``lambda >= 0``.
    Raises:
        GenirError: a negative or non-finite ``pmi_lambda``.
    """

    def __init__(self, base: SegmentConstraint, index: SegmentedFMIndex, pmi_lambda: float) -> None:
        check_pmi_lambda(pmi_lambda)
        self.base = base
        self.index = index
        self.pmi_lambda = float(pmi_lambda)
        self.state_width = base.state_width
        self._log_tokens = float(np.log(index.num_tokens))

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The wrapped constraint's start states, ``[n, 2S]`` int64."""
        return self.base.initial_state(n, device)

    def candidates(self, state: torch.Tensor) -> Candidates:
        """The wrapped constraint's candidates of ``state`` (``[N, 2S]`` int64), each with its bias
        (``[M]`` float32, ``>= 0``)."""
        found = self.base.candidates(state)
        parent = self._log_counts(state.detach().cpu().numpy())  # [N]
        child = self._log_counts(found.next_state.detach().cpu().numpy())  # [M]
        owner = np.repeat(np.arange(parent.shape[0]), np.diff(found.row_ptr.cpu().numpy()))  # [M]
        bias = np.maximum(self.pmi_lambda * (parent[owner] - child), 0.0)  # rounding never makes it negative
        return Candidates(found.row_ptr, found.tokens, found.next_state,
                          torch.from_numpy(bias.astype(np.float32)).to(found.tokens.device))

    def log_prob(self, scores: npt.ArrayLike, states: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``log P(n|q)`` of beams that hold ``states`` (``[..., 2S]`` int64) with ``scores`` (``[...]``
        float, sums of log-probabilities and biases): ``score + lambda * log P(n)``."""
        states = np.asarray(states, dtype=np.int64)
        log_count = self._log_counts(states.reshape(-1, states.shape[-1])).reshape(states.shape[:-1])
        return np.asarray(scores, dtype=np.float64) + self.pmi_lambda * (log_count - self._log_tokens)

    def _log_counts(self, states: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """``log F`` of ``[B, 2S]`` states' n-grams, ``[B]`` float64 (a count of 0, a dead slot, as 1)."""
        lo, hi = SegmentConstraint.ranges(states)
        lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)  # empty slots hold -1
        return np.log(np.maximum(self.index.range_counts(lo, np.maximum(hi, lo)), 1))
