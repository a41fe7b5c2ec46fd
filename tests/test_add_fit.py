"""``genir add --fit`` (issue 30, item 4): the rows of documents added to a dense-start atomic DSI index
fitted to their queries against the sample of earlier documents' pairs the index keeps
(:mod:`genir.dsi.row_fit`, :mod:`genir.dsi.fit_pairs`).

The DSI index is the default recipe (bert2bert MiniLM encoder, frozen; atomic docids whose rows are
the documents' MiniLM embeddings; the dense start), trained briefly on the toy documents and their
training queries; it is built once per module and copied for each test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TOY_DOCS, TOY_QRELS, TOY_QUERIES, write_beir
from typer.testing import CliRunner

from genir.cli.main import app
from genir.dsi.fit_pairs import FIT_PAIRS_FILE, FitPairs
from genir.dsi.row_fit import STORED_FIT_PAIRS, RowFitSettings
from genir.errors import CorruptIndexError
from genir.indexer.artifact import read_manifest, write_manifest
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher, add_documents, build_index, delete_documents, parse_config, searcher_class
from genir.views.querygen import query_generator

runner = CliRunner()

NEW_DOCS = [
    {"_id": "n1", "title": "Giraffes", "text": "Giraffes have long necks and eat acacia leaves on the savanna."},
    {"_id": "n2", "title": "Volcanoes", "text": "Lava flows from erupting volcanoes in Iceland."},
]
# q4 judges n1 alone; q5 judges both new documents.
NEW_QUERIES = [{"_id": "q4", "text": "tall animals with long necks"}, {"_id": "q5", "text": "savanna and lava"}]
NEW_QRELS = [("q4", "n1", 1), ("q5", "n1", 1), ("q5", "n2", 1)]
TRAIN = ["max_epochs=2", "spans=0", "batch_size=8", "warmup_steps=0", "min_dev_queries=0"]


def first_words(doc: dict) -> str:
    return f"{doc['title']} {doc['text']}"  # a toy document is shorter than its 64 first words


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """"dsi": the default recipe; "t5": atomic docids on a tiny T5 (no dense start); "dense"."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fit")
    collection = Collection.open(write_beir(root / "toy", split="train"))
    settings = {"dsi": ("dsi", TRAIN), "t5": ("dsi", ["model=t5-config:tiny", "max_epochs=0", "spans=0"]), "dense": ("dense", [])}
    for name, (method, values) in settings.items():
        build_index(method, collection, root / name, parse_config(searcher_class(method).Config, values), device="cpu")
    return root


@pytest.fixture
def index_copy(built, tmp_path):
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(built / name, target)
        return target
    return copy


@pytest.fixture
def new_collection(tmp_path) -> Path:
    return write_beir(tmp_path / "new", docs=NEW_DOCS, queries=NEW_QUERIES, qrels=NEW_QRELS, split="train")


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# -- the sample ----------------------------------------------------------------------------

def _pairs(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"text {tag} {i}", f"{tag}{i % 7}") for i in range(n)]


def test_the_sample_is_the_same_whatever_order_the_pairs_came_in():
    """A bottom-k sample by a seeded key: the sample of A then B is the sample of A and B at once, at
    most ``limit`` pairs, and another seed draws another sample."""
    a, b, c = _pairs(300, "a"), _pairs(250, "b"), _pairs(40, "c")
    whole = FitPairs.sample(a + b + c, 100, seed=3)
    assert len(whole.pairs) == 100 and set(whole.pairs) <= set(a + b + c)
    assert FitPairs.sample(a, 100, 3).added(b).added(c) == whole == FitPairs.sample(c + b, 100, 3).added(a)
    assert all(whole.key(p) < whole.threshold for p in whole.pairs)
    assert sum(whole.key(p) < whole.threshold for p in a + b + c) == 100  # every pair below the threshold is kept
    assert FitPairs.sample(a + b + c, 100, seed=4).pairs != whole.pairs
    small = FitPairs.sample(c, STORED_FIT_PAIRS, 0)
    assert set(small.pairs) == set(c) and small.threshold == 2**64


