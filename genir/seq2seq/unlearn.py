"""Approximate unlearning of a trained seq2seq model: ``genir delete --forget unlearn``.

MUSE (Shi et al., 2024) benchmarks unlearning methods as a forget term on the data to forget plus a
retain term on data to keep; its best-balanced family is NPO with a retain term (NPO_RT). Here:

* forget term, NPO (Zhang et al., 2024) against a *floor*: for a forgotten pair ``(x, y)`` with
  sequence log-likelihood ``l(x, y)`` under the model and ``l_floor(x, y)``,
  ``L_npo = (2 / beta) * mean(softplus(beta * (l - l_floor)))``: gradient descent on ``l`` weighted
  by ``sigmoid(beta * (l - l_floor))``, a push that fades once the pair is below its floor (within
  about ``1 / beta`` nats), where plain gradient ascent runs on to minus infinity.
* retain term: the usual mean token cross-entropy on a sample of the remaining documents' pairs,
  weighted by ``retain_weight``.

The floor is what the model would give the pair had it never trained on it, as far as the model can
tell without retraining:

* a dense-start model (:mod:`genir.seq2seq.dense_start`) can tell exactly: its start, ``z = q``
  (zero residual, the start scale), is the pretrained dense retriever over the same frozen docid
  rows and frozen encoder, which never saw this collection's training pairs. Unlearning to the start
  takes back what training added for the forgotten pairs and nothing the pretrained model knew
  (the dense retriever's own similarity of a query to a document is public knowledge, not the
  index's memory of it). :meth:`~genir.seq2seq.dense_start.DenseStartDecoder.start_parameters`
  gives it, evaluated with :func:`torch.func.functional_call` (no second model in memory).
* any other model: its own likelihoods before unlearning (NPO as published: the push fades once a
  pair is about ``1 / beta`` nats below where it was).

The forgotten pairs are scored with the deleted documents' rows still in place: the caller unlearns
*before* it zeroes them (``mask``). Scored after, a zeroed row's logit is a constant 0 far below the
live documents' (measured on SciFact's atomic DSI: the forgotten pairs at -25.5 nats, against -0.34
with their rows), and pushing that lower can only raise every other document's logit.

Only the decoder's weights that training may change are updated (frozen docid rows stay frozen),
and none stored in low precision: a ``table_dtype`` docid table in float16 is not (AdamW's ``eps`` =
1e-8 is 0 in float16, so every row with a zero gradient becomes 0/0 = NaN at the first step;
measured, that alone made the first version diverge on SciFact's atomic DSI: NaN after one step at
a finite gradient norm). The encoder reads queries for every document and stays as trained, so each
batch's encoder states are computed once, in memory (never written to ``$GENIR_CACHE``: no cache
entry of a forgotten text is made). The time does not grow with the index, only with the request:
``steps``, or ``passes`` over its pairs if those are more.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from genir.errors import GenirError
from genir.seq2seq.dense_start import is_dense_start
from genir.seq2seq.settings import UnlearnSettings
from genir.seq2seq.training import Pair, Seq2SeqDataModule, token_log_likelihoods


def sequence_log_likelihoods(model: PreTrainedModel, batch: dict[str, torch.Tensor],
                             parameters: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``[B]`` float32: the log-likelihood of each target sequence (summed over its tokens) given its source.

    ``batch`` as :meth:`Seq2SeqDataModule.collate` makes it (``input_ids``, ``attention_mask``,
    ``labels`` ``[B, T]`` padded with ``-100``; optionally ``encoder_outputs``, the encoder's states
    to reuse); ``parameters``: values, by the model's parameter names, that replace those weights
    for this call (:func:`torch.func.functional_call`).
    """
    return token_log_likelihoods(_forward(model, batch, parameters).logits, batch["labels"]).sum(dim=1)


def mean_log_likelihood(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair],
                        max_source_len: int, batch_size: int = 64) -> float:
    """The mean sequence log-likelihood of ``pairs`` under ``model`` (eval mode, no gradient); a
    forgotten pair's is what unlearning lowers (the tests read it)."""
    data = _batches(pairs, tokenizer, max_source_len, batch_size, shuffle=None)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in data:
            values = sequence_log_likelihoods(model, _to(batch, device))
            total += float(values.sum())
            count += values.shape[0]
    model.train(was_training)
    return total / max(count, 1)


def floor_parameters(model: PreTrainedModel) -> dict[str, torch.Tensor] | None:
    """The weights that make ``model`` the floor its forgotten pairs are pushed to (module
    docstring), by the model's parameter names: a dense-start decoder's start; None for any other
    model (the floor is the model as it is)."""
    decoder = model.get_decoder()
    if not is_dense_start(model):
        return None
    prefix = next(name for name, module in model.named_modules() if module is decoder)
    return {f"{prefix}.{name}" if prefix else name: value for name, value in decoder.start_parameters().items()}


