"""Deleting is forgetting (issue 30): after ``genir delete`` nothing of a deleted document stays in
the index folder or in ``$GENIR_CACHE``, whatever the method.

A toy corpus where every document holds a unique made-up marker word (in its text, its id and its
training query), so every document also has a unique embedding and docid row. Each method is built
into a folder with its own cache, three documents are deleted, and every file of the index and of
the cache is scanned for the deleted documents' traces:

* the marker and the document id as UTF-8 bytes;
* the marker's token ids, under every tokenizer the index holds and MiniLM's, as the index would
  store them: int32 and int64 little-endian sequences and JSON lists, as they are and shifted by
  the docid vocabulary's two special tokens;
* the document's embedding (MiniLM, as dense and dsi compute it) and, where the index keeps one,
  its own stored row (a dense index's embedding, a dsi model's docid rows) as float32 and float16 bytes;
* for SEAL, whose FM-index keeps tokens permuted (BWT), also the FM-index's count of the marker's tokens.

A dense-start atomic dsi index also keeps a sample of its documents' first words and training queries
as text (``fit_pairs.json``, for ``genir add --fit``): the scan must find every deleted document's
marker and query there before deleting, and nowhere after.

The same scan before deleting must find every deleted document (so the test can fail); after, none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_beir

from genir.dsi.fit_pairs import FIT_PAIRS_FILE
from genir.encoding.encoder import DEFAULT_ENCODER, TextEncoder
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher, build_index, delete_documents, searcher_class
from genir.settings import parse_config

MARKERS = ["kavozith", "drelumpa", "snorquil", "vexitrano", "plimbosk", "gruthavel", "zintrapo", "moxulent",
           "feldrakio", "quorbitex", "yastrevin", "blonquaro"]
TOPICS = ["cats purr on warm mats", "dogs chase balls in parks", "parsing json strings in python",
          "sha-256 digests of byte strings", "running a command in a subprocess", "zebras have black and white stripes",
          "volcanoes erupt lava in iceland", "giraffes eat acacia leaves", "rivers carve deep canyons",
          "bees make honey from nectar", "glaciers move slowly downhill", "owls hunt mice at night"]
DOCS = [{"_id": f"d-{marker}", "title": topic.split()[0].title(), "text": f"The {marker} note: {topic}, said the {marker} report."}
        for marker, topic in zip(MARKERS, TOPICS)]
QUERIES = [{"_id": f"q{i}", "text": f"what does the {marker} say about {topic.split()[0]}"} for i, (marker, topic) in enumerate(zip(MARKERS, TOPICS))]
QRELS = [(f"q{i}", d["_id"], 1) for i, d in enumerate(DOCS)]
DELETED = [1, 6, 10]  # positions in DOCS

TINY_DSI = ["model=t5-config:tiny", "max_epochs=1", "spans=0", "batch_size=8", "warmup_steps=0", "min_dev_queries=0"]
CASES = {
    "bm25": ("bm25", []),
    "dense": ("dense", []),
    "hybrid": ("hybrid", ["of=dense"]),
    "seal": ("seal", ["model=t5-config:tiny", "max_epochs=1", "batch_size=8", "warmup_steps=0"]),
    "seal-no-model": ("seal", ["use_model=false"]),  # the FM-index segments alone
    "seal-hybrid": ("seal-hybrid", ["of_set=use_model=false"]),
    "dsi-atomic": ("dsi", ["max_epochs=1", "spans=0", "batch_size=8", "warmup_steps=0", "min_dev_queries=0"]),  # the default recipe: rows = embeddings
    "dsi-atomic-untrained": ("dsi", ["max_epochs=0", "spans=0", "min_dev_queries=0"]),  # its files (fit pairs too) without training
    "dsi-naive": ("dsi", [*TINY_DSI, "docids=naive"]),
    "dsi-rq": ("dsi", ["max_epochs=1", "spans=0", "batch_size=8", "warmup_steps=0", "min_dev_queries=0", "docids=rq", "rq_codes=4"]),
    "dsi-semantic": ("dsi", [*TINY_DSI, "docids=semantic", "semantic_k=3", "semantic_levels=2", "docid_embeddings=frozen"]),
    "dsi-semantic-digits": ("dsi", [*TINY_DSI, "docids=semantic-digits", "semantic_k=2"]),
    "dsi-elaborative": ("dsi", [*TINY_DSI, "docids=elaborative"]),
    # SE-DSI's recipe (elaborative docids in MiniLM's token space, keeping the documents' vectors for rescore)
    "se-dsi": ("se-dsi", ["max_epochs=1", "batch_size=8", "warmup_steps=0", "min_dev_queries=0", "pseudo_queries=1", "rehearsal=1"]),
    "dense-ft": ("dense-ft", ["epochs=1", "train_batch_size=4"]),
}
# Fast: one of each kind of file (dense rows, seal segments, dsi docid tables and k-means trees); the
# rest start Java (bm25 and the hybrids' BM25 part) or train longer.
SLOW = {"bm25", "hybrid", "seal", "seal-hybrid", "dsi-atomic", "dsi-rq", "dsi-elaborative", "se-dsi", "dense-ft"}


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    return write_beir(tmp_path_factory.mktemp("forget") / "toy", DOCS, QUERIES, QRELS, split="train")


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder(DEFAULT_ENCODER)


def _tokenizers(index: Path) -> list:
    from transformers import AutoTokenizer

    from genir.encoding.encoder import resolve_model

    found = [AutoTokenizer.from_pretrained(resolve_model(DEFAULT_ENCODER))]
    for folder in sorted(p for p in index.rglob("tokenizer") if p.is_dir()):
        found.append(AutoTokenizer.from_pretrained(folder))
    return found


def _patterns(index: Path, searcher: Searcher, minilm: TextEncoder, position: int) -> dict[str, bytes]:
    """Every byte pattern of document ``position``'s traces (module docstring), by a readable name."""
    doc = DOCS[position]
    marker = MARKERS[position]
    patterns = {"marker": marker.encode(), "id": doc["_id"].encode()}
    for t, tokenizer in enumerate(_tokenizers(index)):
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        assert len(ids) >= 2, f"{marker} is one token: too short a pattern"
        for shift in (0, 2):
            seq = [i + shift for i in ids]
            patterns[f"tok{t}+{shift} int32"] = np.array(seq, dtype="<i4").tobytes()
            patterns[f"tok{t}+{shift} int64"] = np.array(seq, dtype="<i8").tobytes()
            patterns[f"tok{t}+{shift} json"] = json.dumps(seq).strip("[]").encode()
            patterns[f"tok{t}+{shift} json-compact"] = json.dumps(seq, separators=(",", ":")).strip("[]").encode()
    rows = {"minilm": minilm.encode([f"{doc['title']} {doc['text']}"])[0]}
    for part in searcher.parts():
        rows.update({f"{part.method} {name}": row for name, row in _stored_rows(part, doc["_id"]).items()})
    for name, row in rows.items():
        if not np.abs(row).max() > 0:
            continue  # a zero row (an rq document coded exactly by its codeword: residual 0) tells nothing
        patterns[f"{name} float32"] = np.asarray(row, dtype="<f4").tobytes()
        patterns[f"{name} float16"] = np.asarray(row, dtype="<f2").tobytes()
    return patterns


