"""States of a frozen encoder, computed once per (encoder weights, inputs) and kept on disk.

Training with a frozen encoder (:func:`genir.seq2seq.model.freeze_encoder`) reads the same encoder
states at every epoch, and every build of the same corpus views with the same encoder (docid
schemes compared side by side, settings tuned) reads the same states again. They are computed
once and stored under a key of the encoder's weights and the token ids, as two plain arrays:
``states.npy`` ``[total tokens, d]`` float16 and ``offsets.npy`` ``[n + 1]`` int64 (example
``i`` is rows ``offsets[i]:offsets[i + 1]``). Nothing executable is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

STATES_FILE, OFFSETS_FILE = "states.npy", "offsets.npy"


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
        cache: a directory for stored states (one subdirectory per key); None computes them in memory.
        batch_size: inputs encoded together.
    Returns:
        One tensor per input; views into one ``[total tokens, d]`` array.
    """
    lengths = np.array([len(ids) for ids in input_ids], dtype=np.int64)  # [n]
    directory = cache / _key(encoder, input_ids, lengths) if cache is not None else None
    if directory is not None and (directory / OFFSETS_FILE).is_file():
        states, offsets = (np.load(directory / name, allow_pickle=False) for name in (STATES_FILE, OFFSETS_FILE))
    else:
        states, offsets = _encode(encoder, input_ids, lengths, pad_token_id, batch_size)
        if directory is not None:
            _save(directory, states, offsets)
    table = torch.from_numpy(states)
    return [table[offsets[i]:offsets[i + 1]] for i in range(len(input_ids))]


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


def _key(encoder: torch.nn.Module, input_ids: Sequence[Sequence[int]], lengths: np.ndarray) -> str:
    """sha256 of the encoder's weights and the inputs' token ids (16 hex digits)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(lengths.tobytes())
    digest.update(np.fromiter((t for ids in input_ids for t in ids), dtype=np.int64, count=int(lengths.sum())).tobytes())
    return digest.hexdigest()[:16]


def _save(directory: Path, states: np.ndarray, offsets: np.ndarray) -> None:
    """Write both arrays to a temporary sibling, then rename it into place (never half-written)."""
    from genir.atomic_files import atomic_dir

    try:
        with atomic_dir(directory) as staging:
            np.save(staging / STATES_FILE, states)
            np.save(staging / OFFSETS_FILE, offsets)
    except FileExistsError:
        if not (directory / OFFSETS_FILE).is_file():  # lost a race to an identical writer: theirs is as good
            raise