def test_a_deleted_documents_pairs_go_and_are_never_brought_back():
    """``without`` drops every pair of the documents; the threshold stays, so a later add keeps a sample
    of the remaining pairs (pairs above it never fill the gap) and the deleted pairs stay gone."""
    pairs = _pairs(500, "a")
    sample = FitPairs.sample(pairs, 100, 0)
    cut = sample.without(["a0", "a3"])
    assert cut.threshold == sample.threshold and set(cut.pairs) == {p for p in sample.pairs if p[1] not in ("a0", "a3")}
    more = _pairs(200, "b")
    grown = cut.added(more)
    remaining = [p for p in pairs if p[1] not in ("a0", "a3")] + more
    assert set(grown.pairs) == {p for p in remaining if grown.key(p) < grown.threshold}
    assert not any(p[1] in ("a0", "a3") for p in grown.pairs)


def test_the_sample_file_round_trips_and_a_bad_one_is_refused(tmp_path):
    sample = FitPairs.sample([("Zürich \"quoted\" text", "d1"), ("q", "d2")], 10, 5)
    sample.save(tmp_path)
    assert FitPairs.load(tmp_path) == sample
    assert FitPairs.load(tmp_path / "nowhere") is None
    record = json.loads((tmp_path / FIT_PAIRS_FILE).read_text())
    for bad in ({**record, "pairs": [["only text"]]}, {**record, "format_version": 99}, {**record, "limit": -1}, [1, 2]):
        (tmp_path / FIT_PAIRS_FILE).write_text(json.dumps(bad))
        with pytest.raises(CorruptIndexError, match="not a sample of training pairs"):
            FitPairs.load(tmp_path)


# -- what an index keeps -------------------------------------------------------------------

def test_a_build_keeps_first_words_and_training_queries_under_the_manifest(built):
    kept = FitPairs.load(built / "dsi")
    queries = {q["_id"]: q["text"] for q in TOY_QUERIES}
    expected = {(first_words(d), d["_id"]) for d in TOY_DOCS} | {(queries[q], d) for q, d, _ in TOY_QRELS}
    assert set(kept.pairs) == expected and kept.limit == STORED_FIT_PAIRS
    assert FIT_PAIRS_FILE in read_manifest(built / "dsi").files  # hashed as every index file
    assert read_manifest(built / "dsi").stats["fit_pairs"] == len(expected)
    assert not (built / "t5" / FIT_PAIRS_FILE).exists()  # no dense start: nothing to fit, nothing kept


def test_add_keeps_the_new_pairs_and_delete_drops_every_pair_of_a_deleted_document(index_copy, new_collection):
    """An add keeps the new documents' first words and training queries; a delete drops the deleted
    documents' first words and judgements, and a query judging a kept document stays for that one only."""
    index = index_copy("dsi")
    before = set(FitPairs.load(index).pairs)
    add_documents(index, new_collection, device="cpu")
    new_pairs = {(first_words(d), d["_id"]) for d in NEW_DOCS} | {
        ("tall animals with long necks", "n1"), ("savanna and lava", "n1"), ("savanna and lava", "n2")}
    assert set(FitPairs.load(index).pairs) == before | new_pairs
    delete_documents(index, ["n1", "d3"], device="cpu")
    kept = set(FitPairs.load(index).pairs)
    assert kept == {p for p in before | new_pairs if p[1] not in ("n1", "d3")}
    assert ("savanna and lava", "n2") in kept
    text = (index / FIT_PAIRS_FILE).read_text()
    for gone in ("tall animals with long necks", "long necks", "how do I parse json", "Parsing JSON", '"n1"', '"d3"'):
        assert gone not in text
    read_manifest(index)  # the new file's sha256 is in the new manifest


# -- the fit --------------------------------------------------------------------------------

