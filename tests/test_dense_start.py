"""The dense start, rq docids, summed-logit scoring, exhaustive scoring, and checkpoint choice on dev."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TOY_DOCS, write_beir

from genir.dsi.dev import dev_set
from genir.dsi.docids import load_docid_scheme
from genir.dsi.rq_docids import RQDocids
from genir.dsi.semantic_docids import SemanticDocids
from genir.encoding.encoder import TextEncoder
from genir.errors import GenirError
from genir.indexer.collection import Collection, Document
from genir.kernels.beam_search import beam_search
from genir.kernels.exhaustive import exhaustive_scores
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.retrieval.searcher import Searcher, build_index, parse_config, searcher_class
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.model_io import load_seq2seq, save_seq2seq
from genir.seq2seq.selection import BestOnDev, beats
from genir.seq2seq.vocab import DECODER_START, EOS, PAD
from genir.views.querygen import query_generator

QUERIES = ["striped zebras", "parse json", "dog chasing the mail", "hash digest", "cat on a mat", "run a command"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dense-start")
    collection = Collection.open(write_beir(root / "toy", split="train"))
    docs = list(collection.docs())
    encoder = TextEncoder()
    return root, collection, docs, encoder.encode([d.contents for d in docs]), encoder.encode(QUERIES)


def dense_ranking(docs, doc_vectors, query_vectors):
    return [[docs[i].id for i in row] for row in np.argsort(-(query_vectors @ doc_vectors.T), axis=1, kind="stable")]


@pytest.mark.parametrize("docids, options", [("atomic", {}), ("rq", {"rq_levels": 2, "rq_codes": 2}),
                                             ("semantic", {"semantic_levels": 2, "semantic_k": 2})])
def test_untrained_index_ranks_exactly_as_the_dense_baseline(toy, docids, options):
    root, collection, docs, doc_vectors, query_vectors = toy
    config = parse_config(searcher_class("dsi").Config, {"docids": docids, "max_epochs": 0, **options})
    manifest = build_index("dsi", collection, root / docids, config, device="cpu")
    assert manifest.stats["dense_start"] is True and manifest.stats["docid_embeddings"] == "frozen"
    searcher = Searcher.load(root / docids, device="cpu")
    got = [[hit.docid for hit in hits] for hits in searcher.batch_search(QUERIES, len(docs))]
    assert got == dense_ranking(docs, doc_vectors, query_vectors)
    if docids != "atomic":  # summed logits = scale * q . d, the dense score itself
        scores = np.array([[hit.score for hit in hits] for hits in searcher.batch_search(QUERIES, len(docs))])
        dense = np.sort(query_vectors @ doc_vectors.T, axis=1)[:, ::-1]
        np.testing.assert_allclose(scores, 20.0 * dense, atol=1e-3)


def test_rq_codes_round_trip_and_new_documents_use_the_same_codebooks(toy, tmp_path):
    _, _, docs, doc_vectors, _ = toy
    scheme = RQDocids(levels=2, codes=2)
    scheme.assign(docs[:4], doc_vectors[:4])
    before = scheme.sequences()
    scheme.save(tmp_path / "rq")
    loaded = load_docid_scheme(tmp_path / "rq")
    assert isinstance(loaded, RQDocids) and loaded.sequences() == before
    np.testing.assert_array_equal(loaded.codebooks, scheme.codebooks)
    loaded.extend(docs[4:], doc_vectors[4:])
    assert {d: s for d, s in loaded.sequences().items() if d in before} == before  # old docids never change
    codes = loaded.encode(doc_vectors[4:])
    for doc, row in zip(docs[4:], codes):
        body = loaded.sequence(doc.id)
        assert body[:2] == [2 + row[0], 2 + 2 + row[1]] and body[2] == loaded.first_doc_token + docs.index(doc)
    rows = loaded.token_vectors(doc_vectors)
    for i, doc in enumerate(docs):  # a docid's rows sum to its document's embedding
        np.testing.assert_allclose(rows[loaded.sequence(doc.id)[:-1]].sum(0), doc_vectors[i], atol=1e-5)
    with pytest.raises(GenirError, match="at least 8 documents"):
        RQDocids(levels=1, codes=8).assign(docs, doc_vectors)
    with pytest.raises(GenirError, match="power of two"):
        RQDocids(codes=6)


def test_semantic_codes_are_tree_paths_tied_to_centroids_and_new_documents_descend_the_same_tree(toy, tmp_path):
    _, _, docs, doc_vectors, _ = toy
    scheme = SemanticDocids(k=2, levels=2, seed=0)
    scheme.assign(docs[:4], doc_vectors[:4])
    before = scheme.sequences()
    starts = scheme.level_starts()  # level 1, level 2, then documents: one token per cluster
    assert starts[0] == 2 and starts[1] - starts[0] == 2 and scheme.first_doc_token == starts[2]
    scheme.save(tmp_path / "semantic")
    loaded = load_docid_scheme(tmp_path / "semantic")
    assert isinstance(loaded, SemanticDocids) and loaded.sequences() == before
    loaded.extend(docs[4:], doc_vectors[4:])
    assert {d: s for d, s in loaded.sequences().items() if d in before} == before  # old docids never change
    for doc, x in zip(docs[4:], doc_vectors[4:]):  # nearest child centroid at every level
        first, second, own, _ = loaded.sequence(doc.id)
        level1 = np.arange(starts[0], starts[1])
        assert first == level1[np.argmin(((loaded.centroids[level1 - 2] - x) ** 2).sum(1))]
        children = np.nonzero(loaded.parent == first - 2)[0] + 2
        assert second == children[np.argmin(((loaded.centroids[children - 2] - x) ** 2).sum(1))]
        assert own == loaded.first_doc_token + docs.index(doc)
    rows = loaded.token_vectors(doc_vectors)
    for i, doc in enumerate(docs):  # a docid's rows sum to its document's embedding
        path = loaded.sequence(doc.id)[:-1]
        np.testing.assert_allclose(rows[path].sum(0), doc_vectors[i], atol=1e-5)
        np.testing.assert_allclose(rows[path[:2]].sum(0), loaded.centroids[path[1] - 2], atol=1e-6)  # the leaf's centroid
    np.savez(tmp_path / "semantic" / "docid_scheme.npz", parent=np.array([-1, 0, 0, 1, 5]), centroids=loaded.centroids[:5])
    with pytest.raises(GenirError, match="parent listed before it"):
        load_docid_scheme(tmp_path / "semantic")


def _random_residual_model(doc_vectors, scheme):
    """A dense-start model over ``scheme``'s rows with a non-zero residual (so the decoder matters)."""
    seq2seq = build_seq2seq("bert2bert:all-MiniLM-L6-v2", scheme.vocab_size, docid_embeddings=scheme.token_vectors(doc_vectors),
                            dense_start=True, position_starts=scheme.position_starts())
    with torch.no_grad():
        torch.manual_seed(3)
        seq2seq.model.get_decoder().residual.weight.normal_(std=0.05)
    return seq2seq


