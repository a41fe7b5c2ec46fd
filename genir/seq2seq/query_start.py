"""The query start: a text decoder that writes the words its query calls for before any seq2seq step.

The token-space recipe (:mod:`genir.seq2seq.token_space`) ties the decoder's output rows to the
encoder's word embeddings ``E`` ``[V, H]``; the query start does for its tokens what the dense start
(:mod:`genir.seq2seq.dense_start`) does for docids. A :class:`QueryStartDecoder` reads, at position ``t``,

    z_t = M q + T(h_t)        logits_t = z_t @ E.T + b

* ``q`` ``[B, H]``: the pooled query vector (:func:`genir.seq2seq.query_head.pooled_query`);
* ``M`` ``[H, H]`` (``query_map``): maps it into the word-embedding space;
* ``T`` the BERT head's transform (dense, activation, LayerNorm) of the decoder's hidden state
  ``h_t``; its LayerNorm starts at zero weight and bias, so before the seq2seq training ``T(h) = 0``
  and training only adds the decoder's word order and context to what ``M q`` says;
* ``b`` ``[V]`` the head's bias.

Before the first step, :func:`fit_query_start` fits ``M`` and ``b`` on the training pairs as a
bag-of-words model: softmax regression from the pooled source ``q`` to each token of its target
(order ignored). The untrained model then gives every step the same distribution, the target words
the query predicts, and the FM-index or docid trie makes sequences of them; the seq2seq training
adds order. The fit reads the frozen encoder's states the data module already holds, so it costs
no encoder pass: ``Vocab x H`` multiply-adds per pair and epoch (39 s for SEAL's 29,818 SciFact
pairs on 2 idle CPU cores, 94 s while another build shared them).

The config carries ``genir_query_start = True``; :func:`genir.seq2seq.model_io.load_seq2seq`
rebuilds this class from it (no code is loaded from an index). Its token table stays tied.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, PreTrainedModel

from genir.seq2seq.query_head import PooledQueryDecoder, pooled_query
from genir.seq2seq.vocab import FIRST_TOKEN

QUERY_START_KEY = "genir_query_start"


class QueryStartDecoder(PooledQueryDecoder):
    """A BERT decoder whose tied head reads the query through ``query_map`` (module docstring)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        config.update({QUERY_START_KEY: True})
        self.query_map = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self._rows: torch.Tensor | None = None  # [R] int64: restrict_output's tokens
        # (key, [R] rows, [R, H] weight rows, [R] bias) on the head's device
        self._gathered: tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.start_query()

    def restrict_output(self, rows: torch.Tensor | None) -> None:
        """Compute logits for the tokens ``rows`` ``[R]`` int64 only (for search: the tokens a corpus
        holds, and eos); every other token gets the dtype's lowest logit, so a softmax is over ``rows``.
        SciFact holds 14,751 of MiniLM's 30,524 tokens: half the output layer's work at each step.
        ``None`` computes every token (training does)."""
        self._rows, self._gathered = rows, None

    def start_query(self) -> None:
        """Zero ``M`` and the transform's LayerNorm (so ``z = 0``): call it after anything that
        initializes weights, then :func:`fit_query_start`."""
        with torch.no_grad():
            self.query_map.weight.zero_()
            self.cls.predictions.transform.LayerNorm.weight.zero_()
            self.cls.predictions.transform.LayerNorm.bias.zero_()

    def head_logits(self, hidden: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor | None, past: int) -> torch.Tensor:
        """``(M q + T(h)) @ E.T + b``: ``hidden`` ``[B, T, H]`` -> logits ``[B, T, V]``."""
        predictions = self.cls.predictions
        z = self._head_input(hidden, encoder_hidden_states, encoder_attention_mask)  # [B, T, H]
        if self._rows is None:
            return predictions.decoder(z)
        rows, weight, bias = self._restricted_rows()
        part = nn.functional.linear(z, weight, bias)  # [B, T, R]
        logits = part.new_full((*part.shape[:2], predictions.decoder.weight.shape[0]), torch.finfo(part.dtype).min)
        logits[..., rows] = part
        return logits

    def linear_head(self) -> QueryStartDecoder | None:
        """This decoder as a :class:`~genir.kernels.candidate_scores.LinearHead` (its logits are
        ``z @ E.T + b``), or None while :meth:`restrict_output` holds rows (its logits are then not that layer)."""
        return self if self._rows is None else None

    def head_inputs(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor | None, cache: Any) -> tuple[torch.Tensor, Any]:
        """The decoder's forward up to the output layer: ``input_ids`` ``[B, T]`` int64 after ``cache``
        (None: from the start), the encoder's states ``[B, S, H]`` and mask ``[B, S]`` -> ``z = M q + T(h)``
        ``[B, T, H]`` (the model's dtype; :meth:`head_logits` is ``z @ E.T + b``) and the extended cache."""
        outputs = self.decode(input_ids, encoder_hidden_states, encoder_attention_mask, cache)
        return self._head_input(outputs.last_hidden_state, encoder_hidden_states, encoder_attention_mask), outputs.cache

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head's weight ``E`` ``[V, H]`` (the tied token table) and bias ``b`` ``[V]``."""
        head = self.cls.predictions.decoder
        return head.weight.detach(), None if head.bias is None else head.bias.detach()

    def _head_input(self, hidden: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor | None) -> torch.Tensor:
        """``z = M q + T(h)`` ``[B, T, H]`` of the decoder's ``hidden`` ``[B, T, H]``."""
        query = self.query_map(pooled_query(encoder_hidden_states, encoder_attention_mask))  # [B, H]
        return self.cls.predictions.transform(hidden) + query.unsqueeze(1)

    def _restricted_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``restrict_output``'s rows ``[R]`` and the head's weight ``[R, H]`` and bias ``[R]`` there, on the
        head's device, gathered once per version of the weights (a step would otherwise copy them:
        ``R x H`` floats, and the rows to the device)."""
        head = self.cls.predictions.decoder
        key = (head.weight._version, head.bias._version, head.weight.device, head.weight.dtype)
        if self._gathered is None or self._gathered[0] != key:
            rows = self._rows.to(head.weight.device)
            self._gathered = (key, rows, head.weight.detach()[rows], head.bias.detach()[rows])
        return self._gathered[1:]


def is_query_start(model: PreTrainedModel) -> bool:
    """Whether ``model``'s decoder is a :class:`QueryStartDecoder`."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return isinstance(decoder, QueryStartDecoder)


