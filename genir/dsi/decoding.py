"""Searching a DSI model: queries in, (document id, score) lists out. The one search path of ``dsi``,
used by a loaded index (:class:`genir.dsi.searcher.DSISearcher`) and by the dev evaluation that
chooses a checkpoint while training (:func:`genir.dsi.dev.dev_evaluator`).

The scheme chooses (:meth:`genir.dsi.docids.DocidScheme.search_mode`):

* single-token search (atomic docids with ``atomic_search`` ``first`` or ``exact``):
  :func:`genir.kernels.single_token.single_token_topk` (one or two decoder steps, exact);
* rescore (elaborative docids with ``elaborative_search=rescore``): propose, then score. One decoder step gives
  the first position's logits ``[V]`` less the output layer's bias (what the query says, not how
  frequent a word is); a description's proposal score is their sum over its tokens (a sparse
  ``[N, V]`` bag of the live descriptions times the logits), and the ``max(k, candidates)`` best are
  scored exactly, teacher-forced, by beam search's own score (:mod:`genir.kernels.candidate_scores`;
  ``logprob`` divided by the length, eos included, as ``length_penalty=1`` does): the query's first
  decoder step and cross-attention once for all its candidates, and a candidate that provably cannot
  be among the ``k`` best (its score so far, plus the other terms, below the ``k``-th best finished
  one) is not scored to its end, so the ``k`` returned are ranked and scored as if all were. Every document
  can be proposed, where beam search loses one whose first tokens fall out of the beams. Two terms
  join that score: ``plan_weight`` times the plan (the mean of the first step's log-probabilities
  over the description's tokens: a set-based score beside the sequential one, as PAG does) and
  ``dense_weight`` times the dense start, ``cos(q, d)`` of the query's pooled encoder states and the
  document's vector kept by its docid scheme (:class:`~genir.dsi.elaborative_docids.ElaborativeDocids`);
  with the dense term, the ``candidates`` documents most similar to the query are scored too (a
  document chosen twice counts once). Under ``auto`` the two weights are the build's choice on its
  dev set (:func:`genir.dsi.dev.choose_rescore_weights`, passed in as ``rescore_weights``);
* beam, any scheme: constrained beam search over the docid trie with ``max(k, beams)`` beams, scored by
  ``score`` (``logit``: summed raw logits, no length penalty; ``logprob``: ``generate``'s score). With the
  dense start and ``logit``, each step scores only the tokens the trie allows the live beams
  (:class:`~genir.kernels.beam_search.CandidateScorer`): rq and semantic docids' document step reads the
  rows of the documents under the kept codes once each, where the full output layer multiplied every
  document row by every beam. Their code levels keep ``code_beams`` prefixes each
  (:meth:`~genir.dsi.docids.DocidScheme.step_beams`; more while the kept ones hold fewer than
  ``max(k, beams)`` documents), so that step reads ``~N * code_beams / K`` rows of rq's ``K`` codes
  instead of all ``N``; the decoder steps the live beams alone, and not for eos, whose row is zero (its
  logit is its bias whatever the beam).
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from genir.devices import resolve_device
from genir.dsi.config import DSIConfig
from genir.dsi.docids import DocidScheme, SearchMode
from genir.errors import GenirError
from genir.kernels.beam_search import beam_search, encode_sources
from genir.kernels.candidate_scores import candidate_scores
from genir.kernels.exhaustive import pad_docids
from genir.kernels.single_token import single_token_topk
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.seq2seq.dense_start import is_dense_start
from genir.seq2seq.query_head import linear_head, pooled_query
from genir.seq2seq.vocab import DECODER_START, EOS, FIRST_TOKEN, PAD

QUERY_BATCH = 16  # queries decoded together: beams x batch rows share one decoder forward
GPU_QUERY_BATCH = 256  # the same on a GPU, where a step's cost barely grows with its rows
# rescore's [candidates x positions] per teacher-forced decoder call (each holds [V] float32 logits):
# 250 MB on a CPU; on a GPU, where a call's cost barely grows with its rows, 8 GB
RESCORE_POSITIONS = 2048
RESCORE_POSITIONS_GPU = 65536

Ranking = list[tuple[str, float]]
T = TypeVar("T")


class DocidDecoder:
    """A DSI model with its tokenizer, docid scheme and trie, ready to search.

    Args:
        model: the seq2seq model (eval mode is set for each search, and restored after).
        tokenizer: the encoder's tokenizer.
        scheme: the docid scheme; ``trie`` holds its live documents' sequences (trie row ``i`` is
            the ``i``-th of :meth:`~genir.dsi.docids.DocidScheme.sequences`).
        rescore_weights: ``(plan_weight, dense_weight)`` the build chose on dev (the manifest's
            ``rescore_weights``), which ``auto`` settings take; None: their fixed defaults.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, scheme: DocidScheme, trie: DocidTrie,
                 rescore_weights: Sequence[float] | None = None):
        self.model, self.tokenizer, self.scheme, self.trie = model, tokenizer, scheme, trie
        self.rescore_weights = rescore_weights
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
        ``config`` says (``atomic_search``, ``beams``, ``score``, ``max_query_len``; checked when it was made)."""
        return [ranking for rankings in self._batches(queries, config, lambda batch: self._search_batch(batch, k, config))
                for ranking in rankings]

    @torch.inference_mode()
    def rescore_terms(self, queries: Sequence[str], config: DSIConfig, dense_candidates: bool) -> RescoreTerms:
        """Every term of ``rescore``'s score for each query's candidates, for choosing the weights on dev
        (:meth:`RescoreTerms.fused` of any weights ranks as :meth:`search` with them would); with
        ``dense_candidates`` the dense term's candidates are scored too (the index must keep vectors)."""
        if not self.docids:
            raise GenirError("the index has no live documents to score")
        parts = self._batches(queries, config, lambda batch: self._rescore_terms(batch, config, config.candidates, dense_candidates))
        columns = ([getattr(part, field.name) for part in parts] for field in dataclasses.fields(RescoreTerms))
        return RescoreTerms(*(None if column[0] is None else torch.cat(column) for column in columns))

    def _batches(self, queries: Sequence[str], config: DSIConfig, run: Callable[[BatchEncoding], T]) -> list[T]:
        """``run`` on each batch of tokenized queries, the model in eval mode (restored after)."""
        training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            size = GPU_QUERY_BATCH if device.type == "cuda" else QUERY_BATCH
            return [run(self.tokenizer(list(queries[start:start + size]), truncation=True, max_length=config.max_query_len,
                                       padding=True, return_tensors="pt").to(device))
                    for start in range(0, len(queries), size)]
        finally:
            self.model.train(training)

    def _search_batch(self, batch: BatchEncoding, k: int, config: DSIConfig) -> list[Ranking]:
        mode = self.scheme.search_mode(config)
        if mode is SearchMode.SINGLE_TOKEN:
            rows, scores = single_token_topk(self.model, batch["input_ids"], batch["attention_mask"], FIRST_TOKEN,
                                             len(self.position_ids), min(k, self.scheme.num_live), EOS, DECODER_START,
                                             first_step_only=config.atomic_search == "first",
                                             exclude=self.deleted_rows)
            return [[(self.position_ids[r], s) for r, s in zip(rs, ss)] for rs, ss in zip(rows.tolist(), scores.tolist())]
        score = config.score_setting(is_dense_start(self.model))
        if mode is SearchMode.RESCORE:
            return self._rescore(batch, k, config)
        # Summed raw logits need no normalizer: the dense start scores each beam's trie children alone
        # (rq/semantic: the documents under the kept codes, not every document for every beam)
        scorer = self.model.get_decoder() if score == "logit" and is_dense_start(self.model) else None
        out = beam_search(self.model, batch["input_ids"], self.constraint, attention_mask=batch["attention_mask"],
                          num_beams=max(k, config.beams), num_return_sequences=k,
                          max_new_tokens=self.scheme.max_length, score=score,
                          length_penalty=0.0 if score == "logit" else 1.0, scorer=scorer,
                          step_beams=self.scheme.step_beams(config))
        rows = self.constraint.docid(out.states)  # [B, k] docid rows, -1 if none
        return [[(self.docids[int(rows[b, r])], float(out.scores[b, r])) for r in range(k)
                 if out.valid[b, r] and rows[b, r] >= 0] for b in range(rows.shape[0])]

    def _rescore(self, batch: BatchEncoding, k: int, config: DSIConfig) -> list[Ranking]:
        """``elaborative_search=rescore`` (module docstring) for a batch of queries."""
        if not self.docids:
            return [[] for _ in range(batch["input_ids"].shape[0])]
        weights = config.rescore_weights_setting(self.scheme.keeps_vectors, self.rescore_weights)
        terms = self._rescore_terms(batch, config, max(k, config.candidates), weights[1] > 0, best=(weights, k))
        return terms.rankings(weights, k, self.docids)

    def _rescore_terms(self, batch: BatchEncoding, config: DSIConfig, count: int, dense_candidates: bool,
                       best: tuple[tuple[float, float], int] | None = None) -> RescoreTerms:
        """The terms of ``count`` proposed candidates (and as many dense ones) per query of ``batch``. With
        ``best`` = ``(weights, k)``, only what ranks the ``k`` best under those weights: the exact term of a
        candidate that cannot be among them is ``-inf`` (:func:`genir.kernels.candidate_scores.candidate_scores`)."""
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]  # [B, L_src]
        if self._descriptions is None:
            vocab = self.model.get_output_embeddings().weight.shape[0]
            self._descriptions = _Descriptions(list(self.scheme.sequences().values()), self.scheme.live_vectors(), vocab,
                                               input_ids.device)
        described = self._descriptions
        if dense_candidates and described.vectors is None:
            raise GenirError("this index keeps no document vectors (built without the dense term): search it with "
                             "dense_weight=0")
        start = torch.full((input_ids.shape[0], 1), DECODER_START, dtype=torch.int64, device=input_ids.device)
        encoded = encode_sources(self.model, input_ids, attention_mask, 1)  # once, for both passes
        first = self.model(encoder_outputs=encoded[0], attention_mask=encoded[1], decoder_input_ids=start,
                           use_cache=False).logits[:, 0].float()  # [B, V]
        bias = getattr(self.model.get_output_embeddings(), "bias", None)
        if bias is not None:
            first = first - bias.float()
        count = min(count, described.padded.shape[0])
        rows = (described.bag @ first.T).T.topk(count, dim=1).indices  # [B, C] proposed by the summed logits
        proposed = torch.ones(rows.shape, dtype=torch.bool, device=rows.device)  # [B, C]
        similarity = None
        if described.vectors is not None:
            query = pooled_query(encoded[0].last_hidden_state.float(), encoded[1])  # [B, H]: the dense query vector
            similarity = query @ described.vectors.T  # [B, N]
        if dense_candidates:
            dense = similarity.topk(count, dim=1).indices  # [B, C]
            # A document both proposed and dense-chosen is scored once: its second copy never counts.
            repeated = (dense.unsqueeze(2) == rows.unsqueeze(1)).any(2)  # [B, C]
            rows = torch.cat([rows, dense], dim=1)  # [B, 2C]
            proposed = torch.cat([proposed, torch.zeros_like(repeated)], dim=1)
            dense_only = torch.cat([torch.zeros_like(repeated), ~repeated], dim=1)
        else:
            dense_only = torch.zeros_like(proposed)
        plan = (described.bag @ torch.log_softmax(first, dim=-1).T).T  # [B, N] summed first-step log-probabilities
        lengths = described.lengths[rows]  # [B, C']
        terms = RescoreTerms(rows, torch.zeros_like(lengths), plan.gather(1, rows) / (lengths - 1), proposed, dense_only,
                             None if similarity is None else similarity.gather(1, rows))
        score = config.score_setting(is_dense_start(self.model))
        scale = 1.0 / lengths if score == "logprob" else torch.ones_like(lengths)  # exact = scale * the sequence's score
        if best is None:  # every candidate a weight could rank: all but a proposed one's dense-chosen copy
            ranked = (torch.where(proposed | dense_only, 0.0, float("-inf")), scale, rows.shape[1])
        else:  # with exact = 0, fused() is each candidate's fixed part: what its sequence's score is added to
            ranked = (terms.fused(*best[0]), scale, best[1])
        positions = RESCORE_POSITIONS_GPU if input_ids.device.type == "cuda" else RESCORE_POSITIONS
        sums = candidate_scores(self.model, encoded, described.padded[rows], decoder_start_token_id=DECODER_START,
                                pad_token_id=PAD, score=score, best=ranked, head=linear_head(self.model),
                                positions_per_call=positions)  # [B, C']
        return dataclasses.replace(terms, exact=sums / lengths if score == "logprob" else sums)


