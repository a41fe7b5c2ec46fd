"""Exhaustive docid scoring: every docid of a corpus, teacher-forced, for each query.

Beam search keeps ``num_beams`` prefixes per step and may drop a docid whose prefix scores low but
whose full sequence would have ranked high. Scoring every docid with the same model and the same
score (:func:`genir.kernels.beam_search.beam_search`'s ``score``) gives the ranking beam search
approximates; a benchmark compares the two to report what a beam width loses.

A docid's score under ``logit`` is the sum of its tokens' raw logits; under ``logprob`` the sum of
their log-softmax values (``generate``'s score before the length penalty). Both include eos.
Cost: one teacher-forced decoder pass per (query, docid), in chunks of ``chunk`` docids. The docids
are chunked shortest first and each chunk is cut to its longest docid: the decoder is causal and a
score sums only real positions, so the padding a chunk no longer holds changed no score, and the
output layer (``[rows, L, V]``, most of the cost) is not computed for it (SE-DSI's descriptions of
up to 32 tokens average 30, of up to 64, 36).

The same function scores a different candidate list per query (``sequences`` ``[B, N, L]``).
SE-DSI's ``rescore`` search scores its per-query candidates with
:func:`genir.kernels.candidate_scores.candidate_scores` instead, which shares each query's first
step and cross-attention among its candidates and stops at what a top-k needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from genir.kernels.beam_search import SCORES, Score, encode_sources


def pad_docids(sequences: Sequence[Sequence[int]], pad_token_id: int) -> torch.Tensor:
    """The docids ``sequences`` (eos included) right-padded with ``pad_token_id`` to the longest: ``[N, L]``
    int64, as :func:`exhaustive_scores` reads them."""
    width = max(len(s) for s in sequences)
    return torch.tensor([[*s, *[pad_token_id] * (width - len(s))] for s in sequences], dtype=torch.int64)


@torch.inference_mode()
def exhaustive_scores(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    sequences: torch.Tensor,
    *,
    decoder_start_token_id: int,
    pad_token_id: int,
    score: Score = "logit",
    chunk: int = 4096,
    encoded: tuple[ModelOutput, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Score every docid for every query.

    Args:
        model: a Hugging Face encoder-decoder in eval mode.
        input_ids, attention_mask: ``[B, L_src]`` int64 queries.
        sequences: ``[N, L]`` int64 docids (eos included), right-padded with ``pad_token_id``, the same
            for every query; or ``[B, N, L]``, query ``b`` scoring ``sequences[b]``.
        decoder_start_token_id, pad_token_id: the decoder's first input and the padding id.
        score: ``logit`` (summed raw logits) or ``logprob`` (summed log-softmax).
        chunk: docids per decoder call (shortest first, each call cut to its longest).
        encoded: the queries' :func:`~genir.kernels.beam_search.encode_sources` ``(outputs, mask)`` with
            one beam, when the caller already has them (else they are computed here).
    Returns:
        ``[B, N]`` float32 scores.
    Raises:
        ValueError: an unknown ``score``.
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r}: choose one of {', '.join(SCORES)}")
    device = input_ids.device
    shared = sequences.dim() == 2
    sequences = sequences.to(device)
    n_docs = sequences.shape[-2]
    start = torch.full((n_docs, 1), decoder_start_token_id, dtype=torch.int64, device=device)
    encoded, mask = encoded or encode_sources(model, input_ids, attention_mask, 1)
    states = encoded.last_hidden_state  # [B, L_src, H]
    out = torch.empty(input_ids.shape[0], n_docs, dtype=torch.float32, device=device)
    for b in range(input_ids.shape[0]):
        if b == 0 or not shared:
            targets = sequences if shared else sequences[b]  # [N, L]
            real = targets != pad_token_id  # [N, L]
            lengths = real.sum(1)  # [N]
            order = lengths.argsort()  # [N] shortest first, so that a chunk's docids pad little
            decoder_inputs = torch.cat([start, targets[:, :-1]], dim=1)  # [N, L]
        for lo in range(0, n_docs, chunk):
            rows = order[lo:lo + chunk]  # [R]
            width = int(lengths[rows[-1]])  # the chunk's longest docid: its columns past that are all padding
            encoder_outputs = type(encoded)(last_hidden_state=states[b:b + 1].expand(len(rows), -1, -1))
            logits = model(encoder_outputs=encoder_outputs, attention_mask=mask[b:b + 1].expand(len(rows), -1),
                           decoder_input_ids=decoder_inputs[rows, :width], use_cache=False, return_dict=True).logits.float()
            if score == "logprob":
                logits = torch.log_softmax(logits, dim=-1)  # [R, width, V]
            picked = logits.gather(2, targets[rows, :width].clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [R, width]
            out[b, rows] = torch.where(real[rows, :width], picked, 0.0).sum(1)
    return out
