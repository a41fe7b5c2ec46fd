"""The constrained top-k step against a brute-force reference, the Triton kernel against torch,
and the rule by which ``"auto"`` picks between them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from conftest import run_under_triton_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

import genir.kernels.topk as topk_module
from genir.kernels.constraint import Candidates
from genir.kernels.topk import (
    TRITON_MAX_K,
    TRITON_MAX_WORK,
    TopK,
    constrained_topk,
    ranking_key,
    topk_torch,
    triton_available,
    use_triton,
)

torch.set_num_threads(1)


def random_case(
    seed: int, n_rows: int, vocab: int, width: int, max_degree: int, dtype: torch.dtype, tie_levels: int | None
) -> tuple[torch.Tensor, Candidates]:
    """Random logits (rounded to ``tie_levels`` values to force ties) and random distinct candidates."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_rows, vocab, generator=gen) * 3
    if tie_levels is not None:
        logits = logits.round() % tie_levels
    logits = logits.to(dtype)
    degree = torch.randint(0, max_degree + 1, (n_rows,), generator=gen)
    per_row = [torch.randperm(vocab, generator=gen)[:d] for d in degree.tolist()]
    tokens = torch.cat(per_row + [torch.zeros(0, dtype=torch.int64)])
    row_ptr = torch.zeros(n_rows + 1, dtype=torch.int64)
    row_ptr[1:] = degree.cumsum(0)
    next_state = torch.randint(0, 10**6, (tokens.shape[0], width), generator=gen)
    return logits, Candidates(row_ptr=row_ptr, tokens=tokens, next_state=next_state)


