"""``seal``: a seq2seq model writes n-grams that occur in the corpus; documents are scored from them.

Building an index tokenizes every document (title + text) with the model's tokenizer, builds an
FM-index over the token ids (shifted by two: the decoder's pad 0 and eos 1 never occur in the
corpus, see :mod:`genir.seq2seq.vocab`), and trains the model on SEAL's pairs
(:mod:`genir.seal.pairs`) with genir's Lightning machinery. The index directory holds
``model/`` (safetensors), ``tokenizer/``, ``fmindex/`` (``.npy`` + JSON) and ``docids.json``.

Searching a query (:mod:`genir.seal.scoring` has the formulas):

1. constrained beam search under the FM-index: every prefix a beam holds at any step is an n-gram
   of the corpus, kept as a key with its summed log-probability and its FM-index range;
2. the query's own word n-grams (up to ``query_ngram_words`` words) that occur in the corpus are
   added as keys with ``P(n|q) = query_ngram_prob``;
3. each key's documents come from the FM-index (``locate``), never from a scan of the corpus;
   keys occurring more than ``max_occurrences`` times are left out (their weight is near zero
   and locating them would dominate the cost);
4. documents are ranked by intersective aggregation with the coverage penalty.

``use_model=false`` skips training: keys are the query n-grams alone (the ablation showing what
the FM-index and the query contribute without a model). ``model_from=INDEX`` copies the trained
model of another seal index of the same corpus, so that search settings can be compared without
training again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genir.devices import resolve_device
from genir.errors import CorruptIndexError, GenirError
from genir.indexer.artifact import Manifest, read_manifest
from genir.indexer.collection import Collection, Document
from genir.kernels.beam_search import beam_search
from genir.kernels.fm_constraint import FMIndexConstraint
from genir.kernels.fmindex import FMIndex
from genir.retrieval.encoder import DEFAULT_ENCODER
from genir.retrieval.searcher import Hit, Searcher
from genir.seal.pairs import SealPairConfig, seal_training_pairs
from genir.seal.scoring import Ngram, aggregate, ngram_weights
from genir.seq2seq.fit import TrainSettings, run_directory, train_and_save
from genir.seq2seq.model import T5_PREFIX, build_seq2seq
from genir.seq2seq.model_io import load_seq2seq
from genir.seq2seq.vocab import EOS, FIRST_TOKEN, TextVocab

MODEL_DIR, TOKENIZER_DIR, FMINDEX_DIR, DOCIDS_FILE = "model", "tokenizer", "fmindex", "docids.json"
QUERY_BATCH = 16  # queries decoded together
TOKENIZE_BATCH = 256  # documents per tokenizer call while indexing


@dataclass
class SEALConfig:
    model: str = "t5-config:small"  # or bert2bert:NAME, or a HF seq2seq name/path
    tokenizer: str = DEFAULT_ENCODER  # the tokenizer of t5-config: models (encoder input, decoder output, FM-index)
    use_model: bool = True  # false: no training, keys are the query n-grams alone
    model_from: str = ""  # a seal index of the same corpus whose trained model is reused
    # training pairs (genir.seal.pairs)
    ngram_min_words: int = 3
    ngram_max_words: int = 10
    ngrams_per_pair: int = 10
    unsupervised_per_doc: int = 4
    source_words: int = 48
    queries_split: str = "train"
    anchored: bool = True  # target spans start near a word the source shares with the document
    # training
    max_source_len: int = 64
    max_target_tokens: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    max_epochs: int = 30
    max_time: str = "00:01:00:00"  # DD:HH:MM:SS training budget
    precision: str = "32-true"
    seed: int = 0
    # search
    beams: int = 15
    max_ngram_tokens: int = 10
    generated_ngrams: bool = True  # keys from the model's beams
    query_ngrams: bool = True  # keys from the query's own word n-grams
    query_ngram_words: int = 3
    query_ngram_prob: float = 0.5
    alpha: float = 3.0  # alpha, beta and hybrid_weight: chosen on SciFact's train queries (benchmarks/tune_seal.py)
    beta: float = 0.8
    max_occurrences: int = 5000
    # locating an occurrence costs up to fm_sample_rate - 1 LF steps; the samples cost 32 / rate bits per token
    fm_sample_rate: int = 4


#: Fields that change the trained model (the rest only change how the index is searched).
TRAINING_FIELDS = ("model", "tokenizer", "ngram_min_words", "ngram_max_words", "ngrams_per_pair", "unsupervised_per_doc",
                   "source_words", "queries_split", "anchored", "max_source_len", "max_target_tokens", "batch_size", "lr",
                   "warmup_steps", "max_epochs", "max_time", "precision", "seed")


class SEALSearcher(Searcher):
    method = "seal"
    Config = SEALConfig
    description = "SEAL: a seq2seq model generates corpus n-grams under an FM-index; documents scored from them"

    def __init__(self, config: SEALConfig, manifest: Manifest, directory: Path):
        super().__init__(config, manifest)
        from transformers import AutoTokenizer

        self.directory = directory
        self.index = FMIndex.load(directory / FMINDEX_DIR)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR)
            self.docids: list[str] = json.loads((directory / DOCIDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CorruptIndexError(f"{directory}: unreadable SEAL index ({type(e).__name__}: {e})") from None
        if not isinstance(self.docids, list) or len(self.docids) != self.index.num_docs:
            raise GenirError(f"{directory / DOCIDS_FILE}: {len(self.docids)} ids for {self.index.num_docs} indexed documents")
        self.model = load_seq2seq(directory / MODEL_DIR) if (directory / MODEL_DIR).is_dir() else None
        self.constraint = FMIndexConstraint(self.index, eos_token_id=EOS)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(cls, collection: Collection, config: SEALConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        docs = list(collection.docs())
        if not docs:
            raise GenirError(f"{collection.corpus_path}: the corpus is empty; nothing to index")
        stats: dict[str, Any] = {"num_docs": len(docs)}
        if config.use_model and config.model_from:
            vocab = TextVocab(_copy_model(Path(config.model_from), collection, directory))
        else:
            vocab = TextVocab(config.tokenizer if config.model.startswith(T5_PREFIX) or not config.use_model
                              else config.model.split(":", 1)[-1])
            vocab.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        started = time.perf_counter()
        index = build_fm_index(docs, vocab, config.fm_sample_rate)
        index.save(directory / FMINDEX_DIR)
        stats["fmindex_seconds"] = round(time.perf_counter() - started, 3)  # tokenizing included
        stats["fmindex_bytes"] = sum(f.stat().st_size for f in (directory / FMINDEX_DIR).iterdir())
        (directory / DOCIDS_FILE).write_text(json.dumps([d.id for d in docs]) + "\n", encoding="utf-8")
        stats.update(num_tokens=index.num_tokens, vocab_size=index.vocab_size)
        if config.use_model and not config.model_from:
            stats.update(_train(collection, docs, config, vocab, directory / MODEL_DIR))
        return stats

    def write_files(self, directory: Path) -> None:
        for name in (MODEL_DIR, TOKENIZER_DIR, FMINDEX_DIR):
            if (self.directory / name).is_dir():
                shutil.copytree(self.directory / name, directory / name)
        shutil.copy2(self.directory / DOCIDS_FILE, directory / DOCIDS_FILE)

    # -- searching --------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return len(self.docids)

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

    def keys(self, queries: Sequence[str]) -> list[dict[Ngram, tuple[float, int, int]]]:
        """Each query's keys: n-gram -> ``(weight, lo, hi)``, its SEAL weight and FM-index range."""
        num_tokens = self.index.num_tokens
        found: list[dict[Ngram, tuple[float, int, int]]] = [{} for _ in queries]
        sources: list[list[tuple[Ngram, float, int, int]]] = [[] for _ in queries]  # (n-gram, log P(n|q), lo, hi)
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
            counts = self.index.range_counts(np.array([r[2] for r in rows]), np.array([r[3] for r in rows]))
            weights = ngram_weights([r[1] for r in rows], np.maximum(counts, 1), num_tokens)
            for (ngram, _, lo, hi), weight, count in zip(rows, weights.tolist(), counts.tolist()):
                if count and weight > found[b].get(ngram, (-1.0,))[0]:
                    found[b][ngram] = (weight, lo, hi)
        return found

    def _generated(self, queries: Sequence[str]) -> list[list[tuple[Ngram, float, int, int]]]:
        """Every prefix the beams held at any step, with its summed log-probability and range."""
        batch = self.tokenizer(list(queries), truncation=True, max_length=self.config.max_source_len, padding=True,
                               return_tensors="pt").to(self.model.device)
        out = beam_search(self.model, batch["input_ids"], self.constraint, attention_mask=batch["attention_mask"],
                          num_beams=self.config.beams, max_new_tokens=self.config.max_ngram_tokens + 1, record_steps=True)
        best: list[dict[Ngram, tuple[float, int, int]]] = [{} for _ in queries]
        for step in out.steps or []:
            live = (step.valid & ~step.ended).cpu().numpy()
            tokens, scores, states = step.tokens.cpu().numpy(), step.scores.cpu().numpy(), step.states.cpu().numpy()
            for b, slot in zip(*live.nonzero()):
                ngram = tuple(tokens[b, slot].tolist())
                if float(scores[b, slot]) > best[b].get(ngram, (-np.inf,))[0]:
                    best[b][ngram] = (float(scores[b, slot]), int(states[b, slot, 0]), int(states[b, slot, 1]))
        return [[(n, *v) for n, v in found.items()] for found in best]

    def _query_ngrams(self, queries: Sequence[str]) -> list[list[tuple[Ngram, int, int]]]:
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
        lo, hi = self.index.ranges(flat) if flat else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        out, at = [], 0
        for ngrams in per_query:
            out.append([(n, int(lo[at + i]), int(hi[at + i])) for i, n in enumerate(ngrams) if hi[at + i] > lo[at + i]])
            at += len(ngrams)
        return out

    def rank(self, keys: dict[Ngram, tuple[float, int, int]], k: int) -> list[Hit]:
        """The ``k`` best documents for one query's keys (as :meth:`keys` returns them)."""
        usable = [(n, v) for n, v in keys.items() if v[0] > 0 and v[2] - v[1] <= self.config.max_occurrences]
        if not usable:
            return []
        ngrams = [n for n, _ in usable]
        values = np.array([v for _, v in usable], dtype=np.float64)
        occurrences = self.index.locate(values[:, 1].astype(np.int64), values[:, 2].astype(np.int64),
                                        np.array([len(n) for n in ngrams], dtype=np.int64))
        docs, scores = aggregate(ngrams, values[:, 0], occurrences.row_ptr, occurrences.doc_ids,
                                 alpha=self.config.alpha, beta=self.config.beta)
        return [Hit(self.docids[d], s) for d, s in zip(docs[:k].tolist(), scores[:k].tolist())]


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


