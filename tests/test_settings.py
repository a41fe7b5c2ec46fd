"""Typed settings (genir.settings): bad keys and values refused at the edge with one message naming the key and
what it allows (CLI: exit 2), outputs that cannot be written refused likewise, and indexes built before the
configs were pydantic models still load."""

from __future__ import annotations

import errno
import json
import os

import pytest
from conftest import TOY_DOCS, write_beir
from typer.testing import CliRunner

from genir.cli.main import app
from genir.errors import GenirError
from genir.indexer.artifact import Manifest, write_manifest
from genir.indexer.collection import Collection
from genir.retrieval.searcher import METHODS, Searcher, build_index, searcher_class
from genir.settings import SettingsError, describe_fields, parse_config

runner = CliRunner()


def genir(*args):
    return runner.invoke(app, [str(a) for a in args])


# What genir wrote into manifests before its configs were pydantic models (copied from indexes built by
# the dataclass code on the toy collection): numbers given on the command line were kept as text.
OLD_BM25 = {"k1": 1.2, "b": 0.4, "threads": 2, "store_raw": True}
OLD_DSI = {
    "docids": "atomic", "rq_levels": 1, "rq_codes": 64, "semantic_levels": 2, "semantic_k": 10, "model": "t5-config:tiny",
    "token_table": "frozen", "decoder_layers": 2, "freeze_encoder": "auto", "tokenizer": "all-MiniLM-L6-v2", "embeddings_from": "",
    "docid_embeddings": "auto", "dense_start": "auto", "score": "auto", "max_source_len": 64, "batch_size": 64, "lr": 0.001,
    "warmup_steps": 100, "max_epochs": 0, "max_time": "00:01:00:00", "precision": "32-true", "first_words": 64, "spans": 2,
    "span_words": 32, "rehearsal": 0, "description": "keywords", "description_tokens": 16, "pseudo_queries": "2",
    "pseudo_query_words": 8, "querygen": "", "queries_split": "", "dev_fraction": 0.1, "dev_pseudo_queries": 200,
    "select_on_dev": True, "dev_margin": "0.5", "min_dev_queries": 20, "retrieval_repeats": 1, "beams": 100,
    "atomic_search": "first", "elaborative_search": "rescore", "candidates": 100, "plan_weight": "auto", "dense_weight": "auto",
    "seed": 0,
}
OLD_SEAL_HYBRID = {"of": "seal", "of_from": "", "of_set": "", "fusion": "interp", "weight": "0.2", "depth": 100, "rrf_k": 60,
                   "queries_split": "train", "dev_fraction": 0.1, "seed": 0}


@pytest.mark.parametrize("method, setting, message", [
    ("bm25", "k1=-1", "k1='-1': expected a number >= 0"),
    ("bm25", "b=1.5", r"b='1.5': expected a number in [0, 1]"),
    ("dsi", "batch_size=0", "batch_size='0': expected an integer >= 1"),
    ("dsi", "lr=-1", "lr='-1': expected a number > 0"),
    ("dsi", "max_epochs=-1", "max_epochs='-1': expected an integer >= 0"),
    ("dsi", "max_time=an hour", "max_time='an hour': expected DD:HH:MM:SS or empty (none)"),
    ("dense", "max_length=0", "max_length='0': expected an integer >= 1"),
    ("dsi", "beams=0", "beams='0': expected an integer >= 1"),
    ("dsi", "score=bogus", "score='bogus': expected one of auto, logit, logprob"),
    ("se-dsi", "plan_weight=nan", "plan_weight='nan': expected auto or a number >= 0"),
    ("dsi", "rq_codes=48", "rq_codes='48': expected a power of two >= 2"),
    ("seal", "ngram_min_words=12", "ngram_min_words=12 is above ngram_max_words=10"),
    ("hybrid", "weight=1.5", r"weight='1.5': expected auto or a number in [0, 1]"),
    ("bm25", "colour=red", "unknown option 'colour' for BM25Config (known: k1, b, threads, store_raw)"),
])
def test_a_bad_setting_exits_2_naming_the_key_and_what_it_allows(tmp_path, method, setting, message):
    result = genir("index", "-m", method, "-c", "builtin:stdlib", "-o", tmp_path / "idx", "--set", setting)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "idx").exists()
    with pytest.raises(SettingsError) as raised:  # the same message from Python, whichever way the config is made
        parse_config(searcher_class(method).Config, [setting])
    assert message in str(raised.value)


def test_several_bad_settings_are_named_in_one_message():
    with pytest.raises(SettingsError, match="batch_size='0': expected an integer >= 1; lr='-1': expected a number > 0"):
        parse_config(searcher_class("dsi").Config, ["batch_size=0", "lr=-1"])
    with pytest.raises(GenirError, match="not of the form KEY=VALUE"):
        parse_config(searcher_class("dsi").Config, ["beams"])


@pytest.mark.parametrize("setting, message", [
    ("beams=0", "beams='0': expected an integer >= 1"),
    ("score=bogus", "score='bogus': expected one of auto, logit, logprob"),
    ("plan_weight=nan", "plan_weight='nan': expected auto or a number >= 0"),
])
def test_a_bad_search_setting_exits_2(toy_collection, tmp_path, setting, message):
    """Search settings are checked when the index is opened, before any of its files is read."""
    index = tmp_path / "idx"
    index.mkdir()
    write_manifest(index, Manifest(method="dsi", config=OLD_DSI, stats={"num_docs": 1}))
    result = genir("search", index, "zebras", "--set", setting)
    assert result.exit_code == 2 and message in result.output, result.output
    result = genir("run", index, "-c", toy_collection, "--split", "test", "-o", tmp_path / "run.trec", "--set", setting)
    assert result.exit_code == 2 and message in result.output, result.output


