"""Benchmark (b): one constrained decoding step with the vectorized docid trie vs Hugging Face's
``prefix_allowed_tokens_fn`` over a Python dict trie.

Docids are semantic-style: random strings of 4-8 digit tokens (10 digit token ids, 3..12) plus
eos (1), in a 32,128-token vocabulary (T5's). Every beam sits at a real trie node: a prefix of
``position`` tokens of a random docid. Logits are random float32 ``[queries * beams, V]``.

Timed, per step, for the same beams (medians over ``--repeats``):

* ``trie_candidates``: ``DocidTrieConstraint.candidates(state)``.
* ``trie_step``: ``candidates`` + ``constrained_topk(logits, candidates, k=2*beams)`` on the torch
  backend: the top-k allowed tokens of every beam with full-softmax log-probs and next states.
* ``trie_select``: ``candidates`` + ``select_torch``: the same step without the log-probs, i.e.
  without the full-vocabulary logsumexp that every beam search pays, constrained or not
  (HF's ``log_softmax``): the work the constraint itself adds.
* ``hf_callbacks``: the ``prefix_allowed_tokens_fn(batch_id, sent)`` calls alone, one per beam;
  the function walks a nested-dict trie from the root along ``sent[1:]`` and returns the keys
  (the usual GENRE/DSI implementation).
* ``hf_processor``: ``PrefixConstrainedLogitsProcessor.__call__`` (those calls, plus the
  ``[N, V]`` mask it builds and applies), what ``generate`` runs per step for the constraint.
* ``hf_step``: ``log_softmax`` + ``hf_processor`` + ``topk(2*beams)`` over each query's
  ``beams * V`` scores: the same result as ``trie_step``, the way ``generate`` computes it.

Usage: ``python benchmarks/bench_trie.py [--docids 10000 100000] [--queries 32] [--beams 10]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from genir.kernels.topk import constrained_topk, select_torch
from genir.kernels.trie import DocidTrie, DocidTrieConstraint

EOS = 1
START = 0
DIGIT_TOKENS = np.arange(3, 13)
T5_VOCAB = 32128


def semantic_docids(n: int, seed: int, min_len: int = 4, max_len: int = 8) -> list[tuple[int, ...]]:
    """``n`` distinct digit-token strings of ``min_len..max_len`` tokens, each ending with eos."""
    rng = np.random.default_rng(seed)
    found: dict[tuple[int, ...], None] = {}
    while len(found) < n:
        digits = DIGIT_TOKENS[rng.integers(0, 10, size=(n, max_len))]
        lengths = rng.integers(min_len, max_len + 1, size=n)
        for row, length in zip(digits.tolist(), lengths.tolist()):
            found[tuple(row[:length]) + (EOS,)] = None
    return list(found)[:n]


def dict_trie(seqs: list[tuple[int, ...]]) -> dict:
    root: dict = {}
    for seq in seqs:
        node = root
        for tok in seq:
            node = node.setdefault(tok, {})
    return root


def prefix_allowed_tokens_fn(root: dict) -> Callable[[int, torch.Tensor], list[int]]:
    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        node = root
        for tok in sent.tolist()[1:]:
            node = node[tok]
        return list(node)

    return allowed


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_one(n_docids: int, position: int, args: argparse.Namespace) -> dict:
    all_seqs = semantic_docids(n_docids + n_docids // 100, args.seed)
    seqs, new = all_seqs[:n_docids], all_seqs[n_docids:]
    start = time.perf_counter()
    trie = DocidTrie.from_sequences(seqs, eos_token_id=EOS, vocab_size=T5_VOCAB)
    build_s = time.perf_counter() - start
    constraint = DocidTrieConstraint(trie)
    root = dict_trie(seqs)

    rng = np.random.default_rng(args.seed + position)
    n_beams = args.queries * args.beams
    long_enough = [s for s in seqs if len(s) > position]
    picks = rng.integers(0, len(long_enough), size=n_beams)
    prefixes = torch.tensor([long_enough[i][:position] for i in picks], dtype=torch.int64).reshape(n_beams, position)
    state = trie.walk(prefixes)
    input_ids = torch.cat([torch.full((n_beams, 1), START), prefixes], dim=1)
    logits = torch.randn(n_beams, T5_VOCAB, generator=torch.Generator().manual_seed(args.seed))
    k = 2 * args.beams

    fn = prefix_allowed_tokens_fn(root)
    processor = PrefixConstrainedLogitsProcessor(fn, args.beams)
    scores = torch.log_softmax(logits, dim=-1)

    def hf_callbacks() -> None:
        for row in range(n_beams):
            fn(row // args.beams, input_ids[row])

    def hf_step() -> None:
        processed = processor(input_ids, torch.log_softmax(logits, dim=-1))
        processed.view(args.queries, -1).topk(k, dim=1)

    def trie_step() -> None:
        constrained_topk(logits, constraint.candidates(state), k, backend="torch")

    # Same answer: trie_step's best token per beam is the processor's masked argmax.
    ours = constrained_topk(logits, constraint.candidates(state), k, backend="torch")
    assert torch.equal(ours.tokens[:, 0], processor(input_ids, scores).argmax(dim=-1))

    times = {
        "trie_candidates_ms": median_ms(lambda: constraint.candidates(state), args.repeats),
        "trie_step_ms": median_ms(trie_step, args.repeats),
        "trie_select_ms": median_ms(lambda: select_torch(logits, constraint.candidates(state), k), args.repeats),
        "hf_callbacks_ms": median_ms(hf_callbacks, args.repeats),
        "hf_processor_ms": median_ms(lambda: processor(input_ids, scores), args.repeats),
        "hf_step_ms": median_ms(hf_step, args.repeats),
    }
    start = time.perf_counter()
    trie.extend(new)
    extend_s = time.perf_counter() - start
    return {
        "docids": n_docids,
        "position": position,
        "beams_total": n_beams,
        "trie_nodes": trie.num_nodes,
        "build_s": build_s,
        "extend_1pct_s": extend_s,
        **times,
        "speedup_vs_processor": times["hf_processor_ms"] / times["trie_step_ms"],
        "speedup_vs_hf_step": times["hf_step_ms"] / times["trie_step_ms"],
        "speedup_constraint_only": times["hf_processor_ms"] / times["trie_select_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docids", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--positions", type=int, nargs="+", default=[1, 3, 5], help="tokens already decoded")
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_trie.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = [bench_one(n, p, args) for n in args.docids for p in args.positions]
    header = (
        "| docids | pos | trie cand (ms) | trie select (ms) | trie step (ms) | HF callbacks (ms) "
        "| HF processor (ms) | HF step (ms) | processor / trie step | HF step / trie step "
        "| processor / trie select |"
    )
    print(
        f"{args.queries} queries x {args.beams} beams, V={T5_VOCAB}, torch {torch.__version__}, "
        f"{args.threads} thread(s), medians of {args.repeats}"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        print(
            f"| {r['docids']:,} | {r['position']} | {r['trie_candidates_ms']:.3f} | {r['trie_select_ms']:.3f} "
            f"| {r['trie_step_ms']:.2f} | {r['hf_callbacks_ms']:.2f} | {r['hf_processor_ms']:.2f} "
            f"| {r['hf_step_ms']:.2f} | {r['speedup_vs_processor']:.1f}x | {r['speedup_vs_hf_step']:.1f}x "
            f"| {r['speedup_constraint_only']:.0f}x |"
        )
    for n in args.docids:
        r = next(r for r in rows if r["docids"] == n)
        print(f"{n:,} docids: build {r['build_s']:.2f} s, extend by 1% (rebuild) {r['extend_1pct_s']:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.processor() or platform.machine()}
    config = {k: str(v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"config": config, "env": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
