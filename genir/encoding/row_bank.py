"""Rows computed once per input and kept on disk, addressed by a digest of the input.

A bank is a directory per producer (a model's weights, :func:`weights_key`, and whatever else
changes its output). Each shard ``bank/<name>/`` holds ``digests.npy`` ``[n, 16]`` uint8 (each
input's address), ``offsets.npy`` ``[n + 1]`` int64 and ``states.npy`` ``[total rows, d]`` (input ``i``
is rows ``offsets[i]:offsets[i + 1]``). A call computes only the inputs no shard holds and writes
them as one new shard. Nothing executable is stored (``allow_pickle=False``); a shard appears
whole or not at all (written beside and renamed). Users: a frozen encoder's states
(:mod:`genir.seq2seq.encoder_states`, many rows per input) and document embeddings
(:meth:`genir.encoding.encoder.TextEncoder.encode` with ``cache``, one row per input).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

STATES_FILE, OFFSETS_FILE, DIGESTS_FILE = "states.npy", "offsets.npy", "digests.npy"


def banked_rows(bank: Path, digests: Sequence[bytes], lengths: np.ndarray, dtype: type,
                compute: Callable[[list[int]], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of each input from ``bank`` (module docstring), computing and storing only the missing ones.

    Args:
        bank: the directory of one producer's shards (e.g. one encoder's weights).
        digests: each input's 16-byte address.
        lengths: ``[n]`` int64 rows per input.
        dtype: the table's dtype (as stored).
        compute: positions of the missing inputs (first occurrence of each digest) -> their
            ``[their total rows, d]`` table and ``[m + 1]`` offsets.
    Returns:
        ``[lengths.sum(), d]`` table and ``[n + 1]`` int64 offsets (input ``i`` is rows ``offsets[i]:offsets[i + 1]``).
    """
    where = _bank_index(bank)  # digest -> (shard, row)
    missing = list({d: i for i, d in reversed(list(enumerate(digests))) if d not in where}.values())  # first of each
    if missing:
        rows, shard_offsets = compute(missing)
        shard = _save_shard(bank, np.frombuffer(b"".join(digests[i] for i in missing), dtype=np.uint8).reshape(-1, 16),
                            rows.astype(dtype, copy=False), shard_offsets)
        where.update({digests[i]: (shard, row) for row, i in enumerate(missing)})
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # [n + 1]
    table = None
    shards: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    for i, digest in enumerate(digests):
        shard, row = where[digest]
        if shard not in shards:
            shards[shard] = (np.load(shard / STATES_FILE, mmap_mode="r", allow_pickle=False),
                             np.load(shard / OFFSETS_FILE, allow_pickle=False))
        states, shard_offsets = shards[shard]
        if table is None:
            table = np.zeros((int(offsets[-1]), states.shape[1]), dtype=dtype)
        table[offsets[i]:offsets[i + 1]] = states[shard_offsets[row]:shard_offsets[row + 1]]
    return (table if table is not None else np.zeros((0, 0), dtype=dtype)), offsets


def _bank_index(bank: Path) -> dict[bytes, tuple[Path, int]]:
    """Every stored input of ``bank``: its digest -> (shard directory, row)."""
    index: dict[bytes, tuple[Path, int]] = {}
    for shard in sorted(bank.iterdir()) if bank.is_dir() else []:
        if not shard.name.startswith(".") and (shard / DIGESTS_FILE).is_file():  # "." = a shard being written
            for row, digest in enumerate(np.load(shard / DIGESTS_FILE, allow_pickle=False)):
                index.setdefault(digest.tobytes(), (shard, row))
    return index


def weights_key(encoder: torch.nn.Module) -> str:
    """sha256 of a module's weights (16 hex digits): the name of its bank."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _save_shard(bank: Path, digests: np.ndarray, states: np.ndarray, offsets: np.ndarray) -> Path:
    """Write one shard (named by its digests) through a temporary sibling renamed into place."""
    from genir.atomic_files import atomic_dir

    directory = bank / hashlib.sha256(digests.tobytes()).hexdigest()[:16]
    try:
        with atomic_dir(directory) as staging:
            np.save(staging / STATES_FILE, states)
            np.save(staging / OFFSETS_FILE, offsets)
            np.save(staging / DIGESTS_FILE, digests)
    except FileExistsError:
        if not (directory / DIGESTS_FILE).is_file():  # lost a race to an identical writer: theirs is as good
            raise
    return directory
