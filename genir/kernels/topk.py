"""The fused constrained top-k step: the best allowed next tokens of every beam.

Given a beam's logits over the whole vocabulary and the CSR list of its allowed tokens (from a
``Constraint``), return its ``k`` best allowed tokens with their log-probabilities under the
**full** softmax over the vocabulary (the scores beam search accumulates, as in unconstrained
decoding), and the constraint state each token leads to. Candidates with a ``bias`` are ranked by
``logit + bias`` and score ``log-probability + bias`` (torch backend only).

Ranking (identical in every backend): by logit, higher first; equal logits by token id, lower
first. Ranking by the logit rather than by ``logit - logsumexp`` keeps the order exact across
backends, whose float32 logsumexp may differ in the last bit. ``-0.0`` ranks as ``+0.0``.
The candidates of one row must be distinct tokens.

Backends: ``"triton"`` (``topk_triton.py``: one program per row, logsumexp over the vocabulary
in blocks, then a running top-k over the row's candidates) and ``"torch"`` (unfused torch ops,
for CPU). ``"auto"`` picks Triton when :func:`use_triton` allows it (CUDA logits,
``k <= TRITON_MAX_K``, ``next_power_of_2(k) * widest row < TRITON_MAX_WORK``) and triton
imports; torch otherwise. An explicit ``"triton"`` runs the kernel whatever ``k`` and the width.

``topk_triton`` returns plain tensors, which this module wraps in :class:`TopK`; it imports
nothing from here, so the two modules form no import cycle.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Literal

import torch

from genir.kernels.constraint import Candidates

Backend = Literal["auto", "torch", "triton"]

#: Filler of an empty slot's token and next state.
EMPTY_SLOT = -1
_INT64_MIN = torch.iinfo(torch.int64).min
_INT31_MAX = 2**31 - 1
_CPU_BLOCK_ELEMENTS = 2**18

# Limits of "auto" on the Triton kernel, measured on an H200 with [150, 32128] logits. Each merge
# of the kernel builds [K_PAD, K_PAD] and [K_PAD, BLOCK_C] int64 rank matrices, so its cost grows
# with the square of k: at k = 64 it ran in 0.42 ms (1.55x the torch path) with up to 1,000
# candidates per row, while no call with k >= 128 finished within 20 s (k = 300: none in 140 s).
#: Largest ``k`` for which ``"auto"`` uses the Triton kernel.
TRITON_MAX_K = 64
# One program walks a row's candidates block by block, merging each block into its running top
# K_PAD, so its time tracks K_PAD x the widest row. Medians on the H200 at [150, 32128] float32
# (Triton / torch ms): k = 20 with rows of up to 1,000 / 2,000 / 4,000 candidates 0.21 / 0.90,
# 0.39 / 0.97, 0.67 / 0.89; k = 40 0.38 / 0.70, 0.66 / 0.60, 1.19 / 0.63; k = 64 0.39 / 0.69,
# 0.72 / 0.69, 1.30 / 0.66. The kernel wins where K_PAD x widest row stays below 2**16.
#: ``"auto"`` uses the torch path once ``next_power_of_2(k) * widest row`` reaches this.
TRITON_MAX_WORK = 2**16


@dataclass(frozen=True)
class TopK:
    """The ``k`` best allowed continuations of ``N`` beams, best first.

    Attributes:
        tokens: ``[N, k]`` int64 token ids; ``-1`` in empty slots.
        log_probs: ``[N, k]`` float32 log-probabilities under the full softmax over the
            vocabulary; ``-inf`` in empty slots.
        next_state: ``[N, k, S]`` int64 constraint states after each token; ``-1`` in empty slots.
        valid: ``[N, k]`` bool; ``False`` in the slots of rows with fewer than ``k`` candidates.
    """

    tokens: torch.Tensor
    log_probs: torch.Tensor
    next_state: torch.Tensor
    valid: torch.Tensor


def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _triton_kernel_imports() -> bool:
    """Whether the Triton kernel module imports (only asked for CUDA logits, so CPU runs never
    import triton)."""
    try:
        import genir.kernels.topk_triton  # noqa: F401
    except ImportError:
        return False
    return True


def use_triton(device: torch.device, k: int, max_candidates: int) -> bool:
    """Whether ``"auto"`` may run the Triton kernel (before asking whether triton imports).

    Args:
        device: the logits' device.
        k: slots per row.
        max_candidates: the most candidates of any row.
    Returns:
        True for CUDA with ``k <= TRITON_MAX_K`` and ``next_power_of_2(k) * max_candidates < TRITON_MAX_WORK``.
    """
    return device.type == "cuda" and k <= TRITON_MAX_K and _k_pad(k) * max_candidates < TRITON_MAX_WORK


def _k_pad(k: int) -> int:
    """The kernel's slots per row: ``k`` rounded up to a power of two."""
    return 1 << max(k - 1, 0).bit_length()


