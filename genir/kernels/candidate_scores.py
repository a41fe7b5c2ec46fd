"""Exact teacher-forced scores of each query's own candidate sequences, computed only as far as a top-k needs.

SE-DSI's ``rescore`` search (:mod:`genir.dsi.decoding`) ranks each query's ~200 candidate
descriptions by ``offset + scale * s``, where ``s`` is beam search's score of the sequence
(summed raw logits or summed log-softmax, eos included, as :func:`genir.kernels.exhaustive.exhaustive_scores`
computes it) and ``offset`` / ``scale`` are fixed per candidate (the plan and dense terms, one over the
length). Scoring every candidate through the decoder costs ``rows x positions`` of the full output layer;
three things make it cheaper without changing any score that is returned:

* **The query's first step is computed once**, not once per candidate: position 0 reads only the
  decoder start and the query, so its logits (and their logsumexp) are shared by all candidates,
  and so are the cross-attention keys and values of every layer, which its KV cache holds and
  every candidate row copies instead of projecting the query's states again.
* **Log-softmax as a logit minus a logsumexp**: only the target token's logit and one logsumexp
  per position are read, no ``[R, L, V]`` log-softmax is written.
* **Pruning that cannot change the k best** (``k`` given): a sequence's score only falls as its
  positions are scored (every log-probability is ``<= 0``; under ``logit`` nothing is pruned, since a
  raw logit can be positive), so ``offset + scale * (score so far)`` bounds its final value from
  above. The ``k`` candidates with the best ``offset`` are scored to the end first; their ``k``-th best
  final value is a threshold every other candidate must reach. The others advance ``block`` positions
  at a time on their KV caches, and one whose bound falls below the threshold (less ``margin``, which
  covers float rounding) is dropped; each candidate that finishes raises the threshold. Every
  candidate that can be among the ``k`` best is scored to its end, exactly.

Memory: each decoder call holds ``[rows, positions, V]`` float32 logits; rows are chunked so that
``rows x positions <= positions_per_call``.
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from genir.kernels.beam_search import SCORES, Score, cache_argument

POSITIONS_PER_CALL = 2048  # [rows x positions] per decoder call: 2048 x V=30,526 float32 logits = 250 MB
BLOCK = 8  # positions a pruned candidate advances between bounds
MARGIN = 1e-4  # a bound must miss the threshold by this much: float rounding never drops a top-k candidate


@torch.inference_mode()
def candidate_scores(
    model: PreTrainedModel,
    encoded: tuple[ModelOutput, torch.Tensor],
    sequences: torch.Tensor,
    *,
    decoder_start_token_id: int,
    pad_token_id: int,
    score: Score = "logprob",
    best: tuple[torch.Tensor, torch.Tensor, int] | None = None,
    block: int = BLOCK,
    positions_per_call: int = POSITIONS_PER_CALL,
    margin: float = MARGIN,
) -> torch.Tensor:
    """Beam search's score of each query's candidates, teacher-forced (module docstring).

    Args:
        model: a Hugging Face encoder-decoder in eval mode whose forward takes and returns a KV cache.
        encoded: the queries' :func:`~genir.kernels.beam_search.encode_sources` ``(outputs, mask)``, one
            beam: ``last_hidden_state`` ``[B, S, H]``, mask ``[B, S]``.
        sequences: ``[B, C, L]`` int64 candidates of each query (eos included), right-padded with
            ``pad_token_id``; a row of padding only is no candidate.
        decoder_start_token_id, pad_token_id: the decoder's first input and the padding id.
        score: ``logprob`` (summed log-softmax) or ``logit`` (summed raw logits).
        best: ``(offset, scale, k)``: only the ``k`` best of ``offset + scale * score`` per query are
            needed (``offset`` ``[B, C]`` float32, ``-inf`` for a candidate never ranked; ``scale``
            ``[B, C]`` float32, positive). None: every candidate is scored.
        block, positions_per_call, margin: pruning's step, memory bound and float margin (module docstring).
    Returns:
        ``[B, C]`` float32 scores; with ``best``, ``-inf`` for a candidate that cannot be among its
        query's ``k`` best (or has ``offset`` ``-inf``). Every other score is exact.
    Raises:
        ValueError: an unknown ``score``.
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r}: choose one of {', '.join(SCORES)}")
    outputs, mask = encoded
    n_queries, n_candidates, width = sequences.shape
    device = sequences.device
    flat = sequences.reshape(-1, width)  # [B*C, L]
    lengths = (flat != pad_token_id).sum(1)  # [B*C]
    query = torch.arange(n_queries, device=device).repeat_interleave(n_candidates)  # [B*C] the query of each row
    wanted = lengths > 0
    if best is not None:
        wanted &= best[0].reshape(-1) > float("-inf")
    # Position 0, once per query: its logits, and a KV cache holding the cross-attention keys and values.
    start = torch.full((n_queries, 1), decoder_start_token_id, dtype=torch.int64, device=device)
    first, cache = _forward(model, outputs, mask, start, None)  # [B, 1, V]
    # Every candidate's first token read off its query's one row of logits (one logsumexp per query).
    partial = _target_scores(first[:, 0], flat[:, 0].view(n_queries, n_candidates), score).reshape(-1)  # [B*C]
    finished = wanted & (lengths <= 1)
    scorer = _Advance(model, outputs, mask, cache, flat, lengths, query, partial, score, positions_per_call)
    if best is None or score == "logit":
        scorer.run(torch.nonzero(wanted & ~finished).squeeze(1), width)
        return torch.where(wanted, partial, float("-inf")).view(n_queries, n_candidates)
    offset, scale, k = best[0].reshape(-1).float(), best[1].reshape(-1).float(), best[2]
    # The k best offsets of each query first, to their end: their k-th best final value is the first threshold.
    ranked = torch.where(wanted, offset, float("-inf")).view(n_queries, n_candidates)
    lead = ranked.topk(min(k, n_candidates), dim=1).indices + torch.arange(n_queries, device=device).unsqueeze(1) * n_candidates
    lead = lead.reshape(-1)[wanted[lead.reshape(-1)]]  # [<= B*k] flat rows
    scorer.run(lead[~finished[lead]], width)
    finished[lead] = True
    rest = wanted & ~finished  # [B*C]
    threshold = _kth_best(offset + scale * partial, finished, n_queries, k)  # [B]
    progress = 1
    while True:
        bound = offset + scale * partial  # [B*C] what each unfinished candidate can still reach
        rest &= bound >= threshold[query] - margin
        rows = torch.nonzero(rest).squeeze(1)
        if rows.numel() == 0:
            break
        end = min(progress + block, width)
        scorer.run(rows, end, progress)
        progress = end
        ended = rest & (lengths <= progress)
        finished |= ended
        rest &= ~ended
        threshold = _kth_best(offset + scale * partial, finished, n_queries, k)
    return torch.where(finished, partial, float("-inf")).view(n_queries, n_candidates)


