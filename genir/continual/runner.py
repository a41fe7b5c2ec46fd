"""Continual indexing runs: train on D0, update with D1..Dn by one method, score after every step.

A run directory holds:

* ``protocol.json``: the settings, the split (document ids per part, query counts), and what
  the generative memory used;
* ``d0/`` (and ``d0-sam/`` when a method runs with SAM): the index trained on ``D0``, shared by
  every method of the run, and ``d0.json`` its costs and scores (SAM runs start from a model trained with SAM on ``D0`` too, since
  DSI++'s point is the flatter minimum SAM finds from the start);
* ``LABEL/step-J/`` for each method label (``finetune``, ``genreplay+sam``...) and update ``J``:
  the index after the update, a normal ``dsi`` index (``genir search``, ``genir run``,
  ``Searcher.load``), written atomically; ``LABEL/run.json``: its accuracy rows and costs.

Every index of the run is built with the DSI machinery (docid schemes' ``assign``/``extend``, the
shared seq2seq layer's :func:`~genir.seq2seq.fit.fit`, and :func:`~genir.dsi.index_files.write_dsi_files`).
With ``resume``, the D0 indexes and finished method runs of an interrupted run with the same
settings and collection are reused; an unfinished method run starts again from D0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer

from genir.continual.evaluation import evaluate_parts
from genir.continual.protocol import ContinualSplit, split_collection
from genir.continual.replay import METHODS, GenerativeMemory, update_examples
from genir.continual.report import finite
from genir.dsi.config import DSIConfig
from genir.dsi.docids import DocidScheme, load_docid_scheme, new_docid_scheme
from genir.dsi.index_files import DOCIDS_DIR, MODEL_DIR, TOKENIZER_DIR, write_dsi_files
from genir.errors import GenirError
from genir.indexer.artifact import Manifest, atomic_directory, read_json_record, write_manifest
from genir.indexer.collection import Collection, Document
from genir.retrieval.dense import dense_embeddings
from genir.retrieval.encoder import DEFAULT_ENCODER, TextEncoder
from genir.retrieval.searcher import Searcher
from genir.seq2seq.fit import TrainSettings, fit
from genir.seq2seq.model import T5_PREFIX, Seq2Seq, build_seq2seq, grow_output_vocab
from genir.seq2seq.model_io import load_seq2seq
from genir.seq2seq.sam import DEFAULT_RHO
from genir.views.pairs import TextPair, ViewConfig, indexing_examples, salient_examples
from genir.views.querygen import query_generator

PROTOCOL_FILE = "protocol.json"
RUN_FILE = "run.json"
_FORMAT = "genir.continual"
_FORMAT_VERSION = 1
SCHEMES = ("atomic", "naive", "semantic")


@dataclass
class ContinualConfig:
    # -- protocol
    steps: int = 5  # updates D1..Dn
    d0_fraction: float = 0.5
    max_docs: int = 0  # 0: every document
    judged_only: bool = False  # draw documents among those some query judges relevant
    # -- docids and model (as the dsi method's options)
    docids: str = "atomic"  # atomic | naive | semantic
    model: str = "t5-config:small"
    tokenizer: str = DEFAULT_ENCODER
    docid_embeddings: bool = True  # atomic: start each document's token from its embedding
    embeddings_from: str = ""  # a dense index of the collection whose embeddings are reused
    # -- training views
    first_words: int = 64
    spans: int = 2
    span_words: int = 32
    rehearsal: int = 0
    pseudo_queries: int = 0
    pseudo_query_words: int = 8
    queries_split: str = "train"  # each part's queries of this split are trained with it ("" for none)
    retrieval_repeats: int = 1
    # -- training
    max_source_len: int = 64
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    initial_epochs: int = 30  # on D0
    update_epochs: int = 10  # per update, over that update's examples
    update_lr: float = 1e-3
    update_warmup_steps: int = 10
    precision: str = "32-true"
    sam_rho: float = DEFAULT_RHO  # radius of SAM, for the methods run with SAM
    # -- methods
    replay_ratio: float = 1.0  # replayed examples per new example (replay, genreplay)
    querygen: str = ""  # the generative memory's query generator; keyword queries without one
    memory_queries: int = 3  # keyword queries per document the fallback draws from
    # -- evaluation
    eval_split: str = "test"  # queries scored per part
    eval_docs: int = 0  # documents per part scored for indexing accuracy (0: all)
    beams: int = 10
    seed: int = 0


@dataclass(frozen=True)
class MethodRun:
    """One method of a run: ``finetune``, ``replay``, ``genreplay`` or ``reindex``, with or without SAM."""

    method: str
    sam: bool = False

    @property
    def label(self) -> str:
        return f"{self.method}+sam" if self.sam else self.method

    @classmethod
    def parse(cls, text: str, sam: bool = False) -> MethodRun:
        """``METHOD`` or ``METHOD+sam``; ``sam`` turns SAM on for every entry."""
        name, plus, suffix = text.strip().partition("+")
        if name not in METHODS or (plus and suffix != "sam"):
            raise GenirError(f"unknown continual method {text.strip()!r} (choose from {', '.join(METHODS)}, each optionally with +sam)")
        return cls(name, sam or bool(plus))


@dataclass
class Part:
    """A part's documents and training examples (source text, document id)."""

    docs: list[Document]
    indexing: list[TextPair]  # indexing views (and rehearsal/pseudo-queries, when configured)
    queries: list[TextPair]  # its training queries

    @property
    def examples(self) -> list[TextPair]:
        return self.indexing + self.queries


