"""Each query's own candidates scored exactly (genir.kernels.candidate_scores): the shared first step,
the reused cross-attention, chunked calls on KV caches and top-k pruning change no returned score."""

from __future__ import annotations

import pytest
import torch

from genir.kernels.beam_search import encode_sources
from genir.kernels.candidate_scores import candidate_scores
from genir.seq2seq.query_head import linear_head
from genir.seq2seq.token_space import build_token_space_seq2seq
from genir.seq2seq.vocab import DECODER_START, EOS, PAD

QUERIES = ["striped zebras on the savanna", "parse a json string", "the cat sat on the mat"]
CANDIDATES, WIDTH = 14, 9


@pytest.fixture(scope="module")
def toy():
    """A token-space model (the SE-DSI recipe) whose head reads the query and the decoder's states
    (random query map and transform, seeded), and ``[B, C, L]`` candidates of 1 to 9 tokens, eos last."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    built = build_token_space_seq2seq(decoder_layers=1)
    decoder = built.model.get_decoder()
    with torch.no_grad():
        decoder.query_map.weight.normal_(0, 0.5)
        decoder.cls.predictions.transform.LayerNorm.weight.fill_(1.0)
    model = built.model.eval()
    batch = built.tokenizer(QUERIES, padding=True, return_tensors="pt")  # [B, S], padded
    generator = torch.Generator().manual_seed(1)
    sequences = torch.full((len(QUERIES), CANDIDATES, WIDTH), PAD, dtype=torch.int64)
    for b in range(len(QUERIES)):
        for c in range(CANDIDATES):
            n = int(torch.randint(0, WIDTH, (1,), generator=generator))  # tokens before eos
            sequences[b, c, :n] = torch.randint(1000, 3000, (n,), generator=generator)
            sequences[b, c, n] = EOS
    return model, batch, sequences, {score: reference(model, batch, sequences, score) for score in ("logprob", "logit")}


def reference(model, batch, sequences, score: str) -> torch.Tensor:
    """``[B, C]``: every candidate teacher-forced on its own (its query alone, unpadded), the full
    log-softmax (or raw logits) summed over its tokens."""
    out = torch.zeros(sequences.shape[:2])
    with torch.no_grad():
        for b in range(sequences.shape[0]):
            for c in range(sequences.shape[1]):
                target = sequences[b, c][sequences[b, c] != PAD]  # [n]
                inputs = torch.cat([torch.tensor([DECODER_START]), target[:-1]]).unsqueeze(0)
                real = batch["attention_mask"][b].bool()
                logits = model(input_ids=batch["input_ids"][b:b + 1, real], decoder_input_ids=inputs).logits[0]  # [n, V]
                if score == "logprob":
                    logits = torch.log_softmax(logits, dim=-1)
                out[b, c] = logits.gather(1, target.unsqueeze(1)).sum()
    return out


@pytest.mark.parametrize("score", ["logprob", "logit"])
@pytest.mark.parametrize("positions_per_call", [2048, 7])
def test_every_candidate_scores_as_its_own_teacher_forced_pass(toy, score, positions_per_call):
    model, batch, sequences, references = toy
    encoded = encode_sources(model, batch["input_ids"], batch["attention_mask"], 1)
    got = candidate_scores(model, encoded, sequences, decoder_start_token_id=DECODER_START, pad_token_id=PAD,
                           score=score, positions_per_call=positions_per_call)
    torch.testing.assert_close(got, references[score], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("k, block", [(1, 1), (4, 3), (6, 8)])
def test_pruning_returns_the_k_best_exactly_and_drops_only_those_below(toy, k, block):
    model, batch, sequences, references = toy
    encoded = encode_sources(model, batch["input_ids"], batch["attention_mask"], 1)
    want = references["logprob"]  # [B, C]
    lengths = (sequences != PAD).sum(-1).float()
    scale = 1.0 / lengths
    # Fixed parts wider than the sequence terms (about -10 per token here), so that some candidates
    # are dropped, before or after some of their positions; two are never ranked.
    offset = torch.linspace(-30.0, 10.0, CANDIDATES).roll(5).repeat(len(QUERIES), 1)
    offset[:, [2, 9]] = float("-inf")
    got = candidate_scores(model, encoded, sequences, decoder_start_token_id=DECODER_START, pad_token_id=PAD,
                           best=(offset, scale, k), block=block, positions_per_call=5)
    final_want = offset + scale * want  # [B, C]
    assert bool(torch.isinf(got[:, [2, 9]]).all())
    for b in range(len(QUERIES)):
        best = final_want[b].topk(k)
        torch.testing.assert_close(got[b, best.indices], want[b, best.indices], atol=1e-4, rtol=1e-5)
        dropped = torch.isinf(got[b]) & torch.isfinite(offset[b])
        assert bool((final_want[b, dropped] < best.values[-1]).all())  # only candidates below the k-th best
        kept = torch.isfinite(got[b])
        torch.testing.assert_close(got[b, kept], want[b, kept], atol=1e-4, rtol=1e-5)  # what is kept is exact
    assert int(torch.isinf(got).sum()) > 2 * len(QUERIES)  # pruning dropped candidates that are ranked


def bounded_case(toy, k: int, bound_tokens: int, exact_group: int, spread: float, block: int = 3):
    """The same candidates scored for their ``k`` best with and without the query start's linear head, their
    fixed parts ``spread`` wide (the mean log-probability of a token varies by ~0.5 between candidates here)."""
    model, batch, sequences, references = toy
    encoded = encode_sources(model, batch["input_ids"], batch["attention_mask"], 1)
    lengths = (sequences != PAD).sum(-1).float()
    offset = torch.linspace(-spread / 2, spread / 2, CANDIDATES).roll(5).repeat(len(QUERIES), 1)
    scale = 1.0 / lengths
    offset[:, [2, 9]] = float("-inf")
    runs = {}
    for name, head in (("old", None), ("new", linear_head(model))):
        counts = {}
        scores = candidate_scores(model, encoded, sequences, decoder_start_token_id=DECODER_START, pad_token_id=PAD,
                                  best=(offset, scale, k), head=head, block=block, positions_per_call=5,
                                  bound_tokens=bound_tokens, exact_group=exact_group, counts=counts)
        runs[name] = scores, counts
    return offset, scale, references["logprob"], runs


@pytest.mark.parametrize("k, bound_tokens, exact_group", [(1, 0, 1), (4, 64, 2), (6, 40000, 3)])
def test_the_bound_path_returns_the_k_best_as_exact_scoring_does(toy, k, bound_tokens, exact_group):
    """Fixed parts narrow enough that some of the k best are outside the lead (the bound must let them
    through); a bound set of the whole vocabulary (40,000 > V) is the exact score itself."""
    offset, scale, want, runs = bounded_case(toy, k, bound_tokens, exact_group, spread=1.0)
    (old, _), (new, counts) = runs["old"], runs["new"]
    final_want = offset + scale * want  # [B, C]
    lead = torch.zeros_like(offset, dtype=torch.bool).scatter(1, offset.topk(k, dim=1).indices, True)
    assert bool((final_want >= final_want.topk(k, dim=1).values[:, -1:]).logical_and(~lead).any())
    for b in range(len(QUERIES)):
        best = final_want[b].topk(k)
        assert torch.equal((offset[b] + scale[b] * new[b]).topk(k).indices, best.indices)  # same documents, same order
        assert torch.equal((offset[b] + scale[b] * old[b]).topk(k).indices, best.indices)
        torch.testing.assert_close(new[b, best.indices], want[b, best.indices], atol=1e-4, rtol=1e-5)
        kept = torch.isfinite(new[b])
        torch.testing.assert_close(new[b, kept], want[b, kept], atol=1e-4, rtol=1e-5)  # only exact scores come out
        assert bool((final_want[b, ~kept & torch.isfinite(offset[b])] < best.values[-1]).all())
    assert counts["bound"] > 0


def test_the_bound_prunes_and_a_survivor_can_rank_below_once_exact(toy):
    """With a small bound set (loose bounds), candidates are dropped on their bound after some positions,
    and a candidate whose bound survived is scored exactly and then ranks below the k-th best: the exact
    scores, not the bounds, decide. Fewer positions go through the whole output layer than without the head."""
    model, batch, sequences, _ = toy
    k = 4
    offset, scale, want, runs = bounded_case(toy, k, bound_tokens=64, exact_group=1, spread=40.0)
    (new, counts), (_, old_counts) = runs["new"], runs["old"]
    first = torch.log_softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    decoder_input_ids=torch.full((len(QUERIES), 1), DECODER_START)).logits[:, 0], -1)
    opening = first.gather(1, sequences[:, :, 0])  # [B, C] position 0's exact log-probability
    final_want = offset + scale * want
    lead = torch.zeros_like(offset, dtype=torch.bool).scatter(1, offset.topk(k, dim=1).indices, True)
    threshold = torch.where(lead, final_want, float("-inf")).topk(k, dim=1).values[:, -1:]  # [B, 1] after the lead
    kth = final_want.topk(k, dim=1).values[:, -1:]  # [B, 1]
    bounded = ~lead & (offset + scale * opening >= threshold) & ((sequences != PAD).sum(-1) > 1)  # scored on bounds
    assert bool((bounded & torch.isinf(new)).any())  # dropped on its bound, never scored exactly
    assert bool((bounded & torch.isfinite(new) & (final_want < kth)).any())  # survived, then ranked below
    assert counts["bound"] > 0 and counts["full"] < old_counts["full"]


def test_the_query_start_describes_its_head_as_a_linear_layer(toy):
    """``head_inputs`` then ``z @ W.T + b`` is the model's own logits; under ``restrict_output`` (whose
    logits are not that layer) the decoder offers no linear head, and the kernel reads logits alone."""
    model, batch, sequences, _ = toy
    decoder = model.get_decoder()
    head = linear_head(model)
    assert head is decoder
    encoded = encode_sources(model, batch["input_ids"], batch["attention_mask"], 1)
    states, mask = encoded[0].last_hidden_state, encoded[1]  # [B, S, H], [B, S]
    inputs = torch.cat([torch.full((len(QUERIES), 1), DECODER_START), sequences[:, 0, :-1]], dim=1)  # [B, L]
    z, _ = head.head_inputs(inputs, states, mask, None)  # [B, L, H]
    weight, bias = head.output_layer()
    logits = model(encoder_outputs=encoded[0], attention_mask=mask, decoder_input_ids=inputs).logits  # [B, L, V]
    torch.testing.assert_close(z @ weight.T + bias, logits, atol=1e-4, rtol=1e-5)
    decoder.restrict_output(torch.arange(10))
    try:
        assert linear_head(model) is None
    finally:
        decoder.restrict_output(None)
    assert linear_head(model) is decoder
