"""SEAL: keys occur in the corpus, scoring equals a brute-force reference (t5-config and minilm-tokens models),
rare n-grams win, hybrid, the reads-the-query diagnostic, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TOY_QUERIES, built_once, write_beir
from typer.testing import CliRunner

from genir.cli.main import app
from genir.errors import GenirError
from genir.indexer.collection import Collection
from genir.indexer.dev_split import split_dev
from genir.retrieval.searcher import Searcher
from genir.seal.diagnostic import (
    diagnose,
    diagnose_query,
    document_frequencies,
    main,
    shares,
)
from genir.seal.pairs import SealPairConfig, seal_training_pairs
from genir.seal.scoring import aggregate, ngram_weights
from genir.seal.searcher import seal_component
from genir.seq2seq.token_space import tied_token_table

runner = CliRunner()
TINY = ["--model", "t5-config:tiny", "--set", "max_epochs=30", "--set", "batch_size=8", "--set", "warmup_steps=0",
        "--set", "lr=3e-3", "--set", "beams=4", "--set", "max_ngram_tokens=4"]
# The MiniLM token-space recipe (genir.seq2seq.token_space): its FM-index is over MiniLM's token ids.
MINILM = ["--set", "model=minilm-tokens", "--set", "max_epochs=8", "--set", "batch_size=8", "--set", "warmup_steps=0",
          "--set", "lr=3e-3", "--set", "beams=4", "--set", "max_ngram_tokens=4"]
QUERIES = ["how do I parse json", "sha-256 digest of bytes", "striped zebras", "the cat and the dog"]


def genir(*args):
    return runner.invoke(app, [str(a) for a in args])


def tiny_seal_index(root):
    """A seal index of the toy collection with a tiny T5 (``TINY``): ``(collection, index)`` under ``root``."""
    torch.set_num_threads(1)
    collection = write_beir(root / "toy", split="train")
    index = root / "idx"
    result = genir("index", "--method", "seal", "--collection", collection, "-o", index, *TINY)
    assert result.exit_code == 0, result.output
    return collection, index


@pytest.fixture(scope="module")
def seal_index(tmp_path_factory):
    """:func:`tiny_seal_index`, built once per test run (test_seal_pmi reads the same one)."""
    return built_once(tmp_path_factory, "tiny-seal", tiny_seal_index)


@pytest.fixture(scope="module")
def minilm_seal_index(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("seal-minilm")
    collection = write_beir(root / "toy", split="train")
    index = root / "idx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENIR_CACHE", str(root / "cache"))  # the frozen encoder's states
        result = genir("index", "--method", "seal", "--collection", collection, "-o", index, *MINILM)
    assert result.exit_code == 0, result.output
    return collection, index


def corpus_tokens(searcher, collection) -> list[list[int]]:
    """The indexed token ids of every document, tokenized again here (not read from the FM-index)."""
    docs = list(Collection.open(collection).docs())
    return [[t + 2 for t in searcher.tokenizer(d.contents, add_special_tokens=False)["input_ids"]] for d in docs]


def brute_count(corpus: list[list[int]], ngram: tuple[int, ...]) -> tuple[int, set[int]]:
    """Occurrences of ``ngram`` and the documents holding it, by scanning every position."""
    m, count, docs = len(ngram), 0, set()
    for d, tokens in enumerate(corpus):
        for i in range(len(tokens) - m + 1):
            if tuple(tokens[i:i + m]) == ngram:
                count += 1
                docs.add(d)
    return count, docs


def reference_scores(keys: dict, corpus: list[list[int]], alpha: float, beta: float) -> dict[int, float]:
    """SEAL's document scores computed the plain way: scan for documents, then greedy aggregation."""
    scores: dict[int, float] = {}
    for d, tokens in enumerate(corpus):
        present = sorted(((w, n) for n, (w, _, _) in keys.items() if w > 0 and brute_count([tokens], n)[0] > 0),
                         key=lambda item: -item[0])
        counted, covered, total = [], set(), 0.0
        for weight, ngram in present:
            text = " " + " ".join(map(str, ngram)) + " "
            if any(text in " " + " ".join(map(str, other)) + " " for other in counted):
                continue
            new = len(set(ngram) - covered) / len(set(ngram))
            total += weight ** alpha * (1 - beta + beta * new)
            covered |= set(ngram)
            counted.append(ngram)
        if counted:
            scores[d] = total
    return scores


