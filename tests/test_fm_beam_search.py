"""SEAL's decoding path end to end: beam search under the FM-index on a tiny random T5."""

from __future__ import annotations

import numpy as np
import torch
from transformers import T5Config, T5ForConditionalGeneration

from genir.kernels.beam_search import beam_search
from genir.kernels.fm_constraint import FMIndexConstraint
from genir.kernels.fmindex import FMIndex

PAD, EOS, VOCAB = 0, 1, 24


def occurrences(docs: list[list[int]], ngram: list[int]) -> set[tuple[int, int]]:
    n = len(ngram)
    return {(d, i) for d, doc in enumerate(docs) for i in range(len(doc) - n + 1) if doc[i:i + n] == ngram}


def test_every_generated_ngram_occurs_and_its_final_state_locates_it():
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, VOCAB, size=rng.integers(0, 14)).tolist() for _ in range(15)]
    fm = FMIndex.build(docs, vocab_size=VOCAB)
    constraint = FMIndexConstraint(fm, eos_token_id=EOS)
    torch.manual_seed(0)
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, num_layers=2, num_heads=2, d_ff=64,
                      decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight[EOS] *= 4.0  # finish at several lengths
    queries = torch.randint(2, VOCAB, (6, 7))
    out = beam_search(model, queries, constraint, num_beams=5, max_new_tokens=6, record_steps=True)
    checked = 0
    for b in range(queries.shape[0]):
        for r in range(out.sequences.shape[1]):
            if not out.valid[b, r]:
                continue
            length = int(out.lengths[b, r])
            sequence = out.sequences[b, r, :length].tolist()
            assert sequence[-1] == EOS and EOS not in sequence[:-1]
            ngram = sequence[:-1]
            expected = occurrences(docs, ngram)
            assert ngram and expected, f"{ngram} does not occur in the corpus"
            lo, hi = out.states[b, r].tolist()
            found = fm.locate([lo], [hi], len(ngram))
            assert set(zip(found.doc_ids.tolist(), found.offsets.tolist())) == expected
            checked += 1
    assert checked >= queries.shape[0] * 3
    for step in out.steps:
        for b, k in zip(*torch.nonzero(step.valid, as_tuple=True)):
            prefix = [t for t in step.tokens[b, k].tolist() if t != EOS]
            assert occurrences(docs, prefix), f"recorded prefix {prefix} does not occur"
