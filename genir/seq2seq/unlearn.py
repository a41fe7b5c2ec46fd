"""Approximate unlearning of a trained seq2seq model: ``genir delete --forget unlearn``.

MUSE (Shi et al., 2024) benchmarks unlearning methods as a forget term on the data to forget plus a
retain term on data to keep; its best-balanced family is NPO with a retain term (NPO_RT). Here:

* forget term, NPO (Zhang et al., 2024): for a forgotten pair ``(x, y)`` with sequence
  log-likelihood ``l(x, y)`` under the model and ``l_ref(x, y)`` under the model before unlearning,
  ``L_npo = -(2 / beta) * mean(log sigmoid(-beta * (l - l_ref)))``. Its gradient is gradient ascent
  on ``l`` weighted by how much the pair is still liked: it stops pushing a pair once the model
  gives it much less than the reference did, where plain gradient difference diverges;
* retain term: the usual mean token cross-entropy on a sample of the remaining documents' pairs,
  weighted by ``retain_weight``.

Only the decoder is updated: a DSI or SEAL model's memory of documents lives in its decoder (and
docid rows), while its encoder reads queries for every document; a frozen encoder stays as it was
trained (and its states are never cached here, so no cache entry of a forgotten text is written).
The steps are bounded (``steps``), so the time does not grow with the index, only with the request.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.errors import GenirError
from genir.seq2seq.settings import UnlearnSettings
from genir.seq2seq.training import IGNORE_INDEX, Pair, Seq2SeqDataModule


def sequence_log_likelihoods(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B]`` float32: the log-likelihood of each target sequence (summed over its tokens) given its source.

    ``batch`` as :meth:`Seq2SeqDataModule.collate` makes it (``input_ids``, ``attention_mask``,
    ``labels`` ``[B, T]`` padded with ``-100``).
    """
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    logits = out.logits.float()  # [B, T, V]
    labels = batch["labels"]  # [B, T]
    mask = labels != IGNORE_INDEX
    picked = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # [B, T]
    return (picked * mask).sum(dim=1)


def mean_log_likelihood(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair],
                        max_source_len: int, batch_size: int = 64) -> float:
    """The mean sequence log-likelihood of ``pairs`` under ``model`` (eval mode, no gradient); a
    forgotten pair's is what unlearning lowers (tests and ``benchmarks/bench_forget.py`` read it)."""
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


def unlearn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, forget: Sequence[Pair], retain: Sequence[Pair],
            settings: UnlearnSettings, max_source_len: int) -> dict[str, Any]:
    """Update ``model``'s decoder in place (module docstring) for ``settings.steps`` steps.

    Args:
        forget: the deleted documents' training pairs (source text, docid tokens ending with eos).
        retain: a sample of the remaining documents' pairs (may be empty: no retain term).
    Returns:
        Statistics for the manifest: steps, pairs, the forgotten pairs' mean log-likelihood
        before and after, seconds.
    Raises:
        GenirError: no forgotten pair (the deleted documents had no training views).
    """
    if not forget:
        raise GenirError("the deleted documents have no training pairs to unlearn")
    started = time.perf_counter()
    device = next(model.parameters()).device
    rng = random.Random(settings.seed)
    forget_batches = _batches(forget, tokenizer, max_source_len, settings.batch_size, shuffle=rng)
    retain_batches = _batches(retain, tokenizer, max_source_len, settings.batch_size, shuffle=rng) if retain else []
    model.eval()  # no dropout: the reference and the updated likelihoods compare the same function
    with torch.no_grad():
        reference = [sequence_log_likelihoods(model, _to(batch, device)) for batch in forget_batches]  # [b] each
    before = float(torch.cat(reference).mean())
    decoder = model.get_decoder()
    trainable = {id(p) for p in decoder.parameters() if p.requires_grad}
    head = model.get_output_embeddings()
    trainable |= {id(p) for p in head.parameters() if p.requires_grad}
    saved = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=0.0)
    # NPO can diverge (on SciFact's atomic DSI the forgotten pairs' likelihood became NaN and the model
    # ranked nothing): the trained weights are kept to restore, so a failed update changes nothing
    kept = {name: p.detach().clone() for name, p in model.named_parameters() if id(p) in trainable}
    try:
        for step in range(settings.steps):
            i = step % len(forget_batches)
            likelihood = sequence_log_likelihoods(model, _to(forget_batches[i], device))  # [b]
            loss = -(2.0 / settings.beta) * F.logsigmoid(-settings.beta * (likelihood - reference[i].to(device))).mean()
            if retain_batches and settings.retain_weight:
                batch = _to(retain_batches[step % len(retain_batches)], device)
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
                loss = loss + settings.retain_weight * out.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(saved[name])
    after = mean_log_likelihood(model, tokenizer, forget, max_source_len)
    model.eval()
    named = dict(model.named_parameters())
    if not math.isfinite(after) or not all(torch.isfinite(named[name]).all() for name in kept):
        with torch.no_grad():
            for name, value in kept.items():
                named[name].copy_(value)
        raise GenirError(f"unlearn diverged (the forgotten pairs' log-likelihood went from {before:.2f} to {after}): "
                         "nothing was changed; try a smaller --set lr= or fewer steps=, or --forget reindex")
    return {"unlearn_steps": settings.steps, "unlearn_forget_pairs": len(forget), "unlearn_retain_pairs": len(retain),
            "unlearn_forget_loglik_before": round(before, 4), "unlearn_forget_loglik_after": round(after, 4),
            "unlearn_seconds": round(time.perf_counter() - started, 3)}


def _batches(pairs: Sequence[Pair], tokenizer: PreTrainedTokenizerBase, max_source_len: int, batch_size: int,
             shuffle: random.Random | None) -> list[dict[str, torch.Tensor]]:
    """``pairs`` tokenized and collated as training batches are (no encoder states, no cache)."""
    data = Seq2SeqDataModule(list(pairs), tokenizer, batch_size, max_source_len)
    data.setup()
    examples = list(data.train_data)
    if shuffle is not None:
        shuffle.shuffle(examples)
    return [data.collate(examples[start:start + batch_size]) for start in range(0, len(examples), batch_size)]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}
