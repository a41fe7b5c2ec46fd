"""Index folders and arguments that are damaged, foreign or hostile: one clean error, nothing
unpickled, nothing read outside the index (issue 12, items 7, 9, 10)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import write_beir
from typer.testing import CliRunner

from genir.cli.main import app
from genir.encoding.encoder import resolve_model
from genir.errors import CorruptIndexError
from genir.indexer.artifact import Manifest, read_manifest, write_manifest
from genir.retrieval.searcher import Searcher
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.model_io import load_seq2seq, save_seq2seq

runner = CliRunner()


def genir(*args):
    return runner.invoke(app, [str(a) for a in args])


def _rehash(index):
    """Rewrite the manifest's file list and hashes, as someone who altered the files would."""
    raw = json.loads((index / "manifest.json").read_text())
    write_manifest(index, Manifest(raw["method"], raw["config"], raw["stats"], raw["collection"]))


def _clean_error(result, message):
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("untrusted")
    collection = write_beir(root / "toy", split="train")
    for method, extra in [("bm25", []), ("dsi", ["--set", "model=t5-config:tiny", "--set", "docids=atomic",
                                                 "--set", "max_epochs=1", "--set", "spans=0"])]:
        result = genir("index", "-m", method, "-c", collection, "-o", root / method, *extra)
        assert result.exit_code == 0, result.output
    return root


def _copy(indexes, method, tmp_path):
    shutil.copytree(indexes / method, tmp_path / method)
    return tmp_path / method


@pytest.mark.parametrize("name", ["pytorch_model.bin", "weights.pt"])
def test_a_pickle_checkpoint_in_a_model_folder_is_refused_before_loading(tmp_path, name):
    built = build_seq2seq("t5-config:tiny", 17, tokenizer=resolve_model("all-MiniLM-L6-v2"))
    save_seq2seq(built.model, tmp_path / "m")
    (tmp_path / "m" / name).write_bytes(b"\x80\x04cos\nsystem\n(S'touch /tmp/pwned'\ntR.")  # a pickle payload
    with pytest.raises(CorruptIndexError, match=f"holds {name}, a pickle-based checkpoint"):
        load_seq2seq(tmp_path / "m")
    (tmp_path / "m" / name).unlink()
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save(built.model.state_dict(), tmp_path / "m" / "model.bin.bak")  # not a known suffix, and not read
    with pytest.raises(CorruptIndexError, match="no model.safetensors"):
        load_seq2seq(tmp_path / "m")


def test_a_pickle_in_an_index_is_refused_by_the_cli(indexes, tmp_path):
    index = _copy(indexes, "dsi", tmp_path)
    (index / "model" / "model.safetensors").unlink()
    (index / "model" / "pytorch_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'true'\ntR.")
    _rehash(index)
    _clean_error(genir("search", index, "cats"), "pickle-based checkpoint")


def test_an_object_array_in_an_npz_is_a_clean_error(indexes, tmp_path):
    index = _copy(indexes, "dsi", tmp_path)
    trie = index / "trie"
    arrays_file = next(trie.glob("*.npz"))
    with np.load(arrays_file) as stored:
        arrays = dict(stored)
    arrays["token"] = np.array([object(), 1], dtype=object)
    np.savez(arrays_file, **arrays)
    _rehash(index)
    with pytest.raises(CorruptIndexError, match="unreadable docid trie"):
        Searcher.load(index)
    _clean_error(genir("search", index, "cats"), "unreadable docid trie")


@pytest.mark.parametrize("source, swapped", [("bm25", "dsi"), ("dsi", "bm25"), ("bm25", "seal"), ("bm25", "dense")])
def test_a_method_swapped_in_the_manifest_is_a_clean_error(indexes, tmp_path, source, swapped):
    index = _copy(indexes, source, tmp_path)
    path = index / "manifest.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "method": swapped, "config": {}}))
    result = genir("search", index, "cats")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error:") and str(index) in result.output


def test_run_and_eval_outputs_that_cannot_be_files_are_refused_before_work(indexes, tmp_path):
    collection = indexes / "toy"
    (tmp_path / "folder").mkdir()
    _clean_error(genir("run", indexes / "bm25", "-c", collection, "--split", "train", "-o", tmp_path / "folder"),
                 "is a folder")
    run_file = tmp_path / "run.trec"
    assert genir("run", indexes / "bm25", "-c", collection, "--split", "train", "-o", run_file).exit_code == 0
    per_query = tmp_path / "missing" / "dir" / "pq.json"
    result = genir("eval", run_file, "-c", collection, "--split", "train", "--per-query", per_query)
    assert result.exit_code == 0, result.output
    assert set(json.loads(per_query.read_text())[str(run_file)]) == {"q1", "q2", "q3"}
    _clean_error(genir("eval", run_file, "-c", collection, "--split", "train", "--per-query", run_file / "pq.json"),
                 "is not a folder")


