"""benchmarks/bench_gpu.py on the CPU: the search table and JSON, and the rows of methods it cannot run here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import write_beir

from genir.errors import GenirError
from genir.indexer.collection import Collection
from genir.retrieval.searcher import build_index, parse_config, searcher_class

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_given_seal_index_is_searched_into_the_one_table_and_json(bench, tmp_path, monkeypatch, capsys):
    collection = write_beir(tmp_path / "c")
    config = parse_config(searcher_class("seal").Config, ["use_model=false"])  # the FM-index alone: no training
    build_index("seal", Collection.open(collection), tmp_path / "seal", config, device="cpu")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--sections", "seal", "--seal-index", str(tmp_path / "seal"),
                                      "--collection", str(collection), "--out", str(out), "--device", "cpu"])
    bench.main()
    results = json.loads((out / "bench_gpu.json").read_text())
    [row] = results["seal"]
    assert row["entry"] == "seal" and row["index"] == str(tmp_path / "seal")
    assert row["queries_per_s_k10"] > 0 and row["queries_per_s_k100"] > 0
    assert set(results["seconds"]) == {"seal"}
    assert (out / "run-seal.trec").read_text().startswith("q1 Q0 ")
    table = capsys.readouterr().out.split("## search")[1].splitlines()
    assert table[1] == "| entry | device | index | queries_per_s_k10 | queries_per_s_k100 |"
    assert table[3].startswith("| seal | cpu | ")


def test_bm25_without_pyserini_or_java_is_a_skipped_row(bench, tmp_path, monkeypatch):
    from genir.baselines import bm25

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "pyserini" else find_spec(name))
    assert bench._bm25(None) == [{"entry": "bm25", "skipped": "pyserini is not installed here"}]
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    def no_java() -> None:
        raise GenirError("BM25 needs Java 17")

    monkeypatch.setattr(bm25, "ensure_java", no_java)
    assert bench._bm25(None) == [{"entry": "bm25", "skipped": "BM25 needs Java 17"}]


def test_an_unknown_section_is_refused(bench, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--sections", "topk,bm2"])
    with pytest.raises(SystemExit):
        bench.main()
