"""One call that trains a seq2seq model with Lightning and saves it: what every method that trains uses.

DSI and SE-DSI (docids), SEAL (n-grams) and continual indexing build a model with
:func:`genir.seq2seq.model.build_seq2seq`, hand it here with their (source text, target tokens)
pairs, and get back the statistics a manifest records. Training checkpoints live outside any
index, in :func:`run_directory` (``$GENIR_CACHE/train/<key>``, a key of the corpus and the
settings): a killed build resumes from its last checkpoint when the same command runs again, and
the checkpoints are deleted once the model is saved.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from genir.cache import cache_dir
from genir.devices import device_count, resolve_device
from genir.indexer.collection import Collection
from genir.seq2seq.model import Seq2Seq, freeze_encoder
from genir.seq2seq.model_io import save_seq2seq
from genir.seq2seq.query_start import fit_query_start, is_query_start
from genir.seq2seq.sam import SAMSeq2SeqModule
from genir.seq2seq.selection import BestOnDev, Evaluate, Z
from genir.seq2seq.settings import TrainingSettings
from genir.seq2seq.training import Pair, Seq2SeqDataModule, Seq2SeqModule, train
from genir.settings import Settings


def fit(seq2seq: Seq2Seq, pairs: list[Pair], settings: TrainingSettings, run_dir: Path, *, frozen_encoder: bool = False,
        sam_rho: float = 0.0, resume: bool = True, progress: bool = True, select: Evaluate | None = None,
        select_margin: float = Z, weights: list[float] | None = None) -> dict[str, Any]:
    """Train ``seq2seq.model`` on ``pairs`` with Lightning (in place), then drop the run's checkpoints.

    Args:
        seq2seq: the model and its encoder's tokenizer.
        pairs: (source text, target tokens ending with eos).
        settings: batch, lengths, learning rate and schedule, stopping rules, precision, seed.
        run_dir: checkpoints and logs of this run; with ``resume``, a killed call resumes from its
            last checkpoint when made again, else a leftover there is discarded first.
        frozen_encoder: the encoder is not trained and its states are computed once, before the
            first step (and cached under ``$GENIR_CACHE/encoder-states``); a query-start model
            (:mod:`genir.seq2seq.query_start`) is fitted from them before the first step.
        sam_rho: above 0, every step is sharpness-aware (:mod:`genir.seq2seq.sam`).
        progress: Lightning's progress bar.
        select: a dev score of the model (higher is better): the model is scored before training
            and after each epoch, and ends with the best weights (:class:`~genir.seq2seq.selection.BestOnDev`);
            a trained checkpoint must beat the start by ``select_margin`` standard errors.
        weights: each pair's weight in the loss (e.g. a teacher's soft labels, :mod:`genir.retrieval.teacher`);
            None: every pair weighs 1.
    The run uses the current device (:func:`genir.devices.resolve_device`), the frozen
    encoder's states included.
    Returns:
        Training statistics for a manifest: pairs, optimizer steps, epochs, the last logged loss
        (from the run's earlier logs when a resumed run had already finished; None if none), seconds in
        all, and of those the seconds of the data setup (tokenizing, the frozen encoder's states);
        with a query start, its fit's loss and seconds (inside the seconds in all, as the setup's);
        with ``select``, the dev curve ``[[epochs, steps, score], ...]`` and the entry kept.
    """
    # The run folder is keyed by corpus and settings, so two builds of the same corpus and config
    # share it: one would resume from, or delete, the other's checkpoints. They take turns instead
    # (the kernel drops a killed holder's lock, so a killed build's rerun still resumes).
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.with_name(run_dir.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fit(seq2seq, pairs, settings, run_dir, frozen_encoder=frozen_encoder, sam_rho=sam_rho, resume=resume,
                    progress=progress, select=select, select_margin=select_margin, weights=weights)


def _fit(seq2seq: Seq2Seq, pairs: list[Pair], settings: TrainingSettings, run_dir: Path, *, frozen_encoder: bool = False,
        sam_rho: float = 0.0, resume: bool = True, progress: bool = True, select: Evaluate | None = None,
        select_margin: float = Z, weights: list[float] | None = None) -> dict[str, Any]:
    """The body of :func:`fit`, run under the run folder's lock."""
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    if settings.max_epochs == 0 and not (frozen_encoder and is_query_start(seq2seq.model)):
        # Nothing is trained or fitted: the data setup would only compute every pair's frozen encoder
        # states (several encodings of each document) for no step, hours at 100k documents on a CPU.
        seq2seq.model.cpu().eval()
        return {"train_pairs": len(pairs), "train_steps": 0, "train_epochs": 0, "final_train_loss": None,
                "train_seconds": 0.0, "train_setup_seconds": 0.0}
    device = resolve_device()
    # The data module computes the frozen encoder's states in its setup, before Lightning moves
    # the model: put the encoder on the run's device first.
    encoder = freeze_encoder(seq2seq.model).to(device) if frozen_encoder else None
    datamodule = Seq2SeqDataModule(pairs, seq2seq.tokenizer, settings.batch_size, settings.max_source_len, seed=settings.seed,
                                   encoder=encoder, states_cache=cache_dir() / "encoder-states", weights=weights)
    steps_per_epoch = -(-len(pairs) // settings.batch_size)
    schedule = {"lr": settings.lr, "warmup_steps": settings.warmup_steps,
                "total_steps": steps_per_epoch * settings.max_epochs if settings.decay else None}
    module = SAMSeq2SeqModule(seq2seq.model, rho=sam_rho, **schedule) if sam_rho else Seq2SeqModule(seq2seq.model, **schedule)
    precision = settings.precision_on(device)
    started = time.perf_counter()
    datamodule.setup("fit")  # tokenizing and the frozen encoder's states, timed apart from the steps
    setup_seconds = time.perf_counter() - started
    query_start = {}
    if frozen_encoder and is_query_start(seq2seq.model):  # fitted from the states the data module holds
        data = datamodule.train_data
        query_start = fit_query_start(seq2seq.model, [e["encoder_states"] for e in data], [e["labels"] for e in data],
                                      device=device, seed=settings.seed)
    selection = BestOnDev(select, select_margin) if select is not None else None
    trainer = train(module, datamodule, run_dir, max_epochs=settings.max_epochs, max_time=settings.max_time,
                    precision=precision, seed=settings.seed, ckpt_path="last" if resume else None,
                    enable_progress_bar=progress, callbacks=[selection] if selection else [], **_placement(device))
    seconds = time.perf_counter() - started
    loss = trainer.callback_metrics.get("train_loss")
    loss = float(loss) if loss is not None else _last_logged_loss(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    module.model.cpu().eval()
    chosen = {}
    if selection is not None and selection.best is not None:  # None: nothing trained (max_epochs=0)
        chosen = {"dev_curve": [list(entry) for entry in selection.curve], "dev_best": list(selection.best)}
    return {
        **chosen,
        **query_start,
        "train_pairs": len(pairs),
        "train_steps": max(int(trainer.global_step), int(trainer.callback_metrics.get("trained_steps", 0))),
        "train_epochs": max(int(trainer.current_epoch), int(trainer.callback_metrics.get("trained_epochs", 0))),
        "final_train_loss": loss,
        "train_seconds": round(seconds, 1),
        "train_setup_seconds": round(setup_seconds, 1),
    }


def _last_logged_loss(run_dir: Path) -> float | None:
    """The last ``train_loss`` in the run's CSV logs (``run_dir/logs/version_N/metrics.csv``), or None.

    A build killed after its last step resumes into a run with no step left to take, which logs
    nothing; its earlier attempts' logs still hold the loss the model was trained to.
    """
    last: tuple[int, float] | None = None
    for path in (run_dir / "logs").glob("version_*/metrics.csv"):
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if row.get("train_loss") and row.get("step"):
                    step = int(float(row["step"]))
                    if last is None or step >= last[0]:
                        last = (step, float(row["train_loss"]))
    return last[1] if last else None


def _placement(device: torch.device) -> dict[str, Any]:
    """Lightning's accelerator, devices and strategy for ``device`` and :func:`genir.devices.device_count`.

    Several devices train with ``ddp_spawn``: the processes are spawned from this one, which gets
    rank 0's weights back when they finish, so a build goes on (and writes its index) once.
    """
    count = device_count()
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    if count > 1:
        return {"accelerator": accelerator, "devices": count, "strategy": "ddp_spawn"}
    return {"accelerator": accelerator, "devices": [device.index or 0] if device.type == "cuda" else 1}


def train_and_save(seq2seq: Seq2Seq, pairs: list[Pair], settings: TrainingSettings, run_dir: Path, out: Path,
                   frozen_encoder: bool = False) -> dict[str, Any]:
    """:func:`fit`, then save the model to ``out`` as safetensors (:func:`~genir.seq2seq.model_io.save_seq2seq`)."""
    stats = fit(seq2seq, pairs, settings, run_dir, frozen_encoder=frozen_encoder)
    save_seq2seq(seq2seq.model, out)
    return stats


def run_directory(collection: Collection, settings: Settings | dict[str, Any]) -> Path:
    """Where training checkpoints of this corpus and these settings (a config, or a dict) live (stable across kills)."""
    if isinstance(settings, Settings):
        settings = settings.model_dump(mode="json")
    key = hashlib.sha256(json.dumps([collection.fingerprint, settings], sort_keys=True).encode())
    return cache_dir() / "train" / key.hexdigest()[:16]
