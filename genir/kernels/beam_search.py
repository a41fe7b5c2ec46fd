"""Constrained beam search over any Hugging Face encoder-decoder.

One engine for every constraint (docid trie, FM-index) and for none: the source is encoded
once, the decoder runs one token per step on its KV cache for all ``B * num_beams`` beams at
once, and each beam carries its constraint state, gathered along with the chosen beams at
every step, so a prefix is never walked again. The next tokens of a step come from the fused
constrained top-k (``genir.kernels.topk``), scored under the full softmax.

One step, in order: ``decode_step`` (``[B * num_beams, V]`` logits), ``_expand`` (the
``2 * num_beams`` best tokens of every beam), ``_continuations`` (the ``2 * num_beams`` best of
each query, with prefixes and states gathered from their parent beams), ``_finishing`` and
``_add_finished`` (the finished hypotheses), ``_next_beams`` (the running beams), then
``_reorder`` (the KV cache follows the running beams' parents).

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

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.utils import ModelOutput

from genir.kernels.constraint import Constraint
from genir.kernels.topk import EMPTY_SLOT, Backend, TopK, constrained_topk, select_candidates

EarlyStopping = bool | Literal["never"]
Score = Literal["logprob", "logit"]
SCORES = ("logprob", "logit")


@dataclass(frozen=True)
class BeamStep:
    """The continuations a decoding step kept (recorded when ``record_steps=True``).

    At step ``t`` (0-based) each query keeps its ``K = 2 * num_beams`` best continuations; the
    first ``num_beams`` that did not end are the beams expanded at step ``t + 1``.

    Attributes:
        tokens: ``[B, K, t + 1]`` int64 generated prefixes (without the decoder start token).
        scores: ``[B, K]`` float32 sums of token log-probabilities (no length penalty), plus the
            candidates' biases where the constraint gives them (``Candidates.bias``); ``-inf``
            where ``valid`` is False.
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


