"""The MiniLM token-space recipe: the decoder's token table is MiniLM's, tied, frozen when asked,
through training and a safetensors save/load."""

from __future__ import annotations

import pytest
import torch

from genir.dsi.config import DENSE_WEIGHT, PLAN_WEIGHT
from genir.errors import GenirError
from genir.kernels.exhaustive import exhaustive_scores, pad_docids
from genir.seq2seq.fit import fit
from genir.seq2seq.model_io import PICKLE_SUFFIXES, load_seq2seq, save_seq2seq
from genir.seq2seq.settings import TrainingSettings
from genir.seq2seq.token_space import build_token_space_seq2seq, tied_token_table
from genir.seq2seq.vocab import EOS, FIRST_TOKEN, PAD, TextVocab

PAIRS = [("how do I parse json", "Parsing JSON strings"), ("sha-256 digest of bytes", "digests of byte strings"),
         ("striped zebras", "black and white stripes"), ("the cat and the dog", "The cat sat on the mat")]


def table(model) -> torch.Tensor:
    return model.get_decoder().get_input_embeddings().weight


def test_the_table_is_minilm_word_embeddings_tied():
    built = build_token_space_seq2seq(token_table="frozen")
    words = built.model.get_encoder().get_input_embeddings().weight
    tok = built.tokenizer
    assert tied_token_table(built.model) and not table(built.model).requires_grad
    assert torch.equal(table(built.model)[FIRST_TOKEN:], words)
    assert torch.equal(table(built.model)[PAD], words[tok.cls_token_id])
    assert torch.equal(table(built.model)[EOS], words[tok.sep_token_id])
    assert table(built.model).shape[0] == TextVocab(tok).size
    assert table(build_token_space_seq2seq(token_table="train").model).requires_grad
    with pytest.raises(GenirError, match="token_table"):
        build_token_space_seq2seq(token_table="thawed")


@pytest.mark.parametrize("token_table", ["frozen", "train"])
def test_tied_and_frozen_through_training_and_save_load(token_table, tmp_path, monkeypatch):
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    built = build_token_space_seq2seq(token_table=token_table)
    before = table(built.model).detach().clone()
    vocab = TextVocab(built.tokenizer)
    pairs = [(source, vocab.encode(target, 8)) for source, target in PAIRS]
    settings = TrainingSettings(batch_size=2, lr=1e-2, warmup_steps=0, max_epochs=2)
    stats = fit(built, pairs, settings, tmp_path / "run", frozen_encoder=True, progress=False)
    assert stats["train_steps"] == 4
    trained = table(built.model).detach().clone()
    assert tied_token_table(built.model)
    assert torch.equal(trained, before) == (token_table == "frozen")

    save_seq2seq(built.model, tmp_path / "model")
    assert not [p for p in (tmp_path / "model").rglob("*") if p.suffix in PICKLE_SUFFIXES]
    loaded = load_seq2seq(tmp_path / "model")
    assert tied_token_table(loaded) and torch.equal(table(loaded), trained)
    batch = built.tokenizer(["striped zebras"], return_tensors="pt")
    start = torch.zeros((1, 1), dtype=torch.int64)
    with torch.no_grad():
        expected = built.model(**batch, decoder_input_ids=start).logits
        assert torch.allclose(loaded(**batch, decoder_input_ids=start).logits, expected, atol=1e-5)


