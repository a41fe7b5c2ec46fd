"""Dense retrieval on FAISS: the dense baseline.

FAISS is imported where an index is built or opened, so other methods can reuse a dense index's
embeddings (:func:`dense_embeddings`) on a machine without it.

Documents (``title + " " + text``) and queries are embedded by one encoder (all-MiniLM-L6-v2 by
default: mean pooling, L2-normalized) and matched by inner product. The FAISS index type is any
``index_factory`` string: ``Flat`` (exact), ``HNSW32``, ``IVF256,PQ32`` ... The document
embeddings are kept in the index directory, so rebuilding with another index type over the same
corpus and encoder (``--overwrite``) does not encode again.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genir.errors import GenirError
from genir.indexer.artifact import Manifest, read_manifest
from genir.indexer.collection import Collection
from genir.retrieval.encoder import DEFAULT_ENCODER, TextEncoder
from genir.retrieval.searcher import Hit, Searcher

if TYPE_CHECKING:
    import faiss

EMBEDDINGS = "embeddings.npy"
FAISS_INDEX = "index.faiss"
DOCIDS = "docids.json"


@dataclass
class DenseConfig:
    model: str = DEFAULT_ENCODER
    max_length: int = 256
    batch_size: int = 64
    factory: str = "Flat"
    nprobe: int = 16  # IVF lists visited per query
    ef_search: int = 128  # HNSW search breadth


class DenseSearcher(Searcher):
    method = "dense"
    Config = DenseConfig
    description = "FAISS over all-MiniLM-L6-v2 embeddings (mean pooling, L2-normalized)"

    def __init__(self, config: DenseConfig, manifest: Manifest, directory: Path):
        super().__init__(config, manifest)
        self.directory = directory
        self.docids: list[str] = json.loads((directory / DOCIDS).read_text(encoding="utf-8"))
        import faiss

        self.index = faiss.read_index(str(directory / FAISS_INDEX))
        _set_search_params(self.index, config)
        self.encoder = TextEncoder(config.model, config.max_length)

    @classmethod
    def build(cls, collection: Collection, config: DenseConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        docs = list(collection.docs())
        embeddings = _reusable_embeddings(previous, collection, config)
        reused = embeddings is not None
        if embeddings is None:
            encoder = TextEncoder(config.model, config.max_length)
            embeddings = encoder.encode([d.contents for d in docs], config.batch_size, progress="encoding documents")
        np.save(directory / EMBEDDINGS, embeddings)
        (directory / DOCIDS).write_text(json.dumps([d.id for d in docs]), encoding="utf-8")
        import faiss

        faiss.write_index(_faiss_index(embeddings, config.factory), str(directory / FAISS_INDEX))
        return {"num_docs": len(docs), "dim": int(embeddings.shape[1]), "embeddings_reused": reused}

    def write_files(self, directory: Path) -> None:
        for name in (EMBEDDINGS, FAISS_INDEX, DOCIDS):
            shutil.copy2(self.directory / name, directory / name)

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    def to(self, device: str | torch.device | None) -> DenseSearcher:
        self.encoder.to(device)
        return self

    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        vectors = self.encoder.encode(queries, self.config.batch_size)
        scores, rows = self.index.search(vectors, k)
        return [
            [Hit(self.docids[r], float(s)) for s, r in zip(score_row, row) if r >= 0]
            for score_row, row in zip(scores, rows)
        ]


def dense_embeddings(directory: Path, doc_ids: Sequence[str]) -> np.ndarray:
    """``[len(doc_ids), d]`` float32: the stored embeddings of those documents in a dense index.

    Other methods reuse a dense index of the same corpus (semantic docids, docid rows) instead of
    encoding the documents again.

    Raises:
        GenirError: ``directory`` is not a dense index, or it lacks one of the documents.
    """
    manifest = read_manifest(directory, verify=False)
    if manifest.method != DenseSearcher.method:
        raise GenirError(f"{directory}: not a dense index (method {manifest.method!r}); its embeddings cannot be reused")
    row = {doc_id: i for i, doc_id in enumerate(json.loads((directory / DOCIDS).read_text(encoding="utf-8")))}
    missing = [d for d in doc_ids if d not in row]
    if missing:
        raise GenirError(f"{directory}: {len(missing)} of the documents are not in this dense index (e.g. {missing[0]!r})")
    matrix = np.load(directory / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    return np.asarray(matrix[[row[d] for d in doc_ids]], dtype=np.float32)


def _reusable_embeddings(previous: Path | None, collection: Collection, config: DenseConfig) -> np.ndarray | None:
    """The replaced index's embeddings, if they came from the same corpus, encoder and length."""
    if previous is None:
        return None
    try:
        manifest = read_manifest(previous)
    except GenirError:
        return None
    same = (
        manifest.method == DenseSearcher.method
        and manifest.collection.get("sha256") == collection.fingerprint
        and manifest.config.get("model") == config.model
        and manifest.config.get("max_length") == config.max_length
    )
    return np.load(previous / EMBEDDINGS) if same else None


def _faiss_index(embeddings: np.ndarray, factory: str) -> faiss.Index:
    """Build the FAISS index named by ``factory`` over ``[n, d]`` float32 unit vectors."""
    import faiss

    try:
        index = faiss.index_factory(embeddings.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise GenirError(f"invalid FAISS index factory string {factory!r}: {str(e).splitlines()[-1]}") from None
    if not index.is_trained:
        index.train(embeddings)
    index.add(embeddings)
    return index


def _set_search_params(index: faiss.Index, config: DenseConfig) -> None:
    import faiss

    params = faiss.ParameterSpace()
    if "IVF" in config.factory:
        params.set_index_parameter(index, "nprobe", config.nprobe)
    if "HNSW" in config.factory:
        params.set_index_parameter(index, "efSearch", config.ef_search)
