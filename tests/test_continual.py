"""Continual indexing (DSI++): metrics, protocol, docid growth, SAM, replay, and a two-step run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TOY_DOCS, TOY_QUERIES, write_beir
from typer.testing import CliRunner

from genir.cli.main import app
from genir.continual import (
    SAM,
    GenerativeMemory,
    accuracy_matrix,
    average_accuracy,
    forgetting,
    learning_accuracy,
    split_collection,
    update_examples,
)
from genir.dsi.digit_semantic_docids import DigitSemanticDocids
from genir.dsi.docids import EOS, new_docid_scheme
from genir.encoding.encoder import TextEncoder, resolve_model
from genir.errors import GenirError
from genir.indexer.collection import Collection, Document
from genir.kernels.trie import DocidTrie
from genir.retrieval.searcher import Searcher
from genir.seq2seq.model import (
    build_seq2seq,
    grow_output_vocab,
    output_embedding_layers,
)
from genir.seq2seq.vocab import FIRST_TOKEN
from genir.views.querygen import KeywordQueryGenerator

runner = CliRunner()

MORE_DOCS = [
    {"_id": "d7", "title": "Trains", "text": "Steam locomotives pull trains along iron rails."},
    {"_id": "d8", "title": "Bread", "text": "Knead the dough, let it rise, then bake the bread."},
]
# q4 judges d1 and d8 relevant; whichever part holds the later of them owns it.
MORE_QUERIES = [{"_id": "q4", "text": "cats and bread"}, {"_id": "q5", "text": "steam trains"}]
MORE_QRELS = [("q1", "d3", 1), ("q2", "d4", 1), ("q3", "d6", 2), ("q4", "d1", 1), ("q4", "d8", 1), ("q5", "d7", 1)]


def genir(*args):
    return runner.invoke(app, [str(a) for a in args])


def toy(tmp_path, split="train"):
    return write_beir(tmp_path / "toy", docs=TOY_DOCS + MORE_DOCS, queries=TOY_QUERIES + MORE_QUERIES, qrels=MORE_QRELS, split=split)


# -- metrics ---------------------------------------------------------------------------------

def test_metrics_match_hand_computed_values():
    a = accuracy_matrix([[0.8], [0.6, 0.9], [0.7, 0.3, 0.5]])
    assert np.isnan(a[0, 1]) and np.isnan(a[1, 2])
    assert average_accuracy(a, 0) == pytest.approx(0.8)
    assert average_accuracy(a, 1) == pytest.approx(0.75)
    assert average_accuracy(a, 2) == pytest.approx(0.5)
    # F_1 = a00 - a10 = 0.2; F_2 = mean(max(0.8, 0.6) - 0.7, 0.9 - 0.3) = mean(0.1, 0.6)
    assert math.isnan(forgetting(a, 0))
    assert forgetting(a, 1) == pytest.approx(0.2)
    assert forgetting(a, 2) == pytest.approx(0.35)
    # LA_2 = mean(0.8, 0.9, 0.5)
    assert learning_accuracy(a, 2) == pytest.approx(2.2 / 3)
    # Later updates that help give negative forgetting.
    assert forgetting(accuracy_matrix([[0.2], [0.5, 0.4]]), 1) == pytest.approx(-0.3)


def test_metrics_leave_out_parts_without_items_and_reject_bad_rows():
    a = accuracy_matrix([[1.0], [0.5, None], [0.25, None, 0.5]])
    assert average_accuracy(a, 2) == pytest.approx(0.375)
    assert forgetting(a, 2) == pytest.approx(0.75)  # D1 has no items: only D0's drop counts
    assert learning_accuracy(a, 2) == pytest.approx(0.75)
    with pytest.raises(GenirError, match="row 1 must hold 2 scores"):
        accuracy_matrix([[1.0], [0.5]])
    with pytest.raises(GenirError, match="outside the accuracy matrix"):
        average_accuracy(a, 3)


# -- protocol --------------------------------------------------------------------------------

def test_split_puts_half_in_d0_and_queries_with_their_latest_document(tmp_path):
    collection = Collection.open(toy(tmp_path))
    split = split_collection(collection, steps=2, query_splits=("train",), seed=3)
    assert [len(p) for p in split.parts] == [4, 2, 2]
    ids = [d.id for p in split.parts for d in p]
    assert sorted(ids) == sorted(d["_id"] for d in TOY_DOCS + MORE_DOCS)
    part = split.part_of()
    owner = {qid: j for j, qrels in enumerate(split.qrels["train"]) for qid in qrels}
    assert owner["q4"] == max(part["d1"], part["d8"])
    assert owner["q3"] == part["d6"] and split.qrels["train"][owner["q3"]]["q3"] == {"d6": 2}
    assert split.describe()["queries"]["train"] == [len(q) for q in split.qrels["train"]]
    # A subset drops the queries whose relevant documents it leaves out, and says how many.
    subset = split_collection(collection, steps=2, query_splits=("train",), max_docs=6, seed=3)
    kept = {d.id for p in subset.parts for d in p}
    judged = {"q1": {"d3"}, "q2": {"d4"}, "q3": {"d6"}, "q4": {"d1", "d8"}, "q5": {"d7"}}
    assert subset.dropped_queries["train"] == sum(not docs <= kept for docs in judged.values())
    judged_only = split_collection(collection, steps=2, query_splits=("train",), judged_only=True, seed=3)
    assert {d.id for p in judged_only.parts for d in p} == {"d1", "d3", "d4", "d6", "d7", "d8"}
    with pytest.raises(GenirError, match="cannot make D0"):
        split_collection(collection, steps=5, query_splits=("train",))


# -- docids, vocabulary and trie growth -----------------------------------------------------

def _docs(prefix: str, n: int) -> list[Document]:
    return [Document(f"{prefix}{i}", "", f"document {prefix} number {i}") for i in range(n)]


@pytest.mark.parametrize("scheme_name", ["atomic", "naive", "semantic-digits"])
def test_new_docids_never_collide_and_the_grown_trie_names_only_real_documents(scheme_name):
    scheme = DigitSemanticDocids(k=2, c=3) if scheme_name == "semantic-digits" else new_docid_scheme(scheme_name)
    rng = np.random.default_rng(0)
    parts = [_docs("a", 9), _docs("b", 5), _docs("c", 7)]
    scheme.assign(parts[0], rng.normal(size=(9, 4)).astype(np.float32))
    before = scheme.sequences()
    trie = DocidTrie.from_sequences(list(before.values()), eos_token_id=EOS, vocab_size=scheme.vocab_size)
    for part in parts[1:]:
        scheme.extend(part, rng.normal(size=(len(part), 4)).astype(np.float32))
        trie = trie.extend([scheme.sequence(d.id) for d in part])
    sequences = scheme.sequences()
    assert all(sequences[docid] == seq for docid, seq in before.items())  # old docids unchanged
    assert len({tuple(s) for s in sequences.values()}) == len(sequences) == 21  # no collisions
    assert trie.num_docids == 21
    rows = list(sequences)
    for row, (docid, seq) in enumerate(sequences.items()):  # every leaf of the trie is one real document
        state = trie.walk(torch.tensor([seq]))
        assert rows[int(trie.docid(state)[0])] == docid == rows[row]
        assert scheme.lookup(seq) == docid
    assert scheme.lookup([*sequences["a0"][:-1], 9, 9, EOS]) is None


def test_grow_output_vocab_keeps_old_rows_and_starts_new_ones_sensibly():
    torch.manual_seed(0)
    built = build_seq2seq("t5-config:tiny", 6, tokenizer=resolve_model("all-MiniLM-L6-v2"))
    embed, head = (layer.weight.detach().clone() for layer in output_embedding_layers(built.model))
    vectors = np.random.default_rng(0).normal(size=(2, 384)).astype(np.float32)
    grow_output_vocab(built.model, 8, vectors, seed=0)
    new_embed, new_head = (layer.weight.detach() for layer in output_embedding_layers(built.model))
    assert new_embed.shape == (8, 32) and new_head.shape == (8, 32) and built.model.config.vocab_size == 8
    assert torch.equal(new_embed[:6], embed) and torch.equal(new_head[:6], head)
    projection = torch.randn(384, 32, generator=torch.Generator().manual_seed(0))
    cosine = torch.nn.functional.cosine_similarity(new_head[6:], torch.as_tensor(vectors) @ projection, dim=1)
    assert torch.allclose(cosine, torch.ones(2), atol=1e-4)
    assert torch.allclose(new_head[6:].norm(dim=1), head[2:].norm(dim=1).mean().expand(2), rtol=1e-4)
    grow_output_vocab(built.model, 10)  # no vectors: near the mean of the docid rows, and distinct
    grown = output_embedding_layers(built.model)[1].weight.detach()
    assert not torch.equal(grown[8], grown[9])
    assert (grown[8:] - grown[2:8].mean(0)).norm(dim=1).max() < 4 * (grown[2:8] - grown[2:8].mean(0)).norm(dim=1).max()
    with pytest.raises(GenirError, match="cannot shrink"):
        grow_output_vocab(built.model, 9)


# -- SAM -------------------------------------------------------------------------------------

def test_sam_steps_with_the_gradient_at_the_ascent_point():
    w0 = torch.tensor([1.0, -2.0])
    target = torch.tensor([0.5, 0.5])
    w = torch.nn.Parameter(w0.clone())
    calls = []

    def closure():
        calls.append(1)
        w.grad = None
        loss = ((w - target) ** 4).sum()
        loss.backward()
        return loss

    sam = SAM(torch.optim.SGD([w], lr=0.1), rho=0.05)
    sam.step(closure)
    g = 4 * (w0 - target) ** 3
    ascent = w0 + 0.05 * g / g.norm()
    expected = w0 - 0.1 * 4 * (ascent - target) ** 3
    assert len(calls) == 2
    assert torch.allclose(w.detach(), expected, atol=1e-6)
    with pytest.raises(GenirError, match="needs the closure"):
        sam.step()
    with pytest.raises(GenirError, match="positive rho"):
        SAM(torch.optim.SGD([w], lr=0.1), rho=0.0)


# -- what updates train on -------------------------------------------------------------------

def test_update_examples_per_method():
    new = [(f"new {i}", f"n{i}") for i in range(4)]
    earlier_indexing = [(f"old view {i}", f"o{i}") for i in range(6)]
    earlier_docs = [Document(f"o{i}", f"Title {i}", f"Old document {i} about subject{i} and more words.") for i in range(6)]
    memory = GenerativeMemory(KeywordQueryGenerator(earlier_docs, pool=2))
    args = (new, earlier_indexing, earlier_docs, 1.5, memory)
    assert sorted(update_examples("finetune", *args, seed=0)) == sorted(new)
    replay = update_examples("replay", *args, seed=0)
    assert len(replay) == 4 + 6 and set(replay) - set(new) <= set(earlier_indexing)
    generated = update_examples("genreplay", *args, seed=0)
    replayed = [p for p in generated if p not in new]
    assert len(replayed) == 6 and all(doc_id.startswith("o") and text for text, doc_id in replayed)
    assert not set(replayed) & set(earlier_indexing)  # pseudo-queries, not stored examples
    assert update_examples("genreplay", *args, seed=0) == generated  # seeded
    with pytest.raises(GenirError, match="unknown replay method"):
        update_examples("distill", *args, seed=0)


# -- end to end ------------------------------------------------------------------------------

FAST = ["--set", "batch_size=8", "--set", "spans=0", "--set", "eval_split=train", "--set", "eval_docs=0",
        "--set", "fit_iterations=5", "--set", "update_epochs=2"]


@pytest.mark.slow
def test_run_end_to_end_grows_with_add_as_a_build_from_scratch_would_rank(tmp_path):
    """D0 and reindex untrained (max_epochs=0): the dense start, so an index grown by ``add`` must
    rank exactly as the index built from scratch on the same documents."""
    torch.set_num_threads(1)
    collection = toy(tmp_path)
    out = tmp_path / "run"
    result = genir("continual", "-c", collection, "-o", out, "--method", "add,add+fit,finetune+sam,genreplay,reindex",
                   "--steps", "2", "--set", "max_epochs=0", *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["split"]["documents"] == [4, 2, 2]
    methods = report["methods"]
    assert methods["add"]["updates"] == methods["add+fit"]["updates"] == 0
    for label in ("finetune+sam", "genreplay"):
        steps = json.loads((out / label / "run.json").read_text())["steps"]
        # Optimizer steps: ceil(examples / batch of 8) per epoch, 2 epochs per update.
        assert methods[label]["updates"] == sum(-(-s["examples"] // 8) * 2 for s in steps) > 0
    assert methods["finetune+sam"]["sam"] is True
    matrix = methods["add"]["measures"]["index Hits@1"]["matrix"]
    assert len(matrix) == 3 and matrix[0][1] is None and all(0 <= v <= 1 for r, vs in enumerate(matrix) for v in vs[: r + 1])
    assert methods["add"]["measures"]["train nDCG@10"]["of_reindex"] == pytest.approx(1.0)
    assert methods["add"]["final"] == methods["reindex"]["final"] and set(methods["add"]["final"]) == {"train Hits@10", "train nDCG@10"}
    assert (out / "results.md").read_text().count("| add |") == 2 and (out / "curves.png").stat().st_size > 1000
    # Every step's index is a normal dsi index that names only documents indexed by then.
    part_of = {d: j for j, ids in enumerate(protocol["part_doc_ids"]) for d in ids}
    texts = ["zebras", "bread", "steam trains", "how do I parse json"]
    for step in (1, 2):
        indexed = {d for d, j in part_of.items() if j <= step}
        grown, scratch = Searcher.load(out / "add" / f"step-{step}"), Searcher.load(out / "reindex" / f"step-{step}")
        assert grown.method == "dsi" and set(grown.decoder.docids) == indexed
        ranked = grown.batch_search(texts, k=len(indexed))
        assert all({h.docid for h in hits} == indexed for hits in ranked)
        assert [[h.docid for h in hits] for hits in ranked] == [[h.docid for h in hits] for hits in scratch.batch_search(texts, k=len(indexed))]
    # The part collections are BEIR folders a user can index: D0..D2 with their training queries.
    upto = Collection.open(out / "collections" / "upto-2")
    assert set(upto.doc_ids) == set(part_of) and set(upto.qrels("train")) == {"q1", "q2", "q3", "q4", "q5"}
    assert genir("search", out / "add+fit" / "step-2", "bread", "-k", "3").exit_code == 0
    # --resume reuses every finished step; without it, an existing run directory is refused.
    again = genir("continual", "-c", collection, "-o", out, "--method", "add", "--steps", "2", "--set", "max_epochs=0",
                  *FAST, "--resume")
    assert again.exit_code == 0 and "reusing" in again.output
    refused = genir("continual", "-c", collection, "-o", out, "--method", "add", "--steps", "2", "--set", "max_epochs=0", *FAST)
    assert refused.exit_code == 2 and "already exists" in refused.output


def test_fitted_rows_answer_their_own_queries_and_leave_old_documents_theirs():
    """Rows of new documents set far off are fitted back: each new document's own text finds it
    first, every old document's text still finds that document, and old rows do not move."""
    from genir.dsi.row_fit import first_position_vectors, fit_new_rows

    torch.manual_seed(0)
    docs = [f"{d['title']} {d['text']}" for d in TOY_DOCS + MORE_DOCS]
    rows = np.zeros((FIRST_TOKEN + len(docs), 384), dtype=np.float32)
    rows[FIRST_TOKEN:] = TextEncoder().encode(docs)
    seq2seq = build_seq2seq("bert2bert:all-MiniLM-L6-v2", len(rows), docid_embeddings=rows, dense_start=True,
                            position_starts=[FIRST_TOKEN], decoder_layers=1, seed=0)
    model, tokenizer = seq2seq.model.eval(), seq2seq.tokenizer
    tokens = torch.arange(FIRST_TOKEN, FIRST_TOKEN + len(docs))
    new = tokens[-2:]
    head = output_embedding_layers(model)[1]
    with torch.no_grad():
        head.weight[new] = torch.nn.functional.normalize(torch.randn(2, head.weight.shape[1]), dim=1)  # lost rows
    before = head.weight.detach().clone()
    z = first_position_vectors(model, tokenizer, docs, 64)  # [8, H]
    top = lambda: (z @ head.weight[tokens].detach().T).argmax(1)
    assert top()[-2:].tolist() != [6, 7]
    stats = fit_new_rows(model, z[-2:], new, z[:-2], tokens[:-2], tokens, new, proximity=0.01, iterations=50)
    assert stats["fit_objective_after"] < stats["fit_objective_before"]
    assert top().tolist() == list(range(len(docs)))
    assert torch.equal(head.weight[:FIRST_TOKEN + 6], before[:FIRST_TOKEN + 6])


@pytest.mark.parametrize("args, message", [
    (["--method", "distill"], "unknown continual method 'distill'"),
    (["--method", "add+sam"], "add trains no update"),
    (["--set", "docids=semantic-digits"], "needs atomic, rq or semantic docids"),
    (["--method", "add,add+fit", "--set", "docids=rq"], "add+fit fits the docid rows of added documents, which needs atomic docids"),
    (["--set", "no_such_key=1"], "unknown option 'no_such_key': neither the run's"),
    (["--measure", "MRR"], "unknown --measure 'MRR'"),
    (["--steps", "9", "--set", "eval_split=train"], "cannot make D0"),
])
def test_bad_input_exits_2_with_one_clear_error(tmp_path, args, message):
    result = genir("continual", "-c", toy(tmp_path), "-o", tmp_path / "run", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()
