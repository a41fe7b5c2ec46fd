"""``dsi`` and ``se-dsi``: a seq2seq model trained to map documents and queries to docids, searched
by constrained beam search over the docid trie.

``se-dsi`` is ``dsi`` with SE-DSI's defaults: elaborative-description docids (a query-like text
per document, from a query generator) and rehearsal contents (salient sentences) among the views.
Without a query generator (``querygen=``), a document's description and pseudo-queries are
keyword queries from its salient sentences (:mod:`genir.views.querygen`).

Building an index assigns docids, builds the training views, trains through the shared seq2seq
layer (:func:`genir.seq2seq.fit.fit`) and writes the files of :mod:`genir.dsi.index_files`.
Training checkpoints live outside the index (:func:`genir.seq2seq.fit.run_directory`): a build
that is killed resumes from its last checkpoint when the same command is run again.

Growing (:meth:`Searcher.add` / ``delete``), with zero optimizer steps:

* add (atomic docids whose output rows are document embeddings, ``docid_embeddings`` frozen or
  init): each new document gets the next atomic docid, and its LM-head row is its embedding as a
  build places it (:func:`genir.seq2seq.model.grow_output_vocab`: the same seeded projection when
  the widths differ, rescaled to the docid rows' norm, which a frozen build gives every row), so
  the new rows are those a build from scratch on the same documents starts from; nothing else in
  the model changes. Other docid schemes need training to place a new document: refused.
* delete (any docid scheme): the document leaves the trie and the results; its docid stays
  reserved (:meth:`genir.dsi.docids.DocidScheme.delete`). The model is copied unchanged; exact
  atomic search masks the deleted rows.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genir.devices import resolve_device
from genir.dsi.config import (
    DSIConfig,
    SEDSIConfig,
    docid_embeddings_mode,
    freeze_encoder_setting,
)
from genir.dsi.docids import (
    AtomicDocids,
    DocidScheme,
    load_docid_scheme,
    new_docid_scheme,
)
from genir.dsi.elaborative_docids import ElaborativeDocids
from genir.dsi.index_files import (
    DOCIDS_DIR,
    FILES,
    MODEL_DIR,
    TOKENIZER_DIR,
    TRIE_DIR,
    write_docid_files,
    write_dsi_files,
)
from genir.errors import GenirError
from genir.indexer.artifact import Manifest, read_manifest
from genir.indexer.collection import Collection, Document
from genir.kernels.beam_search import beam_search
from genir.kernels.single_token import single_token_topk
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.retrieval.dense import dense_embeddings
from genir.retrieval.encoder import DEFAULT_ENCODER, TextEncoder
from genir.retrieval.searcher import Hit, Searcher
from genir.seq2seq.fit import TrainSettings, fit, run_directory
from genir.seq2seq.model import (
    T5_PREFIX,
    build_seq2seq,
    freeze_output_embeddings,
    grow_output_vocab,
)
from genir.seq2seq.model_io import load_seq2seq
from genir.seq2seq.vocab import DECODER_START, EOS, FIRST_TOKEN
from genir.views.pairs import ViewConfig, training_pairs
from genir.views.querygen import query_generator

QUERY_BATCH = 16  # queries decoded together: beams x batch rows share one decoder forward
GPU_QUERY_BATCH = 256  # the same on a GPU, where a step's cost barely grows with its rows


class DSISearcher(Searcher):
    method = "dsi"
    Config = DSIConfig
    description = "DSI: seq2seq model generating docids under a docid trie (atomic | naive | semantic | elaborative)"

    def __init__(self, config: DSIConfig, manifest: Manifest, directory: Path):
        super().__init__(config, manifest)
        from transformers import AutoTokenizer

        self.directory = directory
        self.model = load_seq2seq(directory / MODEL_DIR)
        self.tokenizer = AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR)
        self.scheme: DocidScheme = load_docid_scheme(directory / DOCIDS_DIR)
        self.trie = DocidTrie.load(directory / TRIE_DIR)
        self.constraint = DocidTrieConstraint(self.trie)
        self.docids = list(self.scheme.sequences())  # trie row -> document id (live documents)
        self.position_ids = self.scheme.position_ids()  # atomic row (token - 2) -> document id, deleted included
        self.deleted_rows = torch.tensor(self.scheme.deleted_positions(), dtype=torch.int64)

    @classmethod
    def build(cls, collection: Collection, config: DSIConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        if config.queries_split and config.queries_split not in collection.splits():
            # Checked first: the document embeddings computed before the views are read take minutes.
            raise GenirError(f"collection {collection.name!r} has no qrels split {config.queries_split!r} to train on "
                             f"(available: {', '.join(collection.splits()) or 'none'}); "
                             "--set queries_split= trains on the documents alone")
        docs = list(collection.docs())
        generator = query_generator(config.querygen, docs, config.pseudo_query_words)
        scheme = new_docid_scheme(config.docids)
        if isinstance(scheme, ElaborativeDocids):
            scheme.describer = generator.descriptions
        docid_embeddings = docid_embeddings_mode(config)
        frozen_encoder = freeze_encoder_setting(config)
        started = time.perf_counter()
        embeddings = _embeddings(docs, config) if config.docids == "semantic" or docid_embeddings != "none" else None
        embedding_seconds = time.perf_counter() - started
        scheme.assign(docs, embeddings)
        views = ViewConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(ViewConfig)})
        pairs = [(text, scheme.sequence(docid)) for text, docid in training_pairs(collection, docs, views, generator)]
        tokenizer = config.tokenizer if config.model.startswith(T5_PREFIX) else None
        vectors = None
        if docid_embeddings != "none":  # row of each document's token = its embedding; pad and eos stay fresh
            vectors = np.zeros((scheme.vocab_size, embeddings.shape[1]), dtype=np.float32)
            vectors[[scheme.sequence(d.id)[0] for d in docs]] = embeddings
        seq2seq = build_seq2seq(config.model, scheme.vocab_size, tokenizer=tokenizer, decoder_layers=config.decoder_layers,
                                docid_embeddings=vectors, seed=config.seed)
        if docid_embeddings == "frozen":
            freeze_output_embeddings(seq2seq.model)
        stats = fit(seq2seq, pairs, TrainSettings.of(config), run_directory(collection, config), frozen_encoder=frozen_encoder)
        started = time.perf_counter()
        files = write_dsi_files(directory, seq2seq.model, seq2seq.tokenizer, scheme)
        return {**files, **stats, "docid_embeddings": docid_embeddings, "frozen_encoder": frozen_encoder,
                "embedding_seconds": round(embedding_seconds, 1), "write_seconds": round(time.perf_counter() - started, 1)}

    def write_files(self, directory: Path) -> None:
        for name in FILES:
            shutil.copytree(self.directory / name, directory / name)

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    def to(self, device: str | torch.device | None) -> DSISearcher:
        target = resolve_device(device)
        self.model.to(target)
        self.constraint = DocidTrieConstraint(self.trie, target)
        return self

    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        if self.config.atomic_search not in {"beam", "exact", "first"}:
            raise GenirError(f"atomic_search={self.config.atomic_search!r}: choose beam, exact or first")
        single = isinstance(self.scheme, AtomicDocids) and self.config.atomic_search != "beam"
        results: list[list[Hit]] = []
        size = GPU_QUERY_BATCH if self.model.device.type == "cuda" else QUERY_BATCH
        for start in range(0, len(queries), size):
            batch = self.tokenizer(list(queries[start:start + size]), truncation=True,
                                   max_length=self.config.max_source_len, padding=True, return_tensors="pt").to(self.model.device)
            if single:
                rows, scores = single_token_topk(self.model, batch["input_ids"], batch["attention_mask"], FIRST_TOKEN,
                                                 len(self.position_ids), k, EOS, DECODER_START,
                                                 first_step_only=self.config.atomic_search == "first",
                                                 exclude=self.deleted_rows)
                results += [[Hit(self.position_ids[r], s) for r, s in zip(rs, ss)] for rs, ss in zip(rows.tolist(), scores.tolist())]
                continue
            out = beam_search(self.model, batch["input_ids"], self.constraint, attention_mask=batch["attention_mask"],
                              num_beams=max(k, self.config.beams), num_return_sequences=k,
                              max_new_tokens=self.scheme.max_length)
            rows = self.constraint.docid(out.states)  # [B, k] docid rows, -1 if none
            for b in range(rows.shape[0]):
                results.append([
                    Hit(self.docids[int(rows[b, r])], float(out.scores[b, r]))
                    for r in range(k) if out.valid[b, r] and rows[b, r] >= 0
                ])
        return results


    # -- growing and shrinking -----------------------------------------------------------
    def _present(self, ids: Sequence[str]) -> set[str]:
        live = set(self.docids)
        return {docid for docid in ids if docid in live}

    def _write_added(self, docs: list[Document], staging: Path) -> dict[str, Any]:
        mode = docid_embeddings_mode(self.config)
        if not isinstance(self.scheme, AtomicDocids) or mode == "none":
            raise GenirError(f"adding documents to a {self.method} index needs atomic docids whose output rows are document "
                             f"embeddings (docid_embeddings=frozen or init); this one has {self.scheme.scheme} docids"
                             + (f" with docid_embeddings={mode}" if isinstance(self.scheme, AtomicDocids) else "")
                             + ", which place a new document only by training: not supported yet")
        started = time.perf_counter()
        embeddings = _new_embeddings(docs, self.config)  # [n, d]
        embedding_seconds = time.perf_counter() - started
        started = time.perf_counter()
        self.scheme.extend(docs)
        grow_output_vocab(self.model, self.scheme.vocab_size, embeddings, seed=self.config.seed)
        if mode == "frozen":
            freeze_output_embeddings(self.model)
        files = write_dsi_files(staging, self.model, self.tokenizer, self.scheme)
        return {**files, "add_embedding_seconds": round(embedding_seconds, 3),
                "add_write_seconds": round(time.perf_counter() - started, 3), "add_optimizer_steps": 0}

    def _write_deleted(self, ids: list[str], staging: Path) -> dict[str, Any]:
        self.scheme.delete(ids)
        for name in (MODEL_DIR, TOKENIZER_DIR):  # unchanged: copied as they are
            shutil.copytree(self.directory / name, staging / name)
        return write_docid_files(staging, self.scheme)


class SEDSISearcher(DSISearcher):
    method = "se-dsi"
    Config = SEDSIConfig
    description = "SE-DSI: elaborative-description docids and rehearsal contents (else as dsi)"


def _new_embeddings(docs: list[Document], config: DSIConfig) -> np.ndarray:
    """``[len(docs), d]`` float32 embeddings of documents added to a built index, by the encoder its
    rows came from: the dense index named by ``embeddings_from`` (its model and length), else genir's default."""
    model, max_length = DEFAULT_ENCODER, 256
    if config.embeddings_from:
        try:
            dense = read_manifest(Path(config.embeddings_from), verify=False).config
        except GenirError:
            raise GenirError(f"this index's rows came from the dense index {config.embeddings_from} (embeddings_from), "
                             "which is gone: the new documents cannot be embedded alike") from None
        model, max_length = dense.get("model", DEFAULT_ENCODER), int(dense.get("max_length", 256))
    return TextEncoder(model, max_length).encode([d.contents for d in docs])


def _embeddings(docs: list[Document], config: DSIConfig) -> np.ndarray:
    """``[len(docs), d]`` float32 document embeddings (semantic docids, docid rows), reused when possible."""
    if config.embeddings_from:
        return dense_embeddings(Path(config.embeddings_from), [d.id for d in docs])
    return TextEncoder(DEFAULT_ENCODER).encode([d.contents for d in docs], progress="embedding documents")
