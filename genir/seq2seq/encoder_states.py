"""States of a frozen encoder, computed once per (encoder weights, input) and kept on disk.

Training with a frozen encoder (:func:`genir.seq2seq.model.freeze_encoder`) reads the same encoder
states at every epoch, and every build of the same corpus views with the same encoder (docid
schemes compared side by side, settings tuned, a dev split carved differently) reads mostly the
same states again. Each input's states are stored once, addressed by the sha256 of its token ids,
in a bank per encoder (a key of its weights): ``cache/<encoder key>/<shard>/`` holds
``digests.npy`` ``[n, 16]`` uint8 (each input's address), ``offsets.npy`` ``[n + 1]`` int64 and
``states.npy`` ``[total tokens, d]`` float16 (input ``i`` is rows ``offsets[i]:offsets[i + 1]``).
A call encodes only the inputs no shard holds and writes them as one new shard. Nothing
executable is stored; a shard appears whole or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

STATES_FILE, OFFSETS_FILE, DIGESTS_FILE = "states.npy", "offsets.npy", "digests.npy"


def encoder_states(
    encoder: torch.nn.Module,
    input_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    cache: Path | None = None,
    batch_size: int = 64,
) -> list[torch.Tensor]:
    """The encoder's last hidden states for each input, ``[len(input_ids[i]), d]`` float16 each.

    Args:
        encoder: a Hugging Face encoder in eval mode (called with ``input_ids``, ``attention_mask``).
        input_ids: token ids of each input, unpadded.
        pad_token_id: the id that pads a batch (masked out, so it does not change the states).
        cache: a directory of state banks (module docstring); None computes them in memory.
        batch_size: inputs encoded together.
    Returns:
        One tensor per input; views into one ``[total tokens, d]`` array.
    """
    lengths = np.array([len(ids) for ids in input_ids], dtype=np.int64)  # [n]
    if cache is None:
        return _views(*_encode(encoder, input_ids, lengths, pad_token_id, batch_size))
    bank = cache / _encoder_key(encoder)
    digests = [hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).digest()[:16] for ids in input_ids]
    where = _bank_index(bank)  # digest -> (shard, row)
    missing = list({d: i for i, d in reversed(list(enumerate(digests))) if d not in where}.values())  # first of each
    if missing:
        states, offsets = _encode(encoder, [input_ids[i] for i in missing], lengths[missing], pad_token_id, batch_size)
        shard = _save_shard(bank, np.frombuffer(b"".join(digests[i] for i in missing), dtype=np.uint8).reshape(-1, 16),
                            states, offsets)
        where.update({digests[i]: (shard, row) for row, i in enumerate(missing)})
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # [n + 1]
    table = None
    shards: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    for i, digest in enumerate(digests):
        shard, row = where[digest]
        if shard not in shards:
            shards[shard] = (np.load(shard / STATES_FILE, mmap_mode="r"), np.load(shard / OFFSETS_FILE))
        states, shard_offsets = shards[shard]
        if table is None:
            table = np.zeros((int(offsets[-1]), states.shape[1]), dtype=np.float16)
        table[offsets[i]:offsets[i + 1]] = states[shard_offsets[row]:shard_offsets[row + 1]]
    return _views(table if table is not None else np.zeros((0, 0), dtype=np.float16), offsets)


def _views(states: np.ndarray, offsets: np.ndarray) -> list[torch.Tensor]:
    table = torch.from_numpy(states)
    return [table[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def _bank_index(bank: Path) -> dict[bytes, tuple[Path, int]]:
    """Every stored input of ``bank``: its digest -> (shard directory, row)."""
    index: dict[bytes, tuple[Path, int]] = {}
    for shard in sorted(bank.iterdir()) if bank.is_dir() else []:
        if not shard.name.startswith(".") and (shard / DIGESTS_FILE).is_file():  # "." = a shard being written
            for row, digest in enumerate(np.load(shard / DIGESTS_FILE, allow_pickle=False)):
                index.setdefault(digest.tobytes(), (shard, row))
    return index


@torch.no_grad()
def _encode(encoder: torch.nn.Module, input_ids: Sequence[Sequence[int]], lengths: np.ndarray, pad: int,
            batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # [n + 1]
    hidden = None
    device = next(encoder.parameters()).device
    # Sorted by length, so batches pad little; an input's states do not depend on its batch.
    order = np.argsort(lengths, kind="stable")
    for start in tqdm(range(0, len(order), batch_size), desc="encoding with the frozen encoder", unit="batch",
                      disable=len(order) <= 4 * batch_size):
        rows = order[start:start + batch_size]
        ids = pad_sequence([torch.tensor(input_ids[i]) for i in rows], batch_first=True, padding_value=pad)  # [b, width]
        mask = (torch.arange(ids.shape[1]) < torch.from_numpy(lengths[rows])[:, None]).long()  # [b, width]
        out = encoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state.float().cpu()  # [b, width, d]
        if hidden is None:
            hidden = np.zeros((int(offsets[-1]), out.shape[-1]), dtype=np.float16)
        for r, i in enumerate(rows):
            hidden[offsets[i]:offsets[i + 1]] = out[r, :lengths[i]].numpy()
    return (hidden if hidden is not None else np.zeros((0, 0), dtype=np.float16)), offsets


def _encoder_key(encoder: torch.nn.Module) -> str:
    """sha256 of the encoder's weights (16 hex digits)."""
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