@pytest.mark.parametrize("new_scheme", [lambda: RQDocids(levels=2, codes=2), lambda: SemanticDocids(k=2, levels=2)])
def test_summed_logit_beam_search_equals_exhaustive_scoring(toy, new_scheme):
    _, _, docs, doc_vectors, _ = toy
    scheme = new_scheme()
    scheme.assign(docs, doc_vectors)
    seq2seq = _random_residual_model(doc_vectors, scheme)
    model = seq2seq.model.eval()
    sequences = list(scheme.sequences().values())
    trie = DocidTrie.from_sequences(sequences, eos_token_id=EOS, vocab_size=scheme.vocab_size)
    batch = seq2seq.tokenizer(QUERIES, padding=True, return_tensors="pt")
    n = len(sequences)
    out = beam_search(model, batch["input_ids"], DocidTrieConstraint(trie), attention_mask=batch["attention_mask"],
                      num_beams=n, max_new_tokens=scheme.max_length, score="logit", length_penalty=0.0)
    exhaustive = exhaustive_scores(model, batch["input_ids"], batch["attention_mask"], torch.tensor(sequences),
                                   decoder_start_token_id=DECODER_START, pad_token_id=PAD, score="logit")
    rows = DocidTrieConstraint(trie).docid(out.states)  # [B, n]
    assert bool((rows >= 0).all()) and bool(out.valid.all())  # the trie never yields a non-document
    for b in range(len(QUERIES)):
        want = torch.sort(exhaustive[b], descending=True)
        assert rows[b].tolist() == want.indices.tolist()
        torch.testing.assert_close(out.scores[b], want.values, atol=1e-4, rtol=1e-5)
    # The residual changed something: not the untrained dense ranking any more for some query.
    logprob = exhaustive_scores(model, batch["input_ids"], batch["attention_mask"], torch.tensor(sequences),
                                decoder_start_token_id=DECODER_START, pad_token_id=PAD, score="logprob")
    assert bool((logprob <= 1e-6).all())


