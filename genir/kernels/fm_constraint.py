"""``FMIndexConstraint``: decode only n-grams that occur in a corpus (SEAL's constraint).

A beam's state is the FM-index range ``[lo, hi)`` of the forward n-gram generated so far (width
``S = 2``); the start state is the root range, the empty n-gram. A beam may emit every token that
extends its n-gram to one that still occurs, moving to the extended range, and the
end-of-sequence token once its n-gram is non-empty, keeping the n-gram's own range: the engine
never expands a beam after eos, and a finished hypothesis' final state then locates its n-gram. Tokens absent from the corpus (pad, the separator) are never listed.

Bounding the work of one step (``candidates``):

* identical states are answered once (``np.unique``); beams at the root share one answer;
* the root's list (the whole vocabulary of the corpus) is built once, from ``C``;
* every other distinct state costs one batched wavelet-matrix descent, at most
  ``L = vocab_size.bit_length()`` node visits per listed candidate, all states together;
* answers of states whose range is at least ``cache_min_width`` rows wide (frequent n-grams,
  whose lists are long and which recur across steps and queries) are kept in an LRU cache that
  holds at most ``cache_capacity`` candidates; narrow states are cheap to recompute.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from genir.kernels.constraint import Candidates, Constraint
from genir.kernels.fm_wavelet import Int64Array
from genir.kernels.fmindex import FMIndex

#: One state's answer: ``([d] int64 tokens, [d, 2] int64 next states)``.
_Answer = tuple[Int64Array, Int64Array]


class FMIndexConstraint(Constraint):
    """Constraint whose state is an FM-index range (see the module docstring).

    Args:
        index: the corpus' FM-index.
        eos_token_id: the end-of-sequence token; it must not occur in the corpus.
        cache_min_width: cache the answers of states with ``hi - lo`` at least this.
        cache_capacity: most candidates held by the cache (24 bytes each); 0 disables it.
    Raises:
        ValueError: if ``eos_token_id`` is negative or occurs in the corpus, or on a negative
            cache setting.
    """

    state_width = 2

    def __init__(
        self, index: FMIndex, eos_token_id: int, *, cache_min_width: int = 64, cache_capacity: int = 1 << 21
    ) -> None:
        if eos_token_id < 0:
            raise ValueError(f"eos_token_id must be non-negative, got {eos_token_id}")
        if eos_token_id < index.vocab_size and index.token_counts[eos_token_id] > 0:
            raise ValueError(
                f"eos_token_id {eos_token_id} occurs {index.token_counts[eos_token_id]} times in the corpus; "
                "index documents without end-of-sequence tokens"
            )
        if cache_min_width < 0 or cache_capacity < 0:
            raise ValueError("cache_min_width and cache_capacity must be non-negative")
        self.index = index
        self.eos_token_id = int(eos_token_id)
        self.cache_min_width = int(cache_min_width)
        self.cache_capacity = int(cache_capacity)
        self._root_lo, self._length = index.root_range
        root = index.next_tokens(np.array([self._root_lo]), np.array([self._length]))
        self._root: _Answer = (root.tokens, np.stack((root.lo, root.hi), axis=1))
        self._cache: OrderedDict[int, _Answer] = OrderedDict()  # key lo * (n + 1) + hi
        self._cached = 0

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The root range for ``n`` beams: ``[n, 2]`` int64."""
        return torch.tensor([self._root_lo, self._length], dtype=torch.int64, device=device).repeat(n, 1)

    @property
    def cache_size(self) -> int:
        """Candidates held by the cache now (at most ``cache_capacity``)."""
        return self._cached

    def clear_cache(self) -> None:
        """Forget every cached answer (the root's stays)."""
        self._cache.clear()
        self._cached = 0

    def candidates(self, state: torch.Tensor) -> Candidates:
        """Allowed next tokens of every beam.

        Args:
            state: ``[N, 2]`` int64 ranges, each ``0 <= lo <= hi <= n``.
        Returns:
            ``Candidates`` on ``state``'s device: per beam its extending tokens in ascending
            order, each with its extended range, then ``eos_token_id`` with the beam's own range
            unless the beam is at the root; a beam whose n-gram occurs nowhere gets no candidate.
        Raises:
            ValueError: on a state of another shape or out of range.
        """
        if state.ndim != 2 or state.shape[1] != 2:
            raise ValueError(f"state must be [N, 2], got {tuple(state.shape)}")
        ranges = state.detach().to("cpu", torch.int64).numpy()
        lo = np.ascontiguousarray(ranges[:, 0])
        hi = np.ascontiguousarray(ranges[:, 1])
        if ((lo < 0) | (lo > hi) | (hi > self._length)).any():
            raise ValueError(f"every state must be a range 0 <= lo <= hi <= {self._length}")
        keys, first, beam_state = _distinct_in_order(lo * (self._length + 1) + hi)
        lo, hi = lo[first], hi[first]

        answers: dict[int, _Answer] = {}
        is_root = (lo == self._root_lo) & (hi == self._length)
        for u in is_root.nonzero()[0].tolist():
            answers[u] = self._root
        cacheable = (hi - lo >= self.cache_min_width) & ~is_root & (self.cache_capacity > 0)
        for u in cacheable.nonzero()[0].tolist():
            hit = self._cache.get(keys[u])
            if hit is not None:
                self._cache.move_to_end(keys[u])
                answers[u] = hit
        missing = np.ones(first.shape[0], dtype=bool)
        missing[list(answers)] = False
        missing = missing.nonzero()[0]
        if missing.shape[0]:
            row_ptr, tokens, next_state = self._compute(lo[missing], hi[missing])
            bounds = row_ptr.tolist()
            for j in cacheable[missing].nonzero()[0].tolist():
                a, b = bounds[j], bounds[j + 1]
                self._remember(keys[missing[j]], (tokens[a:b], next_state[a:b]))
            if not answers:
                if first.shape[0] == beam_state.shape[0]:
                    # Every beam is its own, freshly computed state: the batch is the answer.
                    return _to_candidates(row_ptr, tokens, next_state, state.device)
                counts = np.diff(row_ptr)[beam_state]
                beam_ptr = np.zeros(beam_state.shape[0] + 1, dtype=np.int64)
                np.cumsum(counts, out=beam_ptr[1:])
                take = np.repeat(row_ptr[beam_state] - beam_ptr[:-1], counts) + np.arange(beam_ptr[-1])
                return _to_candidates(beam_ptr, tokens[take], next_state[take], state.device)
            for j, u in enumerate(missing.tolist()):
                a, b = bounds[j], bounds[j + 1]
                answers[u] = (tokens[a:b], next_state[a:b])

        per_beam = [answers[u] for u in beam_state.tolist()]
        row_ptr = np.zeros(len(per_beam) + 1, dtype=np.int64)
        np.cumsum([a[0].shape[0] for a in per_beam], out=row_ptr[1:])
        if not per_beam:
            return _to_candidates(row_ptr, np.zeros(0, np.int64), np.zeros((0, 2), np.int64), state.device)
        tokens = np.concatenate([a[0] for a in per_beam])
        next_state = np.concatenate([a[1] for a in per_beam])
        return _to_candidates(row_ptr, tokens, next_state, state.device)

    def _compute(self, lo: Int64Array, hi: Int64Array) -> tuple[Int64Array, Int64Array, Int64Array]:
        """Answers of non-root states, eos appended where the n-gram occurs.

        Args:
            lo, hi: ``[B]`` int64 ranges.
        Returns:
            ``(row_ptr [B + 1], tokens [M], next_state [M, 2])``, all int64.
        """
        listed = self.index.next_tokens(lo, hi)
        counts = np.diff(listed.row_ptr)
        with_eos = (self.index.range_counts(lo, hi) > 0).astype(np.int64)
        row_ptr = np.zeros(lo.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts + with_eos, out=row_ptr[1:])
        # Entry j of row r moves down by the eos slots of the rows before r.
        dest = np.arange(listed.tokens.shape[0]) + np.repeat(row_ptr[:-1] - listed.row_ptr[:-1], counts)
        tokens = np.full(row_ptr[-1], self.eos_token_id, dtype=np.int64)
        next_state = np.empty((row_ptr[-1], 2), dtype=np.int64)
        ends = with_eos.astype(bool)
        next_state[row_ptr[1:][ends] - 1] = np.stack((lo[ends], hi[ends]), axis=1)
        tokens[dest] = listed.tokens
        next_state[dest, 0] = listed.lo
        next_state[dest, 1] = listed.hi
        return row_ptr, tokens, next_state

    def _remember(self, key: int, answer: _Answer) -> None:
        """Cache a copy of ``answer`` (a view would pin its whole batch), evicting the oldest."""
        size = answer[0].shape[0]
        if size > self.cache_capacity:
            return
        self._cache[key] = (answer[0].copy(), answer[1].copy())
        self._cached += size
        while self._cached > self.cache_capacity:
            _, (old_tokens, _) = self._cache.popitem(last=False)
            self._cached -= old_tokens.shape[0]


def _distinct_in_order(keys: Int64Array) -> tuple[list[int], Int64Array, Int64Array]:
    """Distinct values in order of first appearance.

    Args:
        keys: ``[N]`` int64.
    Returns:
        ``(distinct [U] ints, first [U] int64 index of each one's first appearance,
        of [N] int64 index into distinct of every key)``.
    """
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.shape[0])
    return keys[first[order]].tolist(), first[order], renumber[inverse]


def _to_candidates(row_ptr: Int64Array, tokens: Int64Array, next_state: Int64Array, device: torch.device) -> Candidates:
    """Wrap ``[N + 1]``, ``[M]``, ``[M, 2]`` int64 arrays as ``Candidates`` on ``device``."""
    return Candidates(
        torch.from_numpy(row_ptr).to(device),
        torch.from_numpy(tokens).to(device),
        torch.from_numpy(next_state).to(device),
    )