def _auto_uses_triton(logits: torch.Tensor, candidates: Candidates, k: int) -> bool:
    """:func:`use_triton` for this call, and whether the kernel module imports.

    The widest row is read from ``row_ptr`` (a device-to-host copy, so a sync on CUDA) only
    when it can change the answer: the total number of candidates ``M`` is a shape, free to
    read, and bounds it, so while it keeps the work below ``TRITON_MAX_WORK`` it decides alone.
    """
    widest = candidates.tokens.shape[0]
    if not use_triton(logits.device, k, widest) and use_triton(logits.device, k, 0):
        widest = int((candidates.row_ptr[1:] - candidates.row_ptr[:-1]).max())
    return use_triton(logits.device, k, widest) and _triton_kernel_imports()


def constrained_topk(logits: torch.Tensor, candidates: Candidates, k: int, backend: Backend = "auto") -> TopK:
    """Return the ``k`` best allowed tokens of every row (ranking in the module docstring).

    Args:
        logits: ``[N, V]`` float32, bfloat16 or float16.
        candidates: the rows' allowed tokens: ``row_ptr [N + 1]``, ``tokens [M]``,
            ``next_state [M, S]``, all int64, on the logits' device.
        k: number of slots per row (``k >= 1``).
        backend: ``"auto"`` (see :func:`use_triton`), ``"torch"`` or ``"triton"``.
    Returns:
        ``TopK`` with ``[N, k]`` slots.
    Raises:
        ValueError: on an unknown backend, ``k < 1``, or candidates with a bias on the Triton backend.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if backend == "auto":
        # The Triton kernel reads no bias: biased candidates take the torch path.
        backend = "triton" if candidates.bias is None and _auto_uses_triton(logits, candidates, k) else "torch"
    if backend == "triton" and candidates.bias is not None:
        raise ValueError("the Triton top-k takes no candidate bias; use backend='torch' or 'auto'")
    if backend == "torch":
        return topk_torch(logits, candidates, k)
    if backend == "triton":
        from genir.kernels.topk_triton import topk_triton

        tokens, log_probs, next_state, valid = topk_triton(logits, candidates, k)
        return TopK(tokens=tokens, log_probs=log_probs, next_state=next_state, valid=valid)
    raise ValueError(f"unknown top-k backend {backend!r}; expected 'auto', 'torch' or 'triton'")


def ranking_key(logit: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Pack (logit, token) into one int64 whose order is the ranking order.

    Args:
        logit: ``[M]`` float32 candidate logits.
        tokens: ``[M]`` int64 candidate token ids in ``[0, 2**31)``.
    Returns:
        ``[M]`` int64 keys: higher key = better candidate; distinct tokens give distinct keys.
    """
    logit = torch.where(logit == 0, torch.zeros_like(logit), logit)
    bits = logit.view(torch.int32)
    # IEEE floats order like sign-magnitude integers; flipping the magnitude of negatives makes
    # the int32 order match the float order.
    monotone = torch.where(bits >= 0, bits, bits ^ _INT31_MAX).to(torch.int64)
    return (monotone << 32) | (_INT31_MAX - tokens)