def test_positions_restrict_each_step_to_its_own_tokens(toy, tmp_path):
    _, _, docs, doc_vectors, _ = toy
    scheme = RQDocids(levels=1, codes=2)
    scheme.assign(docs, doc_vectors)
    seq2seq = _random_residual_model(doc_vectors, scheme)
    seq2seq.model.eval()  # no dropout: the logits are compared after a save and load
    batch = seq2seq.tokenizer(QUERIES[:2], padding=True, return_tensors="pt")
    decoder_input = torch.tensor([[DECODER_START, 2, 4], [DECODER_START, 3, 5]])
    logits = seq2seq.model(**batch, decoder_input_ids=decoder_input).logits  # [2, 3, V]
    lowest = torch.finfo(logits.dtype).min
    allowed = [set(range(2, 4)), set(range(4, 4 + len(docs))), {EOS}]
    for t, tokens in enumerate(allowed):
        free = (logits[:, t] > lowest).nonzero()[:, 1].tolist()
        assert set(free) == tokens
    save_seq2seq(seq2seq.model, tmp_path / "model")
    loaded = load_seq2seq(tmp_path / "model")
    torch.testing.assert_close(loaded(**batch, decoder_input_ids=decoder_input).logits, logits)


def test_best_on_dev_keeps_the_start_unless_training_beats_it_beyond_noise():
    class Module:
        def __init__(self):
            self.model = torch.nn.Linear(2, 1)

    class Trainer:
        global_step, current_epoch = 0, 0

    module, trainer = Module(), Trainer()
    per_query = iter([
        [0.5, 0.5, 0.5, 0.5],  # before training
        [0.4, 0.4, 0.4, 0.4],  # epoch 1: worse
        [0.6, 0.4, 0.6, 0.5],  # epoch 2: a better mean, within noise of the start: not taken
        [0.9, 0.8, 0.9, 0.7],  # epoch 3: beats the start by more than 2 standard errors
        [0.7, 0.7, 0.7, 0.7],  # epoch 4: beats the start, but a lower mean than epoch 3
    ])
    callback = BestOnDev(lambda model: next(per_query))
    callback.on_train_start(trainer, module)
    for epoch in range(4):
        with torch.no_grad():
            module.model.weight.add_(1.0)
        trainer.global_step, trainer.current_epoch = trainer.global_step + 10, epoch
        if epoch == 2:
            kept = module.model.weight.detach().clone()
        callback.on_train_epoch_end(trainer, module)
    callback.on_train_end(trainer, module)  # nothing trained since the last score: not scored again
    assert [entry[:2] for entry in callback.curve] == [(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)]
    assert callback.best == callback.curve[3] and torch.equal(module.model.weight, kept)
    restored = BestOnDev(lambda model: [0.0])
    restored.load_state_dict(callback.state_dict())
    assert restored.best == callback.best and restored.curve == callback.curve
    assert not beats([0.6, 0.4, 0.6, 0.5], [0.5] * 4) and beats([0.9, 0.8, 0.9, 0.7], [0.5] * 4)
    assert not beats([1.0], [0.0])  # one query proves nothing
    # margin 0: a better mean is enough (the default with training queries), never a worse or equal one
    assert beats([0.6, 0.4, 0.6, 0.5], [0.5] * 4, margin=0) and not beats([0.5, 0.5, 0.6, 0.4], [0.5] * 4, margin=0)


