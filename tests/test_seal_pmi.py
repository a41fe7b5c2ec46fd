"""PMI-ranked decoding (genir.seal.pmi): the top-k's candidate bias, n-grams always in the corpus,
lambda = 0 is the old decoding, a larger lambda prefers rarer n-grams, keys keep log P(n|q)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import built_once
from test_seal import QUERIES, brute_count, corpus_tokens, genir, tiny_seal_index

from genir.errors import GenirError
from genir.kernels.beam_search import beam_search
from genir.kernels.constraint import Candidates
from genir.kernels.topk import constrained_topk
from genir.retrieval.searcher import Searcher
from genir.seal.pmi import PMIConstraint
from genir.seq2seq.vocab import EOS


@pytest.fixture(scope="module")
def seal_index(tmp_path_factory):
    """test_seal's tiny index: the same build, made once per test run."""
    return built_once(tmp_path_factory, "tiny-seal", tiny_seal_index)


def test_topk_ranks_by_logit_plus_bias_and_adds_the_bias_to_the_score():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0]])  # [1, 4]
    plain = Candidates(torch.tensor([0, 3]), torch.tensor([1, 2, 3]), torch.tensor([[1], [2], [3]]))
    biased = Candidates(plain.row_ptr, plain.tokens, plain.next_state, torch.tensor([0.0, 0.5, 2.5]))
    log_probs = torch.log_softmax(logits, dim=-1)[0]
    top = constrained_topk(logits, biased, 2, "torch")
    # logit + bias: token 1 3.0, token 2 2.5, token 3 3.5
    assert top.tokens.tolist() == [[3, 1]] and top.next_state[0, :, 0].tolist() == [3, 1]
    assert top.log_probs[0].tolist() == pytest.approx([float(log_probs[3]) + 2.5, float(log_probs[1])])
    zero = Candidates(plain.row_ptr, plain.tokens, plain.next_state, torch.zeros(3))
    for backend in ("torch", "auto"):
        assert torch.equal(constrained_topk(logits, zero, 2, backend).log_probs, constrained_topk(logits, plain, 2).log_probs)
    with pytest.raises(ValueError, match="bias"):
        constrained_topk(logits, biased, 2, "triton")


def decode(searcher, constraint):
    batch = searcher.tokenizer(QUERIES, padding=True, return_tensors="pt")
    return beam_search(searcher.model, batch["input_ids"], constraint, attention_mask=batch["attention_mask"],
                       num_beams=4, max_new_tokens=5, record_steps=True)


def test_lambda_zero_is_the_old_decoding(seal_index):
    _, index = seal_index
    searcher = Searcher.load(index)
    old, zero = decode(searcher, searcher.constraint), decode(searcher, PMIConstraint(searcher.constraint, searcher.index, 0.0))
    assert len(old.steps) == len(zero.steps)
    for a, b in zip(old.steps, zero.steps):
        for field in ("tokens", "scores", "states", "valid", "ended"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_pmi_keys_occur_in_the_corpus_and_keep_the_models_log_prob(seal_index):
    collection, index = seal_index
    searcher = Searcher.load(index)
    corpus = corpus_tokens(searcher, collection)
    searcher.config = searcher.config.replace(pmi_lambda=2.0)
    generated = searcher._generated(QUERIES)
    assert sum(len(g) for g in generated) > 0
    batch = searcher.tokenizer(QUERIES, padding=True, return_tensors="pt")
    for b, per_query in enumerate(generated):
        for ngram, _log_prob, lo, hi in per_query:
            count, _ = brute_count(corpus, ngram)
            assert count > 0 and count == searcher.index.range_counts(np.array([lo]), np.array([hi]))[0]
        # log P(n|q) recovered from the PMI score equals the model's own, teacher-forced.
        for ngram, log_prob, _, _ in sorted(per_query)[:5]:
            decoder_input = torch.tensor([[0, *ngram]])
            with torch.no_grad():
                logits = searcher.model(input_ids=batch["input_ids"][b:b + 1], attention_mask=batch["attention_mask"][b:b + 1],
                                        decoder_input_ids=decoder_input).logits[0]  # [n + 1, V]
            expected = torch.log_softmax(logits[:-1].float(), dim=-1).gather(1, torch.tensor(ngram)[:, None]).sum()
            assert log_prob == pytest.approx(float(expected), abs=1e-4)
    for keys in searcher.keys(QUERIES):
        assert all(brute_count(corpus, ngram)[0] > 0 for ngram in keys)


def test_a_larger_lambda_prefers_rarer_ngrams(seal_index):
    _, index = seal_index
    searcher = Searcher.load(index)
    mean_log_count = []
    for pmi_lambda in (0.0, 0.5, 2.0):
        searcher.config = searcher.config.replace(pmi_lambda=pmi_lambda)
        counts = [searcher.index.range_counts(lo[None], hi[None])[0] for per_query in searcher._generated(QUERIES)
                  for _, _, lo, hi in per_query]
        mean_log_count.append(float(np.mean(np.log(counts))))
    assert mean_log_count[0] >= mean_log_count[1] >= mean_log_count[2] and mean_log_count[2] < mean_log_count[0]
    # A model that says nothing (uniform logits): the first step keeps the rarest tokens (ties: the lower ids;
    # their order among equal scores is topk's).
    uniform = PMIConstraint(searcher.constraint, searcher.index, 1.0)
    with torch.no_grad():
        searcher.model.get_output_embeddings().weight.zero_()
    first = decode(searcher, uniform).steps[0]
    counts = searcher.index.segments[0].index.token_counts
    rarest = sorted((int(c), t) for t, c in enumerate(counts.tolist()) if c > 0 and t != EOS)[:first.tokens.shape[1]]
    assert sorted(first.tokens[0, :, 0].tolist()) == sorted(t for _, t in rarest)


def test_a_negative_lambda_is_refused(seal_index, tmp_path):
    collection, index = seal_index
    result = genir("index", "-m", "seal", "-c", collection, "-o", tmp_path / "out", "--set", "use_model=false",
                   "--set", "pmi_lambda=-1")
    assert result.exit_code == 2 and "pmi_lambda" in result.output
    with pytest.raises(GenirError, match="pmi_lambda"):
        PMIConstraint(Searcher.load(index).constraint, Searcher.load(index).index, float("nan"))
