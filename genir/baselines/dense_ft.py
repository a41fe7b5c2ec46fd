"""``dense-ft``: the dense baseline with its encoder fine-tuned on the collection's training queries.

What a user with training queries would do instead of a generative index, so that supervised
generative methods are compared with it rather than with an unsupervised dense retriever.

Recipe (sentence-transformers' bi-encoder fine-tuning, as its documentation trains retrievers):
the encoder (all-MiniLM-L6-v2 by default; any Hugging Face encoder) is wrapped as a
``SentenceTransformer`` of the same function genir searches with (mean pooling, L2
normalization) and trained with ``MultipleNegativesRankingLoss`` (in-batch negatives: each
query's relevant document against the other documents of its batch) on the ``(query, relevant
document)`` pairs of ``queries_split``, less the seeded dev carve of :mod:`genir.indexer.dev_split`
(the same queries DSI, SEAL and the hybrids hold out). After each epoch, and before the first,
the whole corpus is encoded and the dev queries scored (nDCG@10); the best epoch is kept, the
untrained encoder included, so the index is never worse on dev than ``dense`` (without dev
queries, ``dev_fraction=0``, the last epoch is kept).

The kept encoder is saved inside the index (``encoder/``, safetensors) and the index is then the
dense index of that encoder: search, add and delete are :class:`DenseSearcher`'s. The manifest
records the dev curve and the epoch kept (``dev_best``, which ``genir bench`` prints).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from genir.baselines.dense import ENCODER_DIR, DenseConfig, DenseSearcher, write_dense_files
from genir.devices import resolve_device
from genir.encoding.encoder import TextEncoder, document_cache, resolve_model
from genir.errors import GenirError
from genir.indexer.collection import Collection, Document, Qrels
from genir.indexer.dev_split import DEFAULT_DEV_FRACTION, DevFraction, split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Forget, Hit
from genir.settings import Seed

log = logging.getLogger(__name__)

DEV_MEASURE = "nDCG@10"


class DenseFTConfig(DenseConfig):
    queries_split: str = Field("train", description="the qrels split whose (query, relevant document) pairs it trains on")
    dev_fraction: DevFraction = DEFAULT_DEV_FRACTION
    epochs: int = Field(2, ge=0, description="passes over the training pairs (the dev carve chooses among 0..epochs)")
    train_batch_size: int = Field(32, ge=2, description="pairs per step: each query's in-batch negatives are the other documents")
    lr: float = Field(2e-5, gt=0, description="AdamW learning rate")
    warmup_fraction: float = Field(0.1, ge=0, le=1, description="share of all steps of linear warm-up from 0 (then constant)")
    seed: Seed = 0


class DenseFTSearcher(DenseSearcher):
    method = "dense-ft"
    Config = DenseFTConfig
    description = ("dense with its encoder fine-tuned on the collection's training queries (sentence-transformers, in-batch "
                   "negatives; the epoch chosen on the dev carve)")

    def forget_modes(self) -> tuple[Forget, ...]:
        """``mask`` only: a deletion removes the document's row; the fine-tuned encoder, which saw its
        training queries, is kept (unlearning or retraining it is not implemented)."""
        return (Forget.MASK,)

    @classmethod
    def build(cls, collection: Collection, config: DenseFTConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        if config.queries_split not in collection.splits():
            raise GenirError(f"dense-ft trains on qrels/{config.queries_split}.tsv, which collection {collection.name!r} does not "
                             "have; use dense without training queries")
        docs = list(collection.docs())
        split = split_dev(collection, config.queries_split, config.dev_fraction, config.seed)
        pairs = _pairs(collection, split.train, docs)
        if not pairs:
            raise GenirError(f"no judged (query, document) pair in {config.queries_split} to fine-tune on")
        dev_queries = split.dev_queries(collection)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".epochs-") as scratch:
            curve, best_dir, embeddings = _fine_tune(pairs, docs, dev_queries, split.dev, config, Path(scratch))
            shutil.copytree(best_dir, directory / ENCODER_DIR)
        stats = write_dense_files(directory, docs, embeddings, config.factory)
        best = max(curve, key=lambda point: point[2]) if dev_queries else curve[-1]  # as _fine_tune chose
        return {**stats, "train_pairs": len(pairs), "dev_queries": len(dev_queries), "dev_curve": curve, "dev_best": best}


def _pairs(collection: Collection, qrels: Qrels, docs: list[Document]) -> list[tuple[str, str]]:
    """``(query text, document contents)`` for every positive judgement, in qrels order."""
    contents = {d.id: d.contents for d in docs}
    queries = collection.queries
    return [(queries[qid], contents[doc_id]) for qid, grades in qrels.items() for doc_id, grade in grades.items()
            if grade > 0 and doc_id in contents]


def _fine_tune(pairs: list[tuple[str, str]], docs: list[Document], dev_queries: dict[str, str], dev_qrels: Qrels,
               config: DenseFTConfig, scratch: Path) -> tuple[list[list[float]], Path, np.ndarray]:
    """Train ``config.epochs`` epochs; returns the dev curve ``[[epoch, steps, score], ...]`` (the
    manifest's ``dev_curve``, as a seq2seq build records it), the folder of
    the best epoch's encoder (under ``scratch``) and its ``[N, d]`` float32 document embeddings."""
    from sentence_transformers import SentenceTransformer, losses
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    device = resolve_device()
    torch.manual_seed(config.seed)
    word = Transformer(resolve_model(config.model), max_seq_length=config.max_length)
    model = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean"), Normalize()], device=str(device))
    loss = losses.MultipleNegativesRankingLoss(model)
    steps_per_epoch = -(-len(pairs) // config.train_batch_size)
    warmup = max(1, round(config.warmup_fraction * steps_per_epoch * config.epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    rng = np.random.default_rng(config.seed)
    curve: list[list[float]] = []
    best: tuple[float, Path, np.ndarray] | None = None
    for epoch in range(config.epochs + 1):
        if epoch:
            model.train()
            order = rng.permutation(len(pairs))
            for start in range(0, len(order), config.train_batch_size):
                batch = [pairs[i] for i in order[start:start + config.train_batch_size]]
                features = [_on(model.preprocess([p[side] for p in batch]), device) for side in (0, 1)]
                value = loss(features, labels=None)
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
                schedule.step()
        folder = scratch / f"epoch-{epoch}"
        model[0].auto_model.save_pretrained(folder, safe_serialization=True)
        model[0].tokenizer.save_pretrained(folder)
        # The untrained encoder's embeddings are the dense index's: shared through the row bank.
        score, embeddings = _dev_score(folder, docs, dev_queries, dev_qrels, config, cache=document_cache() if epoch == 0 else None)
        curve.append([epoch, epoch * steps_per_epoch, round(score, 4)])
        log.info("dense-ft epoch %d: dev %s %.4f", epoch, DEV_MEASURE, score)
        # Ties keep the earlier epoch, the untrained start first; without dev queries, the last epoch.
        if best is None or score > best[0] or not dev_queries:
            best = (score, folder, embeddings)
    assert best is not None
    return curve, best[1], best[2]


def _on(features: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A tokenized batch with its tensors on ``device`` (sentence-transformers adds non-tensor entries)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def _dev_score(folder: Path, docs: list[Document], dev_queries: dict[str, str], dev_qrels: Qrels,
               config: DenseFTConfig, cache: Path | None) -> tuple[float, np.ndarray]:
    """nDCG@10 of the encoder in ``folder`` on the dev queries over the whole corpus (exact inner
    product, as a Flat index searches), and its ``[N, d]`` float32 document embeddings (read from
    and written to the row bank ``cache`` when given)."""
    encoder = TextEncoder(str(folder), config.max_length)
    embeddings = encoder.encode([d.contents for d in docs], config.batch_size, progress="encoding documents (dev)", cache=cache)
    if not dev_queries:
        return 0.0, embeddings
    vectors = encoder.encode(list(dev_queries.values()), config.batch_size)  # [Q, d]
    scores = vectors @ embeddings.T  # [Q, N]
    top = np.argsort(-scores, axis=1)[:, :10]
    run = {qid: [Hit(docs[j].id, float(scores[i, j])) for j in top[i]] for i, qid in enumerate(dev_queries)}
    return evaluate(run, dev_qrels, [DEV_MEASURE]).aggregate[DEV_MEASURE], embeddings