def test_dev_margin_is_zero_with_training_queries_and_two_without():
    from genir.dsi.config import DSIConfig

    assert DSIConfig().dev_margin_setting(supervised=True) == 0.0
    assert DSIConfig().dev_margin_setting(supervised=False) == 2.0
    assert DSIConfig(dev_margin="1.5").dev_margin_setting(supervised=True) == 1.5
    with pytest.raises(GenirError, match="dev_margin"):
        DSIConfig(dev_margin="-1")


def test_a_collection_without_training_queries_trains_zero_shot(tmp_path):
    torch.set_num_threads(1)
    collection = Collection.open(write_beir(tmp_path / "toy"))  # qrels of the test split only
    config = parse_config(searcher_class("dsi").Config, {"max_epochs": 1, "batch_size": 8, "dev_pseudo_queries": 4,
                                                                 "min_dev_queries": 1})
    manifest = build_index("dsi", collection, tmp_path / "idx", config, device="cpu")
    stats = manifest.stats
    assert stats["supervised"] is False and stats["dev_set"] == "held-out pseudo-queries" and stats["dev_queries"] == 4
    assert stats["pseudo_queries"] == 4 and stats["dev_curve"][0][:2] == [0, 0]
    # The 4 dev documents get no pseudo-queries in training; the other 2 get theirs.
    docs = list(collection.docs())
    generator = query_generator("", docs, config.pseudo_query_words)
    written = generator.pseudo_queries(docs, 4, config.seed)
    dev_docs = dev_set(collection, docs, config, False, generator).held_out_docs
    trained = sum(len([q for q in qs if q.strip()]) for d, qs in zip(docs, written) if d.id not in dev_docs)
    assert len(dev_docs) == 4 and stats["train_pairs"] == len(TOY_DOCS) + trained
    assert len(Searcher.load(tmp_path / "idx").search("zebras", k=3)) == 3
    assert len(TOY_DOCS) == Searcher.load(tmp_path / "idx").num_docs


@pytest.mark.parametrize("options", [{"docids": "rq", "rq_levels": 1, "rq_codes": 2},
                                     {"docids": "semantic", "semantic_levels": 2, "semantic_k": 2}])
def test_coded_index_grows_with_codes_from_its_codebooks_or_tree(toy, tmp_path, options):
    _, _, docs, doc_vectors, query_vectors = toy
    first = Collection.open(write_beir(tmp_path / "first", docs=TOY_DOCS[:4], split="train",
                                       qrels=[("q1", "d3", 1), ("q2", "d4", 1)]))
    config = parse_config(searcher_class("dsi").Config, {**options, "max_epochs": 0})
    build_index("dsi", first, tmp_path / "idx", config, device="cpu")
    searcher = Searcher.load(tmp_path / "idx", device="cpu")
    searcher.add([Document(d["_id"], d["title"], d["text"]) for d in TOY_DOCS[4:]])
    grown = Searcher.load(tmp_path / "idx", device="cpu")
    got = [[hit.docid for hit in hits] for hits in grown.batch_search(QUERIES, len(docs))]
    assert got == dense_ranking(docs, doc_vectors, query_vectors)  # new rows = residuals: still exact dense
