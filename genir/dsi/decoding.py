"""Searching a DSI model: queries in, (document id, score) lists out. The one search path of ``dsi``,
used by a loaded index (:class:`genir.dsi.searcher.DSISearcher`) and by the dev evaluation that
chooses a checkpoint while training (:func:`genir.dsi.dev.dev_evaluator`).

* atomic docids with ``atomic_search`` ``first`` or ``exact``: :func:`genir.kernels.single_token.single_token_topk`
  (one or two decoder steps, exact);
* elaborative docids with ``elaborative_search=rescore``: propose, then score. One decoder step gives
  the first position's logits ``[V]`` less the output layer's bias (what the query says, not how
  frequent a word is); a description's proposal score is their sum over its tokens (a sparse
  ``[N, V]`` bag of the live descriptions times the logits), and the ``max(k, candidates)`` best are
  scored exactly, teacher-forced, by beam search's own score (:mod:`genir.kernels.exhaustive`;
  ``logprob`` divided by the length, eos included, as ``length_penalty=1`` does). Every document
  can be proposed, where beam search loses one whose first tokens fall out of the beams;
* otherwise constrained beam search over the docid trie with ``max(k, beams)`` beams, scored by
  ``score`` (``logit``: summed raw logits, no length penalty; ``logprob``: ``generate``'s score).
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.devices import resolve_device
from genir.dsi.config import DSIConfig, score_setting
from genir.dsi.docids import AtomicDocids, DocidScheme
from genir.dsi.elaborative_docids import ElaborativeDocids
from genir.errors import GenirError
from genir.kernels.beam_search import beam_search, encode_sources
from genir.kernels.exhaustive import exhaustive_scores, pad_docids
from genir.kernels.single_token import single_token_topk
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.seq2seq.dense_start import is_dense_start
from genir.seq2seq.vocab import DECODER_START, EOS, FIRST_TOKEN, PAD

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
        self._descriptions: _Descriptions | None = None  # built by the first rescore search

    def to(self, device: str | torch.device | None) -> DocidDecoder:
        target = resolve_device(device)
        self.model.to(target)
        self.constraint = DocidTrieConstraint(self.trie, target)
        self._descriptions = None
        return self

    @torch.inference_mode()
    def search(self, queries: Sequence[str], k: int, config: DSIConfig) -> list[Ranking]:
        """The ``k`` best documents of each query (fewer if fewer are live), best first, searched as
        ``config`` says (``atomic_search``, ``beams``, ``score``, ``max_source_len``)."""
        if config.atomic_search not in {"beam", "exact", "first"}:
            raise GenirError(f"atomic_search={config.atomic_search!r}: choose beam, exact or first")
        if config.elaborative_search not in {"beam", "rescore"}:
            raise GenirError(f"elaborative_search={config.elaborative_search!r}: choose rescore or beam")
        if config.candidates < 1:
            raise GenirError(f"candidates={config.candidates}: choose at least 1")
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
        if isinstance(self.scheme, ElaborativeDocids) and config.elaborative_search == "rescore":
            return self._rescore(batch["input_ids"], batch["attention_mask"], k, config.candidates, score)
        out = beam_search(self.model, batch["input_ids"], self.constraint, attention_mask=batch["attention_mask"],
                          num_beams=max(k, config.beams), num_return_sequences=k,
                          max_new_tokens=self.scheme.max_length, score=score,
                          length_penalty=0.0 if score == "logit" else 1.0)
        rows = self.constraint.docid(out.states)  # [B, k] docid rows, -1 if none
        return [[(self.docids[int(rows[b, r])], float(out.scores[b, r])) for r in range(k)
                 if out.valid[b, r] and rows[b, r] >= 0] for b in range(rows.shape[0])]

    def _rescore(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int, candidates: int,
                 score: str) -> list[Ranking]:
        """``elaborative_search=rescore`` (module docstring) for ``[B, L_src]`` queries."""
        if not self.docids:
            return [[] for _ in range(input_ids.shape[0])]
        if self._descriptions is None:
            vocab = self.model.get_output_embeddings().weight.shape[0]
            self._descriptions = _Descriptions(list(self.scheme.sequences().values()), vocab, input_ids.device)
        bag, padded, lengths = self._descriptions.bag, self._descriptions.padded, self._descriptions.lengths
        start = torch.full((input_ids.shape[0], 1), DECODER_START, dtype=torch.int64, device=input_ids.device)
        encoded = encode_sources(self.model, input_ids, attention_mask, 1)  # once, for both passes
        first = self.model(encoder_outputs=encoded[0], attention_mask=encoded[1], decoder_input_ids=start,
                           use_cache=False).logits[:, 0].float()  # [B, V]
        bias = getattr(self.model.get_output_embeddings(), "bias", None)
        if bias is not None:
            first = first - bias.float()
        proposed = (bag @ first.T).T  # [B, N]
        chosen = proposed.topk(min(max(k, candidates), padded.shape[0]), dim=1).indices  # [B, C]
        scores = exhaustive_scores(self.model, input_ids, attention_mask, padded[chosen], decoder_start_token_id=DECODER_START,
                                   pad_token_id=PAD, score=score, chunk=chosen.shape[1], encoded=encoded)  # [B, C]
        if score == "logprob":
            scores = scores / lengths[chosen]
        best = scores.topk(min(k, chosen.shape[1]), dim=1)
        rows = chosen.gather(1, best.indices)  # [B, k] trie rows
        return [[(self.docids[r], s) for r, s in zip(rs, ss)] for rs, ss in zip(rows.tolist(), best.values.tolist())]


class _Descriptions:
    """The live descriptions (trie row order) as ``rescore`` reads them, on ``device``.

    Attributes:
        bag: ``[N, V]`` float32 sparse CSR: how often each token occurs in each description (eos left out).
        padded: ``[N, L]`` int64 sequences, eos included, right-padded with ``PAD``.
        lengths: ``[N]`` float32 tokens per sequence, eos included.
    """

    def __init__(self, sequences: list[list[int]], vocab: int, device: torch.device):
        self.padded = pad_docids(sequences, PAD).to(device)
        self.lengths = torch.tensor([len(s) for s in sequences], dtype=torch.float32, device=device)
        counts = [sorted(Counter(t for t in s if t >= FIRST_TOKEN).items()) for s in sequences]
        crow = torch.tensor([0, *itertools.accumulate(len(c) for c in counts)], dtype=torch.int64)
        columns = torch.tensor([t for c in counts for t, _ in c], dtype=torch.int64)
        values = torch.tensor([n for c in counts for _, n in c], dtype=torch.float32)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is stable
            warnings.simplefilter("ignore", UserWarning)
            self.bag = torch.sparse_csr_tensor(crow, columns, values, (len(sequences), vocab)).to(device)
