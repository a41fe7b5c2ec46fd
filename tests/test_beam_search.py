"""Constrained beam search: stays inside the constraint, scores exactly, and equals `generate` unconstrained."""

from __future__ import annotations

import itertools
import textwrap

import pytest
import torch
from conftest import run_under_triton_interpreter
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    T5Config,
    T5ForConditionalGeneration,
)

from genir.kernels.beam_search import BeamSearchOutput, beam_search
from genir.kernels.constraint import Candidates, Constraint
from genir.kernels.topk import triton_available
from genir.kernels.trie import DocidTrie, DocidTrieConstraint

# Small models run far faster on one thread than on two threads shared with other work.
torch.set_num_threads(1)

PAD, EOS, START = 0, 1, 0


def tiny_t5(vocab_size: int, seed: int, eos_boost: float = 1.0) -> T5ForConditionalGeneration:
    """A random 2-layer T5; ``eos_boost`` scales the eos output row so hypotheses finish early."""
    torch.manual_seed(seed)
    sizes = dict(d_model=32, d_kv=16, num_layers=2, num_heads=2, d_ff=64)
    ids = dict(decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD)
    model = T5ForConditionalGeneration(T5Config(vocab_size=vocab_size, **sizes, **ids)).eval()
    with torch.no_grad():
        model.lm_head.weight[EOS] *= eos_boost
    return model


def tiny_bart(seed: int) -> BartForConditionalGeneration:
    """A random 1-layer BART over 40 tokens (pad 1, eos 2, decoder start 2)."""
    torch.manual_seed(seed)
    sizes = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2)
    sizes |= dict(decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)
    ids = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
    return BartForConditionalGeneration(BartConfig(vocab_size=40, **sizes, **ids)).eval()


def tiny_bert2bert(seed: int) -> EncoderDecoderModel:
    """A random 1-layer BERT-to-BERT ``EncoderDecoderModel`` over 40 tokens (pad 0, eos 2, start 3)."""
    torch.manual_seed(seed)
    small = dict(vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    decoder = BertConfig(**small, is_decoder=True, add_cross_attention=True)
    model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(BertConfig(**small), decoder))
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 3, 0, 2
    return model.eval()