class _Advance:
    """Scores rows from one position to a later one, keeping their KV caches between calls.

    ``partial`` ``[B*C]`` float32 gains, in place, the scores of the positions scored. Rows start from
    a copy of the first step's cache (position 0 and the query's cross-attention keys and values,
    selected per row); a call that continues the last one keeps its rows' caches (dropping the rows
    not asked for again), so no position is computed twice.
    """

    def __init__(self, model: PreTrainedModel, outputs: ModelOutput, mask: torch.Tensor, first_cache: Cache,
                 flat: torch.Tensor, lengths: torch.Tensor, query: torch.Tensor, partial: torch.Tensor, score: Score,
                 positions_per_call: int):
        self.model, self.outputs, self.mask, self.first_cache = model, outputs, mask, first_cache
        self.flat, self.lengths, self.query, self.partial, self.score = flat, lengths, query, partial, score
        self.positions_per_call = positions_per_call
        self.chunks: list[tuple[torch.Tensor, Cache]] = []  # ([R] flat rows, their cache) of the last call

    def run(self, rows: torch.Tensor, end: int, start: int = 1) -> None:
        """Score positions ``[start, end)`` of ``rows`` ``[R]`` (flat row ids, each scored up to ``start`` already)."""
        if start == 1:  # fresh rows: chunks from the first step's cache
            step = max(1, self.positions_per_call // max(end - 1, 1))
            chunks = [(rows[lo:lo + step], None) for lo in range(0, rows.numel(), step)]
        else:  # rows of the chunks kept from the last call: drop the pruned ones, caches follow
            keep = torch.zeros_like(self.lengths, dtype=torch.bool)
            keep[rows] = True
            chunks = []
            for chunk_rows, cache in self.chunks:
                kept = keep[chunk_rows]
                if kept.any():
                    if not kept.all():
                        cache.batch_select_indices(torch.nonzero(kept).squeeze(1))
                    chunks.append((chunk_rows[kept], cache))
        self.chunks = []
        for chunk_rows, cache in chunks:
            if cache is None:
                cache = copy.deepcopy(self.first_cache)
                cache.batch_select_indices(self.query[chunk_rows])
            inputs = self.flat[chunk_rows, start - 1:end - 1]  # [R, T] position t reads token t - 1
            targets = self.flat[chunk_rows, start:end]  # [R, T]
            states = type(self.outputs)(last_hidden_state=self.outputs.last_hidden_state[self.query[chunk_rows]])
            logits, cache = _forward(self.model, states, self.mask[self.query[chunk_rows]], inputs, cache)
            scores = _target_scores(logits, targets.unsqueeze(-1), self.score).squeeze(-1)  # [R, T]
            real = torch.arange(start, end, device=targets.device) < self.lengths[chunk_rows].unsqueeze(1)
            self.partial[chunk_rows] += torch.where(real, scores, 0.0).sum(1)
            self.chunks.append((chunk_rows, cache))


def _forward(model: PreTrainedModel, outputs: ModelOutput, mask: torch.Tensor, inputs: torch.Tensor,
             cache: Cache | None) -> tuple[torch.Tensor, Cache]:
    """``[R, T]`` decoder inputs after ``cache`` -> ``[R, T, V]`` float32 logits and the extended cache."""
    out = model(encoder_outputs=outputs, attention_mask=mask, decoder_input_ids=inputs, use_cache=True, return_dict=True,
                **{cache_argument(type(model)): cache})
    new_cache = getattr(out, "cache", None)
    return out.logits.float(), new_cache if new_cache is not None else out.past_key_values


def _target_scores(logits: torch.Tensor, targets: torch.Tensor, score: Score) -> torch.Tensor:
    """``[..., V]`` logits and ``[..., X]`` int64 targets -> ``[..., X]`` float32: each target's logit, less
    its position's logsumexp under ``logprob`` (the log-softmax there, without writing one)."""
    picked = logits.gather(-1, targets.clamp(min=0))
    return picked - torch.logsumexp(logits, dim=-1, keepdim=True) if score == "logprob" else picked



def _kth_best(values: torch.Tensor, finished: torch.Tensor, n_queries: int, k: int) -> torch.Tensor:
    """``[B]`` the ``k``-th best of ``values`` ``[B*C]`` among each query's finished rows (``-inf`` if fewer)."""
    ranked = torch.where(finished, values, float("-inf")).view(n_queries, -1)
    return ranked.topk(min(k, ranked.shape[1]), dim=1).values[:, -1]
