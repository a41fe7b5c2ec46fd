"""Benchmark (c): the constraint's share of a decoding step, and (on a GPU) fused vs unfused top-k.

CPU part: a t5-small-sized model (config from ``--config``, default
``/work/shared/data/t5-small-tokenizer/config.json``; random weights) decodes ``queries x beams``
beams over a ``--source-len``-token encoder output, with a KV cache holding ``position`` decoded
tokens. Per step we time, in turn within each of ``--repeats`` repeats (medians reported):

* ``decoder``: one decoder forward of one token per beam on the cache, LM head included
  (the cache is cropped back after each timed call, so every repeat sees the same length);
* ``constraint``: ``DocidTrieConstraint.candidates`` + ``constrained_topk(k = 2 * beams)`` on the
  torch backend over that step's logits, for beams sitting at ``position``-token prefixes of
  semantic-style docids (4-8 digit tokens; ``--docids`` of them).

GPU part (only when ``torch.cuda.is_available()`` and ``k = 2 * beams <= TRITON_MAX_K``, the
largest ``k`` the kernel is used at): the constrained top-k step on CUDA logits with the fused
Triton kernel vs the unfused torch ops (``backend="torch"``), same candidates.

Usage: ``python benchmarks/bench_decode_share.py [--queries 10] [--beams 10] [--positions 1 4 7]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import T5Config, T5ForConditionalGeneration

from genir.kernels.topk import TRITON_MAX_K, constrained_topk, triton_available
from genir.kernels.trie import DocidTrie, DocidTrieConstraint

sys.path.insert(0, str(Path(__file__).parent))
from bench_trie import EOS, semantic_docids  # noqa: E402

DEFAULT_CONFIG = Path("/work/shared/data/t5-small-tokenizer/config.json")


def median_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def interleaved_medians_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median time of each function, timed in turn within every repeat so that a change of
    machine load during the run weighs on all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) * 1e3 for bucket in times]


def beam_states(trie: DocidTrie, seqs: list[tuple[int, ...]], n: int, position: int, seed: int) -> torch.Tensor:
    """``[n, 1]`` int64 trie states of random ``position``-token docid prefixes."""
    rng = np.random.default_rng(seed)
    long_enough = [s for s in seqs if len(s) > position]
    picks = rng.integers(0, len(long_enough), size=n)
    prefixes = torch.tensor([long_enough[i][:position] for i in picks], dtype=torch.int64).reshape(n, position)
    return trie.walk(prefixes)


@torch.no_grad()
def cpu_share(args: argparse.Namespace, constraint: DocidTrieConstraint, seqs: list[tuple[int, ...]]) -> list[dict]:
    config = T5Config.from_json_file(str(args.config))
    torch.manual_seed(args.seed)
    model = T5ForConditionalGeneration(config).eval()
    n_rows = args.queries * args.beams
    source = torch.randint(2, config.vocab_size, (args.queries, args.source_len))
    encoder_outputs = model.get_encoder()(input_ids=source, return_dict=True)
    encoder_outputs["last_hidden_state"] = encoder_outputs.last_hidden_state.repeat_interleave(args.beams, dim=0)
    mask = torch.ones(n_rows, args.source_len, dtype=torch.int64)
    k = 2 * args.beams
    rows = []
    for position in args.positions:
        prefix = torch.randint(2, config.vocab_size, (n_rows, position))
        decoder_in = torch.cat([torch.full((n_rows, 1), config.decoder_start_token_id), prefix], dim=1)
        cache = model(
            encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=decoder_in[:, :-1], use_cache=True
        ).past_key_values
        step_input = decoder_in[:, -1:]

        def decoder_step() -> torch.Tensor:
            logits = model(
                encoder_outputs=encoder_outputs,
                attention_mask=mask,
                decoder_input_ids=step_input,
                past_key_values=cache,
                use_cache=True,
            ).logits[:, -1, :]
            cache.crop(-1)
            return logits

        logits = decoder_step()
        state = beam_states(constraint.trie, seqs, n_rows, position, args.seed + position)

        def constraint_step() -> None:
            constrained_topk(logits, constraint.candidates(state), k, backend="torch")

        decoder_ms, constraint_ms = interleaved_medians_ms([decoder_step, constraint_step], args.repeats)
        rows.append(
            {
                "position": position,
                "cache_len": int(cache.get_seq_length()),
                "decoder_ms": decoder_ms,
                "constraint_ms": constraint_ms,
                "share": constraint_ms / decoder_ms,
            }
        )
    return rows


def gpu_fused_vs_unfused(
    args: argparse.Namespace, constraint: DocidTrieConstraint, seqs: list[tuple[int, ...]]
) -> list[dict]:
    device = torch.device("cuda")
    gpu_constraint = DocidTrieConstraint(constraint.trie, device=device)
    rows = []
    for n_rows in (args.queries * args.beams, 32 * args.beams):
        for dtype in (torch.float32, torch.bfloat16):
            logits = torch.randn(n_rows, constraint.trie.vocab_size, device=device).to(dtype)
            state = beam_states(constraint.trie, seqs, n_rows, args.positions[0], args.seed).to(device)
            cands = gpu_constraint.candidates(state)
            k = 2 * args.beams
            fused = constrained_topk(logits, cands, k, backend="triton")
            unfused = constrained_topk(logits, cands, k, backend="torch")
            assert torch.equal(fused.tokens, unfused.tokens)
            sync = torch.cuda.synchronize
            triton_ms = median_ms(lambda: constrained_topk(logits, cands, k, backend="triton"), args.repeats, sync)
            torch_ms = median_ms(lambda: constrained_topk(logits, cands, k, backend="torch"), args.repeats, sync)
            rows.append(
                {
                    "rows": n_rows,
                    "dtype": str(dtype).removeprefix("torch."),
                    "triton_ms": triton_ms,
                    "torch_ms": torch_ms,
                    "speedup": torch_ms / triton_ms,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a t5-small config.json")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--positions", type=int, nargs="+", default=[1, 4, 7], help="tokens already in the cache")
    parser.add_argument("--source-len", type=int, default=64)
    parser.add_argument("--docids", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_decode_share.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    seqs = semantic_docids(args.docids, args.seed)
    vocab = T5Config.from_json_file(str(args.config)).vocab_size if args.config.exists() else 32128
    constraint = DocidTrieConstraint(DocidTrie.from_sequences(seqs, eos_token_id=EOS, vocab_size=vocab))
    result: dict = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "env": {
            "torch": torch.__version__,
            "threads": args.threads,
            "machine": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
    }

    if args.config.exists():
        rows = cpu_share(args, constraint, seqs)
        result["cpu"] = rows
        print(
            f"CPU: t5-small decoder (random weights), {args.queries} queries x {args.beams} beams, "
            f"source {args.source_len} tokens, {args.docids:,} docids, {args.threads} thread(s), "
            f"medians of {args.repeats}"
        )
        print("| position | cache len | decoder forward (ms) | candidates + top-k (ms) | share |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['position']} | {r['cache_len']} | {r['decoder_ms']:.1f} | {r['constraint_ms']:.2f} "
                f"| {100 * r['share']:.1f}% |"
            )
    else:
        print(f"CPU: skipped, {args.config} not found (pass --config PATH to a t5-small config.json)")

    k = 2 * args.beams
    if torch.cuda.is_available() and triton_available() and k <= TRITON_MAX_K:
        rows = gpu_fused_vs_unfused(args, constraint, seqs)
        result["gpu"] = rows
        print(f"GPU ({torch.cuda.get_device_name()}): constrained top-k, fused Triton vs unfused torch")
        print("| rows | logits dtype | Triton (ms) | torch (ms) | speedup |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['rows']} | {r['dtype']} | {r['triton_ms']:.3f} | {r['torch_ms']:.3f} | {r['speedup']:.1f}x |")
    elif not torch.cuda.is_available():
        print("GPU: no GPU: skipped")
    elif not triton_available():
        print("GPU: triton not installed: skipped")
    else:
        # The kernel's merge grows with k squared; at k >= 128 it did not finish (see topk.py).
        print(f"GPU: k = {k} > TRITON_MAX_K = {TRITON_MAX_K}, where the kernel is not used: skipped")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
