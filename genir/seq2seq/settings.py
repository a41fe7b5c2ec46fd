"""The settings of one training run, shared by every method that trains a seq2seq model.

:class:`TrainingSettings` is the base model of the configs of ``dsi``, ``se-dsi``, ``seal`` (and so of
continual runs, whose index is a ``dsi`` config) and of ``genir train-querygen``: its fields are
declared here once, and a config's ``--set lr=...``/``--set max_epochs=...`` set them. A config whose
defaults differ re-declares only the default, with the alias of the field's type here (``batch_size:
BatchSize = 32``), so the range and help text stay the ones declared here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field, field_validator

from genir.devices import auto_precision
from genir.settings import AUTO, Auto, Seed, Settings, Shown

BatchSize = Annotated[int, Field(ge=1, description="training examples per optimizer step")]
MaxSourceLen = Annotated[int, Field(ge=1, description="source (query, document view) tokens read; longer ones are cut")]
# A query is read as far as the dense retriever reads it (MiniLM: 256 tokens), whatever the training
# sources were cut to: cut at 64, paragraph-long queries lost most of their words (issue 29).
MaxQueryLen = Annotated[int, Field(ge=1, description="query tokens the encoder reads when searching (dev queries too); training sources are cut at max_source_len")]
LearningRate = Annotated[float, Field(gt=0, description="peak learning rate (AdamW)")]
WarmupSteps = Annotated[int, Field(ge=0, description="steps of linear warmup; then linear decay to 0 at the end of max_epochs")]
MaxEpochs = Annotated[int, Field(ge=0, description="epochs to train (0: none, the untrained model is kept)")]
MaxTime = Annotated[str | None, Field(pattern=r"^\d+:\d+:\d+:\d+$", description="training budget DD:HH:MM:SS (empty: none)"),
                    Shown("DD:HH:MM:SS or empty (none)")]
# 32-true on every device: bf16-mixed training on an H200 cost DSI 0.29 nDCG@10 on SciFact (0.43 vs
# 0.72, README "GPU benchmark"); auto (bf16-mixed where the GPU has it) is there to choose.
Precision = Annotated[
    Literal["auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "32", "16", "bf16", "64"],
    Field(description="Lightning's precision; auto: bf16-mixed where the GPU has it, else 32-true"),
]
Decay = Annotated[bool, Field(description="decay the learning rate linearly to 0 at the end of max_epochs (false: keep lr after warmup)")]


class TrainingSettings(Settings):
    """What one training run (:func:`genir.seq2seq.fit.fit`) needs to know.

    ``warmup_steps`` of linear warmup, then linear decay to 0 at the end of ``max_epochs`` (``decay=False``
    keeps ``lr`` after warmup). ``max_time`` is ``"DD:HH:MM:SS"`` or None (no budget).
    """

    batch_size: BatchSize = 64
    max_source_len: MaxSourceLen = 64
    lr: LearningRate = 1e-3
    warmup_steps: WarmupSteps = 100
    max_epochs: MaxEpochs = 8
    max_time: MaxTime = "00:01:00:00"
    precision: Precision = "32-true"
    seed: Seed = 0
    decay: Decay = True

    @field_validator("max_time", mode="before")
    @classmethod
    def _no_budget(cls, value: Any) -> Any:
        """``max_time=`` (empty) or ``none`` on the command line: no budget."""
        return None if isinstance(value, str) and value.strip().lower() in {"", "none"} else value

    def training(self, **changes: Any) -> TrainingSettings:
        """The training settings of this config alone (a method's config is a subclass), with ``changes``."""
        return TrainingSettings(**{**{name: getattr(self, name) for name in TrainingSettings.model_fields}, **changes})

    def precision_on(self, device: torch.device) -> str:
        """``precision`` resolved for ``device``: ``auto`` = :func:`genir.devices.auto_precision`."""
        return auto_precision(device) if self.precision == "auto" else self.precision


START_BETA = 3.0  # unlearn's beta down to a dense start (UnlearnSettings)


class UnlearnSettings(Settings):
    """The steps of ``genir delete --forget unlearn`` (:mod:`genir.seq2seq.unlearn`): NPO on the
    deleted documents' training pairs, down to a floor, plus the retained documents' cross-entropy
    (MUSE's NPO_RT).

    The defaults were chosen on SciFact's atomic DSI (dense start) deleting 1 % of the documents,
    judged on the build's dev carve of the *training* queries (nDCG@10) and on the forgotten pairs'
    log-likelihood against their floor, never on test queries (20 steps): ``lr=3e-4`` pushed the
    pairs 1.6 nats below their floor (mean -2.23 against -0.64, from -0.34) and cost 0.025 dev
    nDCG@10 against ``mask``; NPO's usual ``beta=0.1``, 1.1 nats below; ``beta=3`` with
    ``retain_weight=3`` ends near the floor (-0.82) with dev nDCG@10 within 0.01 of ``mask``'s
    (0.787 and 0.772 with 256 and 512 retained pairs, ``mask`` 0.775: 79 dev queries); 256 retained
    pairs take a third of 2,048's encoder passes. Deleting 5 % (795 pairs, 25 batches), 4 passes
    (100 steps) pushed the pairs to -2.80 against a floor of -0.73 and cost 0.12 dev nDCG@10 against
    ``mask`` (0.661 against 0.785); 1 pass (25 steps) cost 0.01 (0.776), at -0.46: the steps stay
    about 20 per 1 % of the documents, as in the sequential requests.
    """

    steps: int = Field(default=20, ge=1, le=10_000, description=(
        "optimizer steps, at least (each: one batch of forgotten pairs and one of retained pairs); more when `passes` needs them"))
    passes: int = Field(default=1, ge=1, le=100, description=(
        "passes over the forgotten pairs, at least: a large request takes passes x its batches steps, so each pair is pushed as often"))
    lr: float = Field(default=1e-4, gt=0, description="learning rate (AdamW, constant)")
    beta: Auto | Annotated[float, Field(gt=0)] = Field(default=AUTO, description=(
        "NPO's inverse temperature: a pair's push fades within about 1/beta nats of its floor. auto: 3 where the floor is "
        "a dense start's likelihood (stop at it), 0.1 (NPO's usual) where it is the model's own before unlearning"))
    retain_weight: float = Field(default=3.0, ge=0, description="weight of the retained pairs' cross-entropy against the NPO term")
    batch_size: int = Field(default=32, ge=1, description="forgotten (and retained) pairs per step")
    retain_pairs: int = Field(default=256, ge=0, description=(
        "retained documents' training pairs sampled for the retain term (0: none); each batch of them is encoded once"))
    seed: Seed = 0

    def beta_setting(self, floor_is_start: bool) -> float:
        """``beta`` resolved (its description): with a start floor or the model's own."""
        if self.beta == AUTO:
            return START_BETA if floor_is_start else 0.1
        return self.beta
