"""Training a docid seq2seq model with Lightning: data, module, and one ``train`` call.

Lightning's split: :class:`Seq2SeqDataModule` owns the (source text, target docid tokens) pairs
and their batching, :class:`Seq2SeqModule` owns the model, loss and optimizer, and :func:`train`
builds the ``Trainer`` (checkpoints, logger, seeding, resume).

A run killed and restarted with ``ckpt_path="last"`` continues the same run: the training
batches are a pure function of ``(seed, epoch, position in epoch)`` (no state in the loader
beyond the trainer's own step counter), and the module checkpoints the RNG states, so the
resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import math
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from genir.errors import GenirError
from genir.seq2seq.encoder_states import encoder_states

# EncoderDecoderModel warns on every loss that it computes the loss itself since v4.12; it does,
# and we rely on that (labels in, loss out): the warning says nothing to a genir user.
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces a better way", category=FutureWarning)

#: Label value the loss ignores (Hugging Face and ``torch.nn.CrossEntropyLoss`` convention).
IGNORE_INDEX = -100
LAST_CHECKPOINT = "last.ckpt"

Pair = tuple[str, list[int]]
"""A source text and its target docid tokens, ending with eos."""


def token_log_likelihoods(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` float32: each target token's log-probability (log-softmax of its logit), 0 where
    ``labels`` is ``IGNORE_INDEX``. ``logits`` ``[B, T, V]`` float, ``labels`` ``[B, T]`` int64."""
    return -F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each target token, times its example's weight, summed over the batch and divided
    by the number of target tokens: a scalar float32 tensor. With every weight 1 it is the usual mean
    token cross-entropy; the pairs of one query whose weights sum to 1 (a teacher's soft labels,
    :mod:`genir.retrieval.teacher`) together count as one example.

    Args:
        logits: ``[B, T, V]`` float, the model's next-token logits.
        labels: ``[B, T]`` int64, padded with ``IGNORE_INDEX``.
        weights: ``[B]`` float32.
    """
    return -(token_log_likelihoods(logits, labels) * weights[:, None]).sum() / (labels != IGNORE_INDEX).sum().clamp_min(1)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of one rank: a seeded permutation per epoch, resumable mid-epoch.

    Epoch ``e`` shuffles all examples with ``seed + e``; rank ``r`` of ``w`` takes every ``w``-th
    index (the permutation is padded by wrapping so every rank gets as many batches); the batches
    already trained in this epoch are skipped. Epoch, skip, rank and world size are read from
    ``position`` when an iteration starts, so Lightning's restored step counter decides where a
    resumed run picks up.

    Args:
        num_examples: dataset size.
        batch_size: examples per batch (the last batch of an epoch may be smaller).
        seed: the shuffling seed.
        position: returns ``(epoch, batches_to_skip, rank, world_size)``.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, position: Callable[[], tuple[int, int, int, int]]) -> None:
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.position = position

    def _rank_indices(self, epoch: int, rank: int, world: int) -> list[int]:
        order = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        per_rank = math.ceil(self.num_examples / world)
        order = (order * (per_rank * world // max(len(order), 1) + 1))[: per_rank * world]
        return order[rank::world]

    def batches_per_epoch(self, world: int) -> int:
        return math.ceil(math.ceil(self.num_examples / world) / self.batch_size)

    def __len__(self) -> int:
        _, _, _, world = self.position()
        return self.batches_per_epoch(world)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip, rank, world = self.position()
        indices = self._rank_indices(epoch, rank, world)
        for start in range(skip * self.batch_size, len(indices), self.batch_size):
            yield indices[start:start + self.batch_size]


class PositionedDataLoader(DataLoader):
    """A ``DataLoader`` whose :class:`EpochBatchSampler` finds its place from the trainer's step.

    It keeps no state of its own, and says so with an empty ``state_dict``: that marks it as
    resumable for Lightning (which otherwise warns that a mid-epoch resume is unreliable).
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class Seq2SeqDataModule(L.LightningDataModule):
    """(source text, docid tokens) pairs, tokenized in :meth:`setup` and batched deterministically.

    Args:
        pairs: training pairs; targets are token ids of the docid vocabulary ending with eos.
        tokenizer: the encoder's tokenizer.
        batch_size: examples per batch per device.
        max_source_len: source tokens kept (truncation).
        seed: shuffling seed; epoch ``e`` uses ``seed + e``.
        encoder: a frozen encoder (see :func:`genir.seq2seq.model.freeze_encoder`): :meth:`setup`
            runs it once over every source and batches carry its states, so training never
            runs the encoder again.
        states_cache: where those states are kept between runs (:mod:`genir.seq2seq.encoder_states`).
        weights: each pair's weight in the loss (:func:`weighted_token_loss`); None: every pair weighs 1.
    Batches are dicts: ``input_ids`` and ``attention_mask`` ``[B, L_src]`` int64 (padded with the
    tokenizer's pad id / 0), ``labels`` ``[B, L_tgt]`` int64 padded with ``-100``, and with an
    ``encoder``, ``encoder_hidden`` ``[B, L_src, d]`` float32 (zeros at padding); with ``weights``,
    ``weights`` ``[B]`` float32.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 32,
        max_source_len: int = 64,
        seed: int = 0,
        encoder: torch.nn.Module | None = None,
        states_cache: Path | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not pairs:
            raise GenirError("no training pairs")
        if weights is not None and len(weights) != len(pairs):
            raise GenirError(f"{len(weights)} weights for {len(pairs)} training pairs")
        self.pairs = list(pairs)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_source_len = max_source_len
        self.seed = seed
        self.encoder = encoder
        self.states_cache = states_cache
        self.train_data: list[dict[str, Any]] = []

    def setup(self, stage: str | None = None) -> None:
        if not self.train_data:
            self.train_data = self._tokenize(self.pairs)

    def _tokenize(self, pairs: list[Pair]) -> list[dict[str, Any]]:
        sources = self.tokenizer([text for text, _ in pairs], truncation=True, max_length=self.max_source_len)["input_ids"]
        data = [{"input_ids": ids, "labels": list(target)} for ids, (_, target) in zip(sources, pairs, strict=True)]
        if self.weights is not None:
            for example, weight in zip(data, self.weights, strict=True):
                example["weight"] = weight
        if self.encoder is not None:
            # A source repeated (one query, several teacher-labelled docids) is encoded and held once.
            unique: dict[tuple[int, ...], int] = {}
            slots = [unique.setdefault(tuple(e["input_ids"]), len(unique)) for e in data]
            states = encoder_states(self.encoder, [list(ids) for ids in unique], self._pad_id, cache=self.states_cache)
            for example, slot in zip(data, slots, strict=True):
                example["encoder_states"] = states[slot]  # [L_src, d] float16
        return data

    @property
    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _position(self) -> tuple[int, int, int, int]:
        """``(epoch, batches to skip, rank, world size)`` from the attached trainer, if any."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 0, 1
        world = trainer.world_size
        per_epoch = EpochBatchSampler(len(self.train_data), self.batch_size, 0, self._position).batches_per_epoch(world)
        # Batches already trained this epoch; nonzero only when resuming mid-epoch.
        skip = trainer.global_step * trainer.accumulate_grad_batches - trainer.current_epoch * per_epoch
        return trainer.current_epoch, max(skip, 0), trainer.global_rank, world

    def train_dataloader(self) -> PositionedDataLoader:
        sampler = EpochBatchSampler(len(self.train_data), self.batch_size, self.seed, self._position)
        # A private generator: creating the loader's iterator must not consume the global RNG,
        # or a resumed run would draw different dropout masks than an uninterrupted one.
        # Collated in this process: on an H200, 8 loader workers left the default recipe at 31 steps/s
        # (README "GPU benchmark"), so the loader is not what bounds a step there.
        return PositionedDataLoader(self.train_data, batch_sampler=sampler, collate_fn=self.collate,
                                    generator=torch.Generator().manual_seed(self.seed))

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad a list of examples into the batch dict described in the class docstring."""
        pad = self._pad_id
        src_len = max(len(e["input_ids"]) for e in examples)
        tgt_len = max(len(e["labels"]) for e in examples)
        input_ids = torch.full((len(examples), src_len), pad, dtype=torch.int64)
        attention_mask = torch.zeros((len(examples), src_len), dtype=torch.int64)
        labels = torch.full((len(examples), tgt_len), IGNORE_INDEX, dtype=torch.int64)
        for row, example in enumerate(examples):
            n, m = len(example["input_ids"]), len(example["labels"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            attention_mask[row, :n] = 1
            labels[row, :m] = torch.tensor(example["labels"])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if examples and "encoder_states" in examples[0]:
            batch["encoder_hidden"] = pad_sequence([e["encoder_states"] for e in examples], batch_first=True).float()
        if examples and "weight" in examples[0]:
            batch["weights"] = torch.tensor([e["weight"] for e in examples], dtype=torch.float32)
        return batch


class Seq2SeqModule(L.LightningModule):
    """Owns a Hugging Face seq2seq model: cross-entropy on docid tokens, AdamW, linear schedule.

    Args:
        model: the seq2seq model (``self.model``; call ``module.model.save_pretrained(dir)``).
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases and norms).
        warmup_steps: steps of linear warmup from 0 to ``lr``.
        total_steps: step at which the linear decay reaches 0; ``None`` keeps ``lr`` after warmup.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        total_steps: int | None = None,
    ) -> None:
        super().__init__()
        # from_pretrained returns modules in eval mode, and Lightning keeps each module's mode
        # through fit: without this, a pretrained encoder would train with dropout off.
        self.model = model.train()
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.save_hyperparameters(ignore=["model"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over non-ignored target tokens, each weighted by its example's weight when the
        batch has ``weights`` (:func:`weighted_token_loss`): a scalar float tensor."""
        if "encoder_hidden" in batch:  # states of a frozen encoder, computed once by the data module
            source = {"encoder_outputs": BaseModelOutput(last_hidden_state=batch["encoder_hidden"])}
        else:
            source = {"input_ids": batch["input_ids"]}
        out = self.model(**source, attention_mask=batch["attention_mask"], labels=batch["labels"])
        return out.loss if "weights" not in batch else weighted_token_loss(out.logits, batch["labels"], batch["weights"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0], sync_dist=True)
        # Logged metrics come back from spawned processes (ddp_spawn), the trainer's counters do not.
        self.log("trained_steps", float(self.global_step + 1), reduce_fx="max", batch_size=1)
        self.log("trained_epochs", float(self.current_epoch + 1), reduce_fx="max", batch_size=1)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for _name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=self.lr
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at optimizer step ``step``: linear warmup, then linear decay to 0."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.total_steps is None:
            return 1.0
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning does not keep RNG states; dropout after a resume must match the killed run.
        # Tensors only (training draws from torch's RNGs alone), so the checkpoint loads with
        # torch.load(weights_only=True), Lightning's default.
        checkpoint["genir_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("genir_rng")
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def train(
    model: Seq2SeqModule,
    datamodule: Seq2SeqDataModule,
    out_dir: str | Path,
    max_epochs: int | None = None,
    max_steps: int = -1,
    max_time: str | timedelta | None = None,
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true",
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    ckpt_path: Literal["last"] | str | None = "last",
    seed: int = 0,
    logger: Literal["csv", "tensorboard"] = "csv",
    checkpoint_every_n_steps: int = 500,
    enable_progress_bar: bool = True,
    deterministic: bool | Literal["warn"] = "warn",
    callbacks: Sequence[L.Callback] = (),
    **trainer_kwargs: Any,
) -> L.Trainer:
    """Train ``model`` on ``datamodule``, checkpointing under ``out_dir/checkpoints``.

    Args:
        model: the module to train (trained in place).
        datamodule: the data.
        out_dir: run directory: ``checkpoints/`` (``last.ckpt`` and step checkpoints) and logs.
        max_epochs, max_steps, max_time: stopping rules, as in ``lightning.Trainer``; with none
            given, Lightning's default applies (1000 epochs). ``max_time`` is ``"DD:HH:MM:SS"`` or a timedelta.
        precision: ``"32-true"`` or ``"bf16-mixed"`` (``"16-mixed"`` on GPUs).
        accelerator, devices, strategy: as in ``lightning.Trainer`` (``"ddp"``, ``"fsdp"``...).
        ckpt_path: ``"last"`` resumes from ``out_dir/checkpoints/last.ckpt`` when it exists (a
            fresh run otherwise); another path resumes from that checkpoint; None starts fresh.
        seed: ``seed_everything(seed, workers=True)`` before the trainer is built.
        logger: ``"csv"`` (``out_dir/logs/.../metrics.csv``) or ``"tensorboard"``.
        checkpoint_every_n_steps: steps between checkpoints (``last.ckpt`` is updated with each).
        enable_progress_bar: Lightning's progress bar.
        deterministic: ``"warn"`` (deterministic kernels where they exist, a warning where they do
            not: some CUDA ops), True, or False.
        callbacks: more Lightning callbacks (e.g. :class:`genir.seq2seq.selection.BestOnDev`).
        trainer_kwargs: more ``lightning.Trainer`` arguments.
    Returns:
        The fitted ``Trainer`` (``trainer.callback_metrics["train_loss"]`` is the last logged loss).
    Raises:
        GenirError: ``ckpt_path`` names a missing file, or an unknown logger.
    """
    out_dir = Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints"
    resume = _resume_path(checkpoint_dir, ckpt_path)
    L.seed_everything(seed, workers=True)
    if logger == "csv":
        run_logger: CSVLogger | TensorBoardLogger = CSVLogger(out_dir, name="logs")
    elif logger == "tensorboard":
        try:
            run_logger = TensorBoardLogger(out_dir, name="logs")
        except ModuleNotFoundError:
            raise GenirError("logger='tensorboard' needs the tensorboard package: pip install tensorboard") from None
    else:
        raise GenirError(f"unknown logger {logger!r}; choose 'csv' or 'tensorboard'")
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, every_n_train_steps=checkpoint_every_n_steps)
    trainer = L.Trainer(
        max_epochs=max_epochs,
        max_steps=max_steps,
        max_time=max_time,
        precision=precision,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        logger=run_logger,
        callbacks=[checkpoint, *callbacks],
        deterministic=deterministic,
        # The datamodule's sampler splits batches across ranks itself (and resumes mid-epoch).
        use_distributed_sampler=False,
        enable_progress_bar=enable_progress_bar,
        default_root_dir=out_dir,
        **trainer_kwargs,
    )
    _restore_only_lightnings_signals(trainer)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    return trainer


def _restore_only_lightnings_signals(trainer: L.Trainer) -> None:
    """Make the trainer restore, after fit, only the signals it handles (SIGTERM, SIGUSR1).

    Lightning's signal connector records Python's view of every signal before fit and sets each
    back afterwards. For a signal whose native handler was installed outside Python after Python
    started, that view is ``SIG_DFL``: "restoring" it removes the native handler. pyserini's JVM
    handles SIGSEGV and other signals natively as part of normal operation, so a Lucene search after
    a fit in the same process crashed it (SIGSEGV, no traceback). Private Lightning API: where it
    is absent, nothing is changed.
    """
    connector = getattr(trainer, "_signal_connector", None)
    if connector is not None and hasattr(connector, "_get_current_signal_handlers"):
        # A module-level function: ddp_spawn pickles the trainer with its connector.
        connector._get_current_signal_handlers = _lightnings_signal_handlers


def _lightnings_signal_handlers() -> dict[int, Any]:
    """Python's handlers of the signals Lightning's connector registers during fit."""
    handled = [s for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None]
    return {s: signal.getsignal(s) for s in handled}


def _resume_path(checkpoint_dir: Path, ckpt_path: str | None) -> str | None:
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = checkpoint_dir / LAST_CHECKPOINT
        return str(last) if last.exists() else None
    if not Path(ckpt_path).exists():
        raise GenirError(f"checkpoint {ckpt_path} does not exist")
    return ckpt_path