def _stored_rows(part: Searcher, docid: str) -> dict[str, np.ndarray]:
    """The rows an index keeps for ``docid`` itself: a dense index's embedding, a dsi model's own docid rows."""
    found = {}
    embeddings = part.directory / "embeddings.npy"
    if embeddings.is_file():
        ids = json.loads((part.directory / "docids.json").read_text())
        found["embedding"] = np.load(embeddings)[ids.index(docid)]
    scheme = getattr(part, "scheme", None)
    if scheme is not None and scheme.has_token_vectors:
        own = scheme.sequence(docid)[-2]  # the document's own token (atomic: its only one)
        embed, head = part.model.get_decoder().get_input_embeddings(), part.model.get_output_embeddings()
        found["head row"] = head.weight[own].detach().numpy()
        found["input row"] = embed.weight[own].detach().numpy()
    return found


def _scan(folders: list[Path], patterns: dict[str, bytes]) -> list[str]:
    """``"<pattern name> in <file>"`` for every pattern found in any file under ``folders``."""
    hits = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
            data = path.read_bytes()
            hits += [f"{name} in {path}" for name, pattern in patterns.items() if pattern in data]
    return hits


def _fm_counts(searcher: Searcher, tokenizers: list, position: int) -> int:
    """How often the marker's tokens occur in the FM-indexes of ``searcher``'s SEAL parts."""
    total = 0
    for part in searcher.parts():
        index = getattr(part, "index", None)
        if index is None or not hasattr(index, "count"):
            continue
        ids = part.tokenizer(MARKERS[position], add_special_tokens=False)["input_ids"]
        total += int(index.count([np.array(ids, dtype=np.int64) + 2])[0])
    return total


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES])
def test_delete_leaves_no_trace(case, collection, minilm, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENIR_CACHE", str(cache))
    method, settings = CASES[case]
    index = tmp_path / "index"
    build_index(method, Collection.open(collection), index, parse_config(searcher_class(method).Config, settings), device="cpu")
    searcher = Searcher.load(index, device="cpu")
    live = [p for p in range(len(DOCS)) if p not in DELETED]
    try:
        deleted = {p: _patterns(index, searcher, minilm, p) for p in DELETED}
        fm_before = {p: _fm_counts(searcher, [], p) for p in DELETED}
    finally:
        searcher.close()
    # the patterns are the deleted documents' own: no live document has them
    for p in live:
        for q in deleted:
            assert MARKERS[q] not in json.dumps(DOCS[p]) and MARKERS[q] not in QUERIES[p]["text"]
    for p, patterns in deleted.items():
        found = _scan([index, cache], patterns)
        assert found or fm_before[p], f"{case}: no trace of {DOCS[p]['_id']} before deleting: the scan cannot fail"
    kept_pairs = sorted(index.rglob(FIT_PAIRS_FILE))
    assert bool(kept_pairs) == case.startswith("dsi-atomic"), kept_pairs  # the indexes whose added rows can be fitted
    for path in kept_pairs:  # the scan covers them: each deleted document's first words and training query are there
        data = path.read_bytes()
        assert all(MARKERS[p].encode() in data and QUERIES[p]["text"].encode() in data for p in DELETED)

    change = delete_documents(index, [DOCS[p]["_id"] for p in DELETED], device="cpu")
    assert change.num_docs_after == len(live)

    searcher = Searcher.load(index, device="cpu")
    try:
        left = {p: _scan([index, cache] if cache.exists() else [index], patterns) for p, patterns in deleted.items()}
        assert not any(left.values()), f"{case}: traces left after delete: {left}"
        assert all(_fm_counts(searcher, [], p) == 0 for p in DELETED)
        hits = searcher.batch_search([DOCS[p]["text"] for p in DELETED] + [QUERIES[p]["text"] for p in DELETED], k=len(DOCS))
        assert not {h.docid for row in hits for h in row} & {DOCS[p]["_id"] for p in DELETED}
    finally:
        searcher.close()


def test_keep_cache_keeps_the_cache(collection, tmp_path, monkeypatch):
    """``--keep-cache``: the cache's embeddings stay (the deleted text's row included); without it they go."""
    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENIR_CACHE", str(cache))
    index = tmp_path / "index"
    build_index("dense", Collection.open(collection), index, device="cpu")
    banked = sorted(p for p in (cache / "embeddings").rglob("*.npy"))
    assert banked
    delete_documents(index, [DOCS[DELETED[0]]["_id"]], device="cpu", keep_cache=True)
    assert sorted(p for p in (cache / "embeddings").rglob("*.npy")) == banked
    delete_documents(index, [DOCS[DELETED[1]]["_id"]], device="cpu")
    assert not any((cache / "embeddings").rglob("*.npy"))
    assert os.listdir(index)
