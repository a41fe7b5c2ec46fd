"""DSI at scale: beam search that scores each beam's trie children alone, and docid tables stored in float16/bfloat16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOY_DOCS, TOY_QUERIES, write_beir
from safetensors import safe_open

from genir.dsi.config import TABLE_DTYPE
from genir.dsi.decoding import DocidDecoder
from genir.dsi.docids import DocidScheme
from genir.dsi.index_files import MODEL_DIR
from genir.dsi.rq_docids import RQDocids
from genir.dsi.semantic_docids import SemanticDocids
from genir.errors import GenirError
from genir.indexer.collection import Collection, Document
from genir.kernels.beam_search import beam_search
from genir.kernels.table_products import BLOCK_ROWS, candidate_dots, table_product
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.retrieval.searcher import Searcher, build_index, parse_config, searcher_class
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.model_io import WEIGHTS
from genir.seq2seq.table_dtype import set_table_dtype, table_dtype_name
from genir.seq2seq.vocab import DECODER_START, EOS, PAD

QUERIES = ["vitamin d and bone density", "tumour gene expression", "sleep and memory", "insulin signalling"]


def unit_vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_candidate_dots_equal_the_brute_force_product_of_every_row(dtype):
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(3 * BLOCK_ROWS // 2, 16, generator=generator).to(dtype)  # two upcast blocks when low-precision
    vectors = torch.randn(5, 16, generator=generator)
    # beam 0: rows of both blocks; beam 1: none; beams 2 and 3 share rows; beam 4: one row
    lists = [[3, 40, BLOCK_ROWS + 7], [], [10, 11, 500], [11, 500, BLOCK_ROWS + 100], [2]]
    row_ptr = torch.tensor(np.cumsum([0] + [len(rows) for rows in lists]), dtype=torch.int64)
    tokens = torch.tensor([t for rows in lists for t in rows], dtype=torch.int64)
    brute = vectors @ table.float().T  # [5, V]: every row, float32
    want = torch.cat([brute[r, rows] for r, rows in enumerate(lists) if rows])
    torch.testing.assert_close(candidate_dots(vectors, table, row_ptr, tokens), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(table_product(vectors, table), brute, rtol=1e-5, atol=1e-5)
    assert candidate_dots(vectors, table, torch.zeros(6, dtype=torch.int64), tokens[:0]).shape == (0,)


def _coded_model(scheme, n_docs: int):
    seq2seq, sequences, trie = _coded_seq2seq(scheme, n_docs)
    return seq2seq.model, seq2seq.tokenizer(QUERIES, padding=True, return_tensors="pt"), sequences, trie


def _coded_seq2seq(scheme, n_docs: int):
    docs = [Document(str(i), "", "") for i in range(n_docs)]
    vectors = unit_vectors(n_docs)
    scheme.assign(docs, vectors)
    seq2seq = build_seq2seq("bert2bert:all-MiniLM-L6-v2", scheme.vocab_size, docid_embeddings=scheme.token_vectors(vectors),
                            dense_start=True, position_starts=scheme.position_starts())
    with torch.no_grad():  # a trained decoder: every beam has its own vector, not the query's alone
        torch.manual_seed(3)
        seq2seq.model.get_decoder().residual.weight.normal_(std=0.05)
    seq2seq.model.eval()
    sequences = list(scheme.sequences().values())
    trie = DocidTrie.from_sequences(sequences, eos_token_id=EOS, vocab_size=scheme.vocab_size)
    return seq2seq, sequences, trie


def _brute_force_scores(model, batch, sequences) -> torch.Tensor:
    """``[B, N]`` summed raw logits of every docid, teacher-forced, from the full output layer (every row)."""
    targets = torch.tensor(sequences)  # [N, L]: every coded docid has the same length
    inputs = torch.cat([torch.full((len(sequences), 1), DECODER_START), targets[:, :-1]], dim=1)
    scores = []
    for b in range(len(QUERIES)):
        ids, mask = batch["input_ids"][b:b + 1], batch["attention_mask"][b:b + 1]
        logits = model(input_ids=ids.expand(len(sequences), -1), attention_mask=mask.expand(len(sequences), -1),
                       decoder_input_ids=inputs).logits  # [N, L, V]
        scores.append(logits.gather(2, targets.unsqueeze(2)).squeeze(2).sum(1))
    return torch.stack(scores)


@pytest.mark.parametrize("new_scheme", [lambda: RQDocids(levels=1, codes=8), lambda: SemanticDocids(k=3, levels=2)])
def test_the_document_step_on_candidates_alone_ranks_and_scores_as_every_row_does(new_scheme):
    torch.set_grad_enabled(False)
    scheme = new_scheme()
    model, batch, sequences, trie = _coded_model(scheme, 120)
    constraint = DocidTrieConstraint(trie)
    brute = _brute_force_scores(model, batch, sequences)  # [B, N]

    def search(num_beams, scorer):
        return beam_search(model, batch["input_ids"], constraint, attention_mask=batch["attention_mask"], num_beams=num_beams,
                           max_new_tokens=scheme.max_length, score="logit", length_penalty=0.0, pad_token_id=PAD, scorer=scorer)

    # Every docid kept: the ranking of all of them is the brute-force one
    out = search(len(sequences), model.get_decoder())
    rows = constraint.docid(out.states)
    want = torch.sort(brute, dim=1, descending=True)
    assert rows.tolist() == want.indices.tolist()
    torch.testing.assert_close(out.scores, want.values, rtol=1e-5, atol=1e-4)
    # Few beams (some codes dropped before the document step): as the full output layer's beam search
    narrow, full = search(4, model.get_decoder()), search(4, None)
    assert constraint.docid(narrow.states).tolist() == constraint.docid(full.states).tolist()
    torch.testing.assert_close(narrow.scores, full.scores, rtol=1e-5, atol=1e-4)
    chosen = constraint.docid(narrow.states)
    torch.testing.assert_close(narrow.scores, brute.gather(1, chosen), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="score='logit'"):
        beam_search(model, batch["input_ids"], constraint, num_beams=2, score="logprob", scorer=model.get_decoder())


def _code_logits(model, batch, sequences) -> torch.Tensor:
    """``[B, N]`` each docid's first (code) position's raw logit, from the full output layer."""
    start = torch.full((batch["input_ids"].shape[0], 1), DECODER_START)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=start).logits[:, 0]
    return logits[:, torch.tensor([s[0] for s in sequences])]  # [B, N]


@pytest.mark.parametrize("new_scheme", [lambda: RQDocids(levels=1, codes=8), lambda: SemanticDocids(k=3, levels=2)])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_the_decoder_runs_on_live_beams_alone_and_not_for_eos_and_ranks_as_every_row_does(new_scheme, k):
    torch.set_grad_enabled(False)
    scheme = new_scheme()
    model, batch, sequences, trie = _coded_model(scheme, 120)
    constraint = DocidTrieConstraint(trie)
    decoder = model.get_decoder()
    rows_per_step = []
    step_vectors = decoder.step_vectors

    def counted(states, mask, decoder_input, cache):
        rows_per_step.append(decoder_input.shape[0])
        return step_vectors(states, mask, decoder_input, cache)

    def search(scorer):
        return beam_search(model, batch["input_ids"], constraint, attention_mask=batch["attention_mask"], num_beams=max(k, 20),
                           num_return_sequences=k, max_new_tokens=scheme.max_length, score="logit", length_penalty=0.0,
                           pad_token_id=PAD, scorer=scorer)

    decoder.step_vectors = counted
    got, want = search(decoder), search(None)
    assert constraint.docid(got.states).tolist() == constraint.docid(want.states).tolist()
    torch.testing.assert_close(got.scores, want.scores, rtol=1e-5, atol=1e-4)
    # One row per query at the first step, then one per live beam (each code prefix, at most num_beams),
    # and none at the eos step: eos's row is zero, its logit the bias alone (0), as the full layer gives it
    assert not model.get_output_embeddings().weight[EOS].any()
    prefixes = [len({tuple(s[:level + 1]) for s in sequences}) for level in range(scheme.levels)]
    assert rows_per_step == [len(QUERIES)] + [len(QUERIES) * min(n, max(k, 20)) for n in prefixes]


def _narrowed(scores: torch.Tensor, codes: torch.Tensor, sequences, kept: int, num_beams: int) -> torch.Tensor:
    """``scores`` ``[B, N]`` with ``-inf`` for every docid outside the best ``kept`` codes of its query
    (by ``codes`` ``[B, N]``, each docid's code logit), and the next codes while the better ones hold
    fewer than ``num_beams`` docids, ``num_beams`` codes at most: what ``step_beams=[kept]`` leaves beam
    search over rq docids."""
    code_of = torch.tensor([s[0] for s in sequences])
    out = torch.full_like(scores, float("-inf"))
    for b in range(scores.shape[0]):
        ranked = sorted(set(code_of.tolist()), key=lambda c: -float(codes[b][code_of == c][0]))
        held = 0
        for rank, code in enumerate(ranked):
            if rank >= num_beams or (rank >= kept and held >= num_beams):
                break
            mine = code_of == code
            out[b, mine], held = scores[b, mine], held + int(mine.sum())
    return out


@pytest.mark.parametrize(("kept", "num_beams"), [(2, 6), (1, 40), (8, 12)])
def test_narrowed_code_steps_rank_the_documents_under_the_best_codes_as_brute_force_does(kept, num_beams):
    """``step_beams``: the best ``kept`` codes (widened until they hold ``num_beams`` docids: rq 1 x 8 over
    120 documents holds ~15 per code, so kept=1 of 40 beams takes ~3 codes), then every document under
    them; with as many as there are codes it is the full search. Scorer and full output layer agree."""
    torch.set_grad_enabled(False)
    scheme = RQDocids(levels=1, codes=8)
    model, batch, sequences, trie = _coded_model(scheme, 120)
    constraint = DocidTrieConstraint(trie)
    brute, codes = _brute_force_scores(model, batch, sequences), _code_logits(model, batch, sequences)

    def search(scorer):
        return beam_search(model, batch["input_ids"], constraint, attention_mask=batch["attention_mask"], num_beams=num_beams,
                           max_new_tokens=scheme.max_length, score="logit", length_penalty=0.0, pad_token_id=PAD,
                           scorer=scorer, step_beams=[kept])

    got, full = search(model.get_decoder()), search(None)
    want = torch.sort(_narrowed(brute, codes, sequences, kept, num_beams), dim=1, descending=True)
    assert constraint.docid(got.states).tolist() == want.indices[:, :num_beams].tolist()
    torch.testing.assert_close(got.scores, want.values[:, :num_beams], rtol=1e-5, atol=1e-4)
    assert constraint.docid(full.states).tolist() == want.indices[:, :num_beams].tolist()
    if kept >= 8:  # every code kept: the search without step_beams
        plain = beam_search(model, batch["input_ids"], constraint, attention_mask=batch["attention_mask"], num_beams=num_beams,
                            max_new_tokens=scheme.max_length, score="logit", length_penalty=0.0, pad_token_id=PAD,
                            scorer=model.get_decoder())
        assert constraint.docid(plain.states).tolist() == constraint.docid(got.states).tolist()
    with pytest.raises(ValueError, match="step_beams"):
        beam_search(model, batch["input_ids"], constraint, num_beams=4, step_beams=[0])
    with pytest.raises(ValueError, match="step_beams"):
        beam_search(model, batch["input_ids"], None, num_beams=4, step_beams=[2])


def test_code_beams_is_checked_and_a_narrowed_dsi_search_still_returns_k_documents():
    torch.set_grad_enabled(False)
    config = searcher_class("dsi").Config
    with pytest.raises(GenirError, match="code_beams"):
        parse_config(config, {"docids": "rq", "code_beams": 0})
    with pytest.raises(GenirError, match="code_beams"):
        parse_config(config, {"docids": "rq", "code_beams": "many"})
    scheme = RQDocids(levels=1, codes=8)
    seq2seq, sequences, trie = _coded_seq2seq(scheme, 120)
    decoder = DocidDecoder(seq2seq.model, seq2seq.tokenizer, scheme, trie)
    narrow = parse_config(config, {"docids": "rq", "code_beams": 1, "beams": 4})
    wide = parse_config(config, {"docids": "rq", "code_beams": 8, "beams": 4})
    assert scheme.step_beams(narrow) == [1] and DocidScheme.step_beams(scheme, narrow) == []
    # k above one code's ~15 documents: the code steps keep codes until they hold max(k, beams) documents
    for k in (50, len(sequences)):
        rankings = decoder.search(QUERIES, k, narrow)
        assert all(len(r) == k and len({d for d, _ in r}) == k for r in rankings)
    # every document asked for: the same documents and scores as without narrowing
    for got, want in zip(decoder.search(QUERIES, len(sequences), narrow), decoder.search(QUERIES, len(sequences), wide)):
        assert dict(got).keys() == dict(want).keys()
        assert max(abs(dict(got)[d] - dict(want)[d]) for d in dict(got)) < 1e-4


def test_low_precision_tables_search_in_float32():
    torch.set_grad_enabled(False)
    scheme = RQDocids(levels=1, codes=8)
    model, batch, sequences, trie = _coded_model(scheme, 120)
    constraint = DocidTrieConstraint(trie)
    set_table_dtype(model, "float16")
    head, embed = model.get_output_embeddings().weight, model.get_decoder().get_input_embeddings().weight
    assert head.dtype == embed.dtype == torch.float16 and model.get_output_embeddings().bias.dtype == torch.float32
    brute = _brute_force_scores(model, batch, sequences)  # the full output layer over the float16 rows, in float32
    assert brute.dtype == torch.float32
    out = beam_search(model, batch["input_ids"], constraint, attention_mask=batch["attention_mask"], num_beams=len(sequences),
                      max_new_tokens=scheme.max_length, score="logit", length_penalty=0.0, scorer=model.get_decoder())
    want = torch.sort(brute, dim=1, descending=True)
    assert constraint.docid(out.states).tolist() == want.indices.tolist()
    torch.testing.assert_close(out.scores, want.values, rtol=1e-5, atol=1e-4)


def test_table_dtype_setting_resolves_and_refuses_models_without_the_dense_start():
    config = searcher_class("dsi").Config
    assert parse_config(config, {}).table_dtype_setting() == TABLE_DTYPE == "float16"  # the recipe: dense start, frozen rows
    assert parse_config(config, {"docids": "rq", "table_dtype": "bfloat16"}).table_dtype_setting() == "bfloat16"
    assert parse_config(config, {"docid_embeddings": "init"}).table_dtype_setting() == "float32"  # rows trained: auto keeps float32
    assert parse_config(config, {"docids": "naive"}).table_dtype_setting() == "float32"  # no dense start
    with pytest.raises(GenirError, match="table_dtype=float16 needs the dense start"):
        parse_config(config, {"docids": "naive", "table_dtype": "float16"})
    with pytest.raises(GenirError, match="table_dtype"):
        parse_config(config, {"table_dtype": "float64"})


def _stored_dtypes(index: Path) -> set[str]:
    """The dtypes the decoder's two docid tables are stored in."""
    with safe_open(index / MODEL_DIR / WEIGHTS, framework="pt") as weights:
        return {weights.get_slice(name).get_dtype() for name in weights.keys()  # noqa: SIM118 (safe_open is no dict)
                if name in ("decoder.bert.embeddings.word_embeddings.weight", "decoder.cls.predictions.decoder.weight")}


@pytest.mark.parametrize("docids", ["atomic", "rq"])
def test_float16_tables_save_load_and_search_as_float32_ones_and_an_index_from_before_the_setting_loads_as_it_was(tmp_path, docids):
    torch.set_num_threads(1)
    collection = Collection.open(write_beir(tmp_path / "toy"))
    options = {"docids": docids, "max_epochs": 0, "rq_codes": 2}
    config = searcher_class("dsi").Config
    half = build_index("dsi", collection, tmp_path / "half", parse_config(config, options), device="cpu")
    full = build_index("dsi", collection, tmp_path / "full", parse_config(config, {**options, "table_dtype": "float32"}), device="cpu")
    assert (half.stats["table_dtype"], full.stats["table_dtype"]) == ("float16", "float32")
    assert _stored_dtypes(tmp_path / "half") == {"F16"} and _stored_dtypes(tmp_path / "full") == {"F32"}
    assert (tmp_path / "half" / MODEL_DIR / WEIGHTS).stat().st_size < (tmp_path / "full" / MODEL_DIR / WEIGHTS).stat().st_size
    queries = [q["text"] for q in TOY_QUERIES]
    searchers = {name: Searcher.load(tmp_path / name, device="cpu") for name in ("half", "full")}
    assert table_dtype_name(searchers["half"].model) == "float16" and table_dtype_name(searchers["full"].model) == "float32"
    results = {name: searcher.batch_search(queries, len(TOY_DOCS)) for name, searcher in searchers.items()}
    for halves, fulls in zip(results["half"], results["full"]):  # every document, its score within float16's rounding of the rows
        got, want = {hit.docid: hit.score for hit in halves}, {hit.docid: hit.score for hit in fulls}
        assert got.keys() == want.keys() and len(got) == len(TOY_DOCS)
        assert max(abs(got[d] - want[d]) for d in got) < 0.05
    # An index written before table_dtype existed: float32 tables, no table_dtype in its manifest (auto now means
    # float16 for it): it loads its float32 tables and searches exactly as before.
    manifest_file = tmp_path / "full" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["config"].pop("table_dtype")
    manifest["stats"].pop("table_dtype")
    manifest_file.write_text(json.dumps(manifest))
    old = Searcher.load(tmp_path / "full", device="cpu")
    assert old.config.table_dtype == "auto" and table_dtype_name(old.model) == "float32"
    assert old.batch_search(queries, len(TOY_DOCS)) == results["full"]