@pytest.mark.slow
def test_se_dsi_writes_its_descriptions_in_minilm_token_space(tmp_path, monkeypatch):
    """SE-DSI with ``model=minilm-tokens``: the elaborative docids are MiniLM token ids, which the decoder's
    tied table holds, so the index trains, saves, loads tied and frozen, and every hit is a real document;
    its ``rescore`` search, given every description as a candidate, ranks as brute-force exact scoring."""
    from conftest import TOY_DOCS, write_beir

    from genir.indexer.collection import Collection
    from genir.retrieval.searcher import (
        Searcher,
        build_index,
        parse_config,
        searcher_class,
    )

    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    collection = Collection.open(write_beir(tmp_path / "toy"))
    config = parse_config(searcher_class("se-dsi").Config, {"token_table": "frozen", "queries_split": "", "max_epochs": 1,
                                                            "dev_pseudo_queries": len(TOY_DOCS), "min_dev_queries": 3})
    build_index("se-dsi", collection, tmp_path / "idx", config, device="cpu")
    searcher = Searcher.load(tmp_path / "idx", device="cpu")
    _check_rescore_weights_chosen_on_dev(searcher, collection)
    assert tied_token_table(searcher.model)
    words = searcher.model.get_encoder().get_input_embeddings().weight
    assert torch.equal(table(searcher.model)[FIRST_TOKEN:], words)  # frozen: still MiniLM's rows after training
    hits = searcher.search("striped zebras", k=3)
    assert len(hits) == 3 and {h.docid for h in hits} <= {d["_id"] for d in TOY_DOCS}
    assert searcher.config.elaborative_search == "rescore"
    # Every description a candidate: the ranking is every description scored exactly, brute force,
    # first by beam search's score alone, then with the plan and the dense start (SE-DSI's defaults).
    sequences = searcher.scheme.sequences()
    padded = pad_docids(list(sequences.values()), PAD)  # [N, L]
    batch = searcher.tokenizer(["striped zebras"], return_tensors="pt")
    model = searcher.model.eval()
    shared = exhaustive_scores(model, batch["input_ids"], batch["attention_mask"], padded,
                               decoder_start_token_id=PAD, pad_token_id=PAD, score="logprob")  # [1, N]
    per_query = exhaustive_scores(model, batch["input_ids"], batch["attention_mask"], padded[None],
                                  decoder_start_token_id=PAD, pad_token_id=PAD, score="logprob")  # [1, N] from [1, N, L]
    torch.testing.assert_close(per_query, shared)
    assert len({len(s) for s in sequences.values()}) > 1  # chunks of two, cut to their longest, then score alike
    chunked = exhaustive_scores(model, batch["input_ids"], batch["attention_mask"], padded[None],
                                decoder_start_token_id=PAD, pad_token_id=PAD, score="logprob", chunk=2)  # [1, N]
    torch.testing.assert_close(chunked, shared)
    exact = shared[0] / (padded != PAD).sum(1)  # [N] beam search's score: logprob / length, eos included
    with torch.no_grad():
        states = model.get_encoder()(**batch).last_hidden_state  # [1, S, H]
        first = model(**batch, decoder_input_ids=torch.zeros((1, 1), dtype=torch.int64)).logits[0, 0]  # [V]
        first = torch.log_softmax(first - model.get_output_embeddings().bias, dim=-1)
    plan = torch.tensor([first[[t for t in seq if t != EOS]].mean() for seq in sequences.values()])  # [N]
    query = torch.nn.functional.normalize(states.mean(1), dim=-1)[0]  # [H]: mean-pooled, as the dense baseline
    vectors = torch.from_numpy(searcher.scheme.live_vectors())  # [N, H]
    assert vectors.shape == (len(TOY_DOCS), query.shape[0])
    config = searcher.config
    for plan_weight, dense_weight in ((0.0, 0.0), (PLAN_WEIGHT, DENSE_WEIGHT)):
        searcher.config = config.replace(candidates=len(TOY_DOCS), plan_weight=plan_weight, dense_weight=str(dense_weight))
        hits = searcher.search("striped zebras", k=len(TOY_DOCS))
        brute = (exact + plan_weight * plan + dense_weight * vectors @ query).tolist()
        expected = sorted(zip(brute, sequences), reverse=True)
        assert [h.docid for h in hits] == [docid for _, docid in expected]
        ranked_without_dense = [docid for _, docid in sorted(zip((exact + plan_weight * plan).tolist(), sequences), reverse=True)]
        assert [h.score for h in hits] == pytest.approx([score for score, _ in expected], abs=1e-4)
        # The terms a dev grid fuses rank as the search does (dense candidates scored, counted only with the dense term).
        terms = searcher.decoder.rescore_terms(["striped zebras"], searcher.config, dense_candidates=True)
        fused = terms.fused(plan_weight, dense_weight)[0]  # [2N]
        order = fused.argsort(descending=True)[: len(TOY_DOCS)]
        assert [searcher.decoder.docids[r] for r in terms.rows[0, order].tolist()] == [h.docid for h in hits]
    searcher.config = searcher.config.replace(elaborative_search="beam")
    assert {h.docid for h in searcher.search("striped zebras", k=3)} <= {d["_id"] for d in TOY_DOCS}
    with pytest.raises(GenirError, match="elaborative_search='propose': expected one of rescore, beam"):
        searcher.config.replace(elaborative_search="propose")
    # A document added later is embedded alike: the dense term finds it, and a deleted one leaves with its row.
    from genir.encoding.encoder import TextEncoder
    from genir.indexer.collection import Document
    from genir.retrieval.searcher import add_documents, delete_documents

    giraffes = Document("n1", "Giraffes", "Giraffes have long necks and eat acacia leaves on the savanna.")
    add_documents(tmp_path / "idx", [giraffes], device="cpu")
    delete_documents(tmp_path / "idx", [TOY_DOCS[0]["_id"]], device="cpu")
    grown = Searcher.load(tmp_path / "idx", device="cpu")
    live = grown.scheme.live_vectors()  # [N, H]
    assert live.shape[0] == len(TOY_DOCS) and list(grown.scheme.sequences())[-1] == "n1"
    torch.testing.assert_close(torch.from_numpy(live[-1]), torch.from_numpy(TextEncoder().encode([giraffes.contents])[0]))
    grown.config = grown.config.replace(dense_weight="1000")  # the dense term decides
    assert grown.search("giraffes eating acacia leaves", k=1)[0].docid == "n1"
    searcher.scheme.vectors = None  # as an index built without the dense term (and before builds chose weights)
    searcher.decoder._descriptions, searcher.decoder.rescore_weights = None, None
    searcher.config = config.replace(elaborative_search="rescore")
    assert [h.docid for h in searcher.search("striped zebras", k=3)] == ranked_without_dense[:3]  # auto: no dense term
    searcher.config = config.replace(dense_weight="6")
    with pytest.raises(GenirError, match="keeps no document vectors"):
        searcher.search("striped zebras", k=3)
    with pytest.raises(GenirError, match="needs docids=elaborative and model=minilm-tokens"):
        bad = parse_config(searcher_class("se-dsi").Config, {"model": "t5-config:tiny", "dense_weight": "6", "max_epochs": 0})
        build_index("se-dsi", collection, tmp_path / "bad", bad, device="cpu")
    with pytest.raises(GenirError, match="needs elaborative docids"):
        bad = parse_config(searcher_class("dsi").Config, {"model": "minilm-tokens", "max_epochs": 0})
        build_index("dsi", collection, tmp_path / "bad", bad, device="cpu")
    assert not (tmp_path / "bad").exists()


