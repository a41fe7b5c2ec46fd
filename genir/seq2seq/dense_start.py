"""The dense start: a docid decoder whose output at every position begins as the dense query vector.

A :class:`DenseStartDecoder` is a BERT decoder (bert2bert) whose LM head reads, at position ``t``,

    z_t = q + R(h_t)        logits_t = exp(log_scale) * z_t @ W.T + b

* ``q`` ``[B, H]``: the L2-normalized mean of the encoder's states over the source's tokens, i.e.
  exactly the query embedding of the dense baseline (:class:`genir.encoding.encoder.TextEncoder`
  pools the same model the same way);
* ``h_t`` ``[B, T, H]``: the decoder's hidden state; ``R`` a linear map whose weight and bias start
  at zero, so before any training ``z_t = q`` and training can only add to the dense retriever;
* ``W`` ``[V, H]``: the docid rows, vectors in the encoder's embedding space given as they are
  (atomic: the document embeddings; rq: each level's codebook and each document's residual, see
  :mod:`genir.dsi.rq_docids`); ``b`` ``[V]`` starts at zero; ``log_scale`` is learned (start
  ``log 20``, a contrastive temperature: one scale for every position, so it never changes a ranking
  by summed logits).

Before training, an atomic docid's logit is ``20 * q . d``: the dense ranking; the summed logits of
an rq docid are ``20 * q . (c_1 + ... + c_L + r) = 20 * q . d``.

Positions (``config.genir_position_starts = [s_0, ..., s_{P-1}]``, optional): position ``t < P``
may emit only tokens ``[s_t, s_{t+1})`` (the last one up to the vocabulary's end, so new atomic
documents extend it), positions ``t >= P`` only eos. Other tokens get the dtype's lowest logit, so
a softmax (training loss, log-prob beam scores) is over one position's tokens.

The config carries ``genir_dense_start = True``; :func:`genir.seq2seq.model_io.load_seq2seq`
rebuilds this class from it (no code is loaded from an index).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import BertConfig, PreTrainedModel
from transformers.cache_utils import Cache

from genir.errors import GenirError
from genir.kernels.table_products import candidate_dots, table_product
from genir.seq2seq.query_head import PooledQueryDecoder, pooled_query
from genir.seq2seq.vocab import EOS

DENSE_START_KEY = "genir_dense_start"
POSITIONS_KEY = "genir_position_starts"
INITIAL_SCALE = 20.0


class DenseStartDecoder(PooledQueryDecoder):
    """A BERT decoder whose head is the dense start (module docstring)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        config.update({DENSE_START_KEY: True})
        # The BERT head's transform (dense + activation + LayerNorm) would move the output out of the
        # encoder's space: the residual R takes its place.
        self.cls.predictions.transform = nn.Identity()
        self.residual = nn.Linear(config.hidden_size, config.hidden_size)
        self.log_scale = nn.Parameter(torch.tensor(0.0))
        self._allowed: torch.Tensor | None = None  # [P + 1, V] bool, rebuilt when V changes
        self.start_dense()

    def start_dense(self) -> None:
        """Zero the residual and set the scale to its start. Call it after anything that initializes
        weights (an ``EncoderDecoderModel`` built around this decoder re-initializes its linear layers)."""
        with torch.no_grad():
            for name, value in self.start_parameters().items():
                self.get_parameter(name).copy_(value)

    def start_parameters(self) -> dict[str, torch.Tensor]:
        """The values :meth:`start_dense` gives, by parameter name within this decoder: with them (e.g.
        through :func:`torch.func.functional_call`) the model is its dense start, ``z_t = q``, whatever
        it was trained to (the docid rows and the encoder are as they are)."""
        return {"residual.weight": torch.zeros_like(self.residual.weight), "residual.bias": torch.zeros_like(self.residual.bias),
                "log_scale": torch.full_like(self.log_scale, math.log(INITIAL_SCALE))}

    def head_logits(self, hidden: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor | None, past: int) -> torch.Tensor:
        """Position-masked logits ``[B, T, V]`` of the decoder's ``hidden`` ``[B, T, H]`` at positions ``past, ...``."""
        z = self.vectors(hidden, encoder_hidden_states, encoder_attention_mask)  # [B, T, H]
        span = self._one_step_span(z.shape[1], past)
        if span is None:
            return self._mask_positions(self._logits(z, slice(None)), past)  # [B, T, V]
        # One decoding step at a known position: only its own tokens' rows are multiplied (a code
        # level's few rows instead of every document's), the rest get the lowest logit as the mask gives.
        part = self._logits(z, span)  # [B, 1, span]
        logits = part.new_full((*part.shape[:2], self.cls.predictions.decoder.weight.shape[0]), torch.finfo(part.dtype).min)
        logits[..., span] = part
        return logits

    def _logits(self, z: torch.Tensor, rows: slice) -> torch.Tensor:
        """``exp(log_scale) * z @ W[rows].T + b[rows]``: ``z`` ``[B, T, H]`` -> ``[B, T, len(rows)]`` (float32
        products whatever the table's dtype, :func:`~genir.kernels.table_products.table_product`)."""
        head = self.cls.predictions.decoder
        logits = self.log_scale.exp() * table_product(z, head.weight[rows])
        return logits + head.bias[rows] if head.bias is not None else logits

    def step_vectors(self, encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor,
                     decoder_input: torch.Tensor, cache: Cache | None) -> tuple[torch.Tensor, int, Cache]:
        """One decoding step without the output layer, for :meth:`candidate_logits`.

        Args:
            encoder_hidden_states: ``[N, S, H]`` the encoder's states, one row per beam.
            encoder_attention_mask: ``[N, S]``.
            decoder_input: ``[N, 1]`` int64 each beam's last token.
            cache: the KV cache of the steps before (None at the first).
        Returns:
            ``z`` ``[N, H]`` (the model's dtype), the step's position (tokens decoded before it) and the extended cache.
        """
        past = cache.get_seq_length() if cache is not None else 0
        outputs = self.decode(decoder_input, encoder_hidden_states, encoder_attention_mask, cache)
        z = self.vectors(outputs.last_hidden_state[:, -1:], encoder_hidden_states, encoder_attention_mask)[:, 0]
        return z, past, outputs.cache

    def candidate_logits(self, z: torch.Tensor, row_ptr: torch.Tensor, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """The logits :meth:`head_logits` gives the listed tokens alone, at one decoding step.

        Args:
            z: ``[R, H]`` from :meth:`step_vectors`, one per beam that has candidates.
            row_ptr: ``[R + 1]`` int64 CSR pointers into ``tokens``.
            tokens: ``[M]`` int64 the tokens scored for each beam.
            position: the step's position (tokens decoded before it).
        Returns:
            ``[M]`` float32: ``exp(log_scale) * z_r . W[t] + b[t]``, the lowest float32 for a token the
            position may not emit (as the position mask gives it). Each table row a beam needs is read
            once, in order (:func:`~genir.kernels.table_products.candidate_dots`), so a step costs the
            candidates' rows, not ``R`` times the vocabulary.
        """
        return self._candidate_logits(candidate_dots(z, self.cls.predictions.decoder.weight, row_ptr, tokens), tokens, position)

    def fixed_logits(self, tokens: torch.Tensor, position: int) -> torch.Tensor | None:
        """What :meth:`candidate_logits` gives ``tokens`` ``[M]`` int64 at ``position`` whatever the beams'
        ``z``, where every token's row is zero (eos: its row starts at zero and no gradient reaches it, since
        a docid's last position allows eos alone), so that each logit is its bias; None where a row is not
        zero (then the beam's vector matters). ``[M]`` float32, equal to :meth:`candidate_logits`' (``s * 0 + b``)."""
        if self.cls.predictions.decoder.weight[tokens.unique()].any():
            return None
        return self._candidate_logits(torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device), tokens, position)

    def _candidate_logits(self, dots: torch.Tensor, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """``[M]`` float32 logits of ``tokens`` ``[M]`` from their dots with the beams' ``z`` ``[M]`` float32:
        scaled, plus the bias, the lowest float32 where ``position`` may not emit the token."""
        head = self.cls.predictions.decoder
        logits = self.log_scale.exp().float() * dots
        if head.bias is not None:
            logits = logits + head.bias[tokens].float()
        span = self._one_step_span(1, position)
        if span is not None:
            outside = (tokens < span.start) | (tokens >= span.stop)
            logits = logits.masked_fill(outside, torch.finfo(torch.float32).min)
        return logits

    def _one_step_span(self, steps: int, past: int) -> slice | None:
        """The tokens a single step at position ``past`` may emit, as a slice; None without positions or for several steps."""
        starts = getattr(self.config, POSITIONS_KEY, None)
        if not starts or steps != 1:
            return None
        if past >= len(starts):
            return slice(EOS, EOS + 1)
        end = starts[past + 1] if past + 1 < len(starts) else self.cls.predictions.decoder.weight.shape[0]
        return slice(starts[past], end)

    def vectors(self, hidden: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None) -> torch.Tensor:
        """``z`` ``[B, T, H]``: the dense query vector plus the residual of the decoder's ``hidden`` ``[B, T, H]``.

        Position ``t``'s logits are ``exp(log_scale) * z[:, t] @ W.T + b`` (before the position mask).
        """
        query = pooled_query(encoder_hidden_states, encoder_attention_mask)  # [B, H]
        return query.unsqueeze(1) + self.residual(hidden)

    def _mask_positions(self, logits: torch.Tensor, past: int) -> torch.Tensor:
        """``logits`` ``[B, T, V]`` with every token its position may not emit at the lowest value."""
        starts = getattr(self.config, POSITIONS_KEY, None)
        if not starts:
            return logits
        vocab = logits.shape[-1]
        if self._allowed is None or self._allowed.shape[1] != vocab or self._allowed.device != logits.device:
            self._allowed = position_table(starts, vocab).to(logits.device)
        rows = (torch.arange(logits.shape[1], device=logits.device) + past).clamp(max=len(starts))  # [T]
        return logits.masked_fill(~self._allowed[rows], torch.finfo(logits.dtype).min)


def position_table(starts: list[int], vocab: int) -> torch.Tensor:
    """``[P + 1, vocab]`` bool: row ``t`` the tokens position ``t`` may emit, row ``P`` eos alone."""
    table = torch.zeros(len(starts) + 1, vocab, dtype=torch.bool)
    bounds = list(starts) + [vocab]
    for t in range(len(starts)):
        table[t, bounds[t]:bounds[t + 1]] = True
    table[len(starts), EOS] = True
    return table


def is_dense_start(model: PreTrainedModel) -> bool:
    """Whether ``model``'s decoder is a :class:`DenseStartDecoder`."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return isinstance(decoder, DenseStartDecoder)


def set_dense_rows(model: PreTrainedModel, vectors: torch.Tensor, rows: slice | torch.Tensor = slice(None)) -> None:
    """Set the LM head's ``rows`` of a dense-start model to ``vectors`` ``[n, H]`` exactly (no rescaling).

    Raises:
        GenirError: ``vectors`` is not as wide as the encoder's hidden size.
    """
    head = model.get_output_embeddings()
    if vectors.shape[1] != head.weight.shape[1]:
        raise GenirError(f"dense-start rows must be {head.weight.shape[1]}-dimensional (the encoder's width), "
                         f"got {vectors.shape[1]}")
    with torch.no_grad():
        head.weight[rows] = vectors.to(head.weight.dtype)
