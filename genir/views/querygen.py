"""Pseudo-queries for documents: DSI's sampled pseudo-queries and SE-DSI's elaborative descriptions.

A :class:`QueryGenerator` writes, for documents, ``n`` pseudo-queries each
(:meth:`~QueryGenerator.pseudo_queries`) or one deterministic description each
(:meth:`~QueryGenerator.descriptions`). Every method that needs queries it was not given (DSI's
views, SE-DSI's docids, continual indexing's generative memory) gets one from
:func:`query_generator`, the one place that picks the kind:

* :class:`KeywordQueryGenerator` (no generator named): keyword queries from each document's
  salient sentences (:mod:`genir.views.salience`), needing no model;
* :class:`Seq2SeqQueryGenerator`, in two kinds:

* its decoder speaks the tokenizer's own vocabulary (``vocab=None``): a Hugging Face doc2query
  checkpoint, loaded with :meth:`Seq2SeqQueryGenerator.from_pretrained`;
* its decoder speaks a :class:`~genir.seq2seq.vocab.TextVocab` (pad 0, eos 1, tokenizer ids
  shifted by 2): a generator trained in genir with :func:`train_query_generator`, on the same
  model builder and Lightning machinery as DSI itself.

:meth:`~Seq2SeqQueryGenerator.generate` samples (top-k, seeded, so a run is reproducible);
:meth:`~Seq2SeqQueryGenerator.describe` is beam search, one best query per text: the
deterministic description SE-DSI's elaborative docids are made of.

A saved generator is a directory: ``querygen.json`` (settings), ``model/`` (safetensors) and
``tokenizer/``. Nothing is pickled.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.errors import GenirError
from genir.indexer.artifact import read_json_record
from genir.indexer.collection import Document
from genir.seq2seq.fit import fit
from genir.seq2seq.model import build_seq2seq
from genir.seq2seq.model_io import load_pretrained, load_seq2seq, save_seq2seq
from genir.seq2seq.settings import BatchSize, Decay, MaxEpochs, MaxSourceLen, MaxTime, TrainingSettings, WarmupSteps
from genir.seq2seq.token_space import TOKEN_SPACE_MODEL, build_token_space_seq2seq
from genir.seq2seq.vocab import TextVocab, load_tokenizer
from genir.views.salience import Salience

QUERYGEN_FILE = "querygen.json"
MODEL_DIR = "model"
TOKENIZER_DIR = "tokenizer"
_FORMAT = "genir.query_generator"
_FORMAT_VERSION = 1


class QueryGenerator(ABC):
    """Writes queries that documents answer."""

    #: What wrote the queries, for reports.
    kind: ClassVar[str]

    @abstractmethod
    def pseudo_queries(self, docs: Sequence[Document], n: int, seed: int = 0) -> list[list[str]]:
        """``n`` queries for each document, in input order; the same ``seed`` gives the same queries."""

    @abstractmethod
    def descriptions(self, docs: Sequence[Document]) -> list[str]:
        """One query per document that describes it, deterministic (SE-DSI's elaborative docids)."""


class KeywordQueryGenerator(QueryGenerator):
    """Keyword queries from salient sentences: the generator used when no model is named.

    Args:
        corpus: the documents whose document frequencies weigh words (idf).
        words: words per query.
        pool: 0 gives each document's ``n`` best keyword queries (one per salient sentence);
            above 0, each of the ``n`` queries is drawn (seeded) from the document's ``pool``
            best, so a document asked for again and again (generative replay) gets varied queries.
    """

    kind = "keyword queries (salience fallback)"

    def __init__(self, corpus: Sequence[Document], words: int = 8, pool: int = 0) -> None:
        if words < 1 or pool < 0:
            raise GenirError(f"keyword queries need words >= 1 and pool >= 0, got {words}, {pool}")
        self.salience = Salience(corpus)
        self.words = words
        self.pool = pool

    def pseudo_queries(self, docs: Sequence[Document], n: int, seed: int = 0) -> list[list[str]]:
        if not self.pool:
            return [self.salience.keyword_queries(d, n, self.words, seed) for d in docs]
        queries = []
        for doc in docs:
            options = [q for q in self.salience.keyword_queries(doc, self.pool, self.words, seed) if q.strip()]
            rng = random.Random(f"{seed}:{doc.id}")
            queries.append([rng.choice(options) for _ in range(n)] if options else [])
        return queries

    def descriptions(self, docs: Sequence[Document]) -> list[str]:
        return [next(iter(self.salience.keyword_queries(d, 1, self.words)), d.contents) for d in docs]


def query_generator(name_or_path: str, corpus: Sequence[Document], words: int = 8, pool: int = 0) -> QueryGenerator:
    """The query generator a setting names: keywords (``""``), a genir-trained one, or a HF checkpoint.

    Args:
        name_or_path: ``""`` for :class:`KeywordQueryGenerator`; a directory holding
            ``querygen.json`` (:func:`train_query_generator`'s output); else a Hugging Face
            seq2seq name or path (e.g. a doc2query T5).
        corpus, words, pool: the keyword generator's settings (ignored by the others).
    """
    if not name_or_path:
        return KeywordQueryGenerator(corpus, words, pool)
    if (Path(name_or_path) / QUERYGEN_FILE).is_file():
        return Seq2SeqQueryGenerator.load(name_or_path)
    return Seq2SeqQueryGenerator.from_pretrained(name_or_path)


class Seq2SeqQueryGenerator(QueryGenerator):
    """Queries from a seq2seq model: top-k sampling (:meth:`generate`) or beam search (:meth:`describe`).

    :meth:`generate` and :meth:`describe` read texts; the :class:`QueryGenerator` methods read
    a document's contents (title and text).

    Args:
        model: a Hugging Face encoder-decoder.
        tokenizer: the encoder's tokenizer (and the decoder's, when ``vocab`` is None).
        vocab: the decoder's :class:`TextVocab`, or None if the decoder writes tokenizer ids.
        max_source_len: document tokens the encoder reads (longer texts are truncated).
        max_query_tokens: tokens generated per query (eos not counted).
        top_k: sampling keeps the ``top_k`` most likely next tokens.
        num_beams: beams of :meth:`describe`.
        batch_size: texts encoded and decoded together.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        vocab: TextVocab | None = None,
        max_source_len: int = 128,
        max_query_tokens: int = 24,
        top_k: int = 10,
        num_beams: int = 4,
        batch_size: int = 16,
    ) -> None:
        for name, value in (("max_source_len", max_source_len), ("max_query_tokens", max_query_tokens), ("top_k", top_k),
                            ("num_beams", num_beams), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GenirError(f"query generator setting {name} must be a positive integer, got {value!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.max_source_len = max_source_len
        self.max_query_tokens = max_query_tokens
        self.top_k = top_k
        self.num_beams = num_beams
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, name_or_path: str, **settings: Any) -> Seq2SeqQueryGenerator:
        """A Hugging Face seq2seq checkpoint (e.g. a doc2query T5) that writes tokenizer ids.

        Args:
            name_or_path: a model name or directory with weights and tokenizer.
            settings: :class:`Seq2SeqQueryGenerator` settings (``top_k``, ``max_query_tokens``...).
        Raises:
            GenirError: the checkpoint or its tokenizer cannot be loaded, or it is not a seq2seq.
        """
        from transformers import AutoModelForSeq2SeqLM

        from genir.encoding.encoder import resolve_model

        path = resolve_model(name_or_path)
        tokenizer = load_tokenizer(path)
        try:
            model = AutoModelForSeq2SeqLM.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise GenirError(f"cannot load seq2seq query generator {name_or_path!r}: {e}") from None
        return cls(model, tokenizer, None, **settings)

    # -- writing queries -------------------------------------------------------------------
    kind = "query generator"

    def generate(self, texts: Sequence[str], n: int, seed: int = 0) -> list[list[str]]:
        """``n`` sampled queries per text (top-k sampling; samples may repeat).

        The global RNG is left as it was: sampling draws from a forked one seeded with ``seed``.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise GenirError(f"the number of queries per text must be a positive integer, got {n!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            flat = self._run(texts, do_sample=True, top_k=self.top_k, num_beams=1, num_return_sequences=n)
        return [flat[i * n:(i + 1) * n] for i in range(len(texts))]

    def describe(self, texts: Sequence[str]) -> list[str]:
        """The single most likely query of each text under beam search: deterministic."""
        return self._run(texts, do_sample=False, num_beams=self.num_beams, num_return_sequences=1)

    def pseudo_queries(self, docs: Sequence[Document], n: int, seed: int = 0) -> list[list[str]]:
        return self.generate([d.contents for d in docs], n, seed)

    def descriptions(self, docs: Sequence[Document]) -> list[str]:
        return self.describe([d.contents for d in docs])

    @torch.inference_mode()
    def _run(self, texts: Sequence[str], **generation: Any) -> list[str]:
        """Generated queries, ``num_return_sequences`` consecutive ones per text, in input order."""
        queries: list[str] = []
        device = self.model.device
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start:start + self.batch_size]), truncation=True, max_length=self.max_source_len, padding=True, return_tensors="pt"
            )
            output = self.model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=self.max_query_tokens + 1,  # + eos
                **generation,
            )  # [B * num_return_sequences, T] int64, starting with the decoder start token
            queries.extend(self._decode(output))
        return queries

    def _decode(self, output: torch.Tensor) -> list[str]:
        """Text of ``[N, T]`` int64 generated rows."""
        if self.vocab is None:
            return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]
        return [self.vocab.decode(row) for row in output.tolist()]

    # -- persistence -----------------------------------------------------------------------
    def settings(self) -> dict[str, int]:
        return {
            "max_source_len": self.max_source_len,
            "max_query_tokens": self.max_query_tokens,
            "top_k": self.top_k,
            "num_beams": self.num_beams,
            "batch_size": self.batch_size,
        }

    def save(self, directory: str | Path) -> None:
        """Write ``querygen.json``, ``model/`` (safetensors) and ``tokenizer/`` under ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.vocab is None:
            # A checkpoint's own layout (possibly tied embeddings): Hugging Face reloads it as is.
            self.model.save_pretrained(directory / MODEL_DIR, max_shard_size="100GB")
        else:
            save_seq2seq(self.model, directory / MODEL_DIR)
        self.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        record = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "text_vocab": self.vocab is not None, "settings": self.settings()}
        (directory / QUERYGEN_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> Seq2SeqQueryGenerator:
        """Read a generator written by :meth:`save`.

        Raises:
            GenirError: the directory is not a saved query generator, or its files are damaged.
        """
        directory = Path(directory)
        path = directory / QUERYGEN_FILE
        record = read_json_record(path, _FORMAT, _FORMAT_VERSION, "query generator")
        if not isinstance(record.get("text_vocab"), bool) or not isinstance(record.get("settings"), dict):
            raise GenirError(f"{path}: fields 'text_vocab' (bool) and 'settings' (object) are required")
        tokenizer = load_tokenizer(str(directory / TOKENIZER_DIR))
        try:
            if record["text_vocab"]:
                model = load_seq2seq(directory / MODEL_DIR)
            else:
                from transformers import AutoModelForSeq2SeqLM

                model = load_pretrained(AutoModelForSeq2SeqLM, directory / MODEL_DIR)
            return cls(model, tokenizer, TextVocab(tokenizer) if record["text_vocab"] else None, **record["settings"])
        except (OSError, ValueError, TypeError) as e:
            raise GenirError(f"{directory}: cannot load the query generator: {e}") from None


class QueryGenConfig(TrainingSettings):
    """``genir train-querygen``'s settings: the model, and the training run (:class:`TrainingSettings`) with
    the defaults of a doc2query model (longer sources, no warmup, no decay, no time budget)."""

    model: str = Field("t5-config:small", description=(
        "t5-config:tiny|small|base, bert2bert:NAME, a HF seq2seq, or minilm-tokens (the frozen tokenizer's own encoder "
        "writing through its word embeddings, with the query start)"))
    tokenizer: str = Field("all-MiniLM-L6-v2", description="tokenizer of documents (encoder input) and queries (decoder output)")
    max_query_tokens: int = Field(24, ge=1, description="query tokens written (targets are cut to this)")
    batch_size: BatchSize = 32
    max_source_len: MaxSourceLen = 128
    warmup_steps: WarmupSteps = 0
    max_epochs: MaxEpochs = 10
    max_time: MaxTime = None
    decay: Decay = False


def train_query_generator(
    pairs: Sequence[tuple[str, str]],
    *,
    out_dir: str | Path,
    config: QueryGenConfig | None = None,
    config_overrides: dict[str, Any] | None = None,
    enable_progress_bar: bool = False,
    **settings: Any,
) -> Seq2SeqQueryGenerator:
    """Train a generator of queries from (document text, query) pairs, e.g. MS MARCO's.

    The decoder writes a :class:`TextVocab` of ``config.tokenizer`` (the encoder reads the same
    tokenizer); targets are ``vocab.encode(query, config.max_query_tokens)``. Training is genir's
    Lightning run (:func:`genir.seq2seq.fit.fit`) with ``config``'s training settings: checkpoints under
    ``out_dir/checkpoints`` while it runs, so a run started again on the same ``out_dir`` resumes from
    its last checkpoint; they are deleted when it ends.

    Args:
        pairs: (document text, query) pairs.
        out_dir: the run directory (checkpoints, logs).
        config: the model (a :func:`~genir.seq2seq.model.build_seq2seq` model string, or ``minilm-tokens``:
            the token-space recipe of :mod:`genir.seq2seq.token_space` over ``tokenizer``'s own encoder,
            a BERT-style checkpoint, frozen, with the query start), the tokenizer, the lengths and the
            training run; ``settings`` (keywords of :class:`QueryGenConfig`) stand for it when it is None.
        config_overrides: T5Config fields for ``t5-config:`` models (e.g. ``{"dropout_rate": 0.0}``).
        enable_progress_bar: Lightning's progress bar.
    Returns:
        The trained generator (save it with :meth:`Seq2SeqQueryGenerator.save`).
    Raises:
        GenirError: no pairs, a pair that is not two strings, a bad setting, or a bad model/tokenizer.
    """
    if config is None:
        config = QueryGenConfig(**settings)
    elif settings:
        raise GenirError(f"give either config or its settings ({', '.join(settings)}), not both")
    if not pairs:
        raise GenirError("no (document text, query) pairs to train a query generator on")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            raise GenirError(f"query generator training pair {i} is not a (document text, query) pair of strings: {pair!r}")
    token_space = config.model == TOKEN_SPACE_MODEL
    if token_space:  # the tokenizer's own encoder, frozen, writing through its word embeddings
        seq2seq = build_token_space_seq2seq(config.tokenizer, seed=config.seed)
        vocab = TextVocab(seq2seq.tokenizer)
    else:
        vocab = TextVocab(config.tokenizer)
        seq2seq = build_seq2seq(config.model, vocab.size, tokenizer=vocab.tokenizer, config_overrides=config_overrides, seed=config.seed)
    targets = [(text, vocab.encode(query, config.max_query_tokens)) for text, query in pairs]
    fit(seq2seq, targets, config, Path(out_dir), frozen_encoder=token_space, progress=enable_progress_bar)
    return Seq2SeqQueryGenerator(seq2seq.model, vocab.tokenizer, vocab, max_source_len=config.max_source_len,
                                 max_query_tokens=config.max_query_tokens)
