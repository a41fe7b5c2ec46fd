"""``seal``: a seq2seq model writes n-grams that occur in the corpus; documents are scored from them.

Building an index tokenizes every document (title + text) with the model's tokenizer, builds an
FM-index over the token ids (shifted by two: the decoder's pad 0 and eos 1 never occur in the
corpus, see :mod:`genir.seq2seq.vocab`), and trains the model on SEAL's pairs
(:mod:`genir.seal.pairs`) with genir's Lightning machinery. The index directory holds
``model/`` (safetensors), ``tokenizer/``, ``fmindex/`` (``.npy`` + JSON) and ``docids.json``, and
once documents are added or deleted, more FM-index segments and tombstones (:mod:`genir.seal.segments`).
With ``model=minilm-tokens`` (:mod:`genir.seq2seq.token_space`) the model is a frozen MiniLM encoder and
a decoder whose tied token table is MiniLM's word embeddings; the FM-index is then over MiniLM's token
ids (its tokenizer is the model's), as it is for the default ``t5-config:`` model, whose tokenizer is
``tokenizer`` (MiniLM's by default).

Searching a query (:mod:`genir.seal.scoring` has the formulas):

1. constrained beam search under the FM-index: every prefix a beam holds at any step is an n-gram
   of the corpus, kept as a key with its summed log-probability and its FM-index range; with
   ``pmi_lambda`` above 0, beams are ranked by ``log P(n|q) - pmi_lambda * log P(n)``
   (:mod:`genir.seal.pmi`), so that frequent generic n-grams stop crowding them, while the keys
   keep the model's ``log P(n|q)``;
2. the query's own word n-grams (up to ``query_ngram_words`` words) that occur in the corpus are
   added as keys with ``P(n|q) = query_ngram_prob``;
3. each key's documents come from the FM-index (``locate``), never from a scan of the corpus;
   keys occurring more than ``max_occurrences`` times are left out (their weight is near zero
   and locating them would dominate the cost);
4. documents are ranked by intersective aggregation with the coverage penalty.

Growing (:meth:`Searcher.add` / ``delete``, :meth:`SEALSearcher.optimize`), as Lucene does
(:mod:`genir.seal.segments`): an add writes one new FM-index segment over the new documents only
(the existing segments' files are linked into the new version, never rewritten); the model is not
retrained: a new document is reachable at once through its n-grams (the constraint allows them, the
query's n-grams find them), though the model, which never saw its text, generates n-grams that
favour the documents it was trained on. A delete records tombstones: deleted documents are never
returned, but their n-grams keep counting in the weights and may still steer decoding until
``optimize`` (``genir optimize``) merges the segments into one FM-index over the live documents,
the FM-index a build of them gives. An index holding files that are not SEAL's refuses to change.
A seal-hybrid (:mod:`genir.baselines.hybrid`) grows through this: its SEAL component gets the segments.

``use_model=false`` skips training: keys are the query n-grams alone (the ablation showing what
the FM-index and the query contribute without a model). ``model_from=INDEX`` copies the trained
model of another seal index of the same corpus, so that search settings can be compared without
training again.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from genir.devices import resolve_device
from genir.encoding.encoder import DEFAULT_ENCODER
from genir.errors import CorruptIndexError, GenirError
from genir.indexer.artifact import read_manifest
from genir.indexer.collection import Collection, Document
from genir.indexer.dev_split import DevFraction
from genir.kernels.beam_search import beam_search
from genir.kernels.fm_wavelet import Int64Array
from genir.kernels.fmindex import FMIndex
from genir.retrieval.searcher import (
    Addition,
    Change,
    Deletion,
    Forget,
    Hit,
    Opening,
    Searcher,
    documents_source,
    searcher_class,
)
from genir.seal.pairs import SealPairConfig, seal_training_pairs
from genir.seal.pmi import PMIConstraint
from genir.seal.scoring import Ngram, aggregate, ngram_weights
from genir.seal.segments import (
    Segment,
    SegmentConstraint,
    SegmentedFMIndex,
    copy_tree,
    write_segment,
)
from genir.seq2seq.fit import run_directory, train_and_save
from genir.seq2seq.model import T5_PREFIX, build_seq2seq
from genir.seq2seq.model_io import load_seq2seq, save_seq2seq
from genir.seq2seq.query_start import is_query_start
from genir.seq2seq.settings import BatchSize, MaxEpochs, MaxQueryLen, TrainingSettings
from genir.seq2seq.token_space import (
    TOKEN_SPACE_MODEL,
    TokenTable,
    build_token_space_seq2seq,
)
from genir.seq2seq.unlearn import unlearn
from genir.seq2seq.vocab import EOS, FIRST_TOKEN, TextVocab
from genir.settings import AUTO, Auto, parse_config
from genir.views.pairs import ZERO_SHOT_PSEUDO_QUERIES, pseudo_queries_setting
from genir.views.querygen import query_generator

MODEL_DIR, TOKENIZER_DIR = "model", "tokenizer"
Count = Annotated[int, Field(ge=0)]
log = logging.getLogger(__name__)
QUERY_BATCH = 16  # queries decoded together
TOKENIZE_BATCH = 256  # documents per tokenizer call while indexing


class SEALConfig(TrainingSettings):
    model: str = Field(TOKEN_SPACE_MODEL, description=(
        "minilm-tokens (genir.seq2seq.token_space: frozen MiniLM encoder, query start, tied MiniLM token table), "
        "or t5-config:NAME, bert2bert:NAME, a HF seq2seq name/path"))
    tokenizer: str = Field(DEFAULT_ENCODER, description="the tokenizer of t5-config: models (encoder input, decoder output, FM-index)")
    # train chosen on SciFact's dev carve (0.7442 against 0.7157 nDCG@10; the model's keys alone 0.5560 against 0.2480)
    token_table: TokenTable = Field("train", description="minilm-tokens: its tied MiniLM token table trained (train) or kept (frozen)")
    use_model: bool = Field(True, description="false: no training, keys are the query n-grams alone")
    model_from: str = Field("", description="a seal index of the same corpus whose trained model is reused")
    # training pairs (genir.seal.pairs)
    ngram_min_words: int = Field(3, ge=1, description="shortest target span, in words")
    ngram_max_words: int = Field(10, ge=1, description="longest target span, in words (at least ngram_min_words)")
    ngrams_per_pair: int = Field(10, ge=0, description="target spans per (query, relevant document)")
    unsupervised_per_doc: int = Field(4, ge=0, description="(span -> span or title) pairs per document")
    source_words: int = Field(48, ge=1, description="length of an unsupervised pair's source span, in words")
    queries_split: str = Field("train", description=(
        "the qrels split whose queries train the model; a collection without it trains zero-shot ('' forces it)"))
    # auto's zero-shot count: chosen on other collections' real queries, never on the target's (benchmarks/zero_shot_seal.py,
    # docs/methods/seal.md "Zero-shot"); so far on cranfield alone: SEAL 0.2866 nDCG@10 with 4 against 0.2722 with 0
    pseudo_queries: Auto | Count = Field(AUTO, description=(
        f"(pseudo-query -> title or anchored span) pairs per document; auto = 0 with training queries, "
        f"{ZERO_SHOT_PSEUDO_QUERIES} zero-shot"))
    pseudo_query_words: int = Field(8, ge=1, description="length of the keyword pseudo-queries (without querygen)")
    querygen: str = Field("", description="a query generator writing the pseudo-queries (genir train-querygen output, or a HF "
                          "doc2query checkpoint); empty: keyword queries from salient sentences")
    dev_fraction: DevFraction = Field(0.0, description="above 0: the dev carve of queries_split is not trained on (tune search settings there)")
    anchored: bool = Field(True, description="target spans start near a word the source shares with the document")
    max_target_tokens: int = Field(12, ge=1, description="tokens of a target n-gram (longer ones are cut)")
    batch_size: BatchSize = 32
    # seq2seq epochs after the query start's fit: 3 for minilm-tokens with its table trained, chosen on SciFact's dev
    # carve (1, 2, 3 epochs: 0.7506, 0.7764, 0.8136 nDCG@10 at 10 beams; the frozen table's 45 minutes = 10 epochs
    # fell to 0.6685: it learned generic span starts, README "SEAL"); a model without a query start needs many
    # (t5-config:small had 30 and the hour's budget)
    max_epochs: MaxEpochs = 3
    # search
    # 10: 0.007 below 15 on the dev carve (0.8136 vs 0.8210) at 1.4x the speed, for the 20 queries/s goal
    beams: int = Field(10, ge=1, description="beams of the constrained beam search")
    max_query_len: MaxQueryLen = 256
    pmi_lambda: float = Field(1.0, ge=0, description="beams ranked by log P(n|q) - pmi_lambda * log P(n) (genir.seal.pmi); 0: the model alone")
    max_ngram_tokens: int = Field(10, ge=1, description="longest generated n-gram, in tokens")
    generated_ngrams: bool = Field(True, description="keys from the model's beams")
    query_ngrams: bool = Field(True, description="keys from the query's own word n-grams")
    query_ngram_words: int = Field(3, ge=1, description="longest query n-gram used as a key, in words")
    # pmi_lambda, query_ngram_prob and alpha: chosen for minilm-tokens on SciFact's dev carve (benchmarks/tune_seal.py
    # --dev-fraction 0.1, README "SEAL"; query_ngram_prob re-tuned with 1-3 epochs of the trained table: 0.1 beat 0.2
    # at every epoch count and beam width); beta on its train queries for t5-config:small
    query_ngram_prob: float = Field(0.1, gt=0, le=1, description="P(n|q) given to a query n-gram key")
    alpha: float = Field(2.0, ge=0, description="exponent of the key weights (larger favours the best key over many weak ones)")
    beta: float = Field(0.8, ge=0, le=1, description="strength of the coverage penalty")
    max_occurrences: int = Field(5000, ge=1, description="keys occurring more often are left out (near-zero weight, costly to locate)")
    # locating an occurrence costs up to fm_sample_rate - 1 LF steps; the samples cost 32 / rate bits per token
    fm_sample_rate: int = Field(4, ge=1, description="FM-index suffix-array sampling rate")

    @model_validator(mode="after")
    def _span_lengths(self) -> SEALConfig:
        if self.ngram_min_words > self.ngram_max_words:
            raise ValueError(f"ngram_min_words={self.ngram_min_words} is above ngram_max_words={self.ngram_max_words}")
        return self

    def supervised(self, collection: Collection) -> bool:
        """Whether the model trains on ``collection``'s ``queries_split`` queries (else zero-shot)."""
        return bool(self.queries_split) and self.queries_split in collection.splits()

    def pair_config(self, collection: Collection) -> SealPairConfig:
        """The training pairs' settings for ``collection``: zero-shot without its ``queries_split``,
        ``pseudo_queries`` resolved."""
        supervised = self.supervised(collection)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(SealPairConfig)}
        pseudo = pseudo_queries_setting(self.pseudo_queries, supervised)
        return SealPairConfig(**{**fields, "queries_split": self.queries_split if supervised else "", "pseudo_queries": pseudo})

    def training_pairs(self, collection: Collection, docs: Sequence[Document],
                       corpus: Sequence[Document] | None = None) -> list[tuple[str, str]]:
        """SEAL's training pairs (:func:`genir.seal.pairs.seal_training_pairs`) of ``docs``; the pseudo-queries'
        generator (``querygen``, or keywords weighed over ``corpus``, ``docs`` by default: the build's
        document frequencies) is loaded only when pairs need it."""
        pair_config = self.pair_config(collection)
        generator = (query_generator(self.querygen, docs if corpus is None else corpus, self.pseudo_query_words)
                     if pair_config.pseudo_queries else None)
        return seal_training_pairs(collection, docs, pair_config, generator)