def test_a_dense_index_loads_no_model_folder_outside_itself(tmp_path, toy_collection):
    model = tmp_path / "my-encoder"
    shutil.copytree(resolve_model("all-MiniLM-L6-v2"), model)
    index = tmp_path / "dense"
    assert genir("index", "-m", "dense", "-c", toy_collection, "-o", index, "--set", f"model={model}").exit_code == 0
    assert "encoder/model.safetensors" in read_manifest(index).files, "the model folder is copied into the index"
    shutil.rmtree(model)
    assert Searcher.load(index).search("zebra stripes", k=1)[0].docid == "d6"
    shutil.rmtree(index / "encoder")  # as an index whose config names a folder elsewhere
    raw = json.loads((index / "manifest.json").read_text())
    raw["files"] = {name: entry for name, entry in raw["files"].items() if not name.startswith("encoder/")}
    raw["config"]["model"] = str(tmp_path)
    (index / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(CorruptIndexError, match="outside the index"):
        Searcher.load(index)


# -- crashes that are now one clean error, or no error (items 4, 5, 6, 8) --------------------------

def test_bm25_searches_queries_of_more_than_1024_terms(indexes, tmp_path):
    long_query = " ".join(f"word{i}" for i in range(3000)) + " zebras stripes"
    searcher = Searcher.load(indexes / "bm25")
    hits = searcher.batch_search([long_query, "zebras"], k=2)
    assert hits[0][0].docid == "d6" and hits[1][0].docid == "d6"
    queries = [{"_id": "q1", "text": long_query}, {"_id": "q2", "text": "cats"}]
    collection = write_beir(tmp_path / "long", queries=queries, qrels=[("q1", "d6", 1), ("q2", "d1", 1)])
    result = genir("run", indexes / "bm25", "-c", collection, "-o", tmp_path / "run.trec")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run.trec").read_text().startswith("q1 Q0 d6 1 ")


@pytest.mark.parametrize("method", ["bm25", "dsi"])
@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_every_method_raises_one_input_error_for_a_bad_k(indexes, method, k):
    from genir.errors import InputError

    with pytest.raises(InputError, match="k must be a positive integer"):
        Searcher.load(indexes / method).search("cats", k=k)


@pytest.mark.parametrize("where", ["corpus", "tsv", "queries"])
def test_ids_with_whitespace_are_refused_at_the_collection_edge(tmp_path, where):
    from genir.errors import InputError
    from genir.indexer.collection import Collection

    docs = [{"_id": "d 1", "title": "", "text": "cats"}, {"_id": "d2", "title": "", "text": "dogs"}]
    if where == "corpus":
        collection, line = write_beir(tmp_path / "c", docs=docs, queries=[{"_id": "q1", "text": "cats"}],
                                      qrels=[("q1", "d2", 1)]), 1
        path = collection / "corpus.jsonl"
    elif where == "tsv":
        collection = path = tmp_path / "c.tsv"
        path.write_text("d1\tcats\nd\u00a02\tdogs\n", encoding="utf-8")
        line = 2
    else:
        collection, line = write_beir(tmp_path / "c", queries=[{"_id": "q1", "text": "x"}, {"_id": "q\t2", "text": "y"}],
                                      qrels=[("q1", "d1", 1)]), 2
        path = collection / "queries.jsonl"
    with pytest.raises(InputError, match="contains whitespace") as caught:
        coll = Collection.open(collection)
        _ = coll.queries if where == "queries" else coll.doc_ids
    assert (caught.value.path, caught.value.line) == (path, line)
    result = genir("index", "-m", "bm25", "-c", collection, "-o", tmp_path / "idx")
    assert result.exit_code == 2 or where == "queries"


def test_eval_refuses_nan_and_infinite_scores_with_file_and_line(tmp_path, toy_collection):
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d3 1 1.0 x\nq2 Q0 d4 1 nan x\n")
    _clean_error(genir("eval", run, "-c", toy_collection), f"{run}:2: score 'nan' is not a finite number")
    run.write_text("q1 Q0 d3 1 -inf x\n")
    _clean_error(genir("eval", run, "-c", toy_collection), f"{run}:1: score '-inf' is not a finite number")


def test_eval_warns_when_no_run_query_is_judged(tmp_path, toy_collection, caplog):
    from genir.evaluation.runs import read_run
    from genir.indexer.collection import Collection
    from genir.measures import evaluate

    run = tmp_path / "run.trec"
    run.write_text("other1 Q0 d3 1 1.0 x\nother2 Q0 d4 1 0.5 x\n")
    with caplog.at_level("WARNING"):
        result = evaluate(read_run(run), Collection.open(toy_collection).qrels("test"))
    assert result.aggregate["nDCG@10"] == 0
    assert "none of the run's 2 queries is judged" in caplog.text


def test_a_byte_order_mark_is_accepted_by_every_reader(tmp_path, toy_collection):
    from genir.evaluation.runs import read_run
    from genir.indexer.collection import Collection

    bom = "\ufeff"
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        path = toy_collection / name
        path.write_text(bom + path.read_text(encoding="utf-8"), encoding="utf-8")
    collection = Collection.open(toy_collection)
    assert collection.doc_ids[0] == "d1" and "q1" in collection.queries and collection.qrels("test")["q1"] == {"d3": 1}
    tsv = tmp_path / "c.tsv"
    tsv.write_text(bom + "d1\tcats\nd2\tdogs\n", encoding="utf-8")
    assert Collection.open(tsv).doc_ids == ["d1", "d2"]
    run = tmp_path / "run.trec"
    run.write_text(bom + "q1 Q0 d3 1 1.0 x\n", encoding="utf-8")
    assert list(read_run(run)) == ["q1"]
