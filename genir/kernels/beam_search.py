"""Constrained beam search over any Hugging Face encoder-decoder.

One engine for every constraint (docid trie, FM-index) and for none: the source is encoded
once, the decoder runs one token per step on its KV cache for all ``B * num_beams`` beams at
once, and each beam carries its constraint state, gathered along with the chosen beams at
every step, so a prefix is never walked again. The next tokens of a step come from the fused
constrained top-k (``genir.kernels.topk``), scored under the full softmax.

Selection, length penalty and finishing follow ``transformers``' beam search (5.x,
``GenerationMixin._beam_search``): each step keeps the ``2 * num_beams`` best continuations of
a query; those among the first ``num_beams`` that end (``eos``, or the last allowed step) become
finished hypotheses scored ``sum_logprob / length ** length_penalty`` (``length`` counts the
generated tokens, ``eos`` included); the best ``num_beams`` that do not end keep running; the
``early_stopping`` rules (``False``, ``True``, ``"never"``) decide when a query is done. Without a
constraint the result equals ``model.generate(num_beams=..., do_sample=False)`` with no logits
processors. Differences, all only reachable with a constraint or a tiny vocabulary:

* With a constraint, only hypotheses that end with ``eos`` are returned: a beam cut off by
  ``max_new_tokens`` is an unfinished prefix, which names no document.
* A beam with no allowed continuation is dropped (score ``-inf``), where ``generate`` would
  keep padding it with masked tokens; a query may thus return fewer than
  ``num_return_sequences`` hypotheses (``valid`` tells).
* Only one copy of the start beam is expanded at the first step (``generate`` expands all
  copies but scores all but one at ``-1e9``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, EncoderDecoderCache

from genir.kernels.constraint import Constraint
from genir.kernels.topk import EMPTY_SLOT, Backend, TopK, constrained_topk

EarlyStopping = bool | Literal["never"]


@dataclass(frozen=True)
class BeamStep:
    """The continuations a decoding step kept (recorded when ``record_steps=True``).

    At step ``t`` (0-based) each query keeps its ``K = 2 * num_beams`` best continuations; the
    first ``num_beams`` that did not end are the beams expanded at step ``t + 1``.

    Attributes:
        tokens: ``[B, K, t + 1]`` int64 generated prefixes (without the decoder start token).
        scores: ``[B, K]`` float32 sums of token log-probabilities (no length penalty);
            ``-inf`` where ``valid`` is False.
        states: ``[B, K, S]`` int64 constraint states after each prefix.
        valid: ``[B, K]`` bool; whether the slot holds a continuation.
        ended: ``[B, K]`` bool; whether the prefix ends with ``eos``.
    """

    tokens: torch.Tensor
    scores: torch.Tensor
    states: torch.Tensor
    valid: torch.Tensor
    ended: torch.Tensor


@dataclass(frozen=True)
class BeamSearchOutput:
    """The n-best hypotheses of ``B`` queries, best first.

    Attributes:
        sequences: ``[B, R, L]`` int64 generated tokens (without the decoder start token),
            padded with ``pad_token_id`` after each hypothesis; ``L`` is the longest one.
        scores: ``[B, R]`` float32 length-penalized scores (``generate``'s
            ``sequences_scores``); ``-inf`` where ``valid`` is False.
        log_probs: ``[B, R]`` float32 sums of token log-probabilities.
        lengths: ``[B, R]`` int64 numbers of generated tokens, ``eos`` included.
        states: ``[B, R, S]`` int64 final constraint states (``S = 0`` without a constraint).
        valid: ``[B, R]`` bool; False where a query has fewer than ``R`` hypotheses.
        steps: one ``BeamStep`` per decoding step if ``record_steps``, else None.
    """

    sequences: torch.Tensor
    scores: torch.Tensor
    log_probs: torch.Tensor
    lengths: torch.Tensor
    states: torch.Tensor
    valid: torch.Tensor
    steps: list[BeamStep] | None = None


@torch.no_grad()
def beam_search(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    constraint: Constraint | None = None,
    *,
    attention_mask: torch.Tensor | None = None,
    num_beams: int = 10,
    num_return_sequences: int | None = None,
    max_new_tokens: int = 20,
    length_penalty: float = 1.0,
    early_stopping: EarlyStopping = False,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    decoder_start_token_id: int | None = None,
    record_steps: bool = False,
    topk_backend: Backend = "auto",
) -> BeamSearchOutput:
    """Decode the ``num_return_sequences`` best outputs of each query under ``constraint``.

    Args:
        model: a Hugging Face encoder-decoder (``T5ForConditionalGeneration``,
            ``BartForConditionalGeneration``, ``EncoderDecoderModel``, ...), in eval mode.
        input_ids: ``[B, L_src]`` int64 source tokens.
        constraint: what may be generated; None decodes unconstrained. Its state tensors live on
            the model's device.
        attention_mask: ``[B, L_src]`` int64/bool; defaults to all ones.
        num_beams: beams per query.
        num_return_sequences: ``R <= num_beams`` hypotheses per query; defaults to ``num_beams``.
        max_new_tokens: most tokens generated per hypothesis, ``eos`` included.
        length_penalty: exponent of the length in the score's denominator.
        early_stopping: ``generate``'s rule for when a query is done.
        eos_token_id, pad_token_id, decoder_start_token_id: default to the model's generation
            config (then its config).
        record_steps: also return every step's kept continuations (SEAL reads n-grams from them).
        topk_backend: backend of the constrained top-k step.
    Returns:
        ``BeamSearchOutput`` with ``[B, R, ...]`` tensors.
    Raises:
        ValueError: on inconsistent beam counts or a missing special token id.
    """
    num_return_sequences = num_beams if num_return_sequences is None else num_return_sequences
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"need 1 <= num_return_sequences <= num_beams, got {num_return_sequences} > {num_beams}")
    eos = _special_token(model, "eos_token_id", eos_token_id)
    pad = _special_token(model, "pad_token_id", pad_token_id, fallback=eos)
    start = _special_token(model, "decoder_start_token_id", decoder_start_token_id)
    device = input_ids.device
    n_queries = input_ids.shape[0]
    keep = 2 * num_beams
    n_rows = n_queries * num_beams
    width = constraint.state_width if constraint is not None else 0
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)

    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
    encoder_outputs["last_hidden_state"] = encoder_outputs.last_hidden_state.repeat_interleave(num_beams, dim=0)
    beam_attention_mask = attention_mask.repeat_interleave(num_beams, dim=0)

    # Running beams: [B, num_beams, ...]. Only beam 0 of each query starts alive.
    run_scores = torch.full((n_queries, num_beams), float("-inf"), device=device)
    run_scores[:, 0] = 0.0
    run_tokens = torch.full((n_queries, num_beams, max_new_tokens), pad, dtype=torch.int64, device=device)
    run_states = _initial_states(constraint, n_rows, device).view(n_queries, num_beams, width)
    # Finished hypotheses: [B, num_beams, ...], the best first.
    fin_scores = torch.full((n_queries, num_beams), float("-inf"), device=device)
    fin_log_probs = torch.full((n_queries, num_beams), float("-inf"), device=device)
    fin_lengths = torch.zeros((n_queries, num_beams), dtype=torch.int64, device=device)
    fin_tokens = torch.full((n_queries, num_beams, max_new_tokens), pad, dtype=torch.int64, device=device)
    fin_states = torch.full((n_queries, num_beams, width), EMPTY_SLOT, dtype=torch.int64, device=device)
    query_open = torch.ones(n_queries, dtype=torch.bool, device=device)
    steps: list[BeamStep] | None = [] if record_steps else None

    beam_offset = torch.arange(n_queries, device=device).unsqueeze(1) * num_beams
    top_slots = torch.arange(keep, device=device) < num_beams
    decoder_input = torch.full((n_rows, 1), start, dtype=torch.int64, device=device)
    cache: Cache | None = None
    for t in range(max_new_tokens):
        outputs = model(
            encoder_outputs=encoder_outputs,
            attention_mask=beam_attention_mask,
            decoder_input_ids=decoder_input,
            past_key_values=cache,
            use_cache=True,
            return_dict=True,
        )
        cache = outputs.past_key_values
        logits = outputs.logits[:, -1, :]
        states = run_states.reshape(n_rows, width)
        expansion = _expand(logits, states, run_scores.view(-1), keep, constraint, topk_backend)
        del outputs, logits  # the [N, V] logits are the largest tensor of a step

        # The `keep` best continuations of each query, out of num_beams * keep.
        total = run_scores.unsqueeze(2) + expansion.log_probs.view(n_queries, num_beams, keep)
        cand_scores, flat_index = total.view(n_queries, -1).topk(keep, dim=1)
        parent = beam_offset + flat_index // keep  # [B, keep] rows of the flattened beams
        slot = flat_index % keep
        cand_valid = cand_scores > float("-inf")
        cand_token = torch.where(cand_valid, expansion.tokens.view(-1, keep)[parent, slot], pad)
        cand_state = expansion.next_state.view(n_rows, keep, width)[parent, slot]
        cand_tokens = run_tokens.view(-1, max_new_tokens)[parent]
        cand_tokens[:, :, t] = cand_token
        cand_ended = cand_valid & (cand_token == eos)
        last_step = t + 1 == max_new_tokens
        stops = cand_ended | last_step
        if steps is not None:
            steps.append(BeamStep(cand_tokens[:, :, : t + 1].clone(), cand_scores, cand_state, cand_valid, cand_ended))

        # Finished: among the first num_beams, those that stop (with a constraint, only on eos).
        finishing = (cand_ended if constraint is not None else stops) & cand_valid & top_slots
        finishing &= query_open.unsqueeze(1)
        if early_stopping is True:
            finishing &= ~(fin_scores > float("-inf")).all(dim=1, keepdim=True)
        penalized = cand_scores / float(t + 1) ** length_penalty
        merged_scores = torch.cat([fin_scores, torch.where(finishing, penalized, float("-inf"))], dim=1)
        fin_scores, best = merged_scores.topk(num_beams, dim=1)
        fin_log_probs = _pick(torch.cat([fin_log_probs, cand_scores], dim=1), best)
        fin_lengths = _pick(torch.cat([fin_lengths, torch.full_like(cand_token, t + 1)], dim=1), best)
        fin_tokens = _pick(torch.cat([fin_tokens, cand_tokens], dim=1), best)
        fin_states = _pick(torch.cat([fin_states, cand_state], dim=1), best)
        # An empty slot may have gathered a running candidate's sum; it holds no hypothesis.
        fin_log_probs = torch.where(fin_scores > float("-inf"), fin_log_probs, float("-inf"))

        # Running: the best num_beams continuations that do not stop.
        run_scores, chosen = torch.where(stops, float("-inf"), cand_scores).topk(num_beams, dim=1)
        run_tokens = _pick(cand_tokens, chosen)
        run_states = _pick(cand_state, chosen)
        beam_rows = _pick(parent, chosen)

        query_open &= _can_improve(run_scores, fin_scores, t + 1, max_new_tokens, length_penalty, early_stopping)
        run_scores = torch.where(query_open.unsqueeze(1), run_scores, float("-inf"))
        all_full = early_stopping is True and bool((fin_scores > float("-inf")).all())
        if last_step or all_full or not bool((run_scores > float("-inf")).any()):
            break
        _reorder(cache, beam_rows.view(-1))
        decoder_input = run_tokens[:, :, t].reshape(-1, 1)

    return _outputs(fin_tokens, fin_scores, fin_log_probs, fin_lengths, fin_states, num_return_sequences, pad, steps)


def _expand(
    logits: torch.Tensor,
    states: torch.Tensor,
    scores: torch.Tensor,
    k: int,
    constraint: Constraint | None,
    backend: Backend,
) -> TopK:
    """Top-``k`` continuations of every live beam; dead beams (score ``-inf``) get empty slots.

    Args:
        logits: ``[N, V]`` next-token logits.
        states: ``[N, S]`` int64 constraint states.
        scores: ``[N]`` float32 running scores.
    Returns:
        ``TopK`` with ``[N, k]`` slots.
    """
    n_rows, vocab = logits.shape
    device = logits.device
    tokens = torch.full((n_rows, k), EMPTY_SLOT, dtype=torch.int64, device=device)
    log_probs = torch.full((n_rows, k), float("-inf"), device=device)
    next_state = torch.full((n_rows, k, states.shape[1]), EMPTY_SLOT, dtype=torch.int64, device=device)
    valid = torch.zeros((n_rows, k), dtype=torch.bool, device=device)
    if constraint is None:
        # Dead beams need no masking here: their -inf running score voids every continuation.
        filled = min(k, vocab)
        log_probs[:, :filled], tokens[:, :filled] = torch.log_softmax(logits.float(), dim=-1).topk(filled, dim=-1)
        valid[:, :filled] = True
    else:
        # Only live beams are expanded: at the first step that is one beam per query.
        live = torch.nonzero(scores > float("-inf")).squeeze(1)
        sub = constrained_topk(logits[live], constraint.candidates(states[live]), k, backend)
        tokens[live], log_probs[live], next_state[live], valid[live] = (
            sub.tokens,
            sub.log_probs,
            sub.next_state,
            sub.valid,
        )
    return TopK(tokens=tokens, log_probs=log_probs, next_state=next_state, valid=valid)


def _can_improve(
    run_scores: torch.Tensor,
    fin_scores: torch.Tensor,
    generated: int,
    max_new_tokens: int,
    length_penalty: float,
    early_stopping: EarlyStopping,
) -> torch.Tensor:
    """``generate``'s early-stop heuristic: can a running beam still beat the worst finished one?

    Args:
        run_scores: ``[B, num_beams]`` float32 running scores, best first.
        fin_scores: ``[B, num_beams]`` float32 finished scores (``-inf`` = empty slot).
        generated: tokens generated so far.
    Returns:
        ``[B]`` bool.
    """
    if early_stopping == "never" and length_penalty > 0.0:
        best_length = max_new_tokens
    else:
        best_length = generated
    best_possible = run_scores[:, 0] / float(best_length) ** length_penalty
    return best_possible > fin_scores.min(dim=1).values


def _reorder(cache: Cache, beam_rows: torch.Tensor) -> None:
    """Make row ``i`` of the decoder's KV cache the old row ``beam_rows[i]`` (``[B * num_beams]``).

    Beams never move between queries, so the cross-attention cache (identical for all beams of
    a query) is left alone.
    """
    if isinstance(cache, EncoderDecoderCache):
        cache.self_attention_cache.reorder_cache(beam_rows)
    else:
        cache.reorder_cache(beam_rows)


def _pick(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather along dim 1: ``[B, M, ...]`` by ``[B, K]`` int64 -> ``[B, K, ...]``."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def _initial_states(constraint: Constraint | None, n: int, device: torch.device) -> torch.Tensor:
    """``[n, S]`` int64 start states (``S = 0`` without a constraint)."""
    if constraint is None:
        return torch.empty((n, 0), dtype=torch.int64, device=device)
    return constraint.initial_state(n, device)


def _special_token(model: PreTrainedModel, name: str, given: int | None, fallback: int | None = None) -> int:
    """Resolve a special token id: argument, then generation config, then config, then fallback."""
    for value in (given, getattr(model.generation_config, name, None), getattr(model.config, name, None), fallback):
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    raise ValueError(f"{name} is not set on the model; pass {name}=...")


def _outputs(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    states: torch.Tensor,
    n_return: int,
    pad: int,
    steps: list[BeamStep] | None,
) -> BeamSearchOutput:
    """Keep the ``n_return`` best finished hypotheses and crop to the longest."""
    valid = scores[:, :n_return] > float("-inf")
    lengths = torch.where(valid, lengths[:, :n_return], 0)
    longest = int(lengths.max()) if lengths.numel() else 0
    sequences = tokens[:, :n_return, :longest]
    sequences = torch.where(valid.unsqueeze(2), sequences, pad)
    return BeamSearchOutput(
        sequences=sequences,
        scores=scores[:, :n_return],
        log_probs=log_probs[:, :n_return],
        lengths=lengths,
        states=torch.where(valid.unsqueeze(2), states[:, :n_return], EMPTY_SLOT),
        valid=valid,
        steps=steps,
    )
