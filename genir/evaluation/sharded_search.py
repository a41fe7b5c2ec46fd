"""Batch search spread over devices (``genir run --devices N``): :func:`genir.encoding.sharded.predict_sharded`
with one index opened per process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genir.encoding.sharded import predict_sharded
from genir.retrieval.searcher import Hit, Searcher, check_queries


@dataclass
class _SearchShard:
    """Opens the index on this process's device and searches queries by position: payload ``[(docid, score), ...]``."""

    index_dir: str
    queries: list[str]
    k: int
    settings: tuple[str, ...] = ()  # search settings KEY=VALUE (Searcher.load)
    searcher: Searcher | None = field(default=None, repr=False)

    def open(self, device: torch.device) -> None:
        self.searcher = Searcher.load(self.index_dir, verify=False, device=device, settings=self.settings)

    def __call__(self, positions: list[int]) -> list[list[tuple[str, float]]]:
        hits = self.searcher.batch_search([self.queries[i] for i in positions], self.k)
        return [[(h.docid, h.score) for h in row] for row in hits]


def sharded_batch_search(index_dir: str | Path, queries: Sequence[str], k: int, devices: int,
                         accelerator: str = "auto", batch_size: int = 64, settings: Sequence[str] = ()) -> list[list[Hit]]:
    """``Searcher.batch_search(queries, k)`` of the index at ``index_dir``, spread over ``devices`` processes.

    The hits are the single-process ones; scores agree to float rounding (a process batches other
    queries together, so padding differs).

    Args:
        accelerator: ``"gpu"``, ``"cpu"`` or ``"auto"`` (GPUs when there are any), as in Lightning.
        batch_size: queries one process searches at a time.
        settings: search settings ``KEY=VALUE`` (:meth:`Searcher.load`).
    """
    queries = check_queries(queries)  # before any process starts
    found = predict_sharded(_SearchShard(str(index_dir), queries, k, tuple(settings)), len(queries), devices, accelerator,
                            batch_size)
    return [[Hit(docid, float(score)) for docid, score in hits] for hits in found]
