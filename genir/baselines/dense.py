"""Dense retrieval on FAISS: the dense baseline.

FAISS is imported where an index is built or opened, so other methods can reuse a dense index's
embeddings (:func:`genir.encoding.stored.stored_embeddings`) on a machine without it.

Documents (``title + " " + text``) and queries are embedded by one encoder (all-MiniLM-L6-v2 by
default: mean pooling, L2-normalized) and matched by inner product. The FAISS index type is any
``index_factory`` string: ``Flat`` (exact), ``HNSW32``, ``IVF256,PQ32`` ... The document
embeddings are kept in the index directory, so rebuilding with another index type over the same
corpus and encoder (``--overwrite``) does not encode again. ``genir index --devices N`` encodes
the documents with one process per device (:mod:`genir.encoding.encoder`: the same embeddings).

The query encoder is named by the index's config. A named model (``all-MiniLM-L6-v2``, a Hugging
Face id) is loaded as such; a model *folder* is copied into the index (``encoder/``, covered by
the manifest's hashes) when the index is built, and an index whose config names a folder outside
it is refused on loading.

Growing (:meth:`Searcher.add` / ``delete``): an add encodes only the new documents with the
index's own encoder, appends their rows to ``embeddings.npy`` and ``docids.json`` and adds them to
the FAISS index as it is (a trained IVF/PQ index keeps its centroids), so old documents keep
their rows and their scores. A delete drops the rows and rebuilds the FAISS index from the
stored embeddings (no encoding): for ``Flat`` exactly the index a build of the remaining
documents gives; an IVF/PQ index is trained again on them, as a build would be.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field

from genir.encoding.encoder import (
    DEFAULT_ENCODER,
    TextEncoder,
    document_cache,
    resolve_model,
)
from genir.encoding.stored import DOCIDS, EMBEDDINGS
from genir.errors import CorruptIndexError, GenirError
from genir.indexer.artifact import read_manifest
from genir.indexer.collection import Collection, Document
from genir.retrieval.searcher import Addition, Deletion, Hit, Opening, Searcher
from genir.settings import Settings

if TYPE_CHECKING:
    import faiss

FAISS_INDEX = "index.faiss"
ENCODER_DIR = "encoder"


class DenseConfig(Settings):
    model: str = Field(DEFAULT_ENCODER, description="the encoder of documents and queries: a model name (Hugging Face id) or folder")
    max_length: int = Field(256, ge=1, description="tokens of a document or query read by the encoder")
    batch_size: int = Field(64, ge=1, description="texts encoded together")
    factory: str = Field("Flat", description="FAISS index_factory string: Flat (exact), HNSW32, IVF256,PQ32...")
    nprobe: int = Field(16, ge=1, description="IVF lists visited per query")
    ef_search: int = Field(128, ge=1, description="HNSW search breadth")


class DenseSearcher(Searcher):
    method = "dense"
    Config = DenseConfig
    description = "FAISS over all-MiniLM-L6-v2 embeddings (mean pooling, L2-normalized)"
    search_settings = ("nprobe", "ef_search", "batch_size")

    def __init__(self, opening: Opening):
        super().__init__(opening)
        directory, config = opening.directory, self.config
        encoder = _query_encoder(directory, config.model)
        import faiss

        try:
            self.docids: list[str] = json.loads((directory / DOCIDS).read_text(encoding="utf-8"))
            self.index = faiss.read_index(str(directory / FAISS_INDEX))
        except (OSError, ValueError, RuntimeError) as e:  # faiss reports damage as RuntimeError
            raise CorruptIndexError(f"{directory}: unreadable dense index ({type(e).__name__}: {e})") from None
        _set_search_params(self.index, config)
        self.encoder = TextEncoder(encoder, config.max_length)
        self.to(opening.device)

    @classmethod
    def build(cls, collection: Collection, config: DenseConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        docs = list(collection.docs())
        embeddings = _reusable_embeddings(previous, collection, config)
        reused = embeddings is not None
        encoder = None
        if embeddings is None or _is_folder(config.model):
            encoder = TextEncoder(config.model, config.max_length)
        if embeddings is None:
            embeddings = encoder.encode([d.contents for d in docs], config.batch_size, progress="encoding documents",
                                        cache=document_cache())
        if _is_folder(config.model):  # the index must hold every file it loads
            encoder.model.save_pretrained(directory / ENCODER_DIR, safe_serialization=True)
            encoder.tokenizer.save_pretrained(directory / ENCODER_DIR)
        return {**write_dense_files(directory, docs, embeddings, config.factory), "embeddings_reused": reused}

    def write_files(self, directory: Path) -> None:
        for name in (EMBEDDINGS, FAISS_INDEX, DOCIDS):
            shutil.copy2(self.directory / name, directory / name)
        if (self.directory / ENCODER_DIR).is_dir():
            shutil.copytree(self.directory / ENCODER_DIR, directory / ENCODER_DIR)

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    # -- growing and shrinking -----------------------------------------------------------
    def _present(self, ids: Sequence[str]) -> set[str]:
        known = set(self.docids)
        return {docid for docid in ids if docid in known}

    def _write_added(self, docs: list[Document], staging: Path, addition: Addition) -> dict[str, Any]:
        import faiss

        started = time.perf_counter()
        new = self.encoder.encode([d.contents for d in docs], self.config.batch_size, cache=document_cache())  # [n, d]
        encoding = time.perf_counter() - started
        embeddings = np.concatenate([np.load(self.directory / EMBEDDINGS, allow_pickle=False), new])
        index = faiss.read_index(str(self.directory / FAISS_INDEX))
        index.add(new)
        self._write_rows(staging, embeddings, [*self.docids, *(d.id for d in docs)], index)
        return {"num_docs": len(embeddings), "add_encoding_seconds": round(encoding, 3)}

    def _write_deleted(self, ids: list[str], staging: Path, deletion: Deletion) -> dict[str, Any]:
        gone = set(ids)
        keep = np.array([i for i, docid in enumerate(self.docids) if docid not in gone], dtype=np.int64)
        embeddings = np.load(self.directory / EMBEDDINGS, allow_pickle=False)[keep]
        self._write_rows(staging, embeddings, [self.docids[i] for i in keep], _faiss_index(embeddings, self.config.factory))
        return {"num_docs": len(embeddings)}

    def _write_rows(self, staging: Path, embeddings: np.ndarray, docids: list[str], index: faiss.Index) -> None:
        import faiss

        np.save(staging / EMBEDDINGS, embeddings)
        (staging / DOCIDS).write_text(json.dumps(docids), encoding="utf-8")
        faiss.write_index(index, str(staging / FAISS_INDEX))
        if (self.directory / ENCODER_DIR).is_dir():
            shutil.copytree(self.directory / ENCODER_DIR, staging / ENCODER_DIR)

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


def write_dense_files(directory: Path, docs: Sequence[Document], embeddings: np.ndarray, factory: str) -> dict[str, Any]:
    """Write a dense index's rows (``[N, d]`` float32 ``embeddings``, row ``i`` = ``docs[i]``) and its
    FAISS index of type ``factory`` into ``directory``; returns the manifest's statistics."""
    import faiss

    np.save(directory / EMBEDDINGS, embeddings)
    (directory / DOCIDS).write_text(json.dumps([d.id for d in docs]), encoding="utf-8")
    faiss.write_index(_faiss_index(embeddings, factory), str(directory / FAISS_INDEX))
    return {"num_docs": len(docs), "dim": int(embeddings.shape[1])}


def _is_folder(model: str) -> bool:
    """Whether ``model`` names a folder on this machine (not a genir alias or a Hugging Face id)."""
    return resolve_model(model) == model and Path(model).expanduser().is_dir()


def _query_encoder(directory: Path, model: str) -> str:
    """What a dense index loads its query encoder from: its own copy, or a named model.

    Raises:
        CorruptIndexError: the config names a model folder and the index holds no copy of it.
    """
    if (directory / ENCODER_DIR).is_dir():
        return str(directory / ENCODER_DIR)
    if _is_folder(model) or Path(model).is_absolute():
        raise CorruptIndexError(f"{directory}: its config names the model folder {model!r}, outside the index; genir "
                                "loads only models inside an index (covered by its manifest) or named models")
    return model


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
    return np.load(previous / EMBEDDINGS, allow_pickle=False) if same else None


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
