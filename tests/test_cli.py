"""End to end through the Typer CLI: index, search, run, eval, bench, and bad input."""

import json

import pytest
from conftest import write_beir
from typer.testing import CliRunner

from genir.cli.main import app

runner = CliRunner()


def genir(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_index_search_run_eval(toy_collection, tmp_path):
    index = tmp_path / "idx"
    result = genir("index", "--method", "bm25", "--collection", toy_collection, "-o", index)
    assert result.exit_code == 0, result.output
    assert (index / "manifest.json").is_file()
    result = genir("search", index, "zebra stripes", "-k", "2")
    assert result.exit_code == 0 and "d6" in result.output
    tuned = genir("search", index, "zebra stripes", "-k", "2", "--set", "k1=2.5", "--set", "b=1.0")  # this search only
    assert tuned.exit_code == 0 and "d6" in tuned.output and tuned.output != result.output
    assert genir("search", index, "zebra stripes", "-k", "2").output == result.output
    run_file = tmp_path / "run.trec"
    assert genir("run", index, "--collection", toy_collection, "--split", "test", "-o", run_file).exit_code == 0
    assert run_file.read_text().startswith("q1 Q0 d3 1 ")
    refused = genir("run", index, "--collection", toy_collection, "-o", tmp_path / "other.trec", "--set", "store_raw=false")
    assert refused.exit_code == 2 and "not a search setting of bm25 indexes (those are: k1, b, threads)" in refused.output
    assert not (tmp_path / "other.trec").exists()
    per_query = tmp_path / "pq.json"
    result = genir("eval", run_file, "--collection", toy_collection, "--per-query", per_query)
    assert result.exit_code == 0 and "nDCG@10" in result.output
    assert set(json.loads(per_query.read_text())[str(run_file)]) == {"q1", "q2", "q3"}


def test_bench_writes_table_and_json(toy_collection, tmp_path):
    out = tmp_path / "bench"
    result = genir("bench", "--collection", toy_collection, "--methods", "bm25,dense,hnsw=dense", "-o", out,
                   "--set", "hnsw.factory=HNSW8")
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [(r["method"], r["base_method"]) for r in rows] == [("bm25", "bm25"), ("dense", "dense"), ("hnsw", "dense")]
    assert rows[1]["config"]["factory"] == "Flat" and rows[2]["config"]["factory"] == "HNSW8"
    assert (out / "indexes" / "hnsw" / "manifest.json").is_file()
    for row in rows:
        assert 0 < row["ndcg10"] <= 1 and row["queries_per_second"] > 0 and row["size_mb"] > 0
    assert "| bm25 |" in (out / "bench.md").read_text()
    result = genir("bench", "--collection", toy_collection, "--methods", "bm25", "-o", out, "--reuse")
    assert result.exit_code == 0 and "reusing" in result.output


def test_bench_reuse_rebuilds_a_copy_whose_source_was_rebuilt(toy_collection, tmp_path):
    """``--reuse`` compares configs, and a copy's config (``of_from=...``) reads the same after its source is
    rebuilt: the copy is reused only if it was written after its source."""
    import os

    out = tmp_path / "bench"
    args = ["bench", "--collection", toy_collection, "--methods", "first=bm25,fused=hybrid", "-o", out, "--reuse",
            "--set", "fused.of=bm25", "--set", f"fused.of_from={out / 'indexes' / 'first'}", "--set", "fused.weight=0.5"]
    assert genir(*args).exit_code == 0
    again = genir(*args)
    assert again.exit_code == 0 and "[fused] reusing" in again.output
    source = out / "indexes" / "first" / "manifest.json"
    later = (out / "indexes" / "fused" / "manifest.json").stat().st_mtime + 10
    os.utime(source, (later, later))  # as if the source had been rebuilt after the copy
    rebuilt = genir(*args)
    assert rebuilt.exit_code == 0 and "[fused] building" in rebuilt.output, rebuilt.output


@pytest.mark.parametrize("corpus, message", [
    (b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": }\n', "corpus.jsonl:2: malformed JSON"),
    (b'{"_id": "a", "text": "x"}\n{"text": "y"}\n', 'corpus.jsonl:2: missing "_id"'),
    (b'{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', "corpus.jsonl:2: duplicate document id 'a'"),
    (b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": ""}\n', "corpus.jsonl:2: document 'b' is empty"),
    (b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": "\xff"}\n', "corpus.jsonl:2: not valid UTF-8"),
])
@pytest.mark.parametrize("method", ["bm25", "dense"])
def test_bad_corpus_exits_2_and_leaves_no_index(tmp_path, corpus, message, method):
    root = write_beir(tmp_path / "c")
    (root / "corpus.jsonl").write_bytes(corpus)
    result = genir("index", "--method", method, "--collection", root, "-o", tmp_path / "out" / "idx")
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_bad_input_keeps_an_existing_index(toy_collection, tmp_path):
    index = tmp_path / "idx"
    assert genir("index", "-m", "bm25", "-c", toy_collection, "-o", index).exit_code == 0
    before = (index / "manifest.json").read_text()
    (toy_collection / "corpus.jsonl").write_bytes(b'{"_id": "a", "text": }\n')
    result = genir("index", "-m", "bm25", "-c", toy_collection, "-o", index, "--overwrite")
    assert result.exit_code == 2
    assert (index / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "toy"]


@pytest.mark.parametrize("qrels_line, queries, message", [
    ("qX\td1\t1", None, "test.tsv:5: unknown query id 'qX'"),
    ("q1\tdX\t1", None, "test.tsv:5: unknown document id 'dX'"),
    ("q1\td1\t1", [{"_id": "q1", "text": "ok"}, {"_id": "q2", "text": ""}], "queries.jsonl:2: query 'q2' is empty"),
])
def test_bad_queries_and_qrels_exit_2_before_building(tmp_path, qrels_line, queries, message):
    root = write_beir(tmp_path / "c", **({"queries": queries} if queries else {}))
    qrels = root / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + qrels_line + "\n")
    result = genir("bench", "--collection", root, "--methods", "bm25", "-o", tmp_path / "bench")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "bench").exists()


@pytest.mark.parametrize("args, message", [
    (["index", "-m", "nope", "-c", "builtin:stdlib", "-o", "x"], "unknown method 'nope'"),
    (["index", "-m", "bm25", "-c", "builtin:stdlib", "-o", "x", "--set", "k3=1"], "unknown option 'k3'"),
    (["index", "-m", "bm25", "-c", "builtin:stdlib", "-o", "x", "--set", "k1=high"], "k1='high': expected a number >= 0"),
    (["search", "no-such-index", "q"], "no such index directory"),
    (["bench", "-c", "builtin:stdlib", "--methods", "bm25,x=nope"], "unknown method 'nope'"),
    (["bench", "-c", "builtin:stdlib", "--methods", "bm25", "--set", "dense.factory=Flat"], "LABEL one of bm25"),
    (["index", "-m", "bm25", "-c", "builtin:stdlib", "-o", "x", "--docids", "atomic"], "unknown option 'docids'"),
])
def test_usage_errors(args, message):
    result = genir(*args)
    assert result.exit_code == 2 and message in result.output


def test_corrupt_index_is_refused(toy_collection, tmp_path):
    index = tmp_path / "idx"
    assert genir("index", "-m", "dense", "-c", toy_collection, "-o", index).exit_code == 0
    docids = index / "docids.json"
    docids.write_text(docids.read_text().replace("d1", "dX"))  # same size, different bytes
    result = genir("search", index, "zebra")
    assert result.exit_code == 2 and "does not match its sha256" in result.output


def test_help_everywhere():
    for command in ["index", "search", "run", "eval", "bench", "methods"]:
        result = genir(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_allow_empty_docs_flag(tmp_path):
    docs = [{"_id": "d1", "text": "zebras have stripes"}, {"_id": "d2", "title": "", "text": ""}]
    root = write_beir(tmp_path / "c", docs=docs, queries=[{"_id": "q1", "text": "zebra"}], qrels=[("q1", "d1", 1)])
    out = tmp_path / "bench"
    result = genir("bench", "--collection", root, "--methods", "bm25", "-o", out)
    assert result.exit_code == 2 and "corpus.jsonl:2: document 'd2' is empty" in result.output
    result = genir("bench", "--collection", root, "--methods", "bm25", "-o", out, "--allow-empty-docs")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "bench.json").read_text())["rows"][0]["ndcg10"] == 1.0


def test_help_lists_every_command():
    result = genir("--help")
    assert result.exit_code == 0
    for command in ["methods", "index", "train-querygen", "search", "run", "eval", "bench", "continual"]:
        assert command in result.output
    assert genir("continual", "--help").exit_code == 0


def test_terminal_setup_is_undone_after_a_command(toy_collection, tmp_path, monkeypatch):
    import logging
    import os

    monkeypatch.delenv("PL_TRAINER_ENABLE_MODEL_SUMMARY", raising=False)
    before = logging.root.manager.disable
    assert genir("index", "-m", "bm25", "-c", toy_collection, "-o", tmp_path / "idx").exit_code == 0
    assert logging.root.manager.disable == before
    assert "PL_TRAINER_ENABLE_MODEL_SUMMARY" not in os.environ


def test_tiny_dsi_build_shows_no_lightning_chatter(tmp_path):
    """A real process (in-process runs hide warnings and Lightning's own log handler from the test)."""
    import os
    import subprocess
    import sys

    docs = [{"_id": "d1", "title": "Cats", "text": "The cat sat on the mat."},
            {"_id": "d2", "title": "Zebras", "text": "Zebras have black and white stripes."},
            {"_id": "d3", "title": "", "text": ""}]
    root = write_beir(tmp_path / "c", docs=docs, queries=[{"_id": "q1", "text": "zebra"}], qrels=[("q1", "d2", 1)],
                      split="train")
    env = {**os.environ, "GENIR_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("PL_TRAINER_ENABLE_MODEL_SUMMARY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "genir.cli.main", "index", "-m", "dsi", "-c", str(root), "-o", str(tmp_path / "idx"),
         "--set", "model=t5-config:tiny", "--set", "docids=atomic", "--set", "max_epochs=2",
         "--set", "queries_split=train", "--allow-empty-docs"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    everything = proc.stdout + proc.stderr
    for noise in ["litlogger", "LeafSpec", "Tip", "GPU available", "TPU available", "logging interval",
                  "was configured", "Trainable params", "Seed set"]:
        assert noise not in everything, f"{noise!r} reached the terminal:\n{everything}"
    assert "built dsi index" in proc.stdout
    assert "warning: " in proc.stderr and "document 'd3' is empty" in proc.stderr  # genir's own warnings still show
    assert "embedding documents" in proc.stderr  # and genir's progress bars


# -- own corpora and queries (issue 32) ------------------------------------------------------------

@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """bm25 and dense indexes of the toy collection, built once; the tests only read them."""
    root = tmp_path_factory.mktemp("cli")
    collection = write_beir(root / "toy")
    for method in ("bm25", "dense"):
        assert genir("index", "-m", method, "-c", collection, "-o", root / method).exit_code == 0
    return root


def test_search_json_gives_hits_with_their_text_where_the_index_stores_it(indexes):
    result = genir("search", indexes / "bm25", "zebra stripes", "parse json", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["method"] == "bm25" and printed["k"] == 2 and [r["query"] for r in printed["results"]] == ["zebra stripes", "parse json"]
    top = printed["results"][0]["hits"][0]
    assert (top["rank"], top["docid"]) == (1, "d6") and top["score"] > 0
    assert top["text"] == "Zebras Zebras have black and white stripes."
    dense = json.loads(genir("search", indexes / "dense", "zebra stripes", "-k", "1", "--json").stdout)
    assert dense["results"][0]["hits"][0]["docid"] == "d6" and dense["results"][0]["hits"][0]["text"] is None  # keeps no text


@pytest.mark.parametrize("queries, message", [([""], "the query is empty"), (["zebras", "  "], "query 2 of 2 is empty")])
def test_an_empty_query_exits_2(indexes, queries, message):
    for method in ("bm25", "dense"):
        result = genir("search", indexes / method, *queries)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_an_empty_query_is_refused_from_python_too(indexes):
    from genir.errors import InputError
    from genir.retrieval.searcher import Searcher

    searcher = Searcher.load(indexes / "dense", device="cpu")
    with pytest.raises(InputError, match="the query is empty"):
        searcher.search(" \n")
    with pytest.raises(InputError, match="not one string"):
        searcher.batch_search("zebras")


def test_run_without_qrels_searches_every_query_and_says_it_cannot_be_evaluated(indexes, tmp_path):
    collection = write_beir(tmp_path / "mine", qrels=[])
    (collection / "qrels" / "test.tsv").unlink()
    (collection / "qrels").rmdir()
    run_file = tmp_path / "run.trec"
    result = genir("run", indexes / "bm25", "-c", collection, "-o", run_file, "-k", "2")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "has no qrels: searching all 3 queries" in output and "cannot be evaluated" in output
    assert sorted({line.split()[0] for line in run_file.read_text().splitlines()}) == ["q1", "q2", "q3"]


@pytest.mark.parametrize("layout", ["csv", "folder"])
def test_index_and_search_your_own_corpus(tmp_path, layout):
    if layout == "csv":
        corpus = tmp_path / "corpus.csv"
        corpus.write_text('doc_id,title,text\nz,Zebras,"Zebras have black and white stripes."\nc,Cats,The cat sat.\n')
    else:
        corpus = tmp_path / "notes"
        (corpus / "animals").mkdir(parents=True)
        (corpus / "animals" / "zebras.md").write_text("# Zebras\n\nZebras have black and white stripes.\n")
        (corpus / "cats.txt").write_text("Cats\nThe cat sat.\n")
    result = genir("index", "-m", "bm25", "-c", corpus, "-o", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    hits = json.loads(genir("search", tmp_path / "idx", "striped zebras", "-k", "1", "--json").stdout)["results"][0]["hits"]
    assert hits[0]["docid"] == ("z" if layout == "csv" else "animals/zebras")
    assert hits[0]["text"] == "Zebras Zebras have black and white stripes."


def test_a_bad_row_of_your_own_corpus_exits_2_naming_file_and_line(tmp_path):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("id\ttitle\ttext\na\tA\tfine\nb\tonly two\n")
    result = genir("index", "-m", "bm25", "-c", corpus, "-o", tmp_path / "out" / "idx")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{corpus}:3: expected 3 columns, as the header on line 1 names, found 2" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
