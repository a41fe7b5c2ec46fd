"""The seam between constraint structures (docid trie, FM-index) and the decoding engine.

A constraint tracks, for every beam, an integer state of fixed width ``S``. At each decoding
step it lists, per beam, the tokens that may come next and the state each one leads to. The
fused top-k step (``genir.kernels.topk``) consumes that list together with the logits, so the
beam search never needs to know which structure produced it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Candidates:
    """Allowed next tokens of ``N`` beams, in CSR layout.

    Attributes:
        row_ptr: ``[N + 1]`` int64; the candidates of beam ``i`` are ``row_ptr[i]:row_ptr[i+1]``.
        tokens: ``[M]`` int64 token ids, ``M = row_ptr[-1]``.
        next_state: ``[M, S]`` int64; the state a beam reaches by emitting ``tokens[j]``.
        bias: ``[M]`` float32 added to each candidate's logit where the top-k ranks it and to the
            log-probability it adds to its beam's score (e.g. SEAL's PMI ranking,
            :mod:`genir.seal.pmi`); None adds nothing.
    """

    row_ptr: torch.Tensor
    tokens: torch.Tensor
    next_state: torch.Tensor
    bias: torch.Tensor | None = None


class Constraint(ABC):
    """Per-beam decoding constraint whose state is an ``[N, S]`` int64 tensor.

    The end-of-sequence token is an ordinary candidate: a constraint lists it exactly where a
    sequence may end (a complete docid for a trie; any non-empty n-gram for the FM-index), with
    a next state that the engine never expands again.
    """

    #: Number of int64 columns in one beam's state.
    state_width: int

    @abstractmethod
    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Return the start state of ``n`` beams: ``[n, S]`` int64."""

    @abstractmethod
    def candidates(self, state: torch.Tensor) -> Candidates:
        """List the allowed next tokens of every beam.

        Args:
            state: ``[N, S]`` int64 states.
        Returns:
            ``Candidates`` with ``N + 1`` row pointers.
        """

    def completions(self, state: torch.Tensor) -> torch.Tensor:
        """How many complete sequences start with each state's prefix (a docid trie: the docids under
        a node), for beam search's ``step_beams``, which keeps prefixes until they hold enough.

        Args:
            state: ``[N, S]`` int64 states; ``-1`` rows (no beam) count 0.
        Returns:
            ``[N]`` int64.
        Raises:
            NotImplementedError: a constraint that cannot count them (narrowing needs a docid trie).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot count the sequences under a prefix")
