"""Work sharded across devices (several GPUs, or CPU processes) through Lightning's ``Trainer.predict``.

One machinery, :func:`predict_sharded`, serves two uses: batch search
(:func:`genir.evaluation.sharded_search.sharded_batch_search`, ``genir run --devices N``) and text encoding (:meth:`genir.encoding.encoder.TextEncoder.encode`
inside ``using_device(spec, N)``, i.e. ``genir index --devices N``: the dense index's and DSI's
document embeddings).

How it runs: ``Trainer.predict`` with ``N`` processes (``ddp_spawn``: NCCL on GPUs ``0..N-1``,
gloo on CPU processes; one device runs in the calling process) over the positions ``0..count-1``.
Lightning's predict sampler (not repeating, not shuffling) gives process ``r`` the positions
``r, r+N, r+2N, ...``, so each position is computed exactly once. Each process opens the work on
its own device (:meth:`ShardWork.open`, e.g. loads a model there) at its first batch and maps its
positions to payloads; at the end a writer stores the process's ``[(position, payload), ...]`` in
``rank-R.pt`` (``torch.save``) of a temporary directory, and the calling process reads every file
back (``weights_only``: no code is unpickled) and returns the payloads in position order.

Payload format: what ``torch.load(weights_only=True)`` reads back (tensors, ``str``, ``int``,
``float``, ``bool``, ``None``, and lists, tuples and dicts of them); a tensor payload should be on
the CPU, so the calling process can read it without the worker's device.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader


class ShardWork(Protocol):
    """What every process of :func:`predict_sharded` runs; picklable (``ddp_spawn`` sends it to each process)."""

    def open(self, device: torch.device) -> None:
        """Get ready on this process's ``device`` (called once, before the first :meth:`__call__`)."""

    def __call__(self, positions: list[int]) -> list[Any]:
        """One payload per position, in the order given."""


class _ShardModule(L.LightningModule):
    """Runs a :class:`ShardWork` on this process's device: ``[b]`` int64 positions -> ``[(position, payload)]``."""

    def __init__(self, work: ShardWork) -> None:
        super().__init__()
        self.work, self.opened = work, False

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> list[tuple[int, Any]]:
        if not self.opened:  # here, not in __init__: only now is self.device this process's device
            self.work.open(self.device)
            self.opened = True
        positions = batch.tolist()
        return list(zip(positions, self.work(positions)))


class _RankFiles(BasePredictionWriter):
    """Writes each process's ``[(position, payload), ...]`` to ``directory/rank-R.pt``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(write_interval="epoch")
        self.directory = directory

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        rows = [row for batch in predictions for row in batch]
        torch.save(rows, self.directory / f"rank-{trainer.global_rank}.pt")


def predict_sharded(work: ShardWork, count: int, devices: int, accelerator: str = "auto",
                    batch_size: int = 1) -> list[Any]:
    """``[payload of position 0, ..., payload of position count-1]``, computed by ``work`` over ``devices`` processes.

    Args:
        accelerator: ``"gpu"``, ``"cpu"`` or ``"auto"`` (GPUs when there are any), as in Lightning.
        batch_size: positions one process hands ``work`` at a time.
    """
    with tempfile.TemporaryDirectory(prefix="genir-sharded-") as scratch:
        trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                            logger=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[_RankFiles(Path(scratch))])
        loader = DataLoader(torch.arange(count), batch_size=batch_size, shuffle=False)
        trainer.predict(_ShardModule(work), loader, return_predictions=False)
        found: dict[int, Any] = {}
        for path in sorted(Path(scratch).glob("rank-*.pt")):
            found.update(torch.load(path, weights_only=True))
    return [found[i] for i in range(count)]
