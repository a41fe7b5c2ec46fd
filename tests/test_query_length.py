"""Every method reads a query as far as the dense retriever does (issue 29): not cut at the training source length."""

from __future__ import annotations

import pytest
import torch

from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher, build_index, parse_config, searcher_class

# 200 words: the words that name a document come after the first 64 tokens a training source is cut to.
FILLER = " ".join(["the report of the committee on the matter of the day"] * 17)  # 187 words
LONG_QUERIES = [f"{FILLER} zebras with black and white stripes", f"{FILLER} parsing json strings into python dictionaries"]


def test_a_200_word_query_ranks_in_an_untrained_dsi_index_exactly_as_in_the_dense_index(tmp_path, toy_collection):
    torch.set_num_threads(1)
    assert all(len(q.split()) >= 190 for q in LONG_QUERIES)
    coll = Collection.open(toy_collection)
    build_index("dense", coll, tmp_path / "dense", device="cpu")
    config = parse_config(searcher_class("dsi").Config, ["max_epochs=0", "queries_split=", f"embeddings_from={tmp_path / 'dense'}"])
    build_index("dsi", coll, tmp_path / "dsi", config, device="cpu")
    dense = Searcher.load(tmp_path / "dense", device="cpu").batch_search(LONG_QUERIES, k=6)
    dsi = Searcher.load(tmp_path / "dsi", device="cpu")
    assert dsi.config.max_query_len == 256 and dsi.config.max_source_len == 64  # read at search time, cut in training
    ranked = dsi.batch_search(LONG_QUERIES, k=6)
    assert [[h.docid for h in hits] for hits in ranked] == [[h.docid for h in hits] for hits in dense]
    assert [hits[0].docid for hits in ranked] == ["d6", "d3"]  # the words after the 64th token decide
    # What cutting the query at 64 tokens did: the words that name the document are never read.
    cut = Searcher.load(tmp_path / "dsi", device="cpu", settings=["max_query_len=64"]).batch_search(LONG_QUERIES, k=6)
    assert [[h.docid for h in hits] for hits in cut] != [[h.docid for h in hits] for hits in dense]


@pytest.mark.parametrize("method", ["dsi", "seal"])
def test_the_query_length_is_a_search_setting_of_every_generative_method(method):
    cls = searcher_class(method)
    assert "max_query_len" in cls.search_settings and cls.Config().max_query_len == 256