class CandidateScorer(Protocol):
    """A decoder that scores a step's candidate tokens without the whole output layer (the dense start,
    :class:`genir.seq2seq.dense_start.DenseStartDecoder`): the model's own logits for those tokens."""

    def step_vectors(self, encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor,
                     decoder_input: torch.Tensor, cache: Cache | None) -> tuple[torch.Tensor, int, Cache]:
        """One step of ``N`` beams (``[N, S, H]`` states, ``[N, S]`` mask, ``[N, 1]`` int64 last tokens) ->
        ``[N, H]`` vectors, the step's position and the extended KV cache."""
        ...

    def candidate_logits(self, z: torch.Tensor, row_ptr: torch.Tensor, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """``[M]`` float32 raw logits of beam ``r``'s tokens ``tokens[row_ptr[r]:row_ptr[r + 1]]`` (``z`` ``[R, H]``)."""
        ...

    def fixed_logits(self, tokens: torch.Tensor, position: int) -> torch.Tensor | None:
        """``[M]`` float32: what :meth:`candidate_logits` gives ``tokens`` ``[M]`` at ``position`` whatever
        the beam's vector, or None where some token's logit depends on it."""
        ...


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
    score: Score = "logprob",
    scorer: CandidateScorer | None = None,
    step_beams: Sequence[int] = (),
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
        score: ``logprob`` adds each step's log-softmax (``generate``'s score); ``logit`` adds the
            raw logits, no per-step normalization (RIPOR's summed per-position dot products; see
            :mod:`genir.seq2seq.dense_start`). The early-stop rule assumes no step adds a positive
            score, which raw logits may: with ``logit``, use docids of one length (atomic, rq),
            whose hypotheses all finish at the same step, and ``length_penalty=0``.
        scorer: with a constraint and ``score="logit"``, the model's decoder scoring each beam's
            candidates alone (:class:`CandidateScorer`) instead of the whole vocabulary: a step then
            costs the rows of the tokens the constraint allows, not ``beams x V`` (rq docids' document
            step: the documents under the kept codes). The ranking and the scores are those of the
            full output layer (up to float32 rounding of the dot products' order). The decoder then runs
            on the live beams alone, and not at all at a step that ends every hypothesis where the
            scorer's logits do not depend on the beam (:meth:`CandidateScorer.fixed_logits`: eos, whose
            dense-start row is zero).
        step_beams: with a constraint, the running beams kept after step ``t < len(step_beams)`` are
            the best ``step_beams[t]``, and the next ones while the better ones hold fewer than
            ``num_beams`` complete sequences (:meth:`Constraint.completions`); ``num_beams`` after those
            steps (and where an entry is larger). A docid's code levels narrowed this way leave fewer
            prefixes for its later steps to expand (rq: the documents under the kept codes alone).
    Returns:
        ``BeamSearchOutput`` with ``[B, R, ...]`` tensors.
    Raises:
        ValueError: on inconsistent beam counts or a missing special token id.
    """
    num_return_sequences = num_beams if num_return_sequences is None else num_return_sequences
    if score not in SCORES:
        raise ValueError(f"score={score!r}: choose one of {', '.join(SCORES)}")
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"need 1 <= num_return_sequences <= num_beams, got {num_return_sequences} > {num_beams}")
    if scorer is not None and (constraint is None or score != "logit"):
        raise ValueError("a candidate scorer needs a constraint and score='logit' (log-probabilities need every logit)")
    if step_beams and (constraint is None or min(step_beams) < 1):
        raise ValueError(f"step_beams needs a constraint and entries >= 1, got {list(step_beams)}")
    eos = _special_token(model, "eos_token_id", eos_token_id)
    pad = _special_token(model, "pad_token_id", pad_token_id, fallback=eos)
    start = _special_token(model, "decoder_start_token_id", decoder_start_token_id)
    device = input_ids.device
    n_queries = input_ids.shape[0]
    width = constraint.state_width if constraint is not None else 0
    # The scorer's decoder runs on the live beams alone: the sources are encoded once per query
    # (row ``beam // num_beams``), and its KV cache holds the rows of ``live`` beams, in that order.
    encoder_outputs, beam_attention_mask = encode_sources(model, input_ids, attention_mask, 1 if scorer else num_beams)
    run = _start_beams(constraint, n_queries, num_beams, max_new_tokens, pad, device)
    fin = _no_hypotheses(n_queries, num_beams, max_new_tokens, width, pad, device)
    query_open = torch.ones(n_queries, dtype=torch.bool, device=device)
    steps: list[BeamStep] | None = [] if record_steps else None
    decoder_input = torch.full((n_queries * num_beams, 1), start, dtype=torch.int64, device=device)
    cache: Cache | None = None
    live = torch.nonzero(run.scores.view(-1) > float("-inf")).squeeze(1)
    for t in range(max_new_tokens):
        last_step = t + 1 == max_new_tokens
        if scorer is None:
            logits, cache = decode_step(model, encoder_outputs, beam_attention_mask, decoder_input, cache)
            expansion = _expand(
                logits, run.states.flatten(0, 1), run.scores.view(-1), 2 * num_beams, constraint, topk_backend, score
            )
            del logits  # the [N, V] logits are the largest tensor of a step
        else:
            expansion, cache = _expand_live(scorer, encoder_outputs.last_hidden_state, beam_attention_mask, decoder_input,
                                            cache, live, num_beams, t, run.states.flatten(0, 1), 2 * num_beams, constraint,
                                            eos, last_step)
        cand = _continuations(run, expansion, t, eos, pad)
        stops = cand.ended | last_step
        if steps is not None:
            steps.append(BeamStep(cand.tokens[:, :, : t + 1].clone(), cand.scores, cand.states, cand.valid, cand.ended))
        finishing = _finishing(cand, stops, constraint is not None, query_open, fin.scores, early_stopping)
        fin = _add_finished(fin, cand, finishing, t + 1, length_penalty)
        run, beam_rows = _next_beams(cand, stops, num_beams, step_beams[t] if t < len(step_beams) else num_beams, constraint)
        query_open &= _can_improve(run.scores, fin.scores, t + 1, max_new_tokens, length_penalty, early_stopping)
        run = replace(run, scores=torch.where(query_open.unsqueeze(1), run.scores, float("-inf")))
        if last_step or _search_done(run.scores, fin.scores, early_stopping):
            break
        if scorer is None:
            _reorder(cache, beam_rows.view(-1))
        else:
            live = _follow_live(cache, live, beam_rows.view(-1), run.scores.view(-1))
        decoder_input = run.tokens[:, :, t].reshape(-1, 1)

    return _outputs(fin, num_return_sequences, pad, steps)


@dataclass(frozen=True)
class _Beams:
    """The running beams of ``B`` queries, ``num_beams`` each (flattened row ``b * num_beams + i``).

    Attributes:
        scores: ``[B, num_beams]`` float32 sums of token log-probabilities; ``-inf`` = no beam.
        tokens: ``[B, num_beams, max_new_tokens]`` int64 generated tokens, ``pad`` after the
            current step.
        states: ``[B, num_beams, S]`` int64 constraint states.
    """

    scores: torch.Tensor
    tokens: torch.Tensor
    states: torch.Tensor


@dataclass(frozen=True)
class _Hypotheses:
    """The finished hypotheses of ``B`` queries, at most ``num_beams`` each, best first.

    Attributes:
        scores: ``[B, num_beams]`` float32 length-penalized scores; ``-inf`` = empty slot.
        log_probs: ``[B, num_beams]`` float32 sums of token log-probabilities; ``-inf`` = empty.
        lengths: ``[B, num_beams]`` int64 generated tokens, ``eos`` included.
        tokens: ``[B, num_beams, max_new_tokens]`` int64, ``pad`` after the hypothesis.
        states: ``[B, num_beams, S]`` int64 final constraint states.
    """

    scores: torch.Tensor
    log_probs: torch.Tensor
    lengths: torch.Tensor
    tokens: torch.Tensor
    states: torch.Tensor


@dataclass(frozen=True)
class _Continuations:
    """The ``K = 2 * num_beams`` best one-token continuations of each query at step ``t``.

    Attributes:
        scores: ``[B, K]`` float32 sums of token log-probabilities, best first; ``-inf`` = none.
        parent: ``[B, K]`` int64 flattened row (``b * num_beams + i``) of the extended beam.
        tokens: ``[B, K, max_new_tokens]`` int64 prefixes: the parent's tokens with the new
            token (``pad`` where not ``valid``) at column ``t``.
        states: ``[B, K, S]`` int64 constraint states after the new token.
        valid: ``[B, K]`` bool; whether the slot holds a continuation.
        ended: ``[B, K]`` bool; valid and the new token is ``eos``.
    """

    scores: torch.Tensor
    parent: torch.Tensor
    tokens: torch.Tensor
    states: torch.Tensor
    valid: torch.Tensor
    ended: torch.Tensor


def encode_sources(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, num_beams: int
) -> tuple[ModelOutput, torch.Tensor]:
    """Encode the sources once and repeat the result for every beam.

    Args:
        input_ids: ``[B, L_src]`` int64.
        attention_mask: ``[B, L_src]`` int64/bool, or None for all ones.
    Returns:
        The encoder outputs with ``last_hidden_state`` ``[B * num_beams, L_src, d]`` (the
        model's dtype), and the ``[B * num_beams, L_src]`` attention mask; beam ``i`` of query
        ``b`` is row ``b * num_beams + i``.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
    encoder_outputs["last_hidden_state"] = encoder_outputs.last_hidden_state.repeat_interleave(num_beams, dim=0)
    return encoder_outputs, attention_mask.repeat_interleave(num_beams, dim=0)


def _start_beams(
    constraint: Constraint | None, n_queries: int, num_beams: int, max_new_tokens: int, pad: int, device: torch.device
) -> _Beams:
    """The beams before the first step: only beam 0 of each query is alive (score 0, others
    ``-inf``), all at the constraint's start state, no token generated."""
    scores = torch.full((n_queries, num_beams), float("-inf"), device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((n_queries, num_beams, max_new_tokens), pad, dtype=torch.int64, device=device)
    states = _initial_states(constraint, n_queries * num_beams, device)
    return _Beams(scores=scores, tokens=tokens, states=states.view(n_queries, num_beams, states.shape[1]))


def _no_hypotheses(
    n_queries: int, num_beams: int, max_new_tokens: int, width: int, pad: int, device: torch.device
) -> _Hypotheses:
    """``num_beams`` empty finished slots per query (scores ``-inf``, tokens ``pad``, states ``-1``)."""
    return _Hypotheses(
        scores=torch.full((n_queries, num_beams), float("-inf"), device=device),
        log_probs=torch.full((n_queries, num_beams), float("-inf"), device=device),
        lengths=torch.zeros((n_queries, num_beams), dtype=torch.int64, device=device),
        tokens=torch.full((n_queries, num_beams, max_new_tokens), pad, dtype=torch.int64, device=device),
        states=torch.full((n_queries, num_beams, width), EMPTY_SLOT, dtype=torch.int64, device=device),
    )


def decode_step(
    model: PreTrainedModel,
    encoder_outputs: ModelOutput,
    attention_mask: torch.Tensor,
    decoder_input: torch.Tensor,
    cache: Cache | None,
) -> tuple[torch.Tensor, Cache]:
    """One decoder forward of one token per beam on the KV cache.

    Args:
        encoder_outputs, attention_mask: from :func:`encode_sources` (``[N, ...]`` with ``N = B * num_beams``).
        decoder_input: ``[N, 1]`` int64 last token of every beam.
        cache: the KV cache of the previous steps; None at the first step.
    Returns:
        ``[N, V]`` next-token logits (the model's dtype) and the cache extended by this step.
    """
    outputs = model(
        encoder_outputs=encoder_outputs,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input,
        use_cache=True,
        return_dict=True,
        **{cache_argument(type(model)): cache},
    )
    new_cache = getattr(outputs, "cache", None)
    return outputs.logits[:, -1, :], new_cache if new_cache is not None else outputs.past_key_values


@functools.cache
def cache_argument(model_class: type) -> str:
    """The name ``model_class.forward`` takes the KV cache by: ``cache`` in transformers 5.x (which
    warns on ``past_key_values``), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _expand(
    logits: torch.Tensor,
    states: torch.Tensor,
    scores: torch.Tensor,
    k: int,
    constraint: Constraint | None,
    backend: Backend,
    score: Score = "logprob",
) -> TopK:
    """Score one step: the top-``k`` continuations of every live beam under the full softmax;
    dead beams (score ``-inf``) get empty slots. With ``score="logit"`` the slots' ``log_probs``
    hold the raw logits instead (the softmax's log-normalizer added back: same order).

    Args:
        logits: ``[N, V]`` next-token logits (float32, bfloat16 or float16), ``N = B * num_beams``.
        states: ``[N, S]`` int64 constraint states.
        scores: ``[N]`` float32 running scores.
        k: slots per beam (``2 * num_beams``).
        constraint: None expands every token (``log_softmax`` + top-k); otherwise
            :func:`constrained_topk` over the constraint's candidates.
    Returns:
        ``TopK`` with ``[N, k]`` slots: ``log_probs`` float32, ``tokens`` int64 (``-1`` when
        empty), ``next_state`` ``[N, k, S]`` int64 (``-1`` when empty), ``valid`` bool.
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
    if score == "logit":
        log_probs = log_probs + torch.logsumexp(logits.float(), dim=-1, keepdim=True)  # [N, k]; -inf stays
    return TopK(tokens=tokens, log_probs=log_probs, next_state=next_state, valid=valid)


def _expand_live(
    scorer: CandidateScorer,
    sources: torch.Tensor,
    source_mask: torch.Tensor,
    decoder_input: torch.Tensor,
    cache: Cache | None,
    live: torch.Tensor,
    num_beams: int,
    t: int,
    states: torch.Tensor,
    k: int,
    constraint: Constraint,
    eos: int,
    last_step: bool,
) -> tuple[TopK, Cache | None]:
    """:func:`_expand` under ``score="logit"`` with the candidates scored alone: the top-``k`` allowed
    tokens of every live beam by raw logit (the ranking of :func:`constrained_topk`), whose slots'
    ``log_probs`` hold those logits (plus a candidate's bias); dead beams get empty slots.

    The decoder steps the ``live`` beams alone, and not at all when this step ends every hypothesis
    (every candidate is eos, or it is the last step) and the scorer gives the candidates' logits
    without the beams' vectors (:meth:`CandidateScorer.fixed_logits`): nothing reads the state it
    would have computed.

    Args:
        sources, source_mask: ``[B, S, H]`` and ``[B, S]`` from :func:`encode_sources` (one row per query).
        decoder_input: ``[N, 1]`` int64 every beam's last token, ``N = B * num_beams``.
        cache: the KV cache of the ``live`` beams' rows, in ``live`` order (None at the first step).
        live: ``[n]`` int64 flattened rows of the live beams, ascending.
        t: the step (0-based), the position of the tokens it scores.
        states: ``[N, S]`` int64 constraint states.
        k: slots per beam (``2 * num_beams``).
    Returns:
        ``TopK`` with ``[N, k]`` slots, and the cache extended by this step (as it was where the step was skipped).
    """
    n_rows, device = states.shape[0], states.device
    tokens = torch.full((n_rows, k), EMPTY_SLOT, dtype=torch.int64, device=device)
    log_probs = torch.full((n_rows, k), float("-inf"), device=device)
    next_state = torch.full((n_rows, k, states.shape[1]), EMPTY_SLOT, dtype=torch.int64, device=device)
    valid = torch.zeros((n_rows, k), dtype=torch.bool, device=device)
    candidates = constraint.candidates(states[live])
    ends = last_step or bool((candidates.tokens == eos).all())
    logit = scorer.fixed_logits(candidates.tokens, t) if ends else None
    if logit is None:
        query = live // num_beams  # [n] each live beam's query
        vectors, _, cache = scorer.step_vectors(sources[query], source_mask[query], decoder_input[live], cache)
        logit = scorer.candidate_logits(vectors, candidates.row_ptr, candidates.tokens, t)  # [M]
    chosen = select_candidates(logit, candidates, k)
    tokens[live], next_state[live], valid[live] = chosen.tokens, chosen.next_state, chosen.valid
    log_probs[live] = torch.where(chosen.valid, chosen.logit + chosen.bias, float("-inf"))
    return TopK(tokens=tokens, log_probs=log_probs, next_state=next_state, valid=valid), cache


def _follow_live(cache: Cache, live: torch.Tensor, parents: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The next step's live beams (``scores`` ``[N]`` above ``-inf``), with the KV cache, which holds the
    rows of ``live`` (``[n]``, in that order), reordered to hold theirs: each the row of its parent
    (``parents`` ``[N]`` flattened rows), self- and cross-attention alike. Returns their ``[n']`` int64 rows."""
    following = torch.nonzero(scores > float("-inf")).squeeze(1)  # [n']
    row_of = torch.full_like(parents, -1)
    row_of[live] = torch.arange(live.shape[0], device=live.device)  # flattened beam -> its cache row
    cache.reorder_cache(row_of[parents[following]])  # a running beam's parent was live
    return following


def _continuations(run: _Beams, expansion: TopK, t: int, eos: int, pad: int) -> _Continuations:
    """The ``K`` best continuations of each query out of its ``num_beams * K`` (``generate``'s
    ``2 * num_beams`` rule), with their prefixes and states gathered from the parent beams.

    Args:
        run: the running beams (``[B, num_beams, ...]``).
        expansion: ``[B * num_beams, K]`` slots from :func:`_expand`.
        t: the step (0-based); the new token goes to column ``t``.
    Returns:
        ``_Continuations`` with ``[B, K, ...]`` tensors.
    """
    n_queries, num_beams = run.scores.shape
    keep = expansion.tokens.shape[1]
    total = run.scores.unsqueeze(2) + expansion.log_probs.view(n_queries, num_beams, keep)
    scores, flat_index = total.view(n_queries, -1).topk(keep, dim=1)
    beam_offset = torch.arange(n_queries, device=scores.device).unsqueeze(1) * num_beams
    parent = beam_offset + flat_index // keep
    slot = flat_index % keep
    valid = scores > float("-inf")
    token = torch.where(valid, expansion.tokens[parent, slot], pad)
    tokens = run.tokens.flatten(0, 1)[parent]
    tokens[:, :, t] = token
    return _Continuations(
        scores=scores,
        parent=parent,
        tokens=tokens,
        states=expansion.next_state[parent, slot],
        valid=valid,
        ended=valid & (token == eos),
    )


def _finishing(
    cand: _Continuations,
    stops: torch.Tensor,
    constrained: bool,
    query_open: torch.Tensor,
    fin_scores: torch.Tensor,
    early_stopping: EarlyStopping,
) -> torch.Tensor:
    """Which continuations become finished hypotheses: those among the first ``num_beams`` of
    an open query that stop (with a constraint, only those that end with ``eos``); with
    ``early_stopping=True``, none of a query whose finished slots are all full.

    Args:
        cand: ``[B, K]`` continuations, ``K = 2 * num_beams``.
        stops: ``[B, K]`` bool; ended, or the last step.
        query_open: ``[B]`` bool.
        fin_scores: ``[B, num_beams]`` float32 finished scores before this step.
    Returns:
        ``[B, K]`` bool.
    """
    num_beams = fin_scores.shape[1]
    top_slots = torch.arange(cand.scores.shape[1], device=cand.scores.device) < num_beams
    finishing = (cand.ended if constrained else stops) & cand.valid & top_slots
    finishing &= query_open.unsqueeze(1)
    if early_stopping is True:
        finishing &= ~(fin_scores > float("-inf")).all(dim=1, keepdim=True)
    return finishing


def _add_finished(
    fin: _Hypotheses, cand: _Continuations, finishing: torch.Tensor, generated: int, length_penalty: float
) -> _Hypotheses:
    """Merge the finishing continuations, scored ``sum_logprob / generated ** length_penalty``,
    into the finished hypotheses and keep the best ``num_beams`` of each query.

    Args:
        fin: ``[B, num_beams, ...]`` finished hypotheses.
        cand: ``[B, K, ...]`` continuations.
        finishing: ``[B, K]`` bool from :func:`_finishing`.
        generated: tokens generated so far (``t + 1``), ``eos`` included.
    Returns:
        ``_Hypotheses`` with ``[B, num_beams, ...]`` tensors, best first.
    """
    penalized = cand.scores / float(generated) ** length_penalty
    merged_scores = torch.cat([fin.scores, torch.where(finishing, penalized, float("-inf"))], dim=1)
    scores, best = merged_scores.topk(fin.scores.shape[1], dim=1)
    log_probs = _pick(torch.cat([fin.log_probs, cand.scores], dim=1), best)
    # An empty slot may have gathered a running candidate's sum; it holds no hypothesis.
    return _Hypotheses(
        scores=scores,
        log_probs=torch.where(scores > float("-inf"), log_probs, float("-inf")),
        lengths=_pick(torch.cat([fin.lengths, torch.full_like(cand.parent, generated)], dim=1), best),
        tokens=_pick(torch.cat([fin.tokens, cand.tokens], dim=1), best),
        states=_pick(torch.cat([fin.states, cand.states], dim=1), best),
    )


def _next_beams(
    cand: _Continuations, stops: torch.Tensor, num_beams: int, kept: int, constraint: Constraint | None
) -> tuple[_Beams, torch.Tensor]:
    """The next running beams: the best ``num_beams`` continuations of each query that do not stop,
    narrowed to the best ``kept`` (``kept < num_beams``) and those after them until the beams before
    hold ``num_beams`` complete sequences (:meth:`Constraint.completions`), so that narrowing never
    leaves fewer hypotheses than beams.

    Args:
        cand: ``[B, K, ...]`` continuations.
        stops: ``[B, K]`` bool.
    Returns:
        ``_Beams`` with ``[B, num_beams, ...]`` tensors (narrowed slots dead), and ``[B, num_beams]``
        int64 the flattened rows of their parents (to reorder the KV cache by).
    """
    scores, chosen = torch.where(stops, float("-inf"), cand.scores).topk(num_beams, dim=1)
    states = _pick(cand.states, chosen)
    if kept < num_beams:
        held = constraint.completions(states.flatten(0, 1)).view(scores.shape)  # [B, num_beams]
        held = torch.where(scores > float("-inf"), held, 0)
        before = held.cumsum(1) - held  # [B, num_beams] sequences under the better beams
        beyond = torch.arange(num_beams, device=scores.device) >= kept
        scores = scores.masked_fill(beyond & (before >= num_beams), float("-inf"))
    beams = _Beams(scores=scores, tokens=_pick(cand.tokens, chosen), states=states)
    return beams, _pick(cand.parent, chosen)


def _search_done(run_scores: torch.Tensor, fin_scores: torch.Tensor, early_stopping: EarlyStopping) -> bool:
    """Whether no query needs another step: no running beam is left, or, with
    ``early_stopping=True``, every finished slot of every query is full.

    Args:
        run_scores: ``[B, num_beams]`` float32 running scores (``-inf`` = no beam).
        fin_scores: ``[B, num_beams]`` float32 finished scores (``-inf`` = empty slot).
    """
    all_full = early_stopping is True and bool((fin_scores > float("-inf")).all())
    return all_full or not bool((run_scores > float("-inf")).any())


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


def _outputs(fin: _Hypotheses, n_return: int, pad: int, steps: list[BeamStep] | None) -> BeamSearchOutput:
    """Keep the ``n_return`` best finished hypotheses, crop to the longest and blank empty slots
    (tokens ``pad``, length 0, states ``-1``)."""
    valid = fin.scores[:, :n_return] > float("-inf")
    lengths = torch.where(valid, fin.lengths[:, :n_return], 0)
    longest = int(lengths.max()) if lengths.numel() else 0
    sequences = fin.tokens[:, :n_return, :longest]
    sequences = torch.where(valid.unsqueeze(2), sequences, pad)
    return BeamSearchOutput(
        sequences=sequences,
        scores=fin.scores[:, :n_return],
        log_probs=fin.log_probs[:, :n_return],
        lengths=lengths,
        states=torch.where(valid.unsqueeze(2), fin.states[:, :n_return], EMPTY_SLOT),
        valid=valid,
        steps=steps,
    )