#: Fields that change the trained model (the rest only change how the index is searched).
TRAINING_FIELDS = ("model", "tokenizer", "token_table", "ngram_min_words", "ngram_max_words", "ngrams_per_pair", "unsupervised_per_doc",
                   "source_words", "queries_split", "pseudo_queries", "pseudo_query_words", "querygen", "dev_fraction", "anchored",
                   "max_target_tokens", *TrainingSettings.model_fields)


class SEALSearcher(Searcher):
    method = "seal"
    Config = SEALConfig
    description = "SEAL: a seq2seq model generates corpus n-grams under an FM-index; documents scored from them"
    search_settings = ("beams", "max_query_len", "pmi_lambda", "max_ngram_tokens", "generated_ngrams", "query_ngrams", "query_ngram_words",
                       "query_ngram_prob", "alpha", "beta", "max_occurrences")

    def __init__(self, opening: Opening):
        super().__init__(opening)
        from transformers import AutoTokenizer

        directory = opening.directory
        self.index = SegmentedFMIndex.load(directory, listed=opening.manifest.files)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR)
        except (OSError, ValueError) as e:
            raise CorruptIndexError(f"{directory}: unreadable SEAL index ({type(e).__name__}: {e})") from None
        self.docids: list[str] = self.index.docids  # global document number -> id, deleted documents included
        self.model = load_seq2seq(directory / MODEL_DIR) if (directory / MODEL_DIR).is_dir() else None
        if self.model is not None and is_query_start(self.model):  # only the corpus' tokens can be generated
            self.model.get_decoder().restrict_output(torch.from_numpy(self.index.present_tokens(EOS)))
        self.constraint = SegmentConstraint(self.index, eos_token_id=EOS)
        self.to(opening.device)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(cls, collection: Collection, config: SEALConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        docs = list(collection.docs())
        if not docs:
            raise GenirError(f"{collection.corpus_path}: the corpus is empty; nothing to index")
        if config.use_model and not config.model_from and config.queries_split and not config.supervised(collection):
            log.warning("collection %r has no qrels split %r: training zero-shot (document spans and pseudo-queries)",
                        collection.name, config.queries_split)
        stats: dict[str, Any] = {"num_docs": len(docs)}
        if config.use_model and config.model_from:
            vocab = TextVocab(_copy_model(Path(config.model_from), collection, directory))
        else:
            vocab = TextVocab(_tokenizer_name(config))
            vocab.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        started = time.perf_counter()
        index = build_fm_index(docs, vocab, config.fm_sample_rate)
        ids = [d.id for d in docs]
        write_segment(directory, index, ids)
        stats["fmindex_seconds"] = round(time.perf_counter() - started, 3)  # tokenizing included
        stats.update(SegmentedFMIndex([Segment(index, ids)]).stats(directory), vocab_size=index.vocab_size)
        if config.use_model and not config.model_from:
            stats.update(_train(collection, docs, config, vocab, directory / MODEL_DIR))
        return stats

    def write_files(self, directory: Path) -> None:
        self._carry_model(directory, link=False)
        self.index.copy_to(self.directory, directory)

    def _carry_model(self, directory: Path, link: bool) -> None:
        """Copy (or hard-link) ``model/`` and ``tokenizer/`` into ``directory``."""
        for name in (MODEL_DIR, TOKENIZER_DIR):
            if (self.directory / name).is_dir():
                copy_tree(self.directory / name, directory / name, link)

    # -- searching --------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return self.index.num_live

    def to(self, device: str | torch.device | None) -> SEALSearcher:
        """The model moves; the FM-index stays on the CPU (its constraint moves states across)."""
        if self.model is not None:
            self.model.to(resolve_device(device))
        return self

    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        results: list[list[Hit]] = []
        batches = range(0, len(queries), QUERY_BATCH)
        for start in tqdm(batches, desc="SEAL search", unit="batch", disable=len(batches) < 4, leave=False):
            for keys in self.keys(list(queries[start:start + QUERY_BATCH])):
                results.append(self.rank(keys, k))
        return results

    def keys(self, queries: Sequence[str]) -> list[dict[Ngram, tuple[float, Int64Array, Int64Array]]]:
        """Each query's keys: n-gram -> ``(weight, lo, hi)``, its SEAL weight and ``[S]`` int64 range
        bounds, one range per FM-index segment (:mod:`genir.seal.segments`)."""
        num_tokens = self.index.num_tokens
        found: list[dict[Ngram, tuple[float, Int64Array, Int64Array]]] = [{} for _ in queries]
        # (n-gram, log P(n|q), lo, hi) of every candidate key
        sources: list[list[tuple[Ngram, float, Int64Array, Int64Array]]] = [[] for _ in queries]
        if self.model is not None and self.config.use_model and self.config.generated_ngrams:
            for b, generated in enumerate(self._generated(queries)):
                sources[b] += generated
        if self.config.query_ngrams:
            log_prob = float(np.log(self.config.query_ngram_prob))
            for b, ngrams in enumerate(self._query_ngrams(queries)):
                sources[b] += [(n, log_prob, lo, hi) for n, lo, hi in ngrams]
        for b, rows in enumerate(sources):
            if not rows:
                continue
            counts = self.index.range_counts(np.stack([r[2] for r in rows]), np.stack([r[3] for r in rows]))
            weights = ngram_weights([r[1] for r in rows], np.maximum(counts, 1), num_tokens)
            for (ngram, _, lo, hi), weight, count in zip(rows, weights.tolist(), counts.tolist()):
                if count and weight > found[b].get(ngram, (-1.0,))[0]:
                    found[b][ngram] = (weight, lo, hi)
        return found

    def _generated(self, queries: Sequence[str]) -> list[list[tuple[Ngram, float, Int64Array, Int64Array]]]:
        """Every prefix the beams held at any step, with its summed log-probability ``log P(n|q)`` and
        ``[S]`` range bounds."""
        batch = self.tokenizer(list(queries), truncation=True, max_length=self.config.max_query_len, padding=True,
                               return_tensors="pt").to(self.model.device)
        pmi = PMIConstraint(self.constraint, self.index, self.config.pmi_lambda) if self.config.pmi_lambda else None
        out = beam_search(self.model, batch["input_ids"], pmi or self.constraint, attention_mask=batch["attention_mask"],
                          num_beams=self.config.beams, max_new_tokens=self.config.max_ngram_tokens + 1, record_steps=True)
        best: list[dict[Ngram, tuple[float, Int64Array, Int64Array]]] = [{} for _ in queries]
        for step in out.steps or []:
            live = (step.valid & ~step.ended).cpu().numpy()
            tokens, scores, states = step.tokens.cpu().numpy(), step.scores.cpu().numpy(), step.states.cpu().numpy()
            if pmi is not None:  # the beams' scores hold the PMI biases: the keys' weights need log P(n|q)
                scores = np.where(live, pmi.log_prob(scores, states), -np.inf)
            lo, hi = self.constraint.ranges(states)  # [B, K, S] each
            for b, slot in zip(*live.nonzero()):
                ngram = tuple(tokens[b, slot].tolist())
                if float(scores[b, slot]) > best[b].get(ngram, (-np.inf,))[0]:
                    best[b][ngram] = (float(scores[b, slot]), lo[b, slot], hi[b, slot])
        return [[(n, *v) for n, v in found.items()] for found in best]

    def _query_ngrams(self, queries: Sequence[str]) -> list[list[tuple[Ngram, Int64Array, Int64Array]]]:
        """The n-grams of up to ``query_ngram_words`` whole words of each query that occur in the corpus."""
        per_query: list[list[Ngram]] = []
        for query in queries:
            encoding = self.tokenizer(query, add_special_tokens=False)
            words: dict[int, list[int]] = {}
            for token, word in zip(encoding["input_ids"], encoding.word_ids()):
                if word is not None:
                    words.setdefault(word, []).append(token + FIRST_TOKEN)
            pieces = list(words.values())
            ngrams = {tuple(t for piece in pieces[i:j] for t in piece)
                      for i in range(len(pieces)) for j in range(i + 1, min(i + self.config.query_ngram_words, len(pieces)) + 1)}
            per_query.append(sorted(ngrams))
        flat = [np.array(n, dtype=np.int64) for ngrams in per_query for n in ngrams]
        lo, hi = self.index.ranges(flat) if flat else (np.zeros((0, len(self.index.segments)), np.int64),) * 2
        occurs = (hi > lo).any(axis=1)
        out, at = [], 0
        for ngrams in per_query:
            out.append([(n, lo[at + i], hi[at + i]) for i, n in enumerate(ngrams) if occurs[at + i]])
            at += len(ngrams)
        return out

    def rank(self, keys: dict[Ngram, tuple[float, Int64Array, Int64Array]], k: int) -> list[Hit]:
        """The ``k`` best live documents for one query's keys (as :meth:`keys` returns them)."""
        weighted = [(n, v) for n, v in keys.items() if v[0] > 0]
        if not weighted:
            return []
        lo, hi = np.stack([v[1] for _, v in weighted]), np.stack([v[2] for _, v in weighted])
        usable = np.flatnonzero(self.index.range_counts(lo, hi) <= self.config.max_occurrences)
        if not usable.shape[0]:
            return []
        ngrams = [weighted[i][0] for i in usable.tolist()]
        occurrences = self.index.locate(lo[usable], hi[usable], np.array([len(n) for n in ngrams], dtype=np.int64))
        docs, scores = aggregate(ngrams, [weighted[i][1][0] for i in usable.tolist()], occurrences.row_ptr,
                                 occurrences.doc_ids, alpha=self.config.alpha, beta=self.config.beta)
        return [Hit(self.docids[d], s) for d, s in zip(docs[:k].tolist(), scores[:k].tolist())]

    # -- growing and shrinking (genir.seal.segments) ---------------------------------------------
    def _check_growable(self) -> None:
        """Refuse to change an index holding files a change would not carry over: SEAL's are the
        model, the tokenizer and the segments; anything else would be lost from the new version."""
        foreign = sorted(name for name in self.manifest.files
                         if not (name.startswith((f"{MODEL_DIR}/", f"{TOKENIZER_DIR}/")) or self.index.owns(name)))
        if foreign:
            raise GenirError(f"{self.directory} holds files that are not SEAL's ({foreign[0]}"
                             + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "")
                             + f"), which adding, deleting or merging segments would leave behind: not supported for "
                             f"this {self.method} index")

    def _present(self, ids: Sequence[str]) -> set[str]:
        self._check_growable()
        return {docid for docid in ids if docid in self.index.live}

    def _write_added(self, docs: list[Document], staging: Path, addition: Addition) -> dict[str, Any]:
        started = time.perf_counter()
        segment = build_fm_index(docs, TextVocab(self.tokenizer), self.config.fm_sample_rate)
        seconds = time.perf_counter() - started
        self._carry_model(staging, link=True)
        grown = self.index.write_added(self.directory, staging, segment, [d.id for d in docs])
        return {**grown.stats(staging), "add_fmindex_seconds": round(seconds, 3), "add_optimizer_steps": 0}

    def _write_deleted(self, ids: list[str], staging: Path, deletion: Deletion) -> dict[str, Any]:
        """The segments holding ``ids`` are built again without them (:meth:`SegmentedFMIndex.write_deleted`);
        the model as ``deletion.forget`` says: ``mask`` keeps it (it has seen the documents: it may
        still generate their n-grams, which the FM-index no longer holds, so never matches), ``unlearn``
        takes NPO steps away from their training pairs (:mod:`genir.seq2seq.unlearn`), ``reindex``
        builds the index again from the remaining documents."""
        if deletion.forget is Forget.REINDEX and self.model is not None:
            return self._reindex(list(self.index.live), ids, staging, deletion)
        started = time.perf_counter()
        stats: dict[str, Any] = {}
        if deletion.forget is Forget.UNLEARN and self.model is not None:
            forget, retain = self._unlearning_pairs(ids, deletion)
            if self.config.model == TOKEN_SPACE_MODEL and self.config.token_table == "frozen":  # as the build kept it
                self.model.get_decoder().get_input_embeddings().requires_grad_(False)  # the head is tied to it
            stats = unlearn(self.model, self.tokenizer, forget, retain, deletion.unlearn, self.config.max_source_len)
            save_seq2seq(self.model, staging / MODEL_DIR)
            copy_tree(self.directory / TOKENIZER_DIR, staging / TOKENIZER_DIR, link=True)
        else:
            self._carry_model(staging, link=True)
        shrunk = self.index.write_deleted(self.directory, staging, [self.index.live[i] for i in ids], self.config.fm_sample_rate)
        return {**shrunk.stats(staging), **stats, "delete_rewrite_seconds": round(time.perf_counter() - started, 3)}

    def _unlearning_pairs(self, ids: list[str], deletion: Deletion) -> tuple[list[tuple[str, list[int]]], list[tuple[str, list[int]]]]:
        """The deleted documents' training pairs (source text, n-gram tokens) and a sample of the
        remaining documents', as a build makes them (:func:`genir.seal.pairs.seal_training_pairs`),
        from the documents' collection (:func:`~genir.retrieval.searcher.documents_source`)."""
        live = list(self.index.live)
        collection = documents_source(self, deletion, live)
        config = parse_config(self.Config, self.manifest.config)
        vocab = TextVocab(self.tokenizer)
        gone = set(ids)
        indexed = set(live)
        docs = [d for d in collection.docs() if d.id in indexed]
        settings = deletion.unlearn
        rng = random.Random(settings.seed)
        rest = [d for d in docs if d.id not in gone]
        sample = rng.sample(rest, min(len(rest), settings.retain_pairs)) if settings.retain_pairs else []

        def pairs(chosen: list[Document]) -> list[tuple[str, list[int]]]:
            return [(source, vocab.encode(target, config.max_target_tokens))
                    for source, target in config.training_pairs(collection, chosen, corpus=docs)]

        return pairs([d for d in docs if d.id in gone]), (pairs(sample)[:settings.retain_pairs] if sample else [])

    def optimize(self) -> Change:
        """Merge every segment into one FM-index over the live documents and drop the tombstones
        (Lucene's forceMerge), atomically as :meth:`add`; the result is the FM-index a build of the
        live documents gives. Nothing is written when the index is one segment without deletions.

        Raises:
            GenirError: the index holds files that are not SEAL's, or the index on disk changed
                since this searcher opened it.
        """
        self._check_growable()
        before = self.index
        stats = {"merged_segments": len(before.segments), "dropped_docs": int(before.deleted.shape[0]),
                 "fmindex_bytes_before": before.stats(self.directory)["fmindex_bytes"]}
        if len(before.segments) == 1 and not before.deleted.shape[0]:
            return Change("optimize", 0, self.num_docs, self.num_docs, 0.0, {**stats, **before.stats(self.directory)})

        def write(staging: Path) -> dict[str, Any]:
            started = time.perf_counter()
            merged = before.merged(self.config.fm_sample_rate)
            segment = merged.segments[0]
            write_segment(staging, segment.index, segment.docids)
            self._carry_model(staging, link=True)
            return {**merged.stats(staging), **stats, "optimize_merge_seconds": round(time.perf_counter() - started, 3)}

        return self._change("optimize", [], write)


