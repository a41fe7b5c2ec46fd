"""Searching a DSI model: queries in, (document id, score) lists out. The one search path of ``dsi``,
used by a loaded index (:class:`genir.dsi.searcher.DSISearcher`) and by the dev evaluation that
chooses a checkpoint while training (:func:`genir.dsi.dev.dev_evaluator`).

* atomic docids with ``atomic_search`` ``first`` or ``exact``: :func:`genir.kernels.single_token.single_token_topk`
  (one or two decoder steps, exact);
* otherwise constrained beam search over the docid trie with ``max(k, beams)`` beams, scored by
  ``score`` (``logit``: summed raw logits, no length penalty; ``logprob``: ``generate``'s score).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.devices import resolve_device
from genir.dsi.config import DSIConfig, score_setting
from genir.dsi.docids import AtomicDocids, DocidScheme
from genir.errors import GenirError
from genir.kernels.beam_search import beam_search
from genir.kernels.single_token import single_token_topk
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.seq2seq.dense_start import is_dense_start
from genir.seq2seq.vocab import DECODER_START, EOS, FIRST_TOKEN

QUERY_BATCH = 16  # queries decoded together: beams x batch rows share one decoder forward
GPU_QUERY_BATCH = 256  # the same on a GPU, where a step's cost barely grows with its rows

Ranking = list[tuple[str, float]]


class DocidDecoder:
    """A DSI model with its tokenizer, docid scheme and trie, ready to search.

    Args:
        model: the seq2seq model (eval mode is set for each search, and restored after).
        tokenizer: the encoder's tokenizer.
        scheme: the docid scheme; ``trie`` holds its live documents' sequences (trie row ``i`` is
            the ``i``-th of :meth:`~genir.dsi.docids.DocidScheme.sequences`).
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, scheme: DocidScheme, trie: DocidTrie):
        self.model, self.tokenizer, self.scheme, self.trie = model, tokenizer, scheme, trie
        self.docids = list(scheme.sequences())  # trie row -> document id (live documents)
        self.position_ids = scheme.position_ids()  # atomic row (token - 2) -> document id, deleted included
        self.deleted_rows = torch.tensor(scheme.deleted_positions(), dtype=torch.int64)
        self.constraint = DocidTrieConstraint(trie, next(model.parameters()).device)

    def to(self, device: str | torch.device | None) -> DocidDecoder:
        target = resolve_device(device)
        self.model.to(target)
        self.constraint = DocidTrieConstraint(self.trie, target)
        return self

    @torch.inference_mode()
    def search(self, queries: Sequence[str], k: int, config: DSIConfig) -> list[Ranking]:
        """The ``k`` best documents of each query (fewer if fewer are live), best first, searched as
        ``config`` says (``atomic_search``, ``beams``, ``score``, ``max_source_len``)."""
        if config.atomic_search not in {"beam", "exact", "first"}:
            raise GenirError(f"atomic_search={config.atomic_search!r}: choose beam, exact or first")
        training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            size = GPU_QUERY_BATCH if device.type == "cuda" else QUERY_BATCH
            return [ranking for start in range(0, len(queries), size)
                    for ranking in self._search_batch(list(queries[start:start + size]), k, device, config)]
        finally:
            self.model.train(training)

    def _search_batch(self, queries: list[str], k: int, device: torch.device, config: DSIConfig) -> list[Ranking]:
        batch = self.tokenizer(queries, truncation=True, max_length=config.max_source_len, padding=True,
                               return_tensors="pt").to(device)
        if isinstance(self.scheme, AtomicDocids) and config.atomic_search != "beam":
            rows, scores = single_token_topk(self.model, batch["input_ids"], batch["attention_mask"], FIRST_TOKEN,
                                             len(self.position_ids), min(k, self.scheme.num_live), EOS, DECODER_START,
                                             first_step_only=config.atomic_search == "first",
                                             exclude=self.deleted_rows)
            return [[(self.position_ids[r], s) for r, s in zip(rs, ss)] for rs, ss in zip(rows.tolist(), scores.tolist())]
        score = score_setting(config, is_dense_start(self.model))
        out = beam_search(self.model, batch["input_ids"], self.constraint, attention_mask=batch["attention_mask"],
                          num_beams=max(k, config.beams), num_return_sequences=k,
                          max_new_tokens=self.scheme.max_length, score=score,
                          length_penalty=0.0 if score == "logit" else 1.0)
        rows = self.constraint.docid(out.states)  # [B, k] docid rows, -1 if none
        return [[(self.docids[int(rows[b, r])], float(out.scores[b, r])) for r in range(k)
                 if out.valid[b, r] and rows[b, r] >= 0] for b in range(rows.shape[0])]
