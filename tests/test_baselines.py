"""BM25 (Lucene) and dense (FAISS) searchers on a toy collection, and BM25 on SciFact."""

import random

import pytest
from conftest import shared_collection

from genir.baselines.dense import DenseConfig
from genir.errors import GenirError
from genir.indexer.collection import Collection, Document
from genir.measures import evaluate
from genir.retrieval.searcher import Searcher, add_documents, build_index, delete_documents, parse_config


def test_bm25_finds_the_matching_document_and_round_trips(toy_collection, tmp_path):
    coll = Collection.open(toy_collection)
    manifest = build_index("bm25", coll, tmp_path / "bm25")
    assert manifest.stats["num_docs"] == 6 and manifest.config["k1"] == 0.9
    searcher = Searcher.load(tmp_path / "bm25")
    hits = searcher.search("zebra stripes", k=3)
    assert hits[0].docid == "d6" and hits[0].score > 0
    assert "Zebras have black" in searcher.doc_text("d6")
    searcher.save(tmp_path / "copy")
    again = Searcher.load(tmp_path / "copy")
    assert again.search("zebra stripes", k=3) == hits
    assert [h[0].docid for h in again.batch_search(["json parsing", "hashlib digest"], k=2)] == ["d3", "d4"]
    # The k rule every method follows: k above the corpus asks for every document there is
    # (BM25 returns those that match a query term); k below 1 is an input error.
    assert {h.docid for h in searcher.search("zebras stripes json", k=100)} == {"d3", "d6"}
    for k in (0, -3, True):
        with pytest.raises(GenirError, match="positive integer"):
            searcher.search("zebra stripes", k=k)


@pytest.mark.parametrize("factory", ["Flat", "HNSW8", "IVF2,Flat"])
def test_dense_index_types(toy_collection, tmp_path, factory):
    coll = Collection.open(toy_collection)
    build_index("dense", coll, tmp_path / "dense", parse_config(DenseConfig, [f"factory={factory}", "nprobe=2"]))
    searcher = Searcher.load(tmp_path / "dense")
    hits = searcher.search("how do I parse JSON text?", k=10)
    assert hits[0].docid == "d3"
    assert len(hits) == 6 and len({h.docid for h in hits}) == 6
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    with pytest.raises(GenirError, match="positive integer"):
        searcher.search("json", k=0)


def test_dense_reuses_cached_embeddings_on_rebuild(toy_collection, tmp_path):
    coll = Collection.open(toy_collection)
    first = build_index("dense", coll, tmp_path / "dense")
    assert first.stats["embeddings_reused"] is False
    second = build_index("dense", coll, tmp_path / "dense", parse_config(DenseConfig, ["factory=HNSW8"]), overwrite=True)
    assert second.stats["embeddings_reused"] is True
    assert second.files["embeddings.npy"]["sha256"] == first.files["embeddings.npy"]["sha256"]


@pytest.mark.slow
def test_bm25_reproduces_pyserini_on_scifact(tmp_path):
    coll = Collection.open(shared_collection("scifact"))
    build_index("bm25", coll, tmp_path / "bm25")
    searcher = Searcher.load(tmp_path / "bm25")
    queries = coll.split_queries("test")
    run = dict(zip(queries, searcher.batch_search(list(queries.values()), k=100)))
    scores = evaluate(run, coll.qrels("test")).aggregate
    assert scores["nDCG@10"] == pytest.approx(0.6789, abs=0.002)
    assert scores["R@10"] == pytest.approx(0.8038, abs=0.002)


def test_bm25_after_adds_and_deletes_scores_as_a_fresh_build_of_what_is_left(tmp_path):
    """Deleting 2 of 65 documents (fewer than the 10 % of a segment that Lucene's forceMergeDeletes
    needs by default to rewrite it) left their terms in the statistics: scores differed by up to 0.02
    and rankings changed. Both indexes here are built from ``Document`` objects in memory."""
    words = "cat dog zebra json hash lava stripe train bread rail steam dough tree leaf river stone cloud rain snow wind".split()
    rng = random.Random(0)
    docs = [Document(f"d{i}", "", " ".join(rng.choice(words) for _ in range(rng.randint(5, 30)))) for i in range(65)]
    build_index("bm25", docs[:60], tmp_path / "grown", device="cpu")
    add_documents(tmp_path / "grown", docs[60:], device="cpu")  # a second segment
    delete_documents(tmp_path / "grown", ["d7", "d62"], device="cpu")
    build_index("bm25", [d for d in docs if d.id not in {"d7", "d62"}], tmp_path / "scratch", device="cpu")
    grown, scratch = Searcher.load(tmp_path / "grown", device="cpu"), Searcher.load(tmp_path / "scratch", device="cpu")
    assert grown.num_docs == scratch.num_docs == 63
    queries = ["cat zebra", "steam train rail", "snow wind rain cloud", "json hash", "bread dough"]
    for ours, theirs in zip(grown.batch_search(queries, k=63), scratch.batch_search(queries, k=63)):
        # Equal scores may come in another order (Lucene breaks ties by its internal document order).
        assert {h.docid: h.score for h in ours} == pytest.approx({h.docid: h.score for h in theirs}, abs=1e-4)
        assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], abs=1e-4)