def optimize_index(index_dir: str | Path) -> Change:
    """Merge the segments of the seal index at ``index_dir`` (:meth:`SEALSearcher.optimize`).

    Raises:
        GenirError: ``index_dir`` is not a seal index, or as :meth:`SEALSearcher.optimize`.
    """
    method = read_manifest(index_dir, verify=False).method
    if not issubclass(searcher_class(method), SEALSearcher):
        raise GenirError(f"{index_dir} is a {method} index: genir optimize merges the FM-index segments of seal "
                         "indexes only")
    searcher = Searcher.load(index_dir, device="cpu")
    try:
        return searcher.optimize()
    finally:
        searcher.close()


def build_fm_index(docs: Sequence[Document], vocab: TextVocab, sample_rate: int = 4) -> FMIndex:
    """FM-index of the documents' ``contents`` as decoder tokens (tokenizer ids + ``FIRST_TOKEN``).

    Raises:
        GenirError: the corpus is too long for the FM-index (its text positions are 32-bit).
    """
    arrays: list[np.ndarray] = []
    for start in tqdm(range(0, len(docs), TOKENIZE_BATCH), desc="tokenizing the corpus", unit="batch", leave=False):
        texts = [d.contents for d in docs[start:start + TOKENIZE_BATCH]]
        ids = vocab.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        arrays += [np.asarray(row, dtype=np.int64) + FIRST_TOKEN for row in ids]
    try:
        return FMIndex.build(arrays, vocab_size=vocab.size, sample_rate=sample_rate)
    except ValueError as e:
        raise GenirError(f"cannot build the FM-index of this corpus: {e}") from None