def brute_force(logits: torch.Tensor, cands: Candidates, k: int) -> list[list[tuple[int, float, list[int]]]]:
    """Mask + log_softmax + full sort by (logit desc, token asc), row by row."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    rows = []
    for i in range(logits.shape[0]):
        lo, hi = int(cands.row_ptr[i]), int(cands.row_ptr[i + 1])
        mask = torch.full((logits.shape[1],), float("-inf"))
        mask[cands.tokens[lo:hi]] = 0.0
        masked = log_probs[i] + mask
        allowed = torch.nonzero(masked > float("-inf")).squeeze(1).tolist()
        state_of = {int(t): cands.next_state[lo + j].tolist() for j, t in enumerate(cands.tokens[lo:hi])}
        order = sorted(allowed, key=lambda t: (-float(logits[i, t].float()), t))[:k]
        rows.append([(t, float(masked[t]), state_of[t]) for t in order])
    return rows


def assert_matches_reference(
    logits: torch.Tensor, cands: Candidates, k: int, topk: Callable[[torch.Tensor, Candidates, int], TopK] = topk_torch
) -> None:
    result = topk(logits, cands, k)
    width = cands.next_state.shape[1]
    assert result.tokens.shape == (logits.shape[0], k) and result.tokens.dtype == torch.int64
    assert result.log_probs.dtype == torch.float32 and result.valid.dtype == torch.bool
    assert result.next_state.shape == (logits.shape[0], k, width)
    for i, expected in enumerate(brute_force(logits, cands, k)):
        n = len(expected)
        assert result.valid[i].tolist() == [True] * n + [False] * (k - n)
        assert result.tokens[i, :n].tolist() == [t for t, _, _ in expected]
        expected_lp = torch.tensor([lp for _, lp, _ in expected])
        torch.testing.assert_close(result.log_probs[i, :n], expected_lp, atol=1e-5, rtol=0)
        assert result.next_state[i, :n].tolist() == [s for _, _, s in expected]
        assert (result.tokens[i, n:] == -1).all() and (result.log_probs[i, n:] == float("-inf")).all()
        assert (result.next_state[i, n:] == -1).all()


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_rows=st.integers(1, 6),
    vocab=st.integers(2, 40),
    width=st.integers(0, 3),
    k=st.integers(1, 8),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    tie_levels=st.sampled_from([None, 2, 4]),
)
def test_torch_matches_brute_force(
    seed: int, n_rows: int, vocab: int, width: int, k: int, dtype: torch.dtype, tie_levels: int | None
) -> None:
    logits, cands = random_case(seed, n_rows, vocab, width, vocab, dtype, tie_levels)
    assert_matches_reference(logits, cands, k)


@pytest.mark.parametrize(
    ("seed", "k", "dtype", "tie_levels"),
    [
        (0, 128, torch.float32, None),
        (1, 128, torch.bfloat16, 4),
        (2, 300, torch.float32, 2),
        (3, 300, torch.float16, None),
    ],
)
def test_large_k_matches_brute_force(seed: int, k: int, dtype: torch.dtype, tie_levels: int | None) -> None:
    """k above TRITON_MAX_K, through ``"auto"`` (the torch path here, and on CUDA)."""
    logits, cands = random_case(seed, n_rows=8, vocab=700, width=2, max_degree=650, dtype=dtype, tie_levels=tie_levels)
    degree = cands.row_ptr[1:] - cands.row_ptr[:-1]
    assert degree.min() < k < degree.max(), "the case should have rows below and above k candidates"
    assert_matches_reference(logits, cands, k, topk=constrained_topk)


def test_auto_uses_triton_only_on_cuda_for_small_k_and_narrow_rows() -> None:
    cuda = torch.device("cuda")
    assert use_triton(cuda, 1, 0) and use_triton(cuda, 20, 300), "beam search's default k = 2 * 10 beams"
    assert use_triton(cuda, 20, 2000 - 1), "measured 2.5x torch at k = 20 with up to 2,000 candidates per row"
    assert use_triton(cuda, TRITON_MAX_K, TRITON_MAX_WORK // 64 - 1)
    assert not use_triton(torch.device("cpu"), 20, 300)
    assert not use_triton(cuda, TRITON_MAX_K + 1, 10)
    assert not use_triton(cuda, 128, 10) and not use_triton(cuda, 300, 10), "measured to hang on an H200"
    assert not use_triton(cuda, 40, 2000), "measured 0.91x torch"
    assert not use_triton(cuda, 20, TRITON_MAX_WORK // 32)


def test_auto_reads_the_widest_row_not_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many candidates in all make no row wide; one wide row sends the call to torch."""
    monkeypatch.setattr(topk_module, "_triton_kernel_imports", lambda: True)
    on_cuda = SimpleNamespace(device=torch.device("cuda"))  # only the device of the logits is read

    def cands_of(degrees: list[int]) -> Candidates:
        row_ptr = torch.tensor([0] + degrees).cumsum(0)
        total = int(row_ptr[-1])
        return Candidates(row_ptr, torch.zeros(total, dtype=torch.int64), torch.zeros(total, 1, dtype=torch.int64))

    narrow = cands_of([TRITON_MAX_WORK // 32 - 1] * 3)
    wide = cands_of([5, TRITON_MAX_WORK // 32, 5])
    assert topk_module._auto_uses_triton(on_cuda, narrow, 20)
    assert not topk_module._auto_uses_triton(on_cuda, wide, 20)
    assert not topk_module._auto_uses_triton(on_cuda, cands_of([3, 4]), TRITON_MAX_K + 1)


@pytest.mark.skipif(not torch.cuda.is_available() or not triton_available(), reason="needs CUDA and triton")
@pytest.mark.parametrize("k", [20, TRITON_MAX_K, 128, 300])
def test_auto_on_cuda_equals_torch(k: int) -> None:
    """On a GPU, "auto" finishes at every k (the kernel up to TRITON_MAX_K, torch above)."""
    logits, cands = random_case(k, n_rows=150, vocab=32128, width=1, max_degree=900, dtype=torch.float32, tie_levels=2)
    logits, cands = logits.cuda(), Candidates(*(t.cuda() for t in (cands.row_ptr, cands.tokens, cands.next_state)))
    auto = constrained_topk(logits, cands, k)
    ref = constrained_topk(logits, cands, k, backend="torch")
    assert torch.equal(auto.tokens, ref.tokens) and torch.equal(auto.next_state, ref.next_state)
    assert torch.equal(auto.valid, ref.valid)
    torch.testing.assert_close(auto.log_probs, ref.log_probs, atol=1e-5, rtol=0)


def test_ties_go_to_the_lower_token() -> None:
    logits = torch.tensor([[0.0, 2.0, 2.0, 2.0, 1.0, 2.0]])
    cands = Candidates(torch.tensor([0, 5]), torch.tensor([5, 3, 4, 1, 2]), torch.arange(5).unsqueeze(1))
    result = constrained_topk(logits, cands, 3)
    assert result.tokens.tolist() == [[1, 2, 3]]
    assert result.next_state[0, :, 0].tolist() == [3, 4, 1]


def test_log_probs_use_the_full_softmax() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    cands = Candidates(torch.tensor([0, 2]), torch.tensor([0, 1]), torch.zeros(2, 1, dtype=torch.int64))
    result = constrained_topk(logits, cands, 2)
    torch.testing.assert_close(result.log_probs[0], torch.log_softmax(logits, -1)[0, [1, 0]])


def test_rows_without_enough_candidates() -> None:
    logits, cands = random_case(3, n_rows=4, vocab=30, width=2, max_degree=3, dtype=torch.float32, tie_levels=None)
    result = constrained_topk(logits, cands, 6)
    degree = (cands.row_ptr[1:] - cands.row_ptr[:-1]).tolist()
    assert result.valid.sum(1).tolist() == degree
    no_ints = torch.zeros(0, dtype=torch.int64)
    empty = Candidates(row_ptr=torch.zeros(3, dtype=torch.int64), tokens=no_ints, next_state=no_ints.view(0, 1))
    none = constrained_topk(torch.randn(2, 5), empty, 2)
    assert not none.valid.any() and (none.tokens == -1).all() and none.next_state.shape == (2, 2, 1)


def test_ranking_key_orders_like_the_floats() -> None:
    values = torch.tensor([float("-inf"), -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, float("inf")])
    keys = ranking_key(values, torch.zeros(8, dtype=torch.int64))
    assert keys[:3].tolist() == sorted(keys[:3].tolist()) and keys[3] == keys[4]
    assert torch.all(keys[4:-1] < keys[5:])
    tied = ranking_key(torch.tensor([1.0, 1.0]), torch.tensor([7, 3]))
    assert tied[1] > tied[0], "equal logits: the lower token ranks higher"


def test_unknown_backend_raises() -> None:
    logits, cands = random_case(0, 2, 5, 1, 3, torch.float32, None)
    with pytest.raises(ValueError, match="unknown top-k backend"):
        constrained_topk(logits, cands, 2, backend="cuda")  # type: ignore[arg-type]


def test_works_without_triton() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` fail, as on a CPU install without it
        import torch
        from genir.kernels.constraint import Candidates
        from genir.kernels.topk import constrained_topk, triton_available
        assert not triton_available()
        cands = Candidates(torch.tensor([0, 2]), torch.tensor([1, 3]), torch.zeros(2, 1, dtype=torch.int64))
        assert constrained_topk(torch.randn(1, 5), cands, 2).tokens.shape == (1, 2)
        try:
            constrained_topk(torch.randn(1, 5), cands, 2, backend="triton")
        except ImportError:
            print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ---------------------------------------------------------------- Triton under the interpreter

# (seed, rows, vocab, state width, max candidates per row, k, dtype, tie levels): shapes that
# cover several vocabulary blocks (1024), several candidate blocks (64), ties, rows with fewer
# than k candidates and empty rows.
TRITON_CASES = [
    (0, 4, 50, 1, 10, 3, "float32", None),
    (1, 5, 300, 2, 150, 7, "bfloat16", 3),
    (2, 3, 2500, 1, 400, 20, "float16", None),
    (3, 6, 40, 0, 5, 8, "float32", 2),
    (4, 3, 1100, 2, 200, 16, "float32", 5),
    (5, 2, 20, 1, 0, 4, "float32", None),
]

TRITON_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    assert os.environ["TRITON_INTERPRET"] == "1"
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_topk import TRITON_CASES, random_case
    from genir.kernels.topk import constrained_topk, topk_torch

    report = []
    for seed, n_rows, vocab, width, max_degree, k, dtype, ties in TRITON_CASES:
        logits, cands = random_case(seed, n_rows, vocab, width, max_degree, getattr(torch, dtype), ties)
        ref = topk_torch(logits, cands, k)
        out = constrained_topk(logits, cands, k, backend="triton")
        finite = ref.valid
        diff = (ref.log_probs[finite] - out.log_probs[finite]).abs()
        report.append({
            "case": seed,
            "tokens": torch.equal(ref.tokens, out.tokens),
            "states": torch.equal(ref.next_state, out.next_state),
            "valid": torch.equal(ref.valid, out.valid),
            "empty_log_probs": bool((out.log_probs[~finite] == float("-inf")).all()),
            "max_log_prob_diff": float(diff.max()) if diff.numel() else 0.0,
        })
    print(json.dumps(report))
    """
)


@pytest.mark.skipif(not triton_available(), reason="triton is not installed (pip install genir[triton])")
def test_triton_kernel_matches_torch_under_interpreter() -> None:
    report = run_under_triton_interpreter(TRITON_SCRIPT)
    assert len(report) == len(TRITON_CASES)
    for case in report:
        assert case["tokens"] and case["states"] and case["valid"] and case["empty_log_probs"], case
        assert case["max_log_prob_diff"] < 1e-5, case
