"""Keep the checkpoint best on dev: a Lightning callback that scores the model before training and
after every epoch, and puts the best weights back when training ends.

The score is any ``evaluate(model) -> per-query scores`` (higher is better), e.g. a dev split's
nDCG@10 per query (:func:`genir.dsi.dev.dev_evaluator`); a checkpoint's score is their mean.
Scoring the untrained model first makes "training only adds" a rule rather than a hope: a trained
checkpoint can replace the start only if the mean of its paired per-query differences from the
start exceeds ``margin`` standard errors (``Z = 2``: a one-sided test at about 2.5%, beating it by
more than noise; 0: beating it on average); among those, the best mean wins. With a dense start
(:mod:`genir.seq2seq.dense_start`) an index thus keeps the dense retriever unless dev shows that
training helped. A run stopped by ``max_time`` mid-epoch is scored once more at its end. Only
trainable parameters are kept (frozen ones cannot differ); the best copy and the curve are part of
the callback's state, so a resumed run keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from transformers import PreTrainedModel

Evaluate = Callable[[PreTrainedModel], Sequence[float]]
Z = 2.0  # standard errors a trained checkpoint must beat the untrained start by, unless told otherwise


def beats(candidate: Sequence[float], start: Sequence[float], margin: float = Z) -> bool:
    """Whether per-query ``candidate`` scores beat ``start``'s by more than ``margin`` standard errors (paired)."""
    differences = [c - s for c, s in zip(candidate, start, strict=True)]
    n = len(differences)
    if n < 2:
        return False
    mean = sum(differences) / n
    spread = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    return mean > margin * spread / math.sqrt(n)


class BestOnDev(L.Callback):
    """Score ``module.model`` with ``evaluate`` at the start and after each epoch; restore the best.

    After fitting, :attr:`curve` is ``[(trained epochs, optimizer steps, mean score), ...]`` in order
    and :attr:`best` the entry whose weights the model holds: the best mean among the start and the
    checkpoints that :func:`beats` it by ``margin`` (ties keep the earlier one).
    """

    def __init__(self, evaluate: Evaluate, margin: float = Z) -> None:
        self.evaluate = evaluate
        self.margin = margin
        self.curve: list[tuple[int, int, float]] = []
        self.best: tuple[int, int, float] | None = None
        self._start: list[float] = []  # the untrained model's per-query scores
        self._weights: dict[str, torch.Tensor] = {}

    def _score(self, trainer: L.Trainer, module: L.LightningModule, epochs: int) -> None:
        step = int(trainer.global_step)
        if self.curve and self.curve[-1][1] == step:
            return  # nothing trained since the last score
        scores = [float(v) for v in self.evaluate(module.model)]
        value = sum(scores) / max(len(scores), 1)
        self.curve.append((epochs, step, value))
        if not self._start:
            self._start = scores
        elif not beats(scores, self._start, self.margin):
            return
        if self.best is None or value > self.best[2]:
            self.best = self.curve[-1]
            self._weights = {name: p.detach().to("cpu", copy=True)
                             for name, p in module.model.named_parameters() if p.requires_grad}

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self.curve:
            self._score(trainer, module, 0)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._score(trainer, module, trainer.current_epoch + 1)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._score(trainer, module, trainer.current_epoch + 1)
        if self._weights:
            with torch.no_grad():
                parameters = dict(module.model.named_parameters())
                for name, value in self._weights.items():
                    parameters[name].copy_(value.to(parameters[name].device))

    def state_dict(self) -> dict[str, Any]:
        return {"curve": self.curve, "best": self.best, "start": self._start, "weights": self._weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = [tuple(entry) for entry in state_dict["curve"]]
        self.best = tuple(state_dict["best"]) if state_dict["best"] is not None else None
        self._start = list(state_dict["start"])
        self._weights = state_dict["weights"]