def _tokenizer_name(config: SEALConfig) -> str:
    """The tokenizer of the model's decoder, hence of the FM-index: ``tokenizer`` for a model built in
    code (``t5-config:``) or none; MiniLM's for ``minilm-tokens``; a checkpoint's own otherwise."""
    if config.model.startswith(T5_PREFIX) or not config.use_model:
        return config.tokenizer
    if config.model == TOKEN_SPACE_MODEL:
        return DEFAULT_ENCODER
    return config.model.split(":", 1)[-1]


def _copy_model(source: Path, collection: Collection, directory: Path) -> str:
    """Copy the model and tokenizer of the seal index ``source``; returns the copied tokenizer's path."""
    try:
        manifest = read_manifest(source, verify=True)
    except GenirError as e:
        raise GenirError(f"model_from={source}: {e}") from None
    if manifest.method != "seal" or not (source / MODEL_DIR).is_dir():
        raise GenirError(f"model_from={source}: not a seal index with a trained model")
    if manifest.collection.get("sha256") != collection.fingerprint:
        raise GenirError(f"model_from={source}: that index was built from another corpus")
    shutil.copytree(source / MODEL_DIR, directory / MODEL_DIR)
    shutil.copytree(source / TOKENIZER_DIR, directory / TOKENIZER_DIR)
    return str(directory / TOKENIZER_DIR)