@dataclass
class RescoreTerms:
    """The terms of ``rescore``'s score for ``C'`` candidates of each of ``B`` queries (``C' = C``, or
    ``2C`` when the dense term's candidates follow the proposed ones).

    Attributes:
        rows: ``[B, C']`` int64 trie rows of the candidates.
        exact: ``[B, C']`` float32 beam search's own score (teacher-forced); ``-inf`` for a repeated
            candidate, and where a search for the ``k`` best proved the candidate cannot be among them
            (it was not scored to its end).
        plan: ``[B, C']`` float32 mean first-step log-probability of the description's tokens.
        proposed: ``[B, C']`` bool: proposed by the summed logits.
        dense_only: ``[B, C']`` bool: chosen by the dense term and not proposed (a document both
            proposed and dense-chosen appears twice, and its second copy is neither).
        dense: ``[B, C']`` float32 cosine of query and document vectors, or None without vectors.
    """

    rows: torch.Tensor
    exact: torch.Tensor
    plan: torch.Tensor
    proposed: torch.Tensor
    dense_only: torch.Tensor
    dense: torch.Tensor | None

    def fused(self, plan_weight: float, dense_weight: float) -> torch.Tensor:
        """``[B, C']`` float32 scores as :meth:`DocidDecoder.search` ranks them with these weights:
        ``exact + plan_weight * plan + dense_weight * dense``, ``-inf`` for a candidate that search
        does not score (a repeated one, or a dense-chosen one when ``dense_weight`` is 0)."""
        fused, scored = self.exact + plan_weight * self.plan, self.proposed
        if dense_weight > 0:
            if self.dense is None:
                raise GenirError(f"dense_weight={dense_weight}: these candidates have no dense term (no document vectors)")
            fused, scored = fused + dense_weight * self.dense, scored | self.dense_only
        return torch.where(scored, fused, float("-inf"))

    def rankings(self, weights: tuple[float, float], k: int, docids: Sequence[str]) -> list[Ranking]:
        """Each query's ``k`` best candidates under ``weights`` (``(plan_weight, dense_weight)``, as
        :meth:`fused`), best first, as ``(document id, score)``; ``docids`` maps trie rows to ids."""
        best = self.fused(*weights).topk(min(k, self.rows.shape[1]), dim=1)
        rows = self.rows.gather(1, best.indices)  # [B, k] trie rows
        return [[(docids[r], s) for r, s in zip(rs, ss) if s > float("-inf")]
                for rs, ss in zip(rows.tolist(), best.values.tolist())]