@pytest.mark.parametrize("built", ["seal_index", pytest.param("minilm_seal_index", marks=pytest.mark.slow)])
def test_every_key_occurs_in_the_corpus_with_its_count(built, request):
    collection, index = request.getfixturevalue(built)
    searcher = Searcher.load(index)
    assert built == "seal_index" or tied_token_table(searcher.model)  # MiniLM's table, tied after loading
    corpus = corpus_tokens(searcher, collection)
    generated = searcher._generated(QUERIES)
    assert sum(len(g) for g in generated) > 0
    for per_query in generated:
        for ngram, log_prob, lo, hi in per_query:
            count, _ = brute_count(corpus, ngram)
            assert count > 0 and count == searcher.index.range_counts(np.array([lo]), np.array([hi]))[0]
            assert log_prob <= 0
    for per_query in searcher.keys(QUERIES):
        for ngram in per_query:
            assert brute_count(corpus, ngram)[0] > 0


@pytest.mark.parametrize("built", ["seal_index", pytest.param("minilm_seal_index", marks=pytest.mark.slow)])
def test_scores_match_a_brute_force_reference(built, request):
    collection, index = request.getfixturevalue(built)
    searcher = Searcher.load(index)
    corpus = corpus_tokens(searcher, collection)
    num_tokens = sum(len(t) for t in corpus)
    generated, from_query = searcher._generated(QUERIES), searcher._query_ngrams(QUERIES)
    ranked = searcher.batch_search(QUERIES, k=6)  # the same batch as the keys, so the same model scores
    for b, (_query, keys) in enumerate(zip(QUERIES, searcher.keys(QUERIES))):
        # Each weight from the formula, with the count scanned from the corpus.
        assert set(keys) <= {n for n, *_ in generated[b]} | {n for n, *_ in from_query[b]}
        for ngram, (weight, _lo, _hi) in keys.items():
            count = brute_count(corpus, ngram)[0]
            log_probs = [lp for n, lp, _, _ in generated[b] if n == ngram]
            log_probs += [math.log(searcher.config.query_ngram_prob)] * any(n == ngram for n, *_ in from_query[b])
            expected = max(max(0.0, math.log(min(math.exp(lp), 1 - 1e-6)) + math.log(1 - count / num_tokens)
                                - math.log(count / num_tokens) - math.log(1 - min(math.exp(lp), 1 - 1e-6)))
                           for lp in log_probs)
            assert weight == pytest.approx(expected, rel=1e-9, abs=1e-9)
        reference = reference_scores(keys, corpus, searcher.config.alpha, searcher.config.beta)
        assert {searcher.docids.index(h.docid): h.score for h in ranked[b]} == pytest.approx(
            dict(sorted(reference.items(), key=lambda kv: -kv[1])[:6]))


def test_a_rare_query_ngram_retrieves_its_document_first(tmp_path):
    collection = write_beir(tmp_path / "toy", split="train")
    index = tmp_path / "idx"
    result = genir("index", "--method", "seal", "--collection", collection, "-o", index, "--set", "use_model=false")
    assert result.exit_code == 0, result.output
    searcher = Searcher.load(index)
    assert searcher.model is None
    assert searcher.search("what does hashlib do", k=1)[0].docid == "d4"
    assert searcher.search("black and white stripes", k=1)[0].docid == "d6"
    hits = searcher.search("the mail carrier", k=3)
    assert hits[0].docid == "d2" and all(h.score > 0 for h in hits)


