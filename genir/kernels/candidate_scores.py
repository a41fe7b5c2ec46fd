"""Exact teacher-forced scores of each query's own candidate sequences, computed only as far as a top-k needs.

SE-DSI's ``rescore`` search (:mod:`genir.dsi.decoding`) ranks each query's ~200 candidate
descriptions by ``offset + scale * s``, where ``s`` is beam search's score of the sequence
(summed raw logits or summed log-softmax, eos included, as :func:`genir.kernels.exhaustive.exhaustive_scores`
computes it) and ``offset`` / ``scale`` are fixed per candidate (the plan and dense terms, one over the
length). Scoring every candidate through the decoder costs ``rows x positions`` of the full output layer;
four things make it cheaper without changing any score that is returned:

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
* **A bound from the candidates' own tokens** (``head`` given: a model whose logits are one linear
  layer ``z @ W.T + b`` of a head input ``z``, :class:`LinearHead`). A position's log-probability is
  ``logit_t - logsumexp_V``; over any subset ``U`` of the vocabulary ``logsumexp_U <= logsumexp_V``, so
  ``logit_t - logsumexp_U`` bounds it from above and the pruning above stays valid with it. The
  candidates outside the lead are scored that way, on ``U_b`` = the tokens of query ``b``'s candidates
  (eos included) and the ``bound_tokens`` its first step rates highest (they carry much of the mass
  the candidates' tokens miss, which tightens the bound): ``|U_b| x H`` multiply-adds a position
  instead of ``V x H`` (SciFact, MiniLM's 30,524 tokens: ~2,500). Each position's ``z`` ``[H]`` is kept;
  a candidate whose bound survives to its end is then scored exactly from them (the full output layer
  at its real positions alone, no decoder call), best bound first, ``exact_group`` per query at a
  time, and only exact scores raise the threshold; one whose bound falls below it is dropped unscored.

Memory: each decoder call holds ``[rows, positions, V]`` float32 logits; rows are chunked so that
``rows x positions <= positions_per_call`` (the exact scores from kept ``z`` likewise: ``positions_per_call``
positions of ``[V]`` logits at a time). With ``head``, the kept ``z`` of the candidates outside the lead:
``[rows, positions, H]`` (16 queries x ~160 x 33 x 384 float32: ~130 MB).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from genir.kernels.beam_search import SCORES, Score, cache_argument
from genir.kernels.table_products import table_product

POSITIONS_PER_CALL = 2048  # [rows x positions] per decoder call: 2048 x V=30,526 float32 logits = 250 MB
BLOCK = 8  # positions a pruned candidate advances between bounds
MARGIN = 1e-4  # a bound must miss the threshold by this much: float rounding never drops a top-k candidate
BOUND_TOKENS = 1024  # a query's best first-step tokens added to its candidates' in the bound's normalizer
EXACT_GROUP = 2  # bound survivors per query scored exactly between two updates of the threshold


class LinearHead(Protocol):
    """A decoder whose logits are one linear layer of a head input, ``logits = z @ W.T + b`` (the query
    start, :class:`genir.seq2seq.query_start.QueryStartDecoder`): it gives ``z`` and names ``W`` and ``b``."""

    def head_inputs(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor | None, cache: Cache | None) -> tuple[torch.Tensor, Cache]:
        """``[R, T]`` int64 decoder inputs after ``cache``, the encoder's ``[R, S, H]`` states and ``[R, S]``
        mask -> ``z`` ``[R, T, H]`` and the extended cache (the cache the model's own forward takes and returns)."""
        ...

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``W`` ``[V, H]`` and ``b`` ``[V]`` (or None)."""
        ...


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
    head: LinearHead | None = None,
    block: int = BLOCK,
    positions_per_call: int = POSITIONS_PER_CALL,
    margin: float = MARGIN,
    bound_tokens: int = BOUND_TOKENS,
    exact_group: int = EXACT_GROUP,
    counts: dict[str, int] | None = None,
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
        head: ``model``'s decoder as a :class:`LinearHead`: with ``best`` and ``logprob``, the candidates
            outside the lead are bounded on their own tokens and scored exactly only if the bound
            survives (module docstring); the scores returned are the same. None: every position through
            the model's whole output layer.
        block, positions_per_call, margin: pruning's step, memory bound and float margin (module docstring).
        bound_tokens, exact_group: with ``head``, the first step's best tokens added to each query's
            bound set, and the bound survivors per query scored exactly between threshold updates.
        counts: if given, gains the real positions scored (padding never counts): ``full`` through the
            whole output layer (position 0 once per query), ``bound`` through a query's bound set alone.
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
    counts = {} if counts is None else counts
    counts["full"] = counts.get("full", 0) + n_queries
    counts.setdefault("bound", 0)
    # Every candidate's first token read off its query's one row of logits (one logsumexp per query).
    partial = _target_scores(first[:, 0], flat[:, 0].view(n_queries, n_candidates), score).reshape(-1)  # [B*C]
    opening = partial.clone()  # [B*C] position 0's exact score, the start of every candidate's sum
    finished = wanted & (lengths <= 1)
    common = (model, outputs, mask, cache, flat, lengths, query, partial, score, positions_per_call, counts)
    scorer = _Advance(*common)
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
    top = _TopK(offset, scale, partial, finished, query, n_queries, k, margin)
    if head is not None:  # the rest are bounded, and scored exactly only where the bound survives
        scorer = _BoundAdvance(*common, head=head, first=first[:, 0], opening=opening, bound_tokens=bound_tokens,
                               exact_group=exact_group)
    progress = 1
    while True:
        rest = top.ranked(rest)  # what each unfinished candidate can still reach, against the k-th best finished
        rows = torch.nonzero(rest).squeeze(1)
        if rows.numel() == 0:
            break
        end = min(progress + block, width)
        scorer.run(rows, end, progress)
        progress = end
        ended = rest & (lengths <= progress)
        rest &= ~ended
        scorer.finish(ended, top)
    return torch.where(finished, partial, float("-inf")).view(n_queries, n_candidates)


@dataclass
class _Chunk:
    """Rows decoded together: ``rows`` ``[R]`` flat row ids, their KV ``cache`` (None before their first
    call) and, for a bound, the head inputs ``z`` ``[R, T, H]`` of their positions ``1 .. T`` (else None)."""

    rows: torch.Tensor
    cache: Cache | None = None
    z: torch.Tensor | None = None

    def select(self, kept: torch.Tensor) -> None:
        """Keep the rows ``kept`` ``[R]`` bool marks; their caches and ``z`` follow."""
        if not kept.all():
            if self.cache is not None:
                self.cache.batch_select_indices(torch.nonzero(kept).squeeze(1))
            if self.z is not None:
                self.z = self.z[kept]
        self.rows = self.rows[kept]


class _TopK:
    """The ``k`` best of ``offset + scale * partial`` (each ``[B*C]`` float32) per query among the
    ``finished`` ``[B*C]`` bool rows, and what can still reach them."""

    def __init__(self, offset: torch.Tensor, scale: torch.Tensor, partial: torch.Tensor, finished: torch.Tensor,
                 query: torch.Tensor, n_queries: int, k: int, margin: float):
        self.offset, self.scale, self.partial, self.finished = offset, scale, partial, finished
        self.query, self.n_queries, self.k, self.margin = query, n_queries, k, margin

    def values(self) -> torch.Tensor:
        """``[B*C]`` each row's value: final where finished, an upper bound of it elsewhere."""
        return self.offset + self.scale * self.partial

    def ranked(self, candidates: torch.Tensor) -> torch.Tensor:
        """``candidates`` ``[B*C]`` bool less those whose value misses their query's ``k``-th best finished one."""
        values = self.values()
        threshold = _kth_best(values, self.finished, self.n_queries, self.k)  # [B]
        return candidates & (values >= threshold[self.query] - self.margin)


class _Advance:
    """Scores rows from one position to a later one, keeping their KV caches between calls.

    ``partial`` ``[B*C]`` float32 gains, in place, the scores of the positions scored (here exact: the
    model's whole output layer). Rows start from a copy of the first step's cache (position 0 and the
    query's cross-attention keys and values, selected per row); a call that continues the last one keeps
    its rows' caches (dropping the rows not asked for again), so no position is computed twice.
    """

    kind = "full"  # what a scored position counts as in ``counts``

    def __init__(self, model: PreTrainedModel, outputs: ModelOutput, mask: torch.Tensor, first_cache: Cache,
                 flat: torch.Tensor, lengths: torch.Tensor, query: torch.Tensor, partial: torch.Tensor, score: Score,
                 positions_per_call: int, counts: dict[str, int]):
        self.model, self.outputs, self.mask, self.first_cache = model, outputs, mask, first_cache
        self.flat, self.lengths, self.query, self.partial, self.score = flat, lengths, query, partial, score
        self.positions_per_call, self.counts = positions_per_call, counts
        self.chunks: list[_Chunk] = []  # the last call's

    def run(self, rows: torch.Tensor, end: int, start: int = 1) -> None:
        """Score positions ``[start, end)`` of ``rows`` ``[R]`` (flat row ids, each scored up to ``start`` already)."""
        if start == 1:  # fresh rows: chunks from the first step's cache
            step = max(1, self.positions_per_call // max(end - 1, 1))
            chunks = [_Chunk(rows[lo:lo + step]) for lo in range(0, rows.numel(), step)]
        else:  # rows of the chunks kept from the last call: drop the pruned ones, caches follow
            keep = torch.zeros_like(self.lengths, dtype=torch.bool)
            keep[rows] = True
            chunks = []
            for chunk in self.chunks:
                kept = keep[chunk.rows]
                if kept.any():
                    chunk.select(kept)
                    chunks.append(chunk)
        self.chunks = chunks
        for chunk in chunks:
            if chunk.cache is None:
                chunk.cache = copy.deepcopy(self.first_cache)
                chunk.cache.batch_select_indices(self.query[chunk.rows])
            inputs = self.flat[chunk.rows, start - 1:end - 1]  # [R, T] position t reads token t - 1
            targets = self.flat[chunk.rows, start:end]  # [R, T]
            states = self.outputs.last_hidden_state[self.query[chunk.rows]]  # [R, S, H]
            scores = self._scores(chunk, inputs, targets, states, self.mask[self.query[chunk.rows]])  # [R, T]
            real = torch.arange(start, end, device=targets.device) < self.lengths[chunk.rows].unsqueeze(1)
            self.partial[chunk.rows] += torch.where(real, scores, 0.0).sum(1)
            self.counts[self.kind] += int(real.sum())

    def finish(self, ended: torch.Tensor, top: _TopK) -> None:
        """Rows ``ended`` ``[B*C]`` bool were scored to their end: their scores are final, ``top.finished`` gains them."""
        top.finished |= ended

    def _scores(self, chunk: _Chunk, inputs: torch.Tensor, targets: torch.Tensor, states: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """``[R, T]`` float32 scores of ``targets`` ``[R, T]`` after ``inputs`` ``[R, T]`` (the encoder's
        ``states`` ``[R, S, H]``, ``mask`` ``[R, S]``); ``chunk.cache`` is extended."""
        logits, chunk.cache = _forward(self.model, type(self.outputs)(last_hidden_state=states), mask, inputs, chunk.cache)
        return _target_scores(logits, targets.unsqueeze(-1), self.score).squeeze(-1)


class _BoundAdvance(_Advance):
    """:class:`_Advance` whose positions add an upper bound of their log-probability, not the log-probability:
    ``logit_t - logsumexp`` over the query's bound set alone (module docstring), from the head input ``z``
    the chunks keep; :meth:`finish` replaces a bound that survives to its end with the exact score.

    The bound set of query ``b``: the tokens of its candidates and the ``bound_tokens`` best of its
    first-step logits ``first`` ``[B, V]``, with the output layer's rows and bias there (``[U_b, H]``, ``[U_b]``).
    ``opening`` ``[B*C]`` float32: each row's exact score at position 0.
    """

    kind = "bound"

    def __init__(self, *args: object, head: LinearHead, first: torch.Tensor, opening: torch.Tensor,
                 bound_tokens: int, exact_group: int):
        super().__init__(*args)
        self.head, self.opening, self.exact_group = head, opening, exact_group
        weight, bias = head.output_layer()  # [V, H], [V]
        self.weight = weight
        self.bias = torch.zeros(weight.shape[0], device=weight.device) if bias is None else bias.float()
        n_queries, width = first.shape[0], self.flat.shape[1]
        real = torch.arange(width, device=self.flat.device) < self.lengths.unsqueeze(1)  # [B*C, L]
        best = first.topk(min(bound_tokens, first.shape[1]), dim=1).indices  # [B, m]
        self.bound_sets = []  # per query: ([U_b] sorted int64 tokens, [U_b, H] rows, [U_b] float32 bias)
        for b in range(n_queries):
            own = self.query == b
            tokens = torch.unique(torch.cat([self.flat[own][real[own]], best[b]]))
            self.bound_sets.append((tokens, weight[tokens], self.bias[tokens]))

    def _scores(self, chunk: _Chunk, inputs: torch.Tensor, targets: torch.Tensor, states: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        z, chunk.cache = self.head.head_inputs(inputs, states, mask, chunk.cache)  # [R, T, H]
        chunk.z = z if chunk.z is None else torch.cat([chunk.z, z], dim=1)
        scores = torch.empty(targets.shape, dtype=torch.float32, device=targets.device)  # [R, T]
        # A chunk's rows are in flat order, so each query's rows are one run of them.
        queries, sizes = torch.unique_consecutive(self.query[chunk.rows], return_counts=True)
        lo = 0
        for b, n in zip(queries.tolist(), sizes.tolist()):
            tokens, rows, bias = self.bound_sets[b]
            logits = table_product(z[lo:lo + n].float(), rows) + bias  # [n, T, U_b]
            # A real target is in its query's bound set; padding's column is any (never summed).
            columns = torch.searchsorted(tokens, targets[lo:lo + n]).clamp(max=tokens.numel() - 1)
            scores[lo:lo + n] = logits.gather(-1, columns.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
            lo += n
        return scores

    def finish(self, ended: torch.Tensor, top: _TopK) -> None:
        """Rows ``ended`` ``[B*C]`` bool were bounded to their end: those whose bound can still reach the
        ``k`` best get their exact score (best bound first, ``exact_group`` per query, the threshold
        raised after each group) and join ``top.finished``; the others stay unfinished."""
        pending = ended
        while True:
            pending = top.ranked(pending)
            if not pending.any():
                return
            values = torch.where(pending, top.values(), float("-inf")).view(top.n_queries, -1)  # [B, C]
            best = values.topk(min(self.exact_group, values.shape[1]), dim=1)
            group = (best.indices + torch.arange(top.n_queries, device=values.device).unsqueeze(1) * values.shape[1])
            group = group[best.values > float("-inf")]  # [G] flat rows
            self._exact(group)
            top.finished[group] = True
            pending[group] = False

    def _exact(self, rows: torch.Tensor) -> None:
        """Set ``partial`` of ``rows`` ``[G]`` (each bounded to its end) to its exact score: the whole
        output layer at each real position, from the kept ``z``, ``positions_per_call`` positions at a time."""
        z, targets, owners = [], [], []
        for chunk in self.chunks:
            picked = torch.isin(chunk.rows, rows)
            if picked.any():
                chunk_rows = chunk.rows[picked]
                stored = chunk.z.shape[1]  # positions 1 .. stored
                real = torch.arange(1, stored + 1, device=rows.device) < self.lengths[chunk_rows].unsqueeze(1)  # [g, T]
                z.append(chunk.z[picked][real])
                targets.append(self.flat[chunk_rows, 1:stored + 1][real])
                owners.append(chunk_rows.unsqueeze(1).expand_as(real)[real])
        z, targets, owners = torch.cat(z), torch.cat(targets), torch.cat(owners)  # [P, H], [P], [P]
        sums = torch.zeros_like(self.partial)
        for lo in range(0, z.shape[0], self.positions_per_call):
            logits = table_product(z[lo:lo + self.positions_per_call].float(), self.weight) + self.bias  # [p, V]
            scores = _target_scores(logits, targets[lo:lo + self.positions_per_call].unsqueeze(-1), "logprob")
            sums.index_add_(0, owners[lo:lo + self.positions_per_call], scores.squeeze(-1))
        self.partial[rows] = self.opening[rows] + sums[rows]
        self.counts["full"] += z.shape[0]


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
