"""States of a frozen encoder, computed once per (encoder weights, input) and kept on disk.

Training with a frozen encoder (:func:`genir.seq2seq.model.freeze_encoder`) reads the same encoder
states at every epoch, and every build of the same corpus views with the same encoder (docid
schemes compared side by side, settings tuned, a dev split carved differently) reads mostly the
same states again. Each input's states are stored once, addressed by the sha256 of its token ids,
in a bank per encoder (a key of its weights; the format is :mod:`genir.encoding.row_bank`'s), ``[tokens, d]``
float16 per input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from genir.encoding.row_bank import banked_rows, weights_key


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
    digests = [hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).digest()[:16] for ids in input_ids]
    return _views(*banked_rows(cache / weights_key(encoder), digests, lengths, np.float16,
                               lambda missing: _encode(encoder, [input_ids[i] for i in missing], lengths[missing],
                                                       pad_token_id, batch_size)))


def _views(states: np.ndarray, offsets: np.ndarray) -> list[torch.Tensor]:
    table = torch.from_numpy(states)
    return [table[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


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
