"""The docid trie against a brute-force set of prefixes; persistence, duplicates and growth."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.kernels.constraint import Constraint
from genir.kernels.trie import DocidTrie, DocidTrieConstraint

EOS = 1
VOCAB = 8

# Docid bodies over tokens 2..7 (0 = pad, 1 = eos), 1 to 5 tokens; eos appended.
bodies = st.lists(st.lists(st.integers(2, VOCAB - 1), min_size=1, max_size=5), min_size=1, max_size=25, unique_by=tuple)


def with_eos(body_list: list[list[int]]) -> list[list[int]]:
    return [b + [EOS] for b in body_list]


def all_prefixes(seqs: list[list[int]]) -> dict[tuple[int, ...], set[int]]:
    """Brute force: every prefix of every sequence -> the set of tokens that may follow it."""
    follow: dict[tuple[int, ...], set[int]] = {}
    for seq in seqs:
        for i in range(len(seq) + 1):
            follow.setdefault(tuple(seq[:i]), set())
            if i < len(seq):
                follow[tuple(seq[:i])].add(seq[i])
    return follow


def check_against_brute_force(trie: DocidTrie, seqs: list[list[int]]) -> None:
    follow = all_prefixes(seqs)
    prefixes = list(follow)
    width = max(len(p) for p in prefixes)
    padded = torch.full((len(prefixes), max(width, 1)), -1, dtype=torch.int64)
    for i, p in enumerate(prefixes):
        padded[i, : len(p)] = torch.tensor(p, dtype=torch.int64)
    states = trie.walk(padded)
    assert (states >= 0).all(), "a prefix of a docid is missing from the trie"
    assert len(set(states[:, 0].tolist())) == len(prefixes), "two prefixes share a state"
    cands = trie.candidates(states)
    for i, p in enumerate(prefixes):
        lo, hi = int(cands.row_ptr[i]), int(cands.row_ptr[i + 1])
        tokens = cands.tokens[lo:hi].tolist()
        assert tokens == sorted(follow[p]), f"candidates of {p}"
        # Each candidate's next state is the state of the extended prefix.
        expected = [states[prefixes.index(p + (t,)), 0].item() for t in tokens]
        assert cands.next_state[lo:hi, 0].tolist() == expected
        # Stepping each candidate token gives the same state; any other token is refused.
        for tok in range(VOCAB):
            stepped = trie.step(states[i : i + 1], torch.tensor([tok]))[0, 0].item()
            want = states[prefixes.index(p + (tok,)), 0].item() if tok in follow[p] else -1
            assert stepped == want
    docids = trie.docid(states[:, 0])
    for i, p in enumerate(prefixes):
        want = seqs.index(list(p)) if list(p) in seqs else -1
        assert docids[i].item() == want
    # The docids under each prefix (beam search's step_beams keeps prefixes until they hold enough); none for no state
    assert trie.completions(states).tolist() == [sum(tuple(s[:len(p)]) == p for s in seqs) for p in prefixes]
    assert trie.completions(torch.tensor([[-1]])).tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(bodies)
def test_transitions_match_brute_force(body_list: list[list[int]]) -> None:
    seqs = with_eos(body_list)
    check_against_brute_force(DocidTrie.from_sequences(seqs, eos_token_id=EOS, vocab_size=VOCAB), seqs)


@settings(max_examples=30, deadline=None)
@given(bodies, st.sampled_from([0, VOCAB * 4, VOCAB * 4 * 8, 2**20]))
def test_dense_levels_do_not_change_transitions(body_list: list[list[int]], dense_bytes: int) -> None:
    seqs = with_eos(body_list)
    trie = DocidTrie.from_sequences(seqs, eos_token_id=EOS, vocab_size=VOCAB, dense_bytes=dense_bytes)
    check_against_brute_force(trie, seqs)


@settings(max_examples=30, deadline=None)
@given(bodies, bodies)
def test_growth_equals_building_from_all_sequences(old: list[list[int]], new: list[list[int]]) -> None:
    new = [b for b in new if b not in old]
    if not new:
        return
    grown = DocidTrie.from_sequences(with_eos(old), eos_token_id=EOS, vocab_size=VOCAB).extend(with_eos(new))
    check_against_brute_force(grown, with_eos(old + new))
    assert grown.num_docids == len(old) + len(new)


@settings(max_examples=30, deadline=None)
@given(bodies)
def test_sequences_matrix_round_trip(body_list: list[list[int]]) -> None:
    seqs = with_eos(body_list)
    matrix = DocidTrie.from_sequences(seqs, eos_token_id=EOS).sequences_matrix()
    assert [row[row >= 0].tolist() for row in matrix] == seqs


def test_save_load_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    seqs = [list(map(int, rng.integers(2, 50, rng.integers(1, 7)))) + [EOS] for _ in range(300)]
    seqs = [list(s) for s in dict.fromkeys(map(tuple, seqs))]
    trie = DocidTrie.from_sequences(seqs, eos_token_id=EOS, vocab_size=64)
    trie.save(tmp_path / "trie")
    assert sorted(p.name for p in (tmp_path / "trie").iterdir()) == ["trie.json", "trie.npz"]
    loaded = DocidTrie.load(tmp_path / "trie")
    for name in ("token", "child_ptr", "leaf_docid"):
        assert torch.equal(getattr(trie, name), getattr(loaded, name))
    assert (loaded.vocab_size, loaded.eos_token_id, loaded.num_docids) == (64, EOS, len(seqs))
    check_against_brute_force(loaded, seqs)


def test_load_rejects_foreign_files(tmp_path) -> None:
    DocidTrie.from_sequences([[2, EOS]]).save(tmp_path)
    meta = json.loads((tmp_path / "trie.json").read_text())
    (tmp_path / "trie.json").write_text(json.dumps({**meta, "format": "something else"}))
    with pytest.raises(ValueError, match="not a"):
        DocidTrie.load(tmp_path)


def test_duplicates_raise() -> None:
    with pytest.raises(ValueError, match="docids 0 and 2 have the same token sequence"):
        DocidTrie.from_sequences([[3, 4, EOS], [3, EOS], [3, 4, EOS]])
    trie = DocidTrie.from_sequences([[3, 4, EOS], [3, EOS]])
    with pytest.raises(ValueError, match="same token sequence"):
        trie.extend([[5, EOS], [3, EOS]])


@pytest.mark.parametrize(
    ("seqs", "message"),
    [
        ([[3, 4]], "does not end with eos"),
        ([[3, EOS, 4, EOS]], "contains eos"),
        ([[]], "empty token sequence"),
        ([[3, -2, EOS]], "negative token"),
        ([[3, 99, EOS]], "outside the vocabulary"),
    ],
)
def test_invalid_sequences_raise(seqs: list[list[int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DocidTrie.from_sequences(seqs, vocab_size=50)


def test_add_eos_and_numpy_input() -> None:
    trie = DocidTrie.from_sequences([np.array([3, 4]), np.array([3])], add_eos=True)
    assert trie.sequences_matrix().tolist() == [[3, 4, EOS], [3, EOS, -1]]


def test_prefix_docids_are_told_apart_by_eos() -> None:
    trie = DocidTrie.from_sequences([[3, 4, EOS], [3, EOS]])
    state = trie.walk(torch.tensor([[3]]))
    assert trie.candidates(state).tokens.tolist() == [EOS, 4]
    assert trie.docid(trie.walk(torch.tensor([[3, EOS], [3, 4]]))[:, 0]).tolist() == [1, -1]


def test_constraint_adapter() -> None:
    trie = DocidTrie.from_sequences([[3, 4, EOS], [5, EOS]])
    constraint = DocidTrieConstraint(trie)
    assert isinstance(constraint, Constraint) and constraint.state_width == 1
    state = constraint.initial_state(2)
    assert state.shape == (2, 1) and state.dtype == torch.int64
    cands = constraint.candidates(state)
    assert cands.row_ptr.tolist() == [0, 2, 4] and cands.tokens.tolist() == [3, 5, 3, 5]
    leaf = trie.walk(torch.tensor([[5, EOS]]))
    assert constraint.candidates(leaf).tokens.numel() == 0, "a complete docid has no continuation"
    assert constraint.docid(leaf).tolist() == [1]


def test_growth_at_100k_is_fast() -> None:
    rng = np.random.default_rng(0)
    digits = rng.integers(2, 12, size=(120_000, 8))
    lengths = rng.integers(5, 9, size=120_000)
    seqs = list(dict.fromkeys(tuple(d[:n]) + (EOS,) for d, n in zip(digits.tolist(), lengths)))[:101_000]
    trie = DocidTrie.from_sequences(seqs[:100_000])
    start = time.perf_counter()
    grown = trie.extend(seqs[100_000:])
    elapsed = time.perf_counter() - start
    assert grown.num_docids == 101_000
    assert grown.docid(grown.walk(torch.tensor([list(seqs[100_500])]))[:, 0]).tolist() == [100_500]
    # Generous bound: a rebuild is a few vectorized passes (about 0.1 s on one core).
    assert elapsed < 10.0