def random_docids(n: int, vocab_size: int, max_len: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    seqs: dict[tuple[int, ...], None] = {}
    while len(seqs) < n:
        length = int(torch.randint(1, max_len + 1, (1,), generator=gen))
        seqs[tuple(torch.randint(2, vocab_size, (length,), generator=gen).tolist()) + (EOS,)] = None
    return [list(s) for s in seqs]


def teacher_forced_log_prob(model, input_ids: torch.Tensor, seqs: list[list[int]]) -> torch.Tensor:
    """``[B, D]`` sum of token log-probs of every sequence for every query."""
    width = max(map(len, seqs))
    target = torch.full((len(seqs), width), PAD)
    for i, s in enumerate(seqs):
        target[i, : len(s)] = torch.tensor(s)
    mask = torch.arange(width) < torch.tensor([len(s) for s in seqs]).unsqueeze(1)
    decoder_in = torch.cat([torch.full((len(seqs), 1), START), target[:, :-1]], dim=1)
    out = torch.empty(input_ids.shape[0], len(seqs))
    with torch.no_grad():
        for q in range(input_ids.shape[0]):
            logits = model(input_ids=input_ids[q : q + 1].expand(len(seqs), -1), decoder_input_ids=decoder_in).logits
            token_lp = torch.log_softmax(logits.float(), -1).gather(2, target.unsqueeze(2)).squeeze(2)
            out[q] = (token_lp * mask).sum(1)
    return out


def hypotheses(result: BeamSearchOutput, q: int) -> list[list[int]]:
    return [
        result.sequences[q, r, : result.lengths[q, r]].tolist()
        for r in range(result.sequences.shape[1])
        if result.valid[q, r]
    ]


# ---------------------------------------------------------------- unconstrained == generate

GENERATE_CONFIGS = list(
    itertools.product(
        [0, 1, 2],  # seed
        [(4, 4), (3, 2), (2, 1)],  # (num_beams, num_return_sequences)
        [(1.0, False), (0.0, False), (2.0, "never"), (1.0, True), (-0.5, False), (1.0, "never")],
    )
)


@pytest.mark.parametrize(("seed", "beams", "finish"), GENERATE_CONFIGS)
def test_unconstrained_matches_generate(seed: int, beams: tuple[int, int], finish: tuple[float, bool | str]) -> None:
    num_beams, n_return = beams
    length_penalty, early_stopping = finish
    # A 16-token vocabulary with a boosted eos makes hypotheses finish at many lengths.
    model = tiny_t5(16, seed, eos_boost=3.0)
    input_ids = torch.randint(2, 16, (5, 6), generator=torch.Generator().manual_seed(seed))
    kwargs = dict(
        num_beams=num_beams,
        num_return_sequences=n_return,
        max_new_tokens=8,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
    )
    hf = model.generate(input_ids, do_sample=False, output_scores=True, return_dict_in_generate=True, **kwargs)
    ours = beam_search(model, input_ids, **kwargs)

    assert ours.valid.all()
    hf_seqs = hf.sequences[:, 1:].reshape(5, n_return, -1)
    assert ours.sequences.shape[2] == hf_seqs.shape[2]
    # generate fills after eos with eos when pad_token_id == 0; compare the hypotheses themselves.
    inside = torch.arange(hf_seqs.shape[2]) < ours.lengths.unsqueeze(2)
    assert torch.equal(torch.where(inside, hf_seqs, PAD), ours.sequences)
    torch.testing.assert_close(ours.scores, hf.sequences_scores.reshape(5, n_return), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.scores, ours.log_probs / ours.lengths.float() ** length_penalty)


def test_generate_comparison_covers_early_finishes() -> None:
    """The boosted-eos models compared above do finish hypotheses at several lengths."""
    model = tiny_t5(16, 0, eos_boost=3.0)
    input_ids = torch.randint(2, 16, (5, 6), generator=torch.Generator().manual_seed(0))
    result = beam_search(model, input_ids, num_beams=4, max_new_tokens=8, length_penalty=0.0)
    assert len(set(result.lengths.flatten().tolist())) >= 3


def test_unconstrained_bart_and_bert2bert_match_generate() -> None:
    input_ids = torch.randint(3, 40, (3, 6), generator=torch.Generator().manual_seed(0))
    for model in (tiny_bart(0), tiny_bert2bert(0)):
        kwargs = dict(num_beams=4, num_return_sequences=2, max_new_tokens=6)
        pad = model.config.pad_token_id
        ids = dict(decoder_start_token_id=model.config.decoder_start_token_id, eos_token_id=2, pad_token_id=pad)
        hf = model.generate(
            input_ids, do_sample=False, output_scores=True, return_dict_in_generate=True, **kwargs, **ids
        )
        ours = beam_search(model, input_ids, **kwargs)
        inside = torch.arange(ours.sequences.shape[2]) < ours.lengths.unsqueeze(2)
        assert torch.equal(torch.where(inside, hf.sequences[:, 1:].reshape(3, 2, -1), pad), ours.sequences)
        torch.testing.assert_close(ours.scores, hf.sequences_scores.reshape(3, 2), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- constrained by a docid trie


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trie_constrained_outputs_are_docids(seed: int) -> None:
    vocab = 32
    docids = random_docids(300, vocab, max_len=5, seed=seed)
    trie = DocidTrie.from_sequences(docids, eos_token_id=EOS, vocab_size=vocab)
    model = tiny_t5(vocab, seed)
    input_ids = torch.randint(2, vocab, (48, 7), generator=torch.Generator().manual_seed(seed))
    result = beam_search(
        model, input_ids, DocidTrieConstraint(trie), num_beams=6, num_return_sequences=4, max_new_tokens=6
    )

    assert result.sequences.shape[:2] == (48, 4) and result.states.shape == (48, 4, 1)
    assert result.valid.all(), "300 docids leave every query 4 hypotheses"
    row_of = {tuple(s): i for i, s in enumerate(docids)}
    for q in range(48):
        for r, seq in enumerate(hypotheses(result, q)):
            assert tuple(seq) in row_of, f"query {q} returned {seq}, which is not a docid"
            # The state carried step by step is the docid's leaf: no prefix was re-walked.
            assert trie.docid(result.states[q, r, 0]).item() == row_of[tuple(seq)]
        assert result.scores[q].tolist() == sorted(result.scores[q].tolist(), reverse=True)
        after_end = torch.arange(result.sequences.shape[2]) >= result.lengths[q].unsqueeze(1)
        assert (result.sequences[q][after_end] == PAD).all()


def test_trie_constrained_scores_are_full_softmax_log_probs() -> None:
    vocab = 24
    docids = random_docids(40, vocab, max_len=4, seed=5)
    model = tiny_t5(vocab, 5)
    input_ids = torch.randint(2, vocab, (4, 5), generator=torch.Generator().manual_seed(5))
    trie = DocidTrie.from_sequences(docids, eos_token_id=EOS, vocab_size=vocab)
    result = beam_search(
        model, input_ids, DocidTrieConstraint(trie), num_beams=5, max_new_tokens=5, length_penalty=0.5
    )
    reference = teacher_forced_log_prob(model, input_ids, docids)
    for q in range(4):
        for r, seq in enumerate(hypotheses(result, q)):
            expected = reference[q, docids.index(seq)]
            torch.testing.assert_close(result.log_probs[q, r], expected, atol=1e-4, rtol=0)
            torch.testing.assert_close(result.scores[q, r], expected / len(seq) ** 0.5, atol=1e-4, rtol=0)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_finds_the_exact_ranking(length_penalty: float) -> None:
    """With more beams than docids nothing is pruned: the n-best list is the brute-force ranking."""
    vocab = 20
    docids = random_docids(12, vocab, max_len=4, seed=7)
    model = tiny_t5(vocab, 7)
    input_ids = torch.randint(2, vocab, (6, 5), generator=torch.Generator().manual_seed(7))
    trie = DocidTrie.from_sequences(docids, eos_token_id=EOS, vocab_size=vocab)
    result = beam_search(
        model,
        input_ids,
        DocidTrieConstraint(trie),
        num_beams=16,
        num_return_sequences=16,
        max_new_tokens=5,
        length_penalty=length_penalty,
    )
    lengths = torch.tensor([len(s) for s in docids], dtype=torch.float32)
    reference = teacher_forced_log_prob(model, input_ids, docids) / lengths**length_penalty
    assert result.valid.sum(1).tolist() == [12] * 6
    for q in range(6):
        ranked = [docids[i] for i in reference[q].argsort(descending=True).tolist()]
        assert hypotheses(result, q) == ranked
        torch.testing.assert_close(result.scores[q, :12], reference[q].sort(descending=True).values, atol=1e-4, rtol=0)


def test_fewer_docids_than_beams_and_cut_off_prefixes() -> None:
    vocab = 16
    docids = [[3, EOS], [4, 5, EOS], [4, 6, 7, 8, 9, EOS]]
    model = tiny_t5(vocab, 0)
    trie = DocidTrie.from_sequences(docids, eos_token_id=EOS, vocab_size=vocab)
    input_ids = torch.randint(2, vocab, (3, 4))
    result = beam_search(model, input_ids, DocidTrieConstraint(trie), num_beams=5, max_new_tokens=3)
    # The third docid needs 6 tokens: cut off at 3, it is not a hypothesis.
    assert result.valid.sum(1).tolist() == [2, 2, 2]
    assert all(sorted(hypotheses(result, q)) == [[3, EOS], [4, 5, EOS]] for q in range(3))
    assert (result.scores[~result.valid] == float("-inf")).all() and (result.states[~result.valid] == -1).all()


def test_recorded_steps_are_trie_prefixes_with_their_states() -> None:
    vocab = 24
    docids = random_docids(60, vocab, max_len=4, seed=3)
    trie = DocidTrie.from_sequences(docids, eos_token_id=EOS, vocab_size=vocab)
    model = tiny_t5(vocab, 3)
    input_ids = torch.randint(2, vocab, (5, 6), generator=torch.Generator().manual_seed(3))
    result = beam_search(
        model, input_ids, DocidTrieConstraint(trie), num_beams=4, max_new_tokens=5, record_steps=True
    )
    assert result.steps is not None and len(result.steps) >= 2
    for t, step in enumerate(result.steps):
        assert step.tokens.shape == (5, 8, t + 1) and step.states.shape == (5, 8, 1)
        prefixes = step.tokens[step.valid]
        walked = trie.walk(prefixes)
        assert (walked >= 0).all(), "a recorded prefix is outside the trie"
        assert torch.equal(walked, step.states[step.valid])
        assert torch.equal(step.ended[step.valid], prefixes[:, -1] == EOS)
        assert (step.scores[step.valid] > float("-inf")).all()
        assert (step.scores[~step.valid] == float("-inf")).all()


TRITON_BEAM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    from test_beam_search import EOS, random_docids, tiny_t5
    from genir.kernels.beam_search import beam_search
    from genir.kernels.trie import DocidTrie, DocidTrieConstraint

    docids = random_docids(80, 24, max_len=4, seed=2)
    constraint = DocidTrieConstraint(DocidTrie.from_sequences(docids, eos_token_id=EOS, vocab_size=24))
    model = tiny_t5(24, 2)
    input_ids = torch.randint(2, 24, (3, 5), generator=torch.Generator().manual_seed(2))
    runs = [
        beam_search(model, input_ids, constraint, num_beams=4, max_new_tokens=5, topk_backend=backend)
        for backend in ("torch", "triton")
    ]
    print(json.dumps({
        "sequences": torch.equal(runs[0].sequences, runs[1].sequences),
        "states": torch.equal(runs[0].states, runs[1].states),
        "max_score_diff": float((runs[0].scores - runs[1].scores).abs().max()),
    }))
    """
)


@pytest.mark.skipif(not triton_available(), reason="triton is not installed (pip install genir[triton])")
def test_triton_backend_gives_the_same_beams_under_interpreter() -> None:
    report = run_under_triton_interpreter(TRITON_BEAM_SCRIPT)
    assert report["sequences"] and report["states"] and report["max_score_diff"] < 1e-5, report


def test_bart_and_bert2bert_stay_inside_the_trie() -> None:
    # Both models end with eos 2: re-terminate the docids and drop bodies that contain a 2.
    docids = [s[:-1] + [2] for s in random_docids(30, 40, max_len=3, seed=1) if 2 not in s[:-1]]
    trie = DocidTrie.from_sequences(docids, eos_token_id=2, vocab_size=40)
    input_ids = torch.randint(3, 40, (6, 5), generator=torch.Generator().manual_seed(1))
    for model in (tiny_bart(1), tiny_bert2bert(1)):
        result = beam_search(model, input_ids, DocidTrieConstraint(trie), num_beams=4, max_new_tokens=4)
        for q in range(6):
            assert all(seq in docids for seq in hypotheses(result, q))


# ---------------------------------------------------------------- any constraint, any state width


class IncreasingRuns(Constraint):
    """Toy constraint with state width 2 (last token, length): strictly increasing tokens from
    ``low``, at most ``max_len`` of them, then eos; eos is allowed after any non-empty run."""

    state_width = 2

    def __init__(self, vocab_size: int, low: int, max_len: int) -> None:
        self.vocab_size, self.low, self.max_len = vocab_size, low, max_len

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.tensor([[self.low - 1, 0]], device=device).repeat(n, 1)

    def candidates(self, state: torch.Tensor) -> Candidates:
        tokens, states, row_ptr = [], [], [0]
        for last, length in state.tolist():
            allowed = list(range(last + 1, self.vocab_size)) if 0 <= length < self.max_len else []
            allowed = ([EOS] if length > 0 else []) + allowed
            tokens += allowed
            states += [[t, length + 1] if t != EOS else [t, -1] for t in allowed]
            row_ptr.append(len(tokens))
        return Candidates(
            row_ptr=torch.tensor(row_ptr),
            tokens=torch.tensor(tokens, dtype=torch.int64),
            next_state=torch.tensor(states, dtype=torch.int64).reshape(-1, 2),
        )


def test_state_width_two_constraint() -> None:
    model = tiny_t5(20, 4)
    input_ids = torch.randint(2, 20, (4, 5), generator=torch.Generator().manual_seed(4))
    constraint = IncreasingRuns(20, low=2, max_len=3)
    result = beam_search(model, input_ids, constraint, num_beams=5, max_new_tokens=5, record_steps=True)
    assert result.states.shape == (4, 5, 2) and result.valid.all()
    for q in range(4):
        for seq in hypotheses(result, q):
            body = seq[:-1]
            assert seq[-1] == EOS and 1 <= len(body) <= 3 and body == sorted(set(body)) and min(body) >= 2


def test_argument_errors() -> None:
    model = tiny_t5(16, 0)
    with pytest.raises(ValueError, match="num_return_sequences"):
        beam_search(model, torch.ones(1, 3, dtype=torch.int64), num_beams=2, num_return_sequences=3)
