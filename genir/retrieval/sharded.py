"""Batch search sharded across devices (several GPUs, or CPU processes) through Lightning.

``sharded_batch_search(index_dir, queries, k, devices=N)`` runs ``Trainer.predict`` with ``N``
processes (``ddp_spawn``: NCCL on GPUs, gloo on CPUs). Lightning's distributed sampler gives each
process every ``N``-th query; each process opens the index on its own device and searches its
share in batches; a prediction writer stores each process's ``(query position, hits)`` in a JSON
file of a temporary directory; the calling process merges them by position. The result is exactly
what ``Searcher.load(index_dir).batch_search(queries, k)`` returns on one device (the sampler pads
the last share by repeating queries; a repeated position is kept once).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from genir.retrieval.searcher import Hit, Searcher


class _SearchModule(L.LightningModule):
    """Opens the index on this process's device on first use and searches batches of query positions."""

    def __init__(self, index_dir: str, queries: Sequence[str], k: int) -> None:
        super().__init__()
        self.index_dir, self.queries, self.k = index_dir, list(queries), k
        self.searcher: Searcher | None = None

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> list[tuple[int, list[list[Any]]]]:
        """``batch``: ``[b]`` int64 query positions -> ``(position, [[docid, score], ...])`` per query."""
        if self.searcher is None:
            self.searcher = Searcher.load(self.index_dir, verify=False, device=self.device)
        positions = batch.tolist()
        hits = self.searcher.batch_search([self.queries[i] for i in positions], self.k)
        return [(i, [[h.docid, h.score] for h in row]) for i, row in zip(positions, hits)]


class _RankFiles(BasePredictionWriter):
    """Writes each process's predictions to ``directory/rank-R.json``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(write_interval="epoch")
        self.directory = directory

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        rows = [row for batch in predictions for row in batch]
        (self.directory / f"rank-{trainer.global_rank}.json").write_text(json.dumps(rows), encoding="utf-8")


def sharded_batch_search(index_dir: str | Path, queries: Sequence[str], k: int, devices: int,
                         accelerator: str = "auto", batch_size: int = 64) -> list[list[Hit]]:
    """``Searcher.batch_search(queries, k)`` of the index at ``index_dir``, spread over ``devices`` processes.

    Args:
        accelerator: ``"gpu"``, ``"cpu"`` or ``"auto"`` (GPUs when there are any), as in Lightning.
        batch_size: queries one process searches at a time.
    """
    with tempfile.TemporaryDirectory(prefix="genir-sharded-") as scratch:
        trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                            logger=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[_RankFiles(Path(scratch))])
        loader = DataLoader(torch.arange(len(queries)), batch_size=batch_size, shuffle=False)
        trainer.predict(_SearchModule(str(index_dir), queries, k), loader, return_predictions=False)
        found: dict[int, list[Hit]] = {}
        for path in sorted(Path(scratch).glob("rank-*.json")):
            for position, hits in json.loads(path.read_text(encoding="utf-8")):
                found[position] = [Hit(docid, float(score)) for docid, score in hits]
    return [found[i] for i in range(len(queries))]