def _copy_model(source: Path, collection: Collection, directory: Path) -> str:
    """Copy the model and tokenizer of the seal index ``source``; returns the copied tokenizer's path."""
    try:
        manifest = read_manifest(source, verify=True)
    except GenirError as e:
        raise GenirError(f"model_from={source}: {e}") from None
    if manifest.method not in ("seal", "seal-hybrid") or not (source / MODEL_DIR).is_dir():
        raise GenirError(f"model_from={source}: not a seal index with a trained model")
    if manifest.collection.get("sha256") != collection.fingerprint:
        raise GenirError(f"model_from={source}: that index was built from another corpus")
    shutil.copytree(source / MODEL_DIR, directory / MODEL_DIR)
    shutil.copytree(source / TOKENIZER_DIR, directory / TOKENIZER_DIR)
    return str(directory / TOKENIZER_DIR)


def _train(collection: Collection, docs: list[Document], config: SEALConfig, vocab: TextVocab, out: Path) -> dict[str, Any]:
    """Train the n-gram generator with Lightning and save it to ``out``; returns training statistics."""
    pair_config = SealPairConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(SealPairConfig)})
    pairs = [(source, vocab.encode(target, config.max_target_tokens))
             for source, target in seal_training_pairs(collection, docs, pair_config)]
    tokenizer = vocab.tokenizer if config.model.startswith(T5_PREFIX) else None
    seq2seq = build_seq2seq(config.model, vocab.size, tokenizer=tokenizer, seed=config.seed)
    run_dir = run_directory(collection, {"method": "seal", **{f: getattr(config, f) for f in TRAINING_FIELDS}})
    return train_and_save(seq2seq, pairs, TrainSettings.of(config), run_dir, out)
