"""Each query's own candidates scored exactly (genir.kernels.candidate_scores): the shared first step,
the reused cross-attention, chunked calls on KV caches and top-k pruning change no returned score."""

from __future__ import annotations

import pytest
import torch

from genir.kernels.beam_search import encode_sources
from genir.kernels.candidate_scores import candidate_scores
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
