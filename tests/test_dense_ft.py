"""``dense-ft``: the dense baseline fine-tuned on the collection's training queries (sentence-transformers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genir.encoding.encoder import resolve_model
from genir.errors import GenirError
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher, build_index, parse_config, searcher_class

TOY = "builtin:toy"


def _config(*settings: str):
    return parse_config(searcher_class("dense-ft").Config, ["epochs=1", "train_batch_size=8", "batch_size=16", *settings])


def test_dense_ft_chooses_its_epoch_on_dev_and_saves_its_encoder_inside_the_index(tmp_path):
    torch.set_num_threads(1)
    manifest = build_index("dense-ft", Collection.open(TOY), tmp_path / "idx", _config(), device="cpu")
    curve = manifest.stats["dev_curve"]
    assert [point[0] for point in curve] == [0, 1] and manifest.stats["dev_queries"] == 3
    assert manifest.stats["dev_best"] == max(curve, key=lambda point: point[2])  # the best on dev, the start included
    assert (tmp_path / "idx" / "encoder" / "model.safetensors").is_file()
    searcher = Searcher.load(tmp_path / "idx", device="cpu")
    assert searcher.method == "dense-ft" and searcher.num_docs == 24
    assert searcher.search("what makes a volcano erupt", k=3)[0].docid == "volcano"
    copy = tmp_path / "copy"
    searcher.save(copy)
    assert Searcher.load(copy, device="cpu").search("rivers of ice", k=2) == searcher.search("rivers of ice", k=2)


def test_without_dev_queries_the_trained_encoder_is_kept(tmp_path):
    torch.set_num_threads(1)
    build_index("dense-ft", Collection.open(TOY), tmp_path / "idx", _config("dev_fraction=0"), device="cpu")
    trained = load_file(tmp_path / "idx" / "encoder" / "model.safetensors")
    base = load_file(Path(resolve_model("all-MiniLM-L6-v2")) / "model.safetensors")
    name = next(n for n in trained if n.endswith("attention.self.query.weight"))
    assert not torch.equal(trained[name], base[next(b for b in base if b.endswith(name))])


def test_dense_ft_needs_training_queries(tmp_path, toy_collection):
    with pytest.raises(GenirError, match="qrels/train.tsv"):
        build_index("dense-ft", Collection.open(toy_collection), tmp_path / "idx", _config(), device="cpu")
    assert not (tmp_path / "idx").exists()
