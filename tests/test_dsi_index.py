"""The ``dsi`` method end to end: build through the CLI, search, run, eval, reload, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TOY_DOCS, write_beir
from typer.testing import CliRunner

from genir.cli.main import app
from genir.encoding.encoder import resolve_model
from genir.indexer.collection import Collection
from genir.retrieval.searcher import Searcher
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.model_io import load_seq2seq, save_seq2seq
from genir.views.querygen import Seq2SeqQueryGenerator

runner = CliRunner()
TINY = ["--model", "t5-config:tiny", "--docids", "atomic", "--set", "max_epochs=80", "--set", "lr=3e-3",
        "--set", "warmup_steps=0", "--set", "batch_size=8", "--set", "spans=0"]


def genir(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dsi_index(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dsi")
    collection = write_beir(root / "toy", split="train")
    index = root / "idx"
    result = genir("index", "--method", "dsi", "--collection", collection, "-o", index, *TINY)
    assert result.exit_code == 0, result.output
    return collection, index


def test_memorized_documents_come_back_first(dsi_index):
    _, index = dsi_index
    searcher = Searcher.load(index)
    texts = [f"{d['title']} {d['text']}" for d in TOY_DOCS]
    results = searcher.batch_search(texts, k=3)
    assert [hits[0].docid for hits in results] == [d["_id"] for d in TOY_DOCS]
    for hits in results:
        assert len(hits) == 3 and len({h.docid for h in hits}) == 3
        assert all(h.docid in {d["_id"] for d in TOY_DOCS} for h in hits)
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["method"] == "dsi" and manifest["stats"]["train_steps"] > 0
    assert "model/model.safetensors" in manifest["files"]


def test_cli_run_eval_and_save_round_trip(dsi_index, tmp_path):
    collection, index = dsi_index
    run_file = tmp_path / "run.trec"
    assert genir("run", index, "--collection", collection, "--split", "train", "-o", run_file, "-k", "5").exit_code == 0
    result = genir("eval", run_file, "--collection", collection, "--split", "train")
    assert result.exit_code == 0 and "nDCG@10" in result.output
    searcher = Searcher.load(index)
    searcher.save(tmp_path / "copy")
    assert Searcher.load(tmp_path / "copy").search("Zebras have black and white stripes.", k=2) == searcher.search(
        "Zebras have black and white stripes.", k=2)


def test_k_larger_than_the_corpus_and_corrupt_index(dsi_index, tmp_path):
    _, index = dsi_index
    # One rule for every method: k above the corpus asks for every document there is.
    assert genir("search", index, "zebras", "-k", "7").exit_code == 0
    hits = Searcher.load(index).search("zebras", k=7)
    assert len(hits) == len({h.docid for h in hits}) == 6
    for k in (0, -1):
        result = genir("search", index, "zebras", "-k", str(k))
        assert result.exit_code == 2 and "positive integer" in result.output
    broken = tmp_path / "broken"
    Searcher.load(index).save(broken)
    weights = broken / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = genir("search", broken, "zebras")
    assert result.exit_code == 2 and "does not match its sha256" in result.output


def test_unknown_model_exits_2_and_keeps_nothing(tmp_path):
    collection = write_beir(tmp_path / "toy", split="train")
    result = genir("index", "-m", "dsi", "-c", collection, "-o", tmp_path / "out", "--set", "model=/no/such/model",
                   "--set", "docids=atomic")
    assert result.exit_code == 2 and "cannot load model '/no/such/model'" in result.output
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


def test_t5_with_a_docid_vocabulary_round_trips(tmp_path):
    built = build_seq2seq("t5-config:tiny", 17, tokenizer=resolve_model("all-MiniLM-L6-v2"))
    save_seq2seq(built.model, tmp_path / "m")
    loaded = load_seq2seq(tmp_path / "m")
    ids = torch.tensor([[101, 2000, 102]])
    decoder_ids = torch.tensor([[0, 5]])
    built.model.eval()
    with torch.no_grad():
        expected = built.model(input_ids=ids, decoder_input_ids=decoder_ids).logits
        assert torch.equal(loaded(input_ids=ids, decoder_input_ids=decoder_ids).logits, expected)
    assert expected.shape[-1] == 17


def test_train_querygen_writes_a_loadable_generator(tmp_path):
    torch.set_num_threads(1)
    collection = write_beir(tmp_path / "toy", split="train")
    generator = tmp_path / "qg"
    result = genir("train-querygen", "-c", collection, "-o", generator, "--model", "t5-config:tiny", "--max-epochs", "2")
    assert result.exit_code == 0, result.output
    assert json.loads((generator / "manifest.json").read_text())["stats"]["train_pairs"] == 3
    queries = Seq2SeqQueryGenerator.load(generator).generate(["Zebras have black and white stripes."], n=2)
    assert len(queries) == 1 and len(queries[0]) == 2


def test_se_dsi_memorizes_with_keyword_descriptions(tmp_path):
    torch.set_num_threads(1)
    collection = write_beir(tmp_path / "toy", split="train")
    index = tmp_path / "idx"
    # 50 epochs at lr 1e-2: the smallest top-1 margin is 0.171 with 1 and 2 threads alike (100 at 3e-3: 0.271, twice the time)
    result = genir("index", "-m", "se-dsi", "-c", collection, "-o", index, "--model", "t5-config:tiny",
                   "--set", "max_epochs=50", "--set", "lr=1e-2", "--set", "warmup_steps=0", "--set", "batch_size=8",
                   "--set", "pseudo_queries=1")
    assert result.exit_code == 0, result.output
    searcher = Searcher.load(index)
    assert searcher.method == "se-dsi" and searcher.scheme.name == "elaborative"
    assert searcher.manifest.config["rehearsal"] == 3
    texts = [f"{d['title']} {d['text']}" for d in TOY_DOCS]
    assert [hits[0].docid for hits in searcher.batch_search(texts, k=2)] == [d["_id"] for d in TOY_DOCS]


def test_atomic_docid_embeddings_start_from_document_embeddings(tmp_path):
    torch.set_num_threads(1)
    collection = write_beir(tmp_path / "toy", split="train")
    result = genir("index", "-m", "dsi", "-c", collection, "-o", tmp_path / "idx", *TINY[:4],
                   "--set", "docid_embeddings=init", "--set", "max_epochs=0")
    assert result.exit_code == 0, result.output
    searcher = Searcher.load(tmp_path / "idx")
    assert len(searcher.search("zebras", k=6)) == 6
    # Untrained, each document's output row is its embedding through the seeded random projection.
    from genir.encoding.encoder import TextEncoder

    docs = list(Collection.open(collection).docs())
    embeddings = torch.as_tensor(TextEncoder().encode([d.contents for d in docs]))  # [6, 384]
    rows = searcher.model.get_output_embeddings().weight[[searcher.scheme.sequence(d.id)[0] for d in docs]].detach()
    projection = torch.randn(embeddings.shape[1], rows.shape[1], generator=torch.Generator().manual_seed(0))
    cosine = torch.nn.functional.cosine_similarity(rows, embeddings @ projection, dim=1)
    assert torch.allclose(cosine, torch.ones(len(docs)), atol=1e-4)
    result = genir("index", "-m", "dsi", "-c", collection, "-o", tmp_path / "bad", "--docids", "naive",
                   "--set", "docid_embeddings=frozen")
    assert result.exit_code == 2 and "needs atomic, rq or semantic docids" in result.output
    result = genir("index", "-m", "dsi", "-c", collection, "-o", tmp_path / "bad", "--set", "freeze_encoder=maybe")
    assert result.exit_code == 2 and "freeze_encoder='maybe': expected one of auto, true, false" in result.output
    assert not (tmp_path / "bad").exists()


def test_default_recipe_keeps_minilm_and_document_embeddings_frozen(tmp_path):
    """The default: frozen pretrained MiniLM encoder, atomic docids with frozen embedding rows (stored in float16)."""
    torch.set_num_threads(1)
    collection = write_beir(tmp_path / "toy", split="train")
    index = tmp_path / "idx"
    result = genir("index", "-m", "dsi", "-c", collection, "-o", index, "--set", "max_epochs=10",
                   "--set", "batch_size=2", "--set", "warmup_steps=0")
    assert result.exit_code == 0, result.output
    searcher = Searcher.load(index)
    stats = searcher.manifest.stats
    assert stats["docid_embeddings"] == "frozen" and stats["frozen_encoder"] is True
    texts = [f"{d['title']} {d['text']}" for d in TOY_DOCS]
    assert [hits[0].docid for hits in searcher.batch_search(texts, k=3)] == [d["_id"] for d in TOY_DOCS]
    # Frozen parts are bit for bit what they started as: MiniLM's encoder, the documents' embeddings.
    from transformers import AutoModel

    from genir.encoding.encoder import TextEncoder

    minilm = AutoModel.from_pretrained(resolve_model("all-MiniLM-L6-v2")).state_dict()
    encoder = searcher.model.get_encoder().state_dict()
    assert set(minilm) <= set(encoder)
    assert all(torch.equal(encoder[name], minilm[name]) for name in minilm)
    docs = list(Collection.open(collection).docs())
    rows = searcher.model.get_output_embeddings().weight[[searcher.scheme.sequence(d.id)[0] for d in docs]].detach()
    embeddings = torch.as_tensor(TextEncoder().encode([d.contents for d in docs]))  # [6, 384], unit length
    # stored as the recipe's table_dtype, float16: each row the embedding rounded to float16's 11-bit mantissa
    assert stats["table_dtype"] == "float16" and rows.dtype == torch.float16
    torch.testing.assert_close(rows.float(), embeddings, atol=2e-4, rtol=2**-10)


def test_exact_atomic_search_equals_beam_search(dsi_index):
    """Two decoder steps give what beam search gives with enough beams: same documents, same scores."""
    _, index = dsi_index
    exact = Searcher.load(index)
    exact.config = exact.config.replace(atomic_search="exact")
    beam = Searcher.load(index)
    beam.config = beam.config.replace(atomic_search="beam")
    queries = ["zebras", "parse json", "digest of bytes", "cells divide", "nothing in particular"]
    for k in (1, 3, 6):
        for got, want in zip(exact.batch_search(queries, k), beam.batch_search(queries, k)):
            assert [h.docid for h in got] == [h.docid for h in want]
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)


def test_single_token_topk_is_exact_when_eos_is_unlikely():
    """With an untrained model log P(eos | t) varies by token, so the first step's order is not the
    answer; the search widens until the k-th full score bounds every unseen document."""
    from genir.kernels.single_token import single_token_topk

    torch.manual_seed(0)
    model = build_seq2seq("t5-config:tiny", 2 + 40, tokenizer=resolve_model("all-MiniLM-L6-v2")).model.eval()
    ids = torch.randint(5, 1000, (3, 7))
    mask = torch.ones_like(ids)
    rows, scores = single_token_topk(model, ids, mask, 2, 40, 5, 1, 0)
    with torch.no_grad():
        start = torch.zeros((3, 1), dtype=torch.int64)
        first = torch.log_softmax(model(input_ids=ids, attention_mask=mask, decoder_input_ids=start).logits[:, -1], -1)
        full = torch.empty(3, 40)
        for d in range(40):
            steps = torch.cat([start, torch.full((3, 1), 2 + d)], dim=1)
            second = torch.log_softmax(model(input_ids=ids, attention_mask=mask, decoder_input_ids=steps).logits[:, -1], -1)
            full[:, d] = (first[:, 2 + d] + second[:, 1]) / 2
    want = full.topk(5, dim=1)
    assert torch.equal(rows, want.indices)
    torch.testing.assert_close(scores, want.values, atol=1e-5, rtol=0)
    # One step only: the best first tokens by log P(t | q).
    rows, scores = single_token_topk(model, ids, mask, 2, 40, 5, 1, 0, first_step_only=True)
    want = first[:, 2:42].topk(5, dim=1)
    assert torch.equal(rows, want.indices)
    torch.testing.assert_close(scores, want.values, atol=1e-5, rtol=0)