def fit_query_start(
    model: PreTrainedModel,
    states: Sequence[torch.Tensor],
    targets: Sequence[Sequence[int]],
    *,
    device: torch.device | str = "cpu",
    epochs: int = 3,
    min_steps: int = 200,
    batch_size: int = 256,
    lr: float = 1e-2,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a query-start model's ``M`` and ``b`` as a bag-of-words model of the targets (module docstring).

    Args:
        model: a model whose decoder is a :class:`QueryStartDecoder` (in place; its table is read, not changed).
        states: per pair, the frozen encoder's states of its source, ``[L_i, H]`` (float16 or float32),
            real tokens only, so their mean is the pooled query.
        targets: per pair, its target tokens (decoder vocabulary); pad, eos and ``-100`` are ignored.
        device: where the fit runs (the weights are written back to the model's device).
        epochs, min_steps, batch_size, lr: Adam over the pairs, shuffled with ``seed``, for ``epochs``
            epochs or as many as ``min_steps`` steps take (a small collection's few pairs); ``b`` starts
            at the log frequency of the target tokens (add-one), ``M`` at zero.
    Returns:
        ``{"query_start_loss": [before, last epoch], "query_start_seconds": s}``: the mean bag
        cross-entropy (nats per target token) of the start and over the fit's last epoch.
    """
    started = time.perf_counter()
    decoder: QueryStartDecoder = model.get_decoder()
    head = decoder.cls.predictions.decoder
    table = head.weight.detach().to(device, torch.float32)  # [V, H]
    vocab = table.shape[0]
    pooled = torch.stack([nn.functional.normalize(s.float().mean(0), dim=0) for s in states]).to(device)  # [N, H]
    bags = [sorted({t for t in target if t >= FIRST_TOKEN}) for target in targets]
    rows = torch.tensor([i for i, bag in enumerate(bags) for _ in bag], dtype=torch.int64, device=device)  # [K]
    tokens = torch.tensor([t for bag in bags for t in bag], dtype=torch.int64, device=device)  # [K]
    sizes = torch.tensor([len(bag) for bag in bags], dtype=torch.float32, device=device).clamp(min=1)  # [N]
    counts = torch.bincount(tokens, minlength=vocab).float()  # [V]
    bias = torch.log((counts + 1) / (counts.sum() + vocab)).requires_grad_()  # [V]
    query_map = torch.zeros_like(decoder.query_map.weight, dtype=torch.float32, device=device).requires_grad_()  # [H, H]
    optimizer = torch.optim.Adam([query_map, bias], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    epochs = max(epochs, -(-min_steps // -(-len(bags) // batch_size)))
    for epoch in range(epochs + 1):
        total, weight = 0.0, 0.0
        order = torch.randperm(len(bags), generator=generator).to(device)
        for start in range(0, len(bags), batch_size):
            batch = order[start:start + batch_size]  # [b]
            members = batch.sort().values  # [b]
            chosen = torch.isin(rows, members)  # the (pair, token) entries of this batch
            local = torch.searchsorted(members, rows[chosen])  # their pair's row in the batch
            with torch.set_grad_enabled(epoch > 0):
                logits = (pooled[members] @ query_map.T) @ table.T + bias  # [b, V]
                log_probs = logits.log_softmax(-1)
                # Each pair's target tokens count as one example: their mean log-probability.
                per_pair = torch.zeros(len(members), device=device).index_add(
                    0, local, log_probs[local, tokens[chosen]]) / sizes[members]
                loss = -per_pair.mean()
            if epoch > 0:  # epoch 0 measures the start
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total += float(loss.detach()) * len(members)
            weight += len(members)
        losses.append(total / weight)
    with torch.no_grad():
        decoder.query_map.weight.copy_(query_map.detach().to(decoder.query_map.weight))
        head.bias.copy_(bias.detach().to(head.bias))
    return {"query_start_loss": [round(losses[0], 4), round(losses[-1], 4)],
            "query_start_seconds": round(time.perf_counter() - started, 1)}
