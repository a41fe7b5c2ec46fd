"""``dsi`` and ``se-dsi``: a seq2seq model trained to map documents and queries to docids, searched
by constrained beam search over the docid trie.

``se-dsi`` is ``dsi`` with SE-DSI's defaults: elaborative-description docids (a query-like text
per document, from a query generator) and rehearsal contents (salient sentences) among the views.
Without a query generator (``querygen=``), a document's description and pseudo-queries are
keyword queries from its salient sentences (:mod:`genir.dsi.salience`).

Building an index assigns docids, builds the training views, trains with Lightning, and writes
``model/`` (safetensors), ``tokenizer/``, ``docids/`` (the docid scheme) and ``trie/``. Training
checkpoints live outside the index, under ``$GENIR_CACHE/train/<key>`` (a key of the corpus and
the configuration): a build that is killed resumes from its last checkpoint when the same
command is run again, and the checkpoints are deleted once the index is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genir.dsi.docids import EOS, DocidScheme, load_docid_scheme, new_docid_scheme
from genir.dsi.elaborative_docids import Describer, ElaborativeDocids, query_describer
from genir.dsi.model import T5_PREFIX, Seq2Seq, build_seq2seq, freeze_encoder, freeze_output_embeddings
from genir.dsi.model_io import load_seq2seq, save_seq2seq
from genir.dsi.querygen import QUERYGEN_FILE, Seq2SeqQueryGenerator
from genir.dsi.salience import Salience
from genir.dsi.training import Pair, Seq2SeqDataModule, Seq2SeqModule, train
from genir.dsi.views import ViewConfig, training_pairs
from genir.errors import GenirError
from genir.indexer.artifact import Manifest, read_manifest
from genir.indexer.builtin_corpus import cache_dir
from genir.indexer.collection import Collection, Document
from genir.kernels.beam_search import beam_search
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.retrieval.encoder import DEFAULT_ENCODER, TextEncoder
from genir.retrieval.searcher import Hit, Searcher, parse_config

MODEL_DIR, TOKENIZER_DIR, DOCIDS_DIR, TRIE_DIR = "model", "tokenizer", "docids", "trie"
QUERY_BATCH = 16  # queries decoded together: beams x batch rows share one decoder forward


@dataclass
class DSIConfig:
    docids: str = "atomic"  # atomic | naive | semantic | elaborative
    # The default recipe (README, "DSI recipe"): pretrained MiniLM encoder, frozen; a two-layer
    # decoder; atomic docids whose output rows are the documents' MiniLM embeddings, frozen.
    model: str = "bert2bert:all-MiniLM-L6-v2"  # or t5-config:tiny|small|base, or a HF seq2seq name/path
    decoder_layers: int = 2  # layers of the bert2bert decoder
    freeze_encoder: str = "auto"  # true | false | auto (= true unless the encoder is built from scratch, t5-config:)
    tokenizer: str = DEFAULT_ENCODER  # the encoder's tokenizer for t5-config: models
    embeddings_from: str = ""  # a dense index of the same corpus whose embeddings are reused (semantic docids, docid_embeddings)
    # atomic docids' output rows: frozen | init (start from the document embeddings, then train) | none;
    # auto = frozen for atomic docids, none for the others
    docid_embeddings: str = "auto"
    max_source_len: int = 64
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    max_epochs: int = 8
    max_time: str = "00:01:00:00"  # DD:HH:MM:SS training budget
    precision: str = "32-true"
    first_words: int = 64
    spans: int = 2
    span_words: int = 32
    rehearsal: int = 0  # SE-DSI rehearsal contents: salient sentences per document
    pseudo_queries: int = 0  # pseudo-queries per document (keyword fallback without a generator)
    pseudo_query_words: int = 8
    querygen: str = ""  # a query generator (genir train-querygen output, or a HF doc2query checkpoint)
    queries_split: str = "train"
    retrieval_repeats: int = 1
    beams: int = 10
    seed: int = 0


class DSISearcher(Searcher):
    method = "dsi"
    Config = DSIConfig
    description = "DSI: seq2seq model generating docids under a docid trie (atomic | naive | semantic | elaborative)"

    def __init__(self, config: DSIConfig, manifest: Manifest, directory: Path):
        super().__init__(config, manifest)
        from transformers import AutoTokenizer

        self.directory = directory
        self.model = load_seq2seq(directory / MODEL_DIR)
        self.tokenizer = AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR)
        self.scheme: DocidScheme = load_docid_scheme(directory / DOCIDS_DIR)
        self.trie = DocidTrie.load(directory / TRIE_DIR)
        self.constraint = DocidTrieConstraint(self.trie)
        self.docids = list(self.scheme.sequences())

    @classmethod
    def build(cls, collection: Collection, config: DSIConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        if config.queries_split and config.queries_split not in collection.splits():
            # Checked first: the document embeddings computed before the views are read take minutes.
            raise GenirError(f"collection {collection.name!r} has no qrels split {config.queries_split!r} to train on "
                             f"(available: {', '.join(collection.splits()) or 'none'}); "
                             "--set queries_split= trains on the documents alone")
        docs = list(collection.docs())
        generator = query_generator(config.querygen) if config.querygen else None
        scheme = new_docid_scheme(config.docids)
        if isinstance(scheme, ElaborativeDocids):
            scheme.describer = query_describer(generator) if generator else _keyword_describer(docs)
        docid_embeddings = _docid_embeddings_mode(config)
        frozen_encoder = _freeze_encoder_setting(config)
        embeddings = _embeddings(docs, config) if config.docids == "semantic" or docid_embeddings != "none" else None
        scheme.assign(docs, embeddings)
        views = ViewConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(ViewConfig)})
        generate = generator.generate if generator else None
        pairs = [(text, scheme.sequence(docid)) for text, docid in training_pairs(collection, docs, views, generate)]
        tokenizer = config.tokenizer if config.model.startswith(T5_PREFIX) else None
        vectors = None
        if docid_embeddings != "none":  # row of each document's token = its embedding; pad and eos stay fresh
            vectors = np.zeros((scheme.vocab_size, embeddings.shape[1]), dtype=np.float32)
            vectors[[scheme.sequence(d.id)[0] for d in docs]] = embeddings
        seq2seq = build_seq2seq(config.model, scheme.vocab_size, tokenizer=tokenizer, decoder_layers=config.decoder_layers,
                                docid_embeddings=vectors, seed=config.seed)
        if docid_embeddings == "frozen":
            freeze_output_embeddings(seq2seq.model)
        stats = train_and_save(seq2seq, pairs, config, run_directory(collection, config), directory / MODEL_DIR,
                               frozen_encoder=frozen_encoder)
        stats.update(docid_embeddings=docid_embeddings, frozen_encoder=frozen_encoder)
        seq2seq.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        scheme.save(directory / DOCIDS_DIR)
        DocidTrie.from_sequences(list(scheme.sequences().values()), eos_token_id=EOS,
                                 vocab_size=scheme.vocab_size).save(directory / TRIE_DIR)
        return {"num_docs": len(docs), **stats, "docid_vocab": scheme.vocab_size, "docid_max_length": scheme.max_length}

    @classmethod
    def from_files(cls, directory: Path, manifest: Manifest) -> "DSISearcher":
        return cls(parse_config(cls.Config, manifest.config), manifest, directory)

    def write_files(self, directory: Path) -> None:
        for name in (MODEL_DIR, TOKENIZER_DIR, DOCIDS_DIR, TRIE_DIR):
            shutil.copytree(self.directory / name, directory / name)

    def batch_search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        if k > len(self.docids):
            raise GenirError(f"k={k} is larger than the corpus ({len(self.docids)} documents)")
        results: list[list[Hit]] = []
        for start in range(0, len(queries), QUERY_BATCH):
            batch = self.tokenizer(list(queries[start:start + QUERY_BATCH]), truncation=True,
                                   max_length=self.config.max_source_len, padding=True, return_tensors="pt")
            out = beam_search(self.model, batch["input_ids"], self.constraint, attention_mask=batch["attention_mask"],
                              num_beams=max(k, self.config.beams), num_return_sequences=k,
                              max_new_tokens=self.scheme.max_length)
            rows = self.constraint.docid(out.states)  # [B, k] docid rows, -1 if none
            for b in range(rows.shape[0]):
                results.append([
                    Hit(self.docids[int(rows[b, r])], float(out.scores[b, r]))
                    for r in range(k) if out.valid[b, r] and rows[b, r] >= 0
                ])
        return results


@dataclass
class SEDSIConfig(DSIConfig):
    docids: str = "elaborative"
    rehearsal: int = 3


class SEDSISearcher(DSISearcher):
    method = "se-dsi"
    Config = SEDSIConfig
    description = "SE-DSI: elaborative-description docids and rehearsal contents (else as dsi)"


def query_generator(name_or_path: str) -> Seq2SeqQueryGenerator:
    """A query generator trained by genir (a directory with querygen.json) or a HF checkpoint."""
    if (Path(name_or_path) / QUERYGEN_FILE).is_file():
        return Seq2SeqQueryGenerator.load(name_or_path)
    return Seq2SeqQueryGenerator.from_pretrained(name_or_path)


def _keyword_describer(corpus: list[Document]) -> Describer:
    """Describe each document by its best keyword query (the unsupervised fallback)."""
    salience = Salience(corpus)

    def describe(docs: Sequence[Document]) -> list[str]:
        return [next(iter(salience.keyword_queries(d, 1)), d.contents) for d in docs]

    return describe


def _docid_embeddings_mode(config: DSIConfig) -> str:
    """``config.docid_embeddings`` resolved to ``frozen``, ``init`` or ``none``."""
    mode = config.docid_embeddings
    if mode == "auto":
        return "frozen" if config.docids == "atomic" else "none"
    if mode not in {"frozen", "init", "none"}:
        raise GenirError(f"docid_embeddings={mode!r}: choose frozen, init, none or auto")
    if mode != "none" and config.docids != "atomic":
        raise GenirError(f"docid_embeddings={mode} needs atomic docids (one output token per document)")
    return mode


def _freeze_encoder_setting(config: DSIConfig) -> bool:
    """``config.freeze_encoder`` resolved: ``auto`` freezes every encoder that arrives pretrained."""
    value = config.freeze_encoder.lower()
    if value == "auto":
        return not config.model.startswith(T5_PREFIX)
    if value not in {"true", "false"}:
        raise GenirError(f"freeze_encoder={config.freeze_encoder!r}: choose true, false or auto")
    return value == "true"


def _embeddings(docs: list[Document], config: DSIConfig) -> np.ndarray:
    """``[len(docs), d]`` float32 document embeddings for semantic docids, reused when possible."""
    if config.embeddings_from:
        source = Path(config.embeddings_from)
        manifest = read_manifest(source, verify=False)
        docids = json.loads((source / "docids.json").read_text(encoding="utf-8")) if manifest.method == "dense" else None
        if docids != [d.id for d in docs]:
            raise GenirError(f"embeddings_from={source}: not a dense index of this corpus")
        return np.load(source / "embeddings.npy")
    return TextEncoder(DEFAULT_ENCODER).encode([d.contents for d in docs], progress="embedding documents")


def train_and_save(seq2seq: Seq2Seq, pairs: list[Pair], settings: Any, run_dir: Path, out: Path,
                   frozen_encoder: bool = False) -> dict[str, Any]:
    """Train ``seq2seq`` on ``pairs`` with Lightning, save it to ``out``, and drop the run's checkpoints.

    ``settings`` carries ``batch_size``, ``max_source_len``, ``lr``, ``warmup_steps``,
    ``max_epochs``, ``max_time``, ``precision`` and ``seed`` (a :class:`DSIConfig`, a SEAL config).
    With ``frozen_encoder`` the encoder is not trained and its states are computed once, before
    the first step. A killed call resumes from ``run_dir``'s last checkpoint when made again.

    Returns:
        Training statistics for the manifest: pairs, steps, epochs and the last logged loss.
    """
    encoder = freeze_encoder(seq2seq.model) if frozen_encoder else None
    datamodule = Seq2SeqDataModule(pairs, seq2seq.tokenizer, settings.batch_size, settings.max_source_len, seed=settings.seed,
                                   encoder=encoder, states_cache=cache_dir() / "encoder-states")
    steps_per_epoch = -(-len(pairs) // settings.batch_size)
    module = Seq2SeqModule(seq2seq.model, lr=settings.lr, warmup_steps=settings.warmup_steps,
                           total_steps=steps_per_epoch * settings.max_epochs)
    trainer = train(module, datamodule, run_dir, max_epochs=settings.max_epochs, max_time=settings.max_time,
                    precision=settings.precision, seed=settings.seed)
    save_seq2seq(module.model, out)
    loss = trainer.callback_metrics.get("train_loss")
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "train_pairs": len(pairs),
        "train_steps": int(trainer.global_step),
        "train_epochs": int(trainer.current_epoch),
        "final_train_loss": float(loss) if loss is not None else None,
    }


def run_directory(collection: Collection, settings: Any) -> Path:
    """Where training checkpoints of this corpus and these settings live (stable across kills)."""
    if dataclasses.is_dataclass(settings):
        settings = dataclasses.asdict(settings)
    key = hashlib.sha256(json.dumps([collection.fingerprint, settings], sort_keys=True).encode())
    return cache_dir() / "train" / key.hexdigest()[:16]

