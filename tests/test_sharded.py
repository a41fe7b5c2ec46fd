"""Several devices through Lightning, tested with two CPU processes (gloo): sharded search, sharded encoding
and DDP training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_beir

from genir.devices import using_device
from genir.encoding import sharded
from genir.encoding.encoder import TextEncoder, resolve_model
from genir.errors import GenirError
from genir.evaluation.sharded_search import sharded_batch_search
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher, build_index, parse_config, searcher_class
from genir.seq2seq.fit import fit
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.settings import TrainingSettings

QUERIES = ["zebras", "json", "digest", "cells", "stripes", "parse", "bytes"]


@pytest.mark.slow
def test_sharded_search_returns_the_single_process_results(tmp_path):
    torch.set_num_threads(1)
    coll = Collection.open(write_beir(tmp_path / "c", split="train"))
    config = parse_config(searcher_class("dsi").Config,
                          ["model=t5-config:tiny", "max_epochs=5", "batch_size=8", "spans=0", "warmup_steps=0"])
    build_index("dsi", coll, tmp_path / "idx", config, device="cpu")
    one = Searcher.load(tmp_path / "idx", device="cpu").batch_search(QUERIES, 3)
    two = sharded_batch_search(tmp_path / "idx", QUERIES, 3, devices=2, accelerator="cpu", batch_size=2)
    assert [[h.docid for h in hits] for hits in two] == [[h.docid for h in hits] for hits in one]
    # Batches of other sizes pad the queries differently: the scores agree to float32 rounding.
    for got, want in zip(two, one):
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
    # Search settings reach every process: beam search instead of the atomic first step.
    settings = ["atomic_search=beam", "beams=4"]
    beam = Searcher.load(tmp_path / "idx", device="cpu", settings=settings).batch_search(QUERIES, 3)
    assert [h.score for h in beam[0]] != pytest.approx([h.score for h in one[0]], abs=1e-5)  # the setting took effect
    two = sharded_batch_search(tmp_path / "idx", QUERIES, 3, devices=2, accelerator="cpu", batch_size=2, settings=settings)
    assert [[h.docid for h in hits] for hits in two] == [[h.docid for h in hits] for hits in beam]
    for got, want in zip(two, beam):
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)


@pytest.mark.slow
def test_sharded_encoding_builds_the_single_process_embeddings(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    real, calls = sharded.predict_sharded, []

    def spy(work, count, devices, accelerator, batch_size=1):
        calls.append((count, devices, accelerator))
        return real(work, count, devices, accelerator, batch_size)

    monkeypatch.setattr(sharded, "predict_sharded", spy)
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))  # embeddings cached by earlier builds would skip the encoding
    coll = Collection.open(write_beir(tmp_path / "c"))
    config = parse_config(searcher_class("dense").Config, ["batch_size=2"])
    build_index("dense", coll, tmp_path / "idx", config, device="cpu", devices=2)
    # 6 documents in batches of 2 cut in length order (not input order): 3 batches over 2 processes.
    assert calls == [(3, 2, "cpu")]
    one = TextEncoder(device="cpu").encode([d.contents for d in coll.docs()], batch_size=2)
    np.testing.assert_allclose(np.load(tmp_path / "idx" / "embeddings.npy"), one, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_training_on_two_processes_brings_the_weights_back(tmp_path):
    torch.set_num_threads(1)
    seq2seq = build_seq2seq("t5-config:tiny", 10, tokenizer=resolve_model("all-MiniLM-L6-v2"))
    before = {name: value.clone() for name, value in seq2seq.model.state_dict().items()}
    pairs = [(f"text number {i}", [2 + i % 8, 1]) for i in range(24)]
    settings = TrainingSettings(batch_size=4, max_epochs=2, warmup_steps=0, lr=1e-2)
    with using_device("cpu", 2):
        stats = fit(seq2seq, pairs, settings, tmp_path / "run", resume=False, progress=False)
    # 24 pairs over 2 processes: 3 batches of 4 per process and epoch.
    assert stats["train_steps"] == 6 and stats["train_epochs"] == 2
    assert all(not torch.equal(before[name], value) for name, value in seq2seq.model.state_dict().items())


def test_more_gpus_than_the_machine_has_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(GenirError, match="not available"), using_device("cuda", 2):
        pass
