"""``seal-hybrid``: SEAL fused with Lucene BM25.

Fusion is normalized score interpolation: each method's ``depth`` best documents for a query are
min-max normalized to ``[0, 1]`` within that query's list, and a document scores

    hybrid_weight * seal(d) + (1 - hybrid_weight) * bm25(d)

with 0 for a method that did not return it (``fusion=interp``). ``fusion=rrf`` uses reciprocal-rank
fusion instead, ``sum over methods of 1 / (rrf_k + rank)`` (the weight is ignored).

The index directory is a seal index plus ``bm25/`` (a Lucene index built with BM25's defaults).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genir.errors import GenirError
from genir.indexer.artifact import Manifest
from genir.indexer.collection import Collection
from genir.retrieval.bm25 import BM25Config, BM25Searcher
from genir.retrieval.searcher import Hit
from genir.seal.searcher import SEALConfig, SEALSearcher

BM25_DIR = "bm25"
FUSIONS = ("interp", "rrf")


@dataclass
class SEALHybridConfig(SEALConfig):
    fusion: str = "interp"  # interp | rrf
    hybrid_weight: float = 0.2  # SEAL's share of the interpolated score
    depth: int = 100  # documents each method contributes
    rrf_k: int = 60


def _check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise GenirError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")


def fuse(runs: Sequence[list[Hit]], weights: Sequence[float], fusion: str, rrf_k: int = 60) -> list[Hit]:
    """One query's fused ranking of several methods' hit lists (module docstring), best first.

    Raises:
        GenirError: an unknown fusion.
    """
    _check_fusion(fusion)
    fused: dict[str, float] = {}
    for hits, weight in zip(runs, weights):
        if not hits:
            continue
        if fusion == "rrf":
            contributions = [1.0 / (rrf_k + rank) for rank in range(1, len(hits) + 1)]
        else:
            top, bottom = hits[0].score, min(h.score for h in hits)
            spread = top - bottom
            contributions = [weight * ((h.score - bottom) / spread if spread > 0 else 1.0) for h in hits]
        for hit, value in zip(hits, contributions):
            fused[hit.docid] = fused.get(hit.docid, 0.0) + value
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return [Hit(docid, score) for docid, score in ranked]


class SEALHybridSearcher(SEALSearcher):
    method = "seal-hybrid"
    Config = SEALHybridConfig
    description = "SEAL + BM25, fused by normalized score interpolation (or reciprocal rank)"

    def __init__(self, config: SEALHybridConfig, manifest: Manifest, directory: Path):
        _check_fusion(config.fusion)
        super().__init__(config, manifest, directory)
        self.bm25 = BM25Searcher(BM25Config(), manifest, directory / BM25_DIR)

    @classmethod
    def build(cls, collection: Collection, config: SEALHybridConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        _check_fusion(config.fusion)
        (directory / BM25_DIR).mkdir()
        BM25Searcher.build(collection, BM25Config(), directory / BM25_DIR, None)
        return super().build(collection, config, directory, previous)

    def write_files(self, directory: Path) -> None:
        super().write_files(directory)
        (directory / BM25_DIR).mkdir()
        self.bm25.write_files(directory / BM25_DIR)

    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = min(max(k, self.config.depth), self.num_docs)
        seal = super()._batch_search(queries, depth)
        bm25 = self.bm25.batch_search(queries, depth)
        weights = (self.config.hybrid_weight, 1.0 - self.config.hybrid_weight)
        return [fuse((s, b), weights, self.config.fusion, self.config.rrf_k)[:k] for s, b in zip(seal, bm25)]