def _check_rescore_weights_chosen_on_dev(searcher, collection) -> None:
    """The build chose ``auto`` rescore weights on its dev set with the checkpoint, and ``auto`` searches
    with them; :func:`choose_rescore_weights` picks the grid's best cell, each cell searched as ``genir
    search`` would with those weights set (on a dev set whose judgements make the cells differ: the toy's
    own pseudo-queries are all answered at 1.0)."""
    from genir.dsi.dev import DevSet, choose_rescore_weights
    from genir.evaluation.bench import dev_summary
    from genir.measures import evaluate
    from genir.retrieval.searcher import Searcher

    config, stats = searcher.config, searcher.manifest.stats
    assert stats["dev_set"] == "held-out pseudo-queries" and (config.plan_weight, config.dense_weight) == ("auto", "auto")
    grid = config.rescore_grid()
    chosen = tuple(stats["rescore_weights"])
    assert len(grid) == 56 and chosen in grid and stats["dev_best"][2] == pytest.approx(stats["rescore_dev_ndcg10"], abs=1e-4)
    assert dev_summary(stats).startswith(f"epoch {stats['dev_best'][0]}, plan {chosen[0]:g} dense {chosen[1]:g} (dev nDCG@10")
    docs = list(collection.docs())
    explicit = Searcher.load(searcher.directory, device="cpu", settings=[f"plan_weight={chosen[0]}", f"dense_weight={chosen[1]}"])
    assert searcher.search("striped zebras", k=len(docs)) == explicit.search("striped zebras", k=len(docs))
    with pytest.raises(GenirError, match="'description' is not a search setting of se-dsi indexes"):
        Searcher.load(searcher.directory, device="cpu", settings=["description=keywords"])
    # Each document's words judged to name another document, two grades, so that every term matters.
    queries = {f"q{i}": f"{doc.title} {doc.contents}" for i, doc in enumerate(docs)}
    qrels = {f"q{i}": {docs[(i + 1) % len(docs)].id: 2, docs[(i + 3) % len(docs)].id: 1} for i in range(len(docs))}
    dev = DevSet(queries, qrels, {}, "crafted")

    def dev_ndcg(plan_weight: float, dense_weight: float) -> float:
        searcher.config = config.replace(plan_weight=str(plan_weight), dense_weight=str(dense_weight))
        run = dict(zip(queries, searcher.batch_search(list(queries.values()), k=10)))
        return evaluate(run, qrels, ("nDCG@10",)).aggregate["nDCG@10"]

    scores = {cell: dev_ndcg(*cell) for cell in grid}
    searcher.config = config
    choice = choose_rescore_weights(searcher.decoder, dev, config, grid)
    assert len({round(score, 6) for score in scores.values()}) > 2  # the cells rank differently
    assert choice.score == pytest.approx(max(scores.values()), abs=1e-6) == scores[choice.weights]