def trainable_parameters(model: PreTrainedModel) -> list[tuple[str, nn.Parameter]]:
    """What an unlearning step updates: the decoder's and its head's parameters that training may
    change and that are stored in float32 (module docstring)."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    candidates = {id(p) for p in decoder.parameters()} | {id(p) for p in head.parameters()}
    return [(name, p) for name, p in model.named_parameters()
            if id(p) in candidates and p.requires_grad and p.dtype == torch.float32]


def unlearn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, forget: Sequence[Pair], retain: Sequence[Pair],
            settings: UnlearnSettings, max_source_len: int) -> dict[str, Any]:
    """Update ``model``'s decoder in place (module docstring): ``settings.steps`` steps, or
    ``settings.passes`` passes over the forgotten pairs if those are more.

    Call it before the deleted documents' rows are zeroed: the forgotten pairs are scored with them.

    Args:
        forget: the deleted documents' training pairs (source text, docid tokens ending with eos).
        retain: a sample of the remaining documents' pairs (may be empty: no retain term).
    Returns:
        Statistics for the manifest: steps, pairs, the forgotten pairs' mean log-likelihood
        before, at the floor and after, seconds.
    Raises:
        GenirError: no forgotten pair (the deleted documents had no training views), or the update
            diverged (the model is then restored as it was).
    """
    if not forget:
        raise GenirError("the deleted documents have no training pairs to unlearn")
    started = time.perf_counter()
    device = next(model.parameters()).device
    rng = random.Random(settings.seed)
    model.eval()  # no dropout: the floor and the updated likelihoods compare the same function
    forget_batches = [_encoded(model, _to(b, device))
                      for b in _batches(forget, tokenizer, max_source_len, settings.batch_size, shuffle=rng)]
    retain_batches = _batches(retain, tokenizer, max_source_len, settings.batch_size, shuffle=rng) if retain else []
    floor = floor_parameters(model)
    with torch.no_grad():
        before = torch.cat([sequence_log_likelihoods(model, batch) for batch in forget_batches])  # [n]
        reference = [sequence_log_likelihoods(model, batch, floor) for batch in forget_batches] if floor is not None \
            else list(before.split([b["labels"].shape[0] for b in forget_batches]))  # [b] each
    trainable = trainable_parameters(model)
    saved = {name: p.requires_grad for name, p in model.named_parameters()}
    chosen = {id(p) for _, p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    optimizer = torch.optim.AdamW([p for _, p in trainable], lr=settings.lr, weight_decay=0.0)
    # kept to restore, so a failed update changes nothing
    kept = {name: p.detach().clone() for name, p in trainable}
    steps = max(settings.steps, settings.passes * len(forget_batches))
    beta = settings.beta_setting(floor is not None)
    try:
        for step in range(steps):
            i = step % len(forget_batches)
            likelihood = sequence_log_likelihoods(model, forget_batches[i])  # [b]
            loss = (2.0 / beta) * F.softplus(beta * (likelihood - reference[i])).mean()
            if retain_batches and settings.retain_weight:
                j = step % len(retain_batches)
                retain_batches[j] = batch = retain_batches[j] if "encoder_outputs" in retain_batches[j] \
                    else _encoded(model, _to(retain_batches[j], device))
                loss = loss + settings.retain_weight * _forward(model, batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(saved[name])
    model.eval()
    with torch.no_grad():
        after = float(torch.cat([sequence_log_likelihoods(model, batch) for batch in forget_batches]).mean())
    named = dict(model.named_parameters())
    if not math.isfinite(after) or not all(torch.isfinite(named[name]).all() for name in kept):
        with torch.no_grad():
            for name, value in kept.items():
                named[name].copy_(value)
        raise GenirError(f"unlearn diverged (the forgotten pairs' log-likelihood went from {float(before.mean()):.2f} to {after}): "
                         "nothing was changed; try a smaller --set lr= or fewer steps=, or --forget reindex")
    return {"unlearn_steps": steps, "unlearn_forget_pairs": len(forget), "unlearn_retain_pairs": len(retain),
            "unlearn_forget_loglik_before": round(float(before.mean()), 4),
            "unlearn_forget_loglik_floor": round(float(torch.cat(reference).mean()), 4),
            "unlearn_forget_loglik_after": round(after, 4), "unlearn_seconds": round(time.perf_counter() - started, 3)}


def _batches(pairs: Sequence[Pair], tokenizer: PreTrainedTokenizerBase, max_source_len: int, batch_size: int,
             shuffle: random.Random | None) -> list[dict[str, torch.Tensor]]:
    """``pairs`` tokenized and collated as training batches are (no encoder states, no cache)."""
    data = Seq2SeqDataModule(list(pairs), tokenizer, batch_size, max_source_len)
    data.setup()
    examples = list(data.train_data)
    if shuffle is not None:
        shuffle.shuffle(examples)
    return [data.collate(examples[start:start + batch_size]) for start in range(0, len(examples), batch_size)]


def _encoded(model: PreTrainedModel, batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with the encoder's states (``encoder_outputs``): unlearning never changes the
    encoder, so a batch seen at several steps is encoded once."""
    with torch.no_grad():
        states = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return {**batch, "encoder_outputs": BaseModelOutput(last_hidden_state=states.last_hidden_state)}


def _forward(model: PreTrainedModel, batch: dict[str, Any], parameters: dict[str, torch.Tensor] | None = None) -> Any:
    """The model's output on ``batch`` (its ``encoder_outputs`` reused when given), with ``parameters``
    in place of those weights when given."""
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "labels", "encoder_outputs") if key in batch}
    return functional_call(model, parameters, args=(), kwargs=inputs, strict=False) if parameters else model(**inputs)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}