def log_normalizer(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise logsumexp in float32.

    Args:
        logits: ``[N, V]`` float32, bfloat16 or float16.
    Returns:
        ``[N]`` float32.
    """
    if logits.is_cuda:
        return torch.logsumexp(logits.float(), dim=-1)
    # On CPU, blocks of rows stay in cache and never materialize a float32 copy of low-precision
    # logits. Within a block, log_softmax's fused, vectorized kernel beats logsumexp's separate
    # passes (5.7 vs 8.3 ms for [150, 32128] on one thread); a column then gives the normalizer,
    # x_j - log_softmax(x)_j. The row's largest logit is that column: any other may be so low (a
    # masked token at the dtype's lowest value) that x_j - lse rounds back to x_j.
    rows_per_block = max(1, _CPU_BLOCK_ELEMENTS // max(logits.shape[1], 1))
    out = torch.empty(logits.shape[0], dtype=torch.float32)
    for start in range(0, logits.shape[0], rows_per_block):
        block = logits[start : start + rows_per_block].float()
        top = block.argmax(dim=-1, keepdim=True)  # [b, 1]
        out[start : start + block.shape[0]] = (block.gather(1, top) - torch.log_softmax(block, dim=-1).gather(1, top)).squeeze(1)
    return out


def topk_torch(logits: torch.Tensor, candidates: Candidates, k: int) -> TopK:
    """Torch backend of :func:`constrained_topk` (same arguments and result)."""
    tokens, next_state, valid, bias = select_torch(logits, candidates, k)
    chosen_logit = logits.gather(1, tokens.clamp(min=0)).float() + bias
    log_probs = torch.where(valid, chosen_logit - log_normalizer(logits).unsqueeze(1), float("-inf"))
    return TopK(tokens=tokens, log_probs=log_probs, next_state=next_state, valid=valid)


def select_torch(
    logits: torch.Tensor, candidates: Candidates, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The selection half of :func:`topk_torch`: which ``k`` allowed tokens, without their scores.

    Args:
        logits: ``[N, V]`` float32, bfloat16 or float16.
        candidates: ``row_ptr [N + 1]``, ``tokens [M]``, ``next_state [M, S]``, int64, and an
            optional ``bias [M]`` float32 added to the ranking logits.
        k: slots per row.
    Returns:
        ``tokens [N, k]`` int64, ``next_state [N, k, S]`` int64 (both ``-1`` in empty slots),
        ``valid [N, k]`` bool and the chosen candidates' ``bias [N, k]`` float32 (0 without one
        and in empty slots), best first by the module's ranking.
    """
    n_rows = logits.shape[0]
    degree = candidates.row_ptr[1:] - candidates.row_ptr[:-1]
    row = torch.repeat_interleave(torch.arange(n_rows, device=logits.device), degree, output_size=candidates.tokens.shape[0])
    chosen = select_candidates(logits[row, candidates.tokens].float(), candidates, k)
    return chosen.tokens, chosen.next_state, chosen.valid, chosen.bias


@dataclass(frozen=True)
class Chosen:
    """The ``k`` best candidates of ``N`` rows, best first (:func:`select_candidates`).

    Attributes:
        tokens: ``[N, k]`` int64; ``-1`` in empty slots.
        next_state: ``[N, k, S]`` int64; ``-1`` in empty slots.
        valid: ``[N, k]`` bool.
        logit: ``[N, k]`` float32 the chosen candidates' logits (``-inf`` in empty slots), bias not added.
        bias: ``[N, k]`` float32 their biases (0 without one and in empty slots).
    """

    tokens: torch.Tensor
    next_state: torch.Tensor
    valid: torch.Tensor
    logit: torch.Tensor
    bias: torch.Tensor


def select_candidates(logit: torch.Tensor, candidates: Candidates, k: int) -> Chosen:
    """The ``k`` best candidates of every row by the module's ranking, given each candidate's logit.

    The ranking of :func:`select_torch` for callers that score the candidates alone instead of the
    whole vocabulary (:func:`genir.kernels.beam_search.beam_search` with a ``scorer``).

    Args:
        logit: ``[M]`` float32 the candidates' logits, in ``candidates`` order.
        candidates: ``row_ptr [N + 1]``, ``tokens [M]``, ``next_state [M, S]``, int64, and an
            optional ``bias [M]`` float32 added to the ranking logits.
        k: slots per row.
    """
    row_ptr, tokens, next_state = candidates.row_ptr, candidates.tokens, candidates.next_state
    n_rows = row_ptr.shape[0] - 1
    device = logit.device
    degree = row_ptr[1:] - row_ptr[:-1]
    total = tokens.shape[0]
    row = torch.repeat_interleave(torch.arange(n_rows, device=device), degree, output_size=total)
    key = ranking_key(logit if candidates.bias is None else logit + candidates.bias, tokens)
    # One padded [N, width] key matrix turns the ragged per-row top-k into a single topk call.
    width = max(k, int(degree.max()) if n_rows else 0)
    padded = torch.full((n_rows, width), _INT64_MIN, dtype=torch.int64, device=device)
    padded[row, torch.arange(total, device=device) - row_ptr[row]] = key
    column = padded.topk(k, dim=1).indices
    valid = column < degree.unsqueeze(1)
    # Empty slots point one past the last candidate, at an appended filler entry.
    position = torch.where(valid, row_ptr[:-1].unsqueeze(1) + column, total)
    filler = torch.full((1,), EMPTY_SLOT, dtype=torch.int64, device=device)
    top_tokens = torch.cat([tokens, filler])[position]
    top_state = torch.cat([next_state, filler.expand(1, next_state.shape[1])])[position]
    top_logit = torch.cat([logit.float(), torch.full((1,), float("-inf"), device=device)])[position]
    if candidates.bias is None:
        top_bias = torch.zeros((n_rows, k), device=device)
    else:
        top_bias = torch.cat([candidates.bias.float(), torch.zeros(1, device=device)])[position]
    return Chosen(tokens=top_tokens, next_state=top_state, valid=valid, logit=top_logit, bias=top_bias)