def _train(collection: Collection, docs: list[Document], config: SEALConfig, vocab: TextVocab, out: Path) -> dict[str, Any]:
    """Train the n-gram generator with Lightning and save it to ``out``; returns training statistics."""
    pairs = [(source, vocab.encode(target, config.max_target_tokens)) for source, target in config.training_pairs(collection, docs)]
    token_space = config.model == TOKEN_SPACE_MODEL
    if token_space:  # its encoder is frozen: its states are computed once, before the first step
        seq2seq = build_token_space_seq2seq(token_table=config.token_table, seed=config.seed)
    else:
        tokenizer = vocab.tokenizer if config.model.startswith(T5_PREFIX) else None
        seq2seq = build_seq2seq(config.model, vocab.size, tokenizer=tokenizer, seed=config.seed)
    run_dir = run_directory(collection, {"method": "seal", **{f: getattr(config, f) for f in TRAINING_FIELDS}})
    return train_and_save(seq2seq, pairs, config, run_dir, out, frozen_encoder=token_space)


def seal_component(searcher: Searcher) -> SEALSearcher:
    """``searcher`` itself if it is a seal index's, else the SEAL part of a fusion (a ``seal-hybrid``).

    Tools that read SEAL's own keys (``benchmarks/tune_seal.py``, :mod:`genir.seal.diagnostic`) take either kind of index.

    Raises:
        GenirError: no part of it is a SEAL searcher.
    """
    found = next((part for part in searcher.parts() if isinstance(part, SEALSearcher)), None)
    if found is None:
        raise GenirError(f"a {searcher.method} index holds no SEAL searcher (seal, or a hybrid with of=seal)")
    return found