def test_aggregation_skips_contained_keys_and_penalizes_covered_tokens():
    ngrams = [(5, 6), (5,), (6, 7), (9,)]
    weights = np.array([3.0, 2.0, 1.0, 0.0])
    # doc 0 holds every key; doc 1 holds (5,) and (6, 7); doc 2 only the zero-weight key.
    doc_ptr = np.array([0, 1, 3, 5, 7])
    docs = np.array([0, 0, 1, 0, 1, 0, 2])
    documents, scores = aggregate(ngrams, weights, doc_ptr, docs, alpha=2.0, beta=0.5)
    # doc 0: (5, 6) -> 9; (5,) is inside (5, 6): skipped; (6, 7): half new -> 1 * (0.5 + 0.5 * 0.5) = 0.75.
    # doc 1: (5,) -> 4; (6, 7) all new -> 1.
    assert documents.tolist() == [0, 1] and scores.tolist() == pytest.approx([9.75, 5.0])


def test_weights_are_log_odds_ratios_and_never_negative():
    w = ngram_weights([math.log(0.5), math.log(0.01), 0.0], [1, 500, 10], 1000)
    assert w[0] == pytest.approx(math.log(999))
    assert w[1] == 0.0  # an n-gram less likely given the query than in the corpus
    assert w[2] > w[0]  # a near-certain n-gram is clipped, not infinite
    assert np.isfinite(w).all()


def test_training_pairs_cover_queries_and_documents(toy_collection):
    collection = Collection.open(write_beir(toy_collection.parent / "train", split="train"))
    docs = list(collection.docs())
    pairs = seal_training_pairs(collection, docs, SealPairConfig(ngrams_per_pair=3, unsupervised_per_doc=2))
    texts = {d.id: d.contents for d in docs}
    supervised = [t for q, t in pairs if q == "how do I parse json"]
    assert len(supervised) == 4 and all(t in texts["d3"] for t in supervised)  # the title and 3 spans
    # Anchored: each span holds the document word the query shares with it ("json"); random
    # 3-word spans of "Parsing JSON strings into Python dictionaries." miss it for 5 of 20 seeds.
    for seed in range(20):
        seeded = seal_training_pairs(collection, docs, SealPairConfig(ngrams_per_pair=3, unsupervised_per_doc=2, seed=seed))
        assert all("JSON" in t for q, t in seeded if q == "how do I parse json")
    assert all(t in " ".join(texts.values()) for _, t in pairs)
    assert len(pairs) == len(supervised) * 3 + 2 * len(docs)
    assert pairs == seal_training_pairs(collection, docs, SealPairConfig(ngrams_per_pair=3, unsupervised_per_doc=2))
    # dev_fraction: the dev carve's query is never a source; the others are, as without it.
    held = seal_training_pairs(collection, docs, SealPairConfig(ngrams_per_pair=3, unsupervised_per_doc=2, dev_fraction=0.3))
    (dev_id,) = split_dev(collection, "train", 0.3, 0).dev
    texts_of = {q["_id"]: q["text"] for q in TOY_QUERIES}
    assert {q for q, _ in held} == {q for q, _ in pairs} - {texts_of[dev_id]}


def test_hybrid_index_searches_both_and_round_trips(seal_index, tmp_path):
    collection, index = seal_index
    hybrid = tmp_path / "hybrid"
    result = genir("index", "--method", "seal-hybrid", "--collection", collection, "-o", hybrid,
                   "--set", f"of_set=model_from={index};beams=4;max_ngram_tokens=4")
    assert result.exit_code == 0, result.output
    searcher = Searcher.load(hybrid)
    hits = searcher.search("digest of byte strings", k=3)
    assert hits[0].docid == "d4" and 2 <= len(hits) <= 3 and len({h.docid for h in hits}) == len(hits)
    searcher.save(tmp_path / "copy")
    assert Searcher.load(tmp_path / "copy").search("digest of byte strings", k=3) == hits
    run_file = tmp_path / "run.trec"
    assert genir("run", hybrid, "--collection", collection, "--split", "train", "-o", run_file, "-k", "5").exit_code == 0
    assert "nDCG@10" in genir("eval", run_file, "--collection", collection, "--split", "train").output