Log = Callable[[str], None]


def run_continual(
    collection: Collection,
    config: ContinualConfig,
    methods: Sequence[MethodRun],
    output: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    log: Log = print,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the protocol for each method; write the indexes and ``LABEL/run.json`` under ``output``.

    Returns:
        ``{"protocol": ..., "runs": {label: run record}}`` (what the report is made of).
    Raises:
        GenirError: bad settings or input, or ``output`` exists (without ``overwrite``/``resume``).
    """
    _check_config(config)
    if not methods:
        raise GenirError("no continual method given")
    if len({m.label for m in methods}) != len(methods):
        raise GenirError("a method is listed twice")
    output = Path(output)
    splits = tuple(dict.fromkeys(s for s in (config.queries_split, config.eval_split) if s))
    split = split_collection(collection, config.steps, config.d0_fraction, splits, config.max_docs, config.judged_only, config.seed)
    # Keyword queries weigh words by their idf over every document of the run.
    memory = GenerativeMemory(query_generator(config.querygen, [d for part in split.parts for d in part],
                                              config.pseudo_query_words, pool=config.memory_queries))
    fingerprint = _fingerprint(collection, config)
    _prepare_output(output, fingerprint, overwrite, resume)  # after every input check: bad input leaves no directory
    protocol = {
        "format": _FORMAT, "format_version": _FORMAT_VERSION, "fingerprint": fingerprint,
        "collection": {"name": collection.name, "path": str(collection.corpus_path.resolve()), "sha256": collection.fingerprint},
        "config": dataclasses.asdict(config), "split": split.describe(),
        "part_doc_ids": [[d.id for d in part] for part in split.parts],
        "generative_memory": memory.kind,
    }
    _write_json(output / PROTOCOL_FILE, protocol)
    log(f"parts: {split.describe()}")
    run = _Run(collection, config, split, memory, output, log, progress)
    records = {m.label: run.method(m, resume) for m in methods}
    return {"protocol": protocol, "runs": records}


class _Run:
    """The state one run shares across its methods: parts, examples, embeddings, D0 models."""

    def __init__(self, collection: Collection, config: ContinualConfig, split: ContinualSplit, memory: GenerativeMemory,
                 output: Path, log: Log, progress: bool) -> None:
        self.collection, self.config, self.split, self.memory = collection, config, split, memory
        self.output, self.log, self.progress = output, log, progress
        self.views = ViewConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(ViewConfig)})
        self.parts = [self._part(docs, j) for j, docs in enumerate(split.parts)]
        self.embeddings = _embeddings(split.parts, config) if config.docids == "semantic" or self._atomic_vectors else None
        shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(DSIConfig) if hasattr(config, f.name)}
        # Continual runs start atomic rows from the document embeddings and train them (new rows must move).
        shared["docid_embeddings"] = "init" if self._atomic_vectors else "none"
        self.dsi_config = DSIConfig(**shared)
        self.queries = collection.queries if config.eval_split else {}
        self.doc_views = [self._eval_views(part.docs, j) for j, part in enumerate(self.parts)]

    @property
    def _atomic_vectors(self) -> bool:
        return self.config.docids == "atomic" and self.config.docid_embeddings

    def _part(self, docs: list[Document], j: int) -> Part:
        views = dataclasses.replace(self.views, seed=self.config.seed + j)
        indexing = indexing_examples(docs, views)
        if views.rehearsal or views.pseudo_queries:
            indexing += salient_examples(docs, views, self.memory.generator)
        queries: list[TextPair] = []
        if self.config.queries_split:
            qrels = self.split.qrels[self.config.queries_split][j]
            texts = self.collection.queries
            queries = [(texts[q], d) for q, judged in qrels.items() for d, g in judged.items() if g > 0] * self.config.retrieval_repeats
        return Part(docs, indexing, queries)

    def _eval_views(self, docs: list[Document], j: int) -> dict[str, str]:
        """Document id -> the memorization query (the first-words view), for a sample of the part."""
        chosen = docs
        if self.config.eval_docs and len(docs) > self.config.eval_docs:
            rng = np.random.default_rng(self.config.seed + j)
            chosen = [docs[i] for i in sorted(rng.choice(len(docs), self.config.eval_docs, replace=False))]
        return {d.id: " ".join(d.contents.split()[: self.config.first_words]) for d in chosen if d.contents.split()}

    # -- D0 ------------------------------------------------------------------------------
    def initial(self, sam: bool, resume: bool) -> tuple[Path, dict[str, Any]]:
        """The index trained on D0 (with SAM or not), trained now or reused, and its record (costs, row 0)."""
        directory = self.output / ("d0-sam" if sam else "d0")
        record_path = directory.with_name(f"{directory.name}.json")
        if resume and record_path.is_file() and (directory / "manifest.json").is_file():
            self.log(f"reusing {directory}")
            return directory, json.loads(record_path.read_text(encoding="utf-8"))
        self.log(f"training on D0 ({len(self.parts[0].docs)} documents){' with SAM' if sam else ''}")
        scheme = new_docid_scheme(self.config.docids)
        vectors0 = self.embeddings[0] if self.embeddings is not None else None
        scheme.assign(self.parts[0].docs, vectors0)
        vectors = None
        if self._atomic_vectors:  # as the dsi method: each document's token row starts from its embedding
            vectors = np.zeros((scheme.vocab_size, vectors0.shape[1]), dtype=np.float32)
            vectors[[scheme.sequence(d.id)[0] for d in self.parts[0].docs]] = vectors0
        tokenizer = self.config.tokenizer if self.config.model.startswith(T5_PREFIX) else None
        seq2seq = build_seq2seq(self.config.model, scheme.vocab_size, tokenizer=tokenizer, docid_embeddings=vectors, seed=self.config.seed)
        pairs = list(self.parts[0].examples)
        random.Random(self.config.seed).shuffle(pairs)
        stats = self._train(seq2seq, scheme, pairs, sam, initial=True, run_name=directory.name)
        self._save_index(directory, seq2seq, scheme, {"continual": {"step": 0, "sam": sam, **stats}})
        record = {**stats, "row": self._evaluate(directory, 0)}
        _write_json(record_path, record)
        return directory, record

    # -- one method ----------------------------------------------------------------------
    def method(self, spec: MethodRun, resume: bool) -> dict[str, Any]:
        directory = self.output / spec.label
        if resume and (directory / RUN_FILE).is_file():
            self.log(f"reusing {directory / RUN_FILE}")
            return json.loads((directory / RUN_FILE).read_text(encoding="utf-8"))
        d0, initial = self.initial(spec.sam, resume)
        rows = [initial["row"]]
        seq2seq = Seq2Seq(load_seq2seq(d0 / MODEL_DIR), AutoTokenizer.from_pretrained(d0 / TOKENIZER_DIR))
        scheme = load_docid_scheme(d0 / DOCIDS_DIR)
        steps: list[dict[str, Any]] = []
        for j in range(1, len(self.parts)):
            part = self.parts[j]
            vectors = self.embeddings[j] if self.embeddings is not None else None
            scheme.extend(part.docs, vectors)
            grow_output_vocab(seq2seq.model, scheme.vocab_size, vectors if self._atomic_vectors else None, seed=self.config.seed)
            earlier = self.parts[:j]
            pairs = update_examples(
                spec.method, part.examples, [p for e in earlier for p in e.examples], [p for e in earlier for p in e.indexing],
                [d for e in earlier for d in e.docs], self.config.replay_ratio, self.memory, seed=self.config.seed * 1000 + j,
            )
            self.log(f"{spec.label}: update {j}/{len(self.parts) - 1} ({len(part.docs)} new documents, {len(pairs)} examples)")
            stats = self._train(seq2seq, scheme, pairs, spec.sam, initial=False, run_name=f"{spec.label}-{j}")
            step_dir = directory / f"step-{j}"
            self._save_index(step_dir, seq2seq, scheme,
                             {"continual": {"method": spec.method, "sam": spec.sam, "step": j, **stats}})
            started = time.perf_counter()
            rows.append(self._evaluate(step_dir, j))
            steps.append({**stats, "eval_seconds": round(time.perf_counter() - started, 1)})
        record = {
            "method": spec.method, "sam": spec.sam, "label": spec.label,
            "initial": {k: initial[k] for k in ("updates", "train_seconds", "examples")},
            "steps": steps, "rows": rows,
            "updates": sum(s["updates"] for s in steps),
            "train_seconds": round(sum(s["train_seconds"] for s in steps), 1),
        }
        _write_json(directory / RUN_FILE, record)
        return record

    # -- pieces --------------------------------------------------------------------------
    def _train(self, seq2seq: Seq2Seq, scheme: DocidScheme, pairs: list[TextPair], sam: bool, initial: bool,
               run_name: str) -> dict[str, Any]:
        """Train ``seq2seq.model`` in place on ``pairs``; its optimizer steps, wall seconds and example count."""
        config = self.config
        targets = [(text, scheme.sequence(doc_id)) for text, doc_id in pairs]
        settings = TrainSettings.of(config, max_epochs=config.initial_epochs if initial else config.update_epochs,
                                    lr=config.lr if initial else config.update_lr,
                                    warmup_steps=config.warmup_steps if initial else config.update_warmup_steps)
        # resume=False: a leftover of a killed run must not be resumed into another model.
        stats = fit(seq2seq, targets, settings, self.output / ".train" / run_name, sam_rho=config.sam_rho if sam else 0.0,
                    resume=False, progress=self.progress)
        return {"updates": stats["train_steps"], "train_seconds": stats["train_seconds"], "examples": len(targets)}

    def _save_index(self, directory: Path, seq2seq: Seq2Seq, scheme: DocidScheme, stats: dict[str, Any]) -> None:
        """Write a ``dsi`` index of the documents indexed so far, atomically (the files ``DSISearcher.build`` writes)."""
        with atomic_directory(directory, overwrite=True) as staging:
            files = write_dsi_files(staging, seq2seq.model, seq2seq.tokenizer, scheme)
            write_manifest(staging, Manifest(
                method="dsi", config=dataclasses.asdict(self.dsi_config),
                stats={**files, **stats},
                collection={"name": self.collection.name, "path": str(self.collection.corpus_path.resolve()),
                            "sha256": self.collection.fingerprint},
            ))

    def _evaluate(self, directory: Path, n: int) -> dict[str, list[float]]:
        """Row ``n`` of every measure, searched through the saved index as a user would."""
        searcher = Searcher.load(directory)
        qrels = self.split.qrels[self.config.eval_split][: n + 1] if self.config.eval_split else [{}] * (n + 1)
        k = min(10, searcher.scheme.num_docs)
        row = evaluate_parts(searcher, self.doc_views[: n + 1], qrels, self.queries, self.config.eval_split, k)
        self.log("  " + ", ".join(f"{name} " + " ".join(f"{v:.3f}" for v in values) for name, values in row.items()))
        return row


def _check_config(config: ContinualConfig) -> None:
    if config.docids not in SCHEMES:
        raise GenirError(f"continual indexing supports {', '.join(SCHEMES)} docids, not {config.docids!r}")
    if config.docid_embeddings and config.docids != "atomic":
        raise GenirError("docid_embeddings=true needs atomic docids (one output token per document); set docid_embeddings=false")
    for name in ("initial_epochs", "update_epochs", "batch_size", "max_source_len", "first_words", "beams"):
        if getattr(config, name) < 1:
            raise GenirError(f"{name} must be at least 1, got {getattr(config, name)}")
    if config.sam_rho <= 0:
        raise GenirError(f"sam_rho must be positive, got {config.sam_rho}")


def _fingerprint(collection: Collection, config: ContinualConfig) -> str:
    text = json.dumps([collection.fingerprint, dataclasses.asdict(config)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _prepare_output(output: Path, fingerprint: str, overwrite: bool, resume: bool) -> None:
    """Create ``output``, or check that an existing one may be reused or replaced."""
    if not output.exists():
        output.mkdir(parents=True)
        return
    protocol = output / PROTOCOL_FILE
    if not output.is_dir() or (any(output.iterdir()) and not protocol.is_file()):
        raise GenirError(f"{output} exists and is not a continual run directory; refusing to touch it")
    if resume and protocol.is_file():
        previous = read_json_record(protocol, _FORMAT, _FORMAT_VERSION, "continual run")
        if previous.get("fingerprint") != fingerprint:
            raise GenirError(f"{output} holds a run with other settings or another corpus; --resume needs the same ones (or use --overwrite)")
        return
    if not overwrite and any(output.iterdir()):
        raise GenirError(f"{output} already exists; pass --overwrite to replace it or --resume to continue it")
    shutil.rmtree(output)
    output.mkdir(parents=True)


def _embeddings(parts: list[list[Document]], config: ContinualConfig) -> list[np.ndarray]:
    """Per part, ``[len(part), d]`` float32 document embeddings (reused from a dense index when given)."""
    docs = [d for part in parts for d in part]
    if config.embeddings_from:
        vectors = dense_embeddings(Path(config.embeddings_from), [d.id for d in docs])
    else:
        vectors = TextEncoder(DEFAULT_ENCODER).encode([d.contents for d in docs], progress="embedding documents")
    bounds = np.cumsum([0] + [len(part) for part in parts])
    return [vectors[bounds[j]:bounds[j + 1]] for j in range(len(parts))]


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half of it."""
    from genir.atomic_files import atomic_write_text

    atomic_write_text(path, json.dumps(finite(record), indent=1) + "\n")