def test_auto_is_resolved_by_the_model():
    dsi = searcher_class("dsi").Config
    assert dsi().pseudo_queries_setting(supervised=True) == 0 and dsi().pseudo_queries_setting(supervised=False) == 4
    assert dsi(pseudo_queries=3).pseudo_queries_setting(supervised=True) == 3
    assert dsi().freeze_encoder_setting() and not dsi(model="t5-config:tiny").freeze_encoder_setting()
    assert dsi(model="t5-config:tiny", freeze_encoder="true").freeze_encoder_setting()
    assert dsi().docid_embeddings_mode() == "frozen" and dsi(docids="naive").docid_embeddings_mode() == "none"
    assert dsi().dense_start_setting() and dsi().score_setting(dense_start=True) == "logit"
    with pytest.raises(GenirError, match="dense_start=true needs a bert2bert model"):
        dsi(model="t5-config:tiny", dense_start="true")
    hybrid = searcher_class("hybrid").Config
    assert hybrid().given_weight is None and hybrid(weight="0.25").given_weight == 0.25


def test_training_settings_are_one_base_model():
    from genir.seq2seq.settings import TrainingSettings
    from genir.views.querygen import QueryGenConfig

    for config in (searcher_class("dsi").Config, searcher_class("se-dsi").Config, searcher_class("seal").Config, QueryGenConfig):
        assert issubclass(config, TrainingSettings)
        assert config.model_fields["batch_size"].metadata == TrainingSettings.model_fields["batch_size"].metadata
    seal = parse_config(searcher_class("seal").Config, ["lr=0.01", "max_epochs=5"])
    assert (seal.lr, seal.max_epochs, seal.batch_size) == (0.01, 5, 32)  # SEAL's own default batch
    assert seal.training(max_time=None) == TrainingSettings(batch_size=32, lr=0.01, max_epochs=5, max_time=None)


def test_methods_lists_every_field_with_its_type_default_help_and_search_mark():
    result = genir("methods")
    assert result.exit_code == 0
    assert "    k1 = 0.9: a number >= 0  (search)\n" in result.output
    assert "    b = 0.4: a number in [0, 1]  (search)\n" in result.output
    assert "    plan_weight = 'auto': auto or a number >= 0  (search)\n" in result.output
    for method in METHODS:
        for name, _, _, help_text in describe_fields(searcher_class(method).Config):
            assert help_text, f"{method}.{name} has no help text"
            assert f"    {name} = " in result.output


def test_old_manifests_load(tmp_path):
    """Indexes written by the dataclass configs load, numbers kept as text ("0.5") included."""
    assert parse_config(searcher_class("seal-hybrid").Config, OLD_SEAL_HYBRID).weight == 0.2
    collection = Collection.open(write_beir(tmp_path / "toy"))
    for method, old, settings in (("bm25", OLD_BM25, []), ("dsi", OLD_DSI, ["model=t5-config:tiny", "max_epochs=0", "queries_split="])):
        index = tmp_path / method
        build_index(method, collection, index, parse_config(searcher_class(method).Config, settings), device="cpu")
        manifest = json.loads((index / "manifest.json").read_text())
        manifest["config"] = old
        (index / "manifest.json").write_text(json.dumps(manifest))
        searcher = Searcher.load(index, device="cpu")
        try:
            assert searcher.config == parse_config(searcher_class(method).Config, old)
            assert {h.docid for h in searcher.search("striped zebras", k=3)} <= {d["_id"] for d in TOY_DOCS}
        finally:
            searcher.close()
    dsi = parse_config(searcher_class("dsi").Config, OLD_DSI)
    assert (dsi.pseudo_queries, dsi.dev_margin, dsi.plan_weight, dsi.freeze_encoder) == (2, 0.5, "auto", "auto")
    bad = json.loads((tmp_path / "bm25" / "manifest.json").read_text())
    bad["config"] = {**OLD_BM25, "k1": -1}  # an index a user could build before k1 was checked: unusable
    (tmp_path / "bm25" / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(GenirError, match=r"its manifest's config is not a valid bm25 config \(k1=-1: expected a number >= 0\)"):
        Searcher.load(tmp_path / "bm25")


def _unwritable(tmp_path, monkeypatch):
    """A read-only folder's child; root writes there anyway, so for root the folder reads as read-only."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path) == str(folder) else access(path, mode, **kw))
    return folder / "out"


@pytest.mark.parametrize("case", ["parent is a file", "name too long", "read-only", "disk full"])
@pytest.mark.parametrize("command", ["index", "run"])
def test_an_output_that_cannot_be_written_exits_2(toy_collection, tmp_path, monkeypatch, command, case):
    index = tmp_path / "idx"
    if command == "run":
        assert genir("index", "-m", "bm25", "-c", toy_collection, "-o", index).exit_code == 0
    (tmp_path / "file").write_text("a file")
    output, message = {
        "parent is a file": (tmp_path / "file" / "out", "file is not a folder"),
        "name too long": (tmp_path / ("x" * 300), "bytes long; the file system allows"),
        "read-only": (None, "is not writable"),
        "disk full": (tmp_path / "out", "No space left on device"),
    }[case]
    if case == "read-only":
        output = _unwritable(tmp_path, monkeypatch)
    if case == "disk full":
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out"))

        monkeypatch.setattr("genir.baselines.bm25.BM25Searcher.build", classmethod(full))
        monkeypatch.setattr("genir.evaluation.runs.atomic_open", full)
    if command == "index":
        result = genir("index", "-m", "bm25", "-c", toy_collection, "-o", output)
    else:
        result = genir("run", index, "-c", toy_collection, "--split", "test", "-o", output)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not output.parent.is_dir() or output.name not in os.listdir(output.parent)  # (exists() fails on a long name)