def test_bad_input_exits_2_and_keeps_nothing(seal_index, tmp_path, monkeypatch):
    collection, index = seal_index
    result = genir("index", "-m", "seal", "-c", collection, "-o", tmp_path / "out", "--set", "model=/no/such/model")
    assert result.exit_code == 2 and "/no/such/model" in result.output
    assert genir("search", index, "zebras", "-k", "7").exit_code == 0  # k above the corpus: every document there is
    result = genir("search", index, "zebras", "-k", "0")
    assert result.exit_code == 2 and "positive integer" in result.output
    result = genir("index", "-m", "seal", "-c", collection, "-o", tmp_path / "out", "--set", f"model_from={tmp_path}")
    assert result.exit_code == 2 and "model_from" in result.output
    empty = write_beir(tmp_path / "empty", docs=[], queries=[], qrels=[])
    result = genir("index", "-m", "seal", "-c", empty, "-o", tmp_path / "out", "--set", "use_model=false")
    assert result.exit_code == 2 and "the corpus has no documents" in result.output
    monkeypatch.setattr("genir.kernels.fmindex.MAX_TEXT_LENGTH", 20)
    result = genir("index", "-m", "seal", "-c", collection, "-o", tmp_path / "out", "--set", "use_model=false")
    assert result.exit_code == 2 and "cannot build the FM-index" in result.output and "corpus too long" in result.output
    assert not (tmp_path / "out").exists()


def test_diagnostic_counts_informative_words_of_the_query_or_a_relevant_document(toy_collection):
    docs = list(Collection.open(toy_collection).docs())
    frequencies, num_docs = document_frequencies(d.contents for d in docs)
    zebras = "Zebras Zebras have black and white stripes."
    assert frequencies["zebras"] == 1 and frequencies["the"] == 2 and frequencies["and"] == 4 and num_docs == 6
    read = diagnose_query("q3", ["the", "zebras have black"], "striped zebras", [zebras], frequencies, 1)
    assert read.reads and read.query_words == ["zebras"] and read.relevant_words == ["black", "have", "zebras"]
    by_document = diagnose_query("q3", ["white stripes"], "striped zebras", [zebras], frequencies, 1)
    assert by_document.reads and not by_document.query_words and by_document.relevant_words == ["stripes", "white"]
    generic = diagnose_query("q3", ["the", "and the", "##ebras"], "the striped zebras", [zebras], frequencies, 1)
    assert not generic.reads  # frequent words and a word piece never count
    assert shares([read, by_document, generic]) == pytest.approx(
        {"queries": 3, "reads_query": 1 / 3, "reads_relevant": 2 / 3, "reads_either": 2 / 3})


def test_diagnostic_of_a_seal_index_reads_its_top_generated_ngrams(seal_index, tmp_path, capsys):
    collection, index = seal_index
    searcher = seal_component(Searcher.load(index))
    diagnoses = diagnose(searcher, Collection.open(collection), "train", top=3, max_df=0.2)
    assert [d.qid for d in diagnoses] == ["q1", "q2", "q3"]
    generated = searcher._generated(["how do I parse json", "sha-256 digest of bytes", "striped zebras"])
    for diagnosis, rows in zip(diagnoses, generated):
        best = sorted(rows, key=lambda row: -row[1])[:3]
        assert diagnosis.ngrams == [searcher.tokenizer.decode([t - 2 for t in row[0]]) for row in best]
    main([str(index), "--collection", str(collection), "--split", "train", "--out", str(tmp_path / "d.json")])
    assert "3 queries: reads the query" in capsys.readouterr().out
    assert json.loads((tmp_path / "d.json").read_text())["queries"] == 3
    no_model = tmp_path / "no-model"
    assert genir("index", "-m", "seal", "-c", collection, "-o", no_model, "--set", "use_model=false").exit_code == 0
    with pytest.raises(GenirError, match="no model"):
        diagnose(seal_component(Searcher.load(no_model)), Collection.open(collection), "train")