class _Descriptions:
    """The live descriptions (trie row order) as ``rescore`` reads them, on ``device``.

    Attributes:
        bag: ``[N, V]`` float32 sparse CSR: how often each token occurs in each description (eos left out).
        padded: ``[N, L]`` int64 sequences, eos included, right-padded with ``PAD``.
        lengths: ``[N]`` float32 tokens per sequence, eos included.
        vectors: ``[N, H]`` float32 document vectors (the scheme's live ones), or None.
    """

    def __init__(self, sequences: list[list[int]], vectors: np.ndarray | None, vocab: int, device: torch.device):
        self.vectors = None if vectors is None else torch.from_numpy(vectors).to(device)
        self.padded = pad_docids(sequences, PAD).to(device)
        self.lengths = torch.tensor([len(s) for s in sequences], dtype=torch.float32, device=device)
        counts = [sorted(Counter(t for t in s if t >= FIRST_TOKEN).items()) for s in sequences]
        crow = torch.tensor([0, *itertools.accumulate(len(c) for c in counts)], dtype=torch.int64)
        columns = torch.tensor([t for c in counts for t, _ in c], dtype=torch.int64)
        values = torch.tensor([n for c in counts for _, n in c], dtype=torch.float32)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is stable
            warnings.simplefilter("ignore", UserWarning)
            self.bag = torch.sparse_csr_tensor(crow, columns, values, (len(sequences), vocab)).to(device)
