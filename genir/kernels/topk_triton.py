"""Triton backend of the constrained top-k step (imported only when that backend is asked for).

One program per row makes two passes: an online logsumexp over the vocabulary in blocks of
``BLOCK_V``, then the row's candidates in blocks of ``BLOCK_C``, merged into a running top-k
held in registers. The merge ranks every element of (running top-k, block) by comparing all
pairs, which needs no sort network and carries each key's candidate position along; blocks
whose best key cannot enter the running top-k are skipped. Ranking keys are those of
``genir.kernels.topk.ranking_key``, so the result equals the torch backend's.

The merge's rank matrices are ``[K_PAD, K_PAD]`` and ``[K_PAD, BLOCK_C]`` int64, so the cost
grows with the square of ``k``: ``genir.kernels.topk.use_triton`` keeps ``"auto"`` off this
kernel at large ``k`` and on wide rows.

This module returns plain tensors and imports nothing from ``genir.kernels.topk``, which wraps
them in its ``TopK``; the import goes one way only. On CPU the kernel runs only under
``TRITON_INTERPRET=1``, set before triton is imported.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from genir.kernels.constraint import Candidates

_BLOCK_V = 1024
_BLOCK_C = 64


@triton.jit
def _row_logsumexp(row_logits, V, BLOCK_V: tl.constexpr):
    """logsumexp of one row of ``V`` logits in one read, with a running maximum and sum per lane."""
    lane_max = tl.full([BLOCK_V], float("-inf"), tl.float32)
    lane_sum = tl.zeros([BLOCK_V], tl.float32)
    for start in range(0, V, BLOCK_V):
        offs = start + tl.arange(0, BLOCK_V)
        x = tl.load(row_logits + offs, mask=offs < V, other=float("-inf")).to(tl.float32)
        new_max = tl.maximum(lane_max, x)
        # Lanes that have seen only -inf shift by 0 instead, so that no -inf - -inf makes a NaN.
        shift = tl.where(new_max > float("-inf"), new_max, 0.0)
        lane_sum = lane_sum * tl.exp(lane_max - shift) + tl.exp(x - shift)
        lane_max = new_max
    row_max = tl.max(lane_max, axis=0)
    row_shift = tl.where(row_max > float("-inf"), row_max, 0.0)
    scaled = lane_sum * tl.exp(lane_max - row_shift)
    return row_max + tl.log(tl.sum(scaled, axis=0))


@triton.jit
def _ranking_key(logit, token):
    """int64 key ordering candidates by logit, then lower token (as ``topk.ranking_key``)."""
    logit = tl.where(logit == 0.0, 0.0, logit)
    bits = logit.to(tl.int32, bitcast=True)
    monotone = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)
    return (monotone << 32) | (0x7FFFFFFF - token)


@triton.jit
def _constrained_topk_kernel(
    logits_ptr,
    logits_row_stride,
    V,
    row_ptr_ptr,
    tokens_ptr,
    next_state_ptr,
    out_tokens_ptr,
    out_log_probs_ptr,
    out_state_ptr,
    out_valid_ptr,
    K: tl.constexpr,
    K_PAD: tl.constexpr,
    S: tl.constexpr,
    S_PAD: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_logits = logits_ptr + row * logits_row_stride
    log_norm = _row_logsumexp(row_logits, V, BLOCK_V)

    lowest: tl.constexpr = -9223372036854775808
    slot = tl.arange(0, K_PAD)
    lane = tl.arange(0, BLOCK_C)
    best_key = tl.full([K_PAD], lowest, tl.int64)
    best_pos = tl.full([K_PAD], -1, tl.int64)
    begin = tl.load(row_ptr_ptr + row)
    end = tl.load(row_ptr_ptr + row + 1)
    for start in range(begin, end, BLOCK_C):
        pos = start + lane
        inside = pos < end
        token = tl.load(tokens_ptr + pos, mask=inside, other=0)
        logit = tl.load(row_logits + token, mask=inside, other=0.0).to(tl.float32)
        key = tl.where(inside, _ranking_key(logit, token), lowest)
        if tl.max(key, axis=0) > tl.min(best_key, axis=0):
            # Rank in the union; equal keys (only the filler) rank running top-k first, then
            # by lane, so every rank is distinct and each slot receives exactly one element.
            bk_i = best_key[:, None]
            bk_j = best_key[None, :]
            ck_i = key[:, None]
            ck_j = key[None, :]
            earlier_slot = slot[None, :] < slot[:, None]
            earlier_lane = lane[None, :] < lane[:, None]
            rank_best = tl.sum(((bk_j > bk_i) | ((bk_j == bk_i) & earlier_slot)).to(tl.int32), axis=1)
            rank_best += tl.sum((ck_j > bk_i).to(tl.int32), axis=1)
            rank_new = tl.sum((bk_j >= ck_i).to(tl.int32), axis=1)
            rank_new += tl.sum(((ck_j > ck_i) | ((ck_j == ck_i) & earlier_lane)).to(tl.int32), axis=1)
            from_best = rank_best[None, :] == slot[:, None]
            from_new = rank_new[None, :] == slot[:, None]
            best_key = tl.sum(tl.where(from_best, bk_j, 0), axis=1) + tl.sum(tl.where(from_new, ck_j, 0), axis=1)
            best_pos = tl.sum(tl.where(from_best, best_pos[None, :], 0), axis=1) + tl.sum(
                tl.where(from_new, tl.where(inside, pos, -1)[None, :], 0), axis=1
            )

    valid = best_pos >= 0
    token = tl.load(tokens_ptr + best_pos, mask=valid, other=-1)
    logit = tl.load(row_logits + token, mask=valid, other=0.0).to(tl.float32)
    log_prob = tl.where(valid, logit - log_norm, float("-inf"))
    out = row * K + slot
    keep = slot < K
    tl.store(out_tokens_ptr + out, token, mask=keep)
    tl.store(out_log_probs_ptr + out, log_prob, mask=keep)
    tl.store(out_valid_ptr + out, valid.to(tl.int8), mask=keep)
    column = tl.arange(0, S_PAD)
    in_state = valid[:, None] & (column[None, :] < S)
    state = tl.load(next_state_ptr + best_pos[:, None] * S + column[None, :], mask=in_state, other=-1)
    tl.store(out_state_ptr + out[:, None] * S + column[None, :], state, mask=keep[:, None] & (column[None, :] < S))


def topk_triton(
    logits: torch.Tensor, candidates: Candidates, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton backend of ``genir.kernels.topk.constrained_topk`` (same arguments; the fields of
    its ``TopK`` as a tuple).

    Args:
        logits: ``[N, V]`` float32, bfloat16 or float16 (CUDA, or CPU under ``TRITON_INTERPRET=1``).
        candidates: ``row_ptr [N + 1]``, ``tokens [M]``, ``next_state [M, S]``, int64, same device.
        k: number of slots per row.
    Returns:
        ``tokens [N, k]`` int64 (``-1`` in empty slots), ``log_probs [N, k]`` float32 (``-inf``
        in empty slots), ``next_state [N, k, S]`` int64 (``-1`` in empty slots) and
        ``valid [N, k]`` bool, best first.
    """
    n_rows, vocab = logits.shape
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    next_state = candidates.next_state.contiguous()
    cand_tokens = candidates.tokens.contiguous()
    width = next_state.shape[1]
    device = logits.device
    # Empty tensors have null data pointers, which a CUDA launch rejects; the kernel masks every
    # access to them, so one-element stand-ins (and a width-1 state output) are never touched.
    if cand_tokens.numel() == 0:
        cand_tokens = torch.zeros(1, dtype=torch.int64, device=device)
    if next_state.numel() == 0:
        next_state = torch.zeros(1, dtype=torch.int64, device=device)
    tokens = torch.empty((n_rows, k), dtype=torch.int64, device=device)
    log_probs = torch.empty((n_rows, k), dtype=torch.float32, device=device)
    states = torch.empty((n_rows, k, max(width, 1)), dtype=torch.int64, device=device)
    valid = torch.empty((n_rows, k), dtype=torch.int8, device=device)
    if n_rows:
        _constrained_topk_kernel[(n_rows,)](
            logits,
            logits.stride(0),
            vocab,
            candidates.row_ptr.contiguous(),
            cand_tokens,
            next_state,
            tokens,
            log_probs,
            states,
            valid,
            K=k,
            K_PAD=triton.next_power_of_2(k),
            S=width,
            S_PAD=triton.next_power_of_2(max(width, 1)),
            BLOCK_V=min(_BLOCK_V, triton.next_power_of_2(vocab)),
            BLOCK_C=_BLOCK_C,
        )
    return tokens, log_probs, states[:, :, :width], valid.bool()
