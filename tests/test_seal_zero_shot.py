"""SEAL zero-shot (issue 29): without training queries it also trains on pseudo-query pairs, whose
model then writes n-grams of the documents a keyword query asks for; seal-hybrid's weight without
dev queries is its zero-shot weight."""

from __future__ import annotations

import pytest
import torch
from conftest import write_beir

from genir.baselines.seal_hybrid import SEALHybridConfig
from genir.errors import GenirError
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher, build_index
from genir.seal.pairs import SealPairConfig, seal_training_pairs, unsupervised_pairs
from genir.seal.searcher import ZERO_SHOT_PSEUDO_QUERIES, SEALConfig
from genir.settings import parse_config
from genir.views.querygen import KeywordQueryGenerator

# Eight documents of eight topics, three sentences each: a query of one document's keywords shares
# no informative word with another document.
TOPICS = [
    ("Volcanoes", "Volcanoes erupt when magma rises through the crust. Lava flows cool into basalt rock. "
                  "Ash clouds from an eruption can ground aircraft."),
    ("Honeybees", "Honeybees collect nectar and pollen from flowers. Worker bees build wax combs in the hive. "
                  "The queen lays thousands of eggs each summer."),
    ("Glaciers", "Glaciers carve valleys as compacted ice slowly moves downhill. Meltwater feeds alpine rivers. "
                 "Moraines mark where a glacier once ended."),
    ("Violins", "A violin has four strings tuned in fifths. The bow is strung with horsehair and rosin. "
                "Luthiers carve spruce tops and maple backs."),
    ("Sourdough", "Sourdough bread rises with a starter of wild yeast. Bakers feed the starter flour and water. "
                  "A long fermentation gives the crust its sour taste."),
    ("Satellites", "Satellites orbit the earth above the atmosphere. Solar panels power their transmitters. "
                   "Ground stations track each orbit by radio."),
    ("Chess", "Chess players open with pawns and knights. A bishop moves along diagonals. "
              "Checkmate ends the game when the king cannot escape."),
    ("Mangroves", "Mangroves grow in salty tidal mud along tropical coasts. Their roots shelter juvenile fish. "
                  "Mangrove forests protect shores from storm surges."),
]
DOCS = [{"_id": f"t{i}", "title": title, "text": text} for i, (title, text) in enumerate(TOPICS)]
# Keywords of each document, in another order than any of its sentences, none of them its title.
KEYWORD_QUERIES = {
    "t0": "basalt lava magma", "t1": "pollen nectar hive", "t2": "meltwater moraines ice", "t3": "rosin horsehair strings",
    "t4": "yeast starter fermentation", "t5": "transmitters orbit solar", "t6": "checkmate bishop knights",
    "t7": "tidal roots mud",
}
# The model's keys alone (query_ngrams=false: no n-gram of the query itself is a key), a small model
# trained long enough on a toy corpus (seeded, one thread: the same every run).
MODEL_ONLY = ["model=minilm-tokens", "max_epochs=6", "batch_size=8", "warmup_steps=0", "lr=3e-3", "beams=8",
              "max_ngram_tokens=4", "query_ngrams=false"]


def topics(root, split="test"):
    queries = [{"_id": f"q{d}", "text": text} for d, text in KEYWORD_QUERIES.items()]
    return write_beir(root, docs=DOCS, queries=queries, qrels=[(f"q{d}", d, 1) for d in KEYWORD_QUERIES], split=split)


def test_zero_shot_training_pairs_include_pseudo_query_pairs(tmp_path):
    collection = Collection.open(topics(tmp_path / "zero-shot"))  # qrels for test only: no train split
    docs = list(collection.docs())
    config = SEALConfig()
    pair_config = config.pair_config(collection)
    assert (pair_config.queries_split, pair_config.pseudo_queries) == ("", ZERO_SHOT_PSEUDO_QUERIES)
    pairs = config.training_pairs(collection, docs)
    written = KeywordQueryGenerator(docs, words=config.pseudo_query_words).pseudo_queries(docs, ZERO_SHOT_PSEUDO_QUERIES, config.seed)
    contents = {d.id: d.contents for d in docs}
    by_query = {q: doc.id for doc, queries in zip(docs, written) for q in queries}
    pseudo = [(q, t) for q, t in pairs if q in by_query]
    # every pseudo-query of every document is a source once, its target an n-gram of that document
    assert sorted(q for q, _ in pseudo) == sorted(by_query) and len(by_query) == sum(map(len, written)) > len(docs)
    assert all(t and t in contents[by_query[q]] for q, t in pseudo)
    # the rest are main's span pairs, unchanged
    spans = unsupervised_pairs(docs, pair_config)
    assert sorted(p for p in pairs if p[0] not in by_query) == sorted(spans)
    assert len(pairs) == len(spans) + len(pseudo)
    # with training queries auto is 0: the real queries' pairs, no pseudo-queries
    supervised = Collection.open(topics(tmp_path / "supervised", split="train"))
    assert config.pair_config(supervised).pseudo_queries == 0
    assert not {q for q, _ in config.training_pairs(supervised, docs)} & set(by_query)
    assert parse_config(SEALConfig, ["pseudo_queries=2"]).pair_config(supervised).pseudo_queries == 2
    with pytest.raises(GenirError, match="needs a query generator"):
        seal_training_pairs(collection, docs, SealPairConfig(queries_split="", pseudo_queries=2))


@pytest.mark.slow
def test_a_zero_shot_model_writes_the_ngrams_a_keyword_query_asks_for(tmp_path):
    """Its own keys alone (no query n-gram) rank each document first for a query of its keywords that
    is none of its sentences, every one of eight, and six of them at least three times above the
    runner-up (measured: 7 of 8 at six times or more; the eighth, t7, 1.2 times)."""
    torch.set_num_threads(1)
    collection = topics(tmp_path / "toy")
    index = tmp_path / "idx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
        manifest = build_index("seal", collection, index, parse_config(SEALConfig, MODEL_ONLY), device="cpu")
    assert manifest.config["pseudo_queries"] == "auto" and manifest.stats["train_pairs"] > 4 * len(DOCS)
    searcher = Searcher.load(index, device="cpu")
    try:
        clear = 0
        for docid, query in KEYWORD_QUERIES.items():
            hits = searcher.search(query, k=2)
            assert hits[0].docid == docid, (query, hits)
            clear += len(hits) == 1 or hits[0].score >= 3 * hits[1].score
        assert clear >= 6
    finally:
        searcher.close()


def test_seal_hybrid_weight_without_dev_queries_is_its_zero_shot_weight(tmp_path):
    zero_shot = topics(tmp_path / "zero-shot")
    config = parse_config(SEALHybridConfig, ["of_set=use_model=false"])
    manifest = build_index("seal-hybrid", zero_shot, tmp_path / "hybrid", config, device="cpu")
    assert manifest.stats["weight"] == SEALHybridConfig().zero_shot_weight
    assert manifest.stats["weight_source"] == "default (no dev queries)"
    assert manifest.config["weight"] == "auto"  # searching reads the build's weight, not a fixed one
