"""Exact top-k for docids of one token (atomic docids), without beam search.

An atomic docid is ``[t, eos]``: one token per document, then eos, the only token its trie
allows. Constrained beam search with ``num_beams >= k`` scores a finished docid
``(log P(t | q) + log P(eos | q, t)) / 2 ** length_penalty`` and keeps the best ``k`` among the
``num_beams`` best first tokens. This module finds the exact ``k`` best by that same score with
two decoder steps instead of ``k`` beams over the whole search:

1. one decoder step per query gives ``log P(t | q)`` for every document token (``[B, V]``);
2. the second step (``log P(eos | q, t)``) runs only for the ``m`` best first tokens of each query,
   ``m = k`` at first. Since ``log P(eos | q, t) <= 0``, no document outside those ``m`` can score
   above its own first-step log-probability, so once the ``k``-th best full score reaches the
   ``(m + 1)``-th best first-step log-probability the answer is exact; otherwise ``m`` doubles.

A trained model that gives eos after a document token with probability near 1 needs ``m = k``:
one full step per query and one step per returned document. Where ``log P(eos | q, t)`` varies,
``m`` grows (to every document at worst); the second step runs in chunks of ``STEP_ROWS`` rows.

``first_step_only=True`` ranks by ``log P(t | q)`` alone: one decoder step and a top-k. Under the
trie eos is the only continuation of ``t``, so this is the ranking of the constrained distribution
(which gives that forced eos probability 1), not of beam search's full-softmax score.
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import EncoderDecoderCache

from genir.kernels.beam_search import decode_step, encode_sources

#: Rows of one second-step decoder call (bounds memory when the search widens to many documents).
STEP_ROWS = 8192


@torch.inference_mode()
def single_token_topk(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    first_token: int,
    num_docs: int,
    k: int,
    eos_token_id: int,
    decoder_start_token_id: int,
    length_penalty: float = 1.0,
    first_step_only: bool = False,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best one-token docids of each query, exactly, best first.

    Args:
        model: a Hugging Face encoder-decoder whose output tokens ``first_token .. first_token +
            num_docs - 1`` are the documents (row ``i`` is token ``first_token + i``).
        input_ids, attention_mask: ``[B, L_src]`` int64 queries.
        k: docids per query, ``1 <= k <= num_docs``.
        eos_token_id, decoder_start_token_id: the decoder's eos and first input token.
        length_penalty: as in beam search; the score divides by ``2 ** length_penalty``.
        first_step_only: rank by ``log P(t | q)`` alone (see the module docstring).
        exclude: int64 document rows never returned (deleted documents); ``k`` must not exceed
            ``num_docs`` minus their number.
    Returns:
        ``rows`` ``[B, k]`` int64 document rows and ``scores`` ``[B, k]`` float32, each row sorted by
        score, higher first (ties: lower document row first).
    """
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    n_queries = input_ids.shape[0]
    encoder_outputs, mask = encode_sources(model, input_ids, attention_mask, 1)
    start = torch.full((n_queries, 1), decoder_start_token_id, dtype=torch.int64, device=device)
    logits, cache = decode_step(model, encoder_outputs, mask, start, None)
    first = torch.log_softmax(logits.float(), dim=-1)[:, first_token:first_token + num_docs]  # [B, D]
    if exclude is not None and exclude.numel():
        first[:, exclude.to(device)] = float("-inf")  # sorted last; never among the k (k <= documents left)
    if first_step_only:
        top = torch.sort(first, dim=1, descending=True, stable=True)
        return top.indices[:, :k], top.values[:, :k]
    # Sorted once; ties to the lower row, as beam search ranks equal logits to the lower token id.
    order = torch.sort(first, dim=1, descending=True, stable=True).indices  # [B, D]
    first_sorted = first.gather(1, order)  # [B, D]
    m = k
    while True:
        rows = order[:, :m]  # [B, m]
        full = first_sorted[:, :m] + _eos_log_probs(model, encoder_outputs, mask, cache, rows + first_token, eos_token_id)
        best = torch.sort(full, dim=1, descending=True, stable=True)  # [B, m]
        kth = best.values[:, k - 1]  # [B]
        bound = first_sorted[:, m] if m < num_docs else torch.full_like(kth, float("-inf"))
        if m >= num_docs or bool((kth >= bound).all()):
            top = best.indices[:, :k]  # [B, k]
            return rows.gather(1, top), (best.values[:, :k] / 2.0**length_penalty)
        m = min(2 * m, num_docs)


def _eos_log_probs(
    model: PreTrainedModel, encoder_outputs, mask: torch.Tensor, cache: EncoderDecoderCache, tokens: torch.Tensor,
    eos_token_id: int,
) -> torch.Tensor:
    """``[B, m]`` float32 ``log P(eos | q, token)`` for ``tokens`` ``[B, m]`` int64, one decoder step on
    the first step's cache repeated per token."""
    n_queries, m = tokens.shape
    queries = torch.arange(n_queries, device=tokens.device).repeat_interleave(m)  # [B * m] query of each row
    flat = tokens.reshape(-1, 1)  # [B * m, 1]
    out = []
    for start in range(0, flat.shape[0], STEP_ROWS):
        rows = queries[start:start + STEP_ROWS]
        outputs = type(encoder_outputs)(last_hidden_state=encoder_outputs.last_hidden_state.index_select(0, rows))
        logits, _ = decode_step(model, outputs, mask.index_select(0, rows), flat[start:start + STEP_ROWS],
                                _repeat_cache(cache, rows))
        out.append(torch.log_softmax(logits.float(), dim=-1)[:, eos_token_id])
    return torch.cat(out).view(n_queries, m)


def _repeat_cache(cache: EncoderDecoderCache, rows: torch.Tensor) -> EncoderDecoderCache:
    """A copy of the decoder's KV cache with row ``i`` = the old row ``rows[i]`` (self- and cross-attention)."""
    repeated = copy.deepcopy(cache)
    if isinstance(repeated, EncoderDecoderCache):
        repeated.self_attention_cache.reorder_cache(rows)
        repeated.cross_attention_cache.reorder_cache(rows)
    else:
        repeated.reorder_cache(rows)
    return repeated