def test_the_query_start_reads_the_query_before_any_seq2seq_step(tmp_path, monkeypatch):
    """With no seq2seq step (``max_epochs=0``), the fitted query start alone makes the decoder's first
    distribution follow its source: each source's most likely word is one of its own target's."""
    from genir.seq2seq.query_start import is_query_start

    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    built = build_token_space_seq2seq()
    assert is_query_start(built.model)
    vocab = TextVocab(built.tokenizer)
    pairs = [(source, vocab.encode(target, 8)) for source, target in PAIRS]
    stats = fit(built, pairs, TrainingSettings(batch_size=2, max_epochs=0), tmp_path / "run", frozen_encoder=True,
                progress=False)
    before, after = stats["query_start_loss"]
    assert after < before - 1.0
    for source, target in pairs:
        batch = built.tokenizer([source], return_tensors="pt")
        with torch.no_grad():
            logits = built.model(**batch, decoder_input_ids=torch.zeros((1, 1), dtype=torch.int64)).logits[0, -1]
        assert int(logits[FIRST_TOKEN:].argmax()) + FIRST_TOKEN in target, source


def test_a_restricted_output_computes_the_same_logits_for_its_rows():
    built = build_token_space_seq2seq()
    decoder = built.model.get_decoder()
    batch = built.tokenizer(["striped zebras", "json"], return_tensors="pt", padding=True)
    start = torch.zeros((2, 1), dtype=torch.int64)
    with torch.no_grad():
        decoder.query_map.weight.normal_(std=0.1)  # a query start that reads its query
        full = built.model(**batch, decoder_input_ids=start).logits  # [2, 1, V]
        rows = torch.tensor([EOS, 5, 7, 1000, 2000])
        decoder.restrict_output(rows)
        restricted = built.model(**batch, decoder_input_ids=start).logits
        decoder.restrict_output(None)
        assert torch.equal(built.model(**batch, decoder_input_ids=start).logits, full)
    assert torch.allclose(restricted[..., rows], full[..., rows], atol=1e-5)
    others = torch.ones(full.shape[-1], dtype=torch.bool)
    others[rows] = False
    assert bool((restricted[..., others] == torch.finfo(full.dtype).min).all())


def test_no_epoch_and_no_query_start_computes_no_encoder_states(tmp_path, monkeypatch):
    """``max_epochs=0`` on a model without a query start trains and fits nothing, so its fit computes no
    frozen encoder states (several encodings per document: hours at 100k documents) and keeps the weights."""
    from genir.seq2seq.model import build_seq2seq

    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    built = build_seq2seq("bert2bert:all-MiniLM-L6-v2", FIRST_TOKEN + 4, decoder_layers=1)
    before = {name: p.detach().clone() for name, p in built.model.state_dict().items()}
    pairs = [(source, [FIRST_TOKEN + i, EOS]) for i, (source, _) in enumerate(PAIRS)]
    stats = fit(built, pairs, TrainingSettings(batch_size=2, max_epochs=0), tmp_path / "run", frozen_encoder=True,
                progress=False)
    assert stats["train_steps"] == 0 and stats["train_pairs"] == len(pairs)
    assert not (tmp_path / "cache" / "encoder-states").exists()
    assert all(torch.equal(before[name], p) for name, p in built.model.state_dict().items())