def test_fit_moves_only_the_new_rows_and_new_documents_answer_their_first_words(index_copy, new_collection, tmp_path):
    """Against plain add of the same documents: every weight but the new documents' LM-head rows is
    byte-identical (so old documents keep their order for any query), those rows moved, and each
    new document is found first for its own first words, at least as well as after plain add."""
    plain, fitted = index_copy("dsi"), tmp_path / "fitted"
    shutil.copytree(plain, fitted)
    add_documents(plain, new_collection, device="cpu")
    change = add_documents(fitted, new_collection, device="cpu", fit=RowFitSettings())
    stats = change.stats
    assert stats["fit_objective_after"] < stats["fit_objective_before"] and stats["fit_mean_row_shift"] > 0
    docs = list(Collection.open(new_collection).docs())
    written = [q for qs in query_generator("", docs, 8).pseudo_queries(docs, 4, 0) for q in qs if q.strip()]
    # their first words, their keyword pseudo-queries, their 3 judgements; every kept pair of the 6 old documents
    assert stats["fit_queries"] == 2 + len(written) + 3 and stats["fit_old_queries"] == len(TOY_DOCS) + len(TOY_QRELS)
    assert stats["add_optimizer_steps"] == 0
    a, b = Searcher.load(plain, device="cpu"), Searcher.load(fitted, device="cpu")
    new_tokens = [a.row_tokens()[d["_id"]] for d in NEW_DOCS]
    assert new_tokens == [b.row_tokens()[d["_id"]] for d in NEW_DOCS]
    head = a.model.get_output_embeddings().weight.detach()
    weights_a, weights_b = a.model.state_dict(), b.model.state_dict()
    assert weights_a.keys() == weights_b.keys()
    changed = [name for name in weights_a if not torch.equal(weights_a[name], weights_b[name])]
    head_name = next(name for name, tensor in weights_a.items() if tensor.data_ptr() == head.data_ptr())
    assert changed == [head_name]
    other = torch.ones(len(head), dtype=torch.bool)
    other[new_tokens] = False
    fitted_head = b.model.get_output_embeddings().weight.detach()
    assert torch.equal(head[other], fitted_head[other]) and not torch.equal(head[new_tokens], fitted_head[new_tokens])
    queries = [first_words(d) for d in TOY_DOCS + NEW_DOCS] + [q["text"] for q in TOY_QUERIES + NEW_QUERIES]
    old = {d["_id"] for d in TOY_DOCS}
    for hits_a, hits_b in zip(a.batch_search(queries, k=8), b.batch_search(queries, k=8)):
        # old documents keep their order and their scores up to the log-softmax's normalizer, which the new rows change
        ranked_a, ranked_b = [(h.docid, h.score) for h in hits_a if h.docid in old], [(h.docid, h.score) for h in hits_b if h.docid in old]
        assert [d for d, _ in ranked_a] == [d for d, _ in ranked_b]
        shift = ranked_a[0][1] - ranked_b[0][1]
        assert all(sa - sb == pytest.approx(shift, abs=1e-4) for (_, sa), (_, sb) in zip(ranked_a, ranked_b))
    for doc in NEW_DOCS:
        rank = {name: [h.docid for h in s.search(first_words(doc), k=8)].index(doc["_id"]) for name, s in (("plain", a), ("fit", b))}
        assert rank["fit"] == 0 and rank["fit"] <= rank["plain"]
    a.close()
    b.close()


def test_cli_add_fit(index_copy, new_collection):
    index = index_copy("dsi")
    result = runner.invoke(app, ["add", str(index), "-c", str(new_collection), "--fit", "--set", "fit_iterations=5",
                                 "--set", "fit_queries=1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "added 2 documents" in output and "fitted 2 new rows to 7 queries against 9 kept pairs" in output
    assert read_manifest(index).stats["fit_queries"] == 7


def _without_pairs(index: Path) -> Path:
    """``index`` as genir wrote dsi indexes before they kept fit pairs."""
    manifest = read_manifest(index)
    (index / FIT_PAIRS_FILE).unlink()
    manifest.stats.pop("fit_pairs")
    write_manifest(index, manifest)
    return index


@pytest.mark.parametrize("name, args, message", [
    ("dense", ["--fit"], "needs a dsi index with atomic docids and the dense start"),
    ("t5", ["--fit"], "is a dsi index with no dense start (model=t5-config:tiny"),
    ("old", ["--fit"], "keeps no sample of its documents' training pairs"),
    ("dsi", ["--set", "fit_proximity=2"], "--set gives settings of --fit only"),
    ("dsi", ["--fit", "--set", "fit_proximty=2"], "fit_proximty"),
    ("dsi", ["--fit", "--set", "fit_iterations=0"], "fit_iterations"),
])
def test_cli_add_fit_refusals_exit_2_and_write_nothing(name, args, message, index_copy, new_collection):
    index = _without_pairs(index_copy("dsi")) if name == "old" else index_copy(name)
    before = tree(index)
    result = runner.invoke(app, ["add", str(index), "-c", str(new_collection), *args, "--device", "cpu"])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert tree(index) == before
    assert not [p for p in index.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_the_old_index_still_adds_without_fit(index_copy, new_collection):
    index = _without_pairs(index_copy("dsi"))
    assert add_documents(index, new_collection, device="cpu").num_docs_after == 8
    assert not (index / FIT_PAIRS_FILE).exists()  # a sample of the new documents alone would not be one of the index's

