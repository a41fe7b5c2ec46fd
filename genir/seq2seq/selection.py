"""Keep the checkpoint best on dev: a Lightning callback that scores the model before training and
after every epoch, and puts the best weights back when training ends.

The score is any ``evaluate(model) -> float`` (higher is better), e.g. a dev split's nDCG@10
(:func:`genir.dsi.dev.dev_evaluator`). Scoring the untrained model first makes "training only
adds" a rule rather than a hope: with a dense start (:mod:`genir.seq2seq.dense_start`), an index
is never worse on dev than the dense retriever it starts from. A run stopped by ``max_time``
mid-epoch is scored once more at its end. Only trainable parameters are kept (frozen ones cannot
differ); the best copy and the curve are part of the callback's state, so a resumed run keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from transformers import PreTrainedModel

Evaluate = Callable[[PreTrainedModel], float]


class BestOnDev(L.Callback):
    """Score ``module.model`` with ``evaluate`` at the start and after each epoch; restore the best.

    After fitting, :attr:`curve` is ``[(trained epochs, optimizer steps, score), ...]`` in order and
    :attr:`best` the entry whose weights the model holds (ties keep the earlier one).
    """

    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate = evaluate
        self.curve: list[tuple[int, int, float]] = []
        self.best: tuple[int, int, float] | None = None
        self._weights: dict[str, torch.Tensor] = {}

    def _score(self, trainer: L.Trainer, module: L.LightningModule, epochs: int) -> None:
        step = int(trainer.global_step)
        if self.curve and self.curve[-1][1] == step:
            return  # nothing trained since the last score
        value = float(self.evaluate(module.model))
        self.curve.append((epochs, step, value))
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
        return {"curve": self.curve, "best": self.best, "weights": self._weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = [tuple(entry) for entry in state_dict["curve"]]
        self.best = tuple(state_dict["best"]) if state_dict["best"] is not None else None
        self._weights = state_dict["weights"]
