"""FM-index and its constraint adapter, checked against brute force on small random corpora."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.kernels.fm_constraint import FMIndexConstraint
from genir.kernels.fm_wavelet import RankBits, WaveletMatrix
from genir.kernels.fmindex import FMIndex

Doc = list[int]

SETTINGS = settings(max_examples=100, deadline=None)


# ---------------------------------------------------------------- brute force


def occurrences(docs: list[Doc], ngram: Doc) -> list[tuple[int, int]]:
    """(doc, offset) of every occurrence; the empty n-gram occurs at every token position."""
    k = len(ngram)
    last = (lambda m: m) if k == 0 else (lambda m: m - k + 1)
    return [(j, o) for j, d in enumerate(docs) for o in range(max(last(len(d)), 0)) if d[o : o + k] == ngram]


def followers(docs: list[Doc], ngram: Doc) -> Counter[int]:
    """How often each token follows the n-gram inside a document."""
    k = len(ngram)
    return Counter(docs[j][o + k] for j, o in occurrences(docs, ngram) if o + k < len(docs[j]))


# ---------------------------------------------------------------- strategies


@st.composite
def corpora(draw: st.DrawFn, max_vocab: int = 4) -> tuple[int, list[Doc]]:
    """A vocabulary size and 1-5 documents of 0-10 tokens (empty ones included)."""
    vocab = draw(st.integers(1, max_vocab))
    docs = draw(st.lists(st.lists(st.integers(0, vocab - 1), max_size=10), min_size=1, max_size=5))
    return vocab, docs


@st.composite
def corpus_and_ngrams(draw: st.DrawFn) -> tuple[int, list[Doc], list[Doc]]:
    """A corpus and n-grams to query: substrings (at borders too), n-grams spanning two
    documents, random ones (mostly absent), and the empty n-gram."""
    vocab, docs = draw(corpora())
    ngrams: list[Doc] = [[]]
    for j, d in enumerate(docs):
        if d:
            a = draw(st.integers(0, len(d) - 1))
            b = draw(st.integers(a + 1, len(d)))
            ngrams += [d[a:b], d[:b], d[a:]]
        if j + 1 < len(docs) and d and docs[j + 1]:
            ngrams.append(d[-2:] + docs[j + 1][:2])
    ngrams += draw(st.lists(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=4), max_size=4))
    return vocab, docs, ngrams


def build(vocab: int, docs: list[Doc], sample_rate: int = 2) -> FMIndex:
    return FMIndex.build([np.array(d, dtype=np.int64) for d in docs], vocab_size=vocab, sample_rate=sample_rate)


# ---------------------------------------------------------------- properties


@SETTINGS
@given(corpus_and_ngrams(), st.integers(1, 4))
def test_count_locate_doc_freq_match_brute_force(data, sample_rate) -> None:
    vocab, docs, ngrams = data
    fm = build(vocab, docs, sample_rate)
    assert fm.num_docs == len(docs) and fm.num_tokens == sum(map(len, docs))
    lo, hi = fm.ranges(ngrams)
    counts = fm.count(ngrams)
    found = fm.locate(lo, hi, [len(g) for g in ngrams])
    doc_freq = fm.doc_freq(lo, hi)
    for i, g in enumerate(ngrams):
        expected = occurrences(docs, g)
        assert counts[i] == len(expected), g
        span = slice(found.row_ptr[i], found.row_ptr[i + 1])
        got = zip(found.doc_ids[span].tolist(), found.offsets[span].tolist())
        assert sorted(got) == sorted(expected), g
        assert doc_freq[i] == len({j for j, _ in expected}), g


@SETTINGS
@given(corpus_and_ngrams())
def test_extension_equals_search_from_scratch(data) -> None:
    vocab, docs, ngrams = data
    fm = build(vocab, docs)
    lo, hi = fm.ranges(ngrams)
    tokens = np.arange(vocab)
    ext_lo, ext_hi = fm.extend(lo[:, None], hi[:, None], tokens[None, :])
    want_lo, want_hi = fm.ranges([g + [t] for g in ngrams for t in range(vocab)])
    np.testing.assert_array_equal(ext_lo, want_lo)
    np.testing.assert_array_equal(ext_hi, want_hi)
    want_counts = [len(occurrences(docs, g + [t])) for g in ngrams for t in range(vocab)]
    np.testing.assert_array_equal(fm.range_counts(ext_lo, ext_hi), want_counts)


@SETTINGS
@given(corpus_and_ngrams())
def test_next_tokens_match_brute_force(data) -> None:
    vocab, docs, ngrams = data
    fm = build(vocab, docs)
    lo, hi = fm.ranges(ngrams)
    listed = fm.next_tokens(lo, hi)
    for i, g in enumerate(ngrams):
        span = slice(listed.row_ptr[i], listed.row_ptr[i + 1])
        tokens = listed.tokens[span].tolist()
        assert tokens == sorted(tokens)
        assert dict(zip(tokens, (listed.hi[span] - listed.lo[span]).tolist())) == followers(docs, g), g
        want_lo, want_hi = fm.ranges([g + [t] for t in tokens])
        np.testing.assert_array_equal(listed.lo[span], want_lo)
        np.testing.assert_array_equal(listed.hi[span], want_hi)


@SETTINGS
@given(corpus_and_ngrams(), st.booleans())
def test_save_load_round_trip(data, mmap) -> None:
    vocab, docs, ngrams = data
    fm = build(vocab, docs, sample_rate=3)
    with tempfile.TemporaryDirectory() as tmp:
        fm.save(tmp)
        for path in Path(tmp).glob("*.npy"):
            np.load(path, allow_pickle=False, mmap_mode="r")
        loaded = FMIndex.load(tmp, mmap=mmap)
        assert (loaded.num_docs, loaded.num_tokens, loaded.vocab_size, loaded.sample_rate) == (
            fm.num_docs,
            fm.num_tokens,
            fm.vocab_size,
            fm.sample_rate,
        )
        np.testing.assert_array_equal(loaded.doc_lengths, [len(d) for d in docs])
        lo, hi = fm.ranges(ngrams)
        np.testing.assert_array_equal(np.stack(loaded.ranges(ngrams)), np.stack((lo, hi)))
        a, b = fm.locate(lo, hi, [len(g) for g in ngrams]), loaded.locate(lo, hi, [len(g) for g in ngrams])
        np.testing.assert_array_equal(a.doc_ids, b.doc_ids)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        a, b = fm.next_tokens(lo, hi), loaded.next_tokens(lo, hi)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.lo, b.lo)
        del loaded  # release the memory maps before the directory goes


def assert_candidates(fm: FMIndex, docs: list[Doc], ngrams: list[Doc], cands, eos: int) -> None:
    """Row i lists exactly the tokens that extend ngrams[i] to an occurring n-gram, each with
    its range, then eos (keeping ngrams[i]'s own range) iff ngrams[i] is non-empty and occurs."""
    assert cands.row_ptr.shape == (len(ngrams) + 1,)
    for i, g in enumerate(ngrams):
        span = slice(int(cands.row_ptr[i]), int(cands.row_ptr[i + 1]))
        tokens = cands.tokens[span].tolist()
        occurs = len(occurrences(docs, g)) > 0
        assert tokens == sorted(followers(docs, g)) + ([eos] if g and occurs else []), g
        nxt = cands.next_state[span]
        want_lo, want_hi = fm.ranges([g + [t] for t in tokens if t != eos])
        np.testing.assert_array_equal(nxt[: len(want_lo)].numpy(), np.stack((want_lo, want_hi), axis=1))
        if len(tokens) > len(want_lo):
            own_lo, own_hi = fm.ranges([g])
            assert nxt[len(want_lo) :].tolist() == [[int(own_lo[0]), int(own_hi[0])]]


@SETTINGS
@given(corpus_and_ngrams())
def test_constraint_candidates_match_brute_force(data) -> None:
    vocab, docs, ngrams = data
    fm = build(vocab, docs)
    eos = vocab + 1
    lo, hi = fm.ranges(ngrams)
    state = torch.from_numpy(np.stack((lo, hi), axis=1))
    cached = FMIndexConstraint(fm, eos_token_id=eos, cache_min_width=2, cache_capacity=8)
    assert torch.equal(cached.initial_state(3), state[[0, 0, 0]])
    for _ in range(2):  # the second pass answers the wide states from the cache
        assert_candidates(fm, docs, ngrams, cached.candidates(state), eos)
    # Without the root or a cache, the rows come straight from one batch (repeats gathered).
    uncached = FMIndexConstraint(fm, eos_token_id=eos, cache_capacity=0)
    assert_candidates(fm, docs, ngrams[1:], uncached.candidates(state[1:]), eos)
    assert_candidates(fm, docs, ngrams[1:] * 2, uncached.candidates(state[1:].repeat(2, 1)), eos)


# ---------------------------------------------------------------- larger inputs and edge cases


def test_rank_bits_and_wavelet_matrix_beyond_one_block() -> None:
    rng = np.random.default_rng(0)
    bits = rng.random(200_003) < 0.3
    rank = RankBits.from_bools(bits)
    pos = np.concatenate(([0, 65536, 65535, 131072, bits.shape[0]], rng.integers(0, bits.shape[0] + 1, 500)))
    np.testing.assert_array_equal(rank.rank1(pos), np.concatenate(([0], np.cumsum(bits)))[pos])
    seq = rng.integers(0, 37, 150_001).astype(np.uint16)
    wm = WaveletMatrix.build(seq, num_levels=6)
    symbols, _ = wm.access_descend(pos[pos < seq.shape[0]])
    np.testing.assert_array_equal(symbols, seq[pos[pos < seq.shape[0]]])
    owner, sym, start, end = wm.distinct(np.array([0, 70_000, 5]), np.array([seq.shape[0], 140_000, 5]))
    for i, (a, b) in enumerate([(0, seq.shape[0]), (70_000, 140_000)]):
        values, counts = np.unique(seq[a:b], return_counts=True)
        np.testing.assert_array_equal(sym[owner == i], values)
        np.testing.assert_array_equal((end - start)[owner == i], counts)
    assert not (owner == 2).any()


def test_medium_corpus_matches_numpy_bigram_counts() -> None:
    rng = np.random.default_rng(1)
    vocab = 300
    docs = [rng.zipf(1.3, size=int(rng.integers(0, 400))) % vocab for _ in range(600)]
    fm = FMIndex.build(docs, vocab_size=vocab, sample_rate=16)
    pairs = Counter((int(a), int(b)) for d in docs for a, b in zip(d[:-1], d[1:]))
    first = np.array([a for a, _ in pairs] + [7, 299]), np.array([b for _, b in pairs] + [299, 299])
    batch = np.stack(first, axis=1)
    counts = fm.count(batch)
    np.testing.assert_array_equal(counts, [pairs[(int(a), int(b))] for a, b in zip(*first)])
    # A single query takes the scalar path; it must agree with the batched one.
    assert [int(fm.count(batch[i : i + 1])[0]) for i in range(0, len(batch), 97)] == counts[::97].tolist()
    lo, hi = fm.ranges([[3]])
    listed = fm.next_tokens(lo, hi)
    assert dict(zip(listed.tokens.tolist(), (listed.hi - listed.lo).tolist())) == {
        b: c for (a, b), c in pairs.items() if a == 3
    }
    found = fm.locate(*fm.ranges([[3, 1]]), 2)
    expected = sorted((j, o) for j, d in enumerate(docs) for o in range(len(d) - 1) if d[o] == 3 and d[o + 1] == 1)
    assert sorted(zip(found.doc_ids.tolist(), found.offsets.tolist())) == expected
    assert fm.doc_freq(*fm.ranges([[3, 1]]))[0] == len({j for j, _ in expected})


def test_toy_corpus_by_hand() -> None:
    #            doc 0: "a b a b c"          doc 1: "b a"   doc 2: empty
    fm = FMIndex.build([[1, 2, 1, 2, 3], [2, 1], []], vocab_size=5)
    assert fm.num_docs == 3 and fm.num_tokens == 7
    assert fm.count([[1, 2], [2, 1], [1, 2, 3], [3, 2], [], [4], [1, 2, 1, 2, 3]]).tolist() == [2, 2, 1, 0, 7, 0, 1]
    lo, hi = fm.ranges([[1, 2]])
    listed = fm.next_tokens(lo, hi)
    assert listed.tokens.tolist() == [1, 3] and (listed.hi - listed.lo).tolist() == [1, 1]
    found = fm.locate(lo, hi, 2)
    assert sorted(zip(found.doc_ids.tolist(), found.offsets.tolist())) == [(0, 0), (0, 2)]
    assert fm.doc_freq(*fm.ranges([[2, 1], []])).tolist() == [2, 2]
    # "c" ends doc 0 and "a" starts doc 1: the separator keeps "c b" from matching.
    assert fm.count([[3, 2]]).tolist() == [0]


def test_empty_documents_and_one_token_vocabulary() -> None:
    fm = FMIndex.build([[], [], []])
    assert (fm.num_docs, fm.num_tokens, fm.vocab_size) == (3, 0, 1)
    assert fm.count([[], [0]]).tolist() == [0, 0]
    assert fm.next_tokens(*fm.root_range).tokens.tolist() == []
    assert fm.doc_freq(*fm.root_range).tolist() == [0]
    fm = FMIndex.build([[0, 0, 0], [], [0]], sample_rate=1)
    assert fm.count([[0], [0, 0], [0, 0, 0], [0, 0, 0, 0]]).tolist() == [4, 2, 1, 0]
    constraint = FMIndexConstraint(fm, eos_token_id=1)
    cands = constraint.candidates(constraint.initial_state(2))
    assert cands.row_ptr.tolist() == [0, 1, 2] and cands.tokens.tolist() == [0, 0]


@pytest.mark.parametrize("vocab_size", [2**16 - 1, 2**16, 70_001])
def test_wide_token_ids(vocab_size: int) -> None:
    top = vocab_size - 1
    fm = FMIndex.build([np.array([top, 5, top, 0], dtype=np.uint32), np.array([5, top])], vocab_size=vocab_size)
    assert fm.count([[top], [5, top], [top, 5, top], [top, top]]).tolist() == [3, 2, 1, 0]
    listed = fm.next_tokens(*fm.ranges([[top]]))
    assert listed.tokens.tolist() == [0, 5]


def test_constraint_repeats_states_and_cache_eviction() -> None:
    fm = FMIndex.build([[1, 2, 3, 1, 2, 4], [2, 3]], vocab_size=6)
    constraint = FMIndexConstraint(fm, eos_token_id=0, cache_min_width=1, cache_capacity=3)
    lo, hi = fm.ranges([[1], [2], [1], [], [2, 3], [5]])
    state = torch.from_numpy(np.stack((lo, hi), axis=1))
    for _ in range(3):
        cands = constraint.candidates(state)
        rows = [cands.tokens[a:b].tolist() for a, b in zip(cands.row_ptr[:-1].tolist(), cands.row_ptr[1:].tolist())]
        assert rows == [[2, 0], [3, 4, 0], [2, 0], [1, 2, 3, 4], [1, 0], []]
    assert 0 < constraint.cache_size <= 3
    empty = constraint.candidates(torch.zeros((0, 2), dtype=torch.int64))
    assert empty.row_ptr.tolist() == [0] and empty.tokens.shape == (0,) and empty.next_state.shape == (0, 2)


def test_constraint_feeds_constrained_topk() -> None:
    topk = pytest.importorskip("genir.kernels.topk")
    fm = FMIndex.build([[1, 2, 3, 1, 2, 4], [2, 3]], vocab_size=6)
    constraint = FMIndexConstraint(fm, eos_token_id=0)
    state = constraint.initial_state(2)
    logits = torch.zeros(2, 6)
    logits[:, 2] = 5.0
    best = topk.constrained_topk(logits, constraint.candidates(state), k=2, backend="torch")
    assert best.tokens[:, 0].tolist() == [2, 2]
    after = constraint.candidates(best.next_state[:, 0])
    assert after.tokens[after.row_ptr[0] : after.row_ptr[1]].tolist() == [3, 4, 0]


# ---------------------------------------------------------------- validation at the edge


@pytest.mark.parametrize(
    ("docs", "kwargs", "message"),
    [
        ([], {}, "empty corpus"),
        ([[1, -2]], {}, "document 0: token id -2 is negative"),
        ([[1], [7]], {"vocab_size": 5}, "document 1: token id 7 is >= vocab_size"),
        ([[1.5]], {}, "must be integers"),
        ([[[1, 2]]], {}, "1-D"),
        ([[1]], {"vocab_size": 0}, "vocab_size must be in"),
        ([[1]], {"vocab_size": 2**32}, "vocab_size must be in"),
        ([np.array([2**63], dtype=np.uint64)], {}, "does not fit"),
        ([[3], [2**32]], {}, "document 1: token id 4294967296 is >= vocab_size"),
        ([[1]], {"sample_rate": 0}, "sample_rate"),
    ],
)
def test_build_rejects_bad_input(docs, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        FMIndex.build(docs, **kwargs)


def test_queries_reject_bad_input() -> None:
    fm = FMIndex.build([[1, 2, 3]], vocab_size=4)
    with pytest.raises(ValueError, match="is >= vocab_size"):
        fm.count([[1, 4]])
    with pytest.raises(ValueError, match="negative"):
        fm.extend([0], [4], [-1])
    with pytest.raises(ValueError, match="2-D"):
        fm.count(np.array([1, 2]))
    with pytest.raises(ValueError, match="not within"):
        fm.next_tokens([3], [2])
    with pytest.raises(ValueError, match="not within"):
        fm.locate([0], [99], 1)
    with pytest.raises(ValueError, match="lengths"):
        fm.locate([0], [4], -1)
    with pytest.raises(ValueError, match="occurs 1 times"):
        FMIndexConstraint(fm, eos_token_id=2)
    constraint = FMIndexConstraint(fm, eos_token_id=0)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        constraint.candidates(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="range"):
        constraint.candidates(torch.tensor([[-1, -1]]))


def test_load_rejects_foreign_or_damaged_directories(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="header"):
        FMIndex.load(tmp_path)
    fm = FMIndex.build([[1, 2, 3]], vocab_size=4)
    fm.save(tmp_path)
    header = json.loads((tmp_path / "header.json").read_text())
    (tmp_path / "header.json").write_text(json.dumps({**header, "version": 99}))
    with pytest.raises(ValueError, match="not a genir.fmindex v1 header"):
        FMIndex.load(tmp_path)
    (tmp_path / "header.json").write_text(json.dumps(header))
    np.save(tmp_path / "samples.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="samples.npy: expected uint32"):
        FMIndex.load(tmp_path)
    np.save(tmp_path / "samples.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="samples.npy: cannot load"):
        FMIndex.load(tmp_path)
