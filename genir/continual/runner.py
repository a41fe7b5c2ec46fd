"""Continual indexing runs with the DSI recipe: build on D0, grow with D1..Dn by one method, score every step.

Every index of a run is a ``dsi`` index of the default recipe (or of the ``dsi`` settings given):
the D0 index is ``genir index -m dsi`` of D0, and updates go through the same paths a user has.

* ``add``: :meth:`~genir.retrieval.searcher.Searcher.add` (a new document's row is its embedding,
  or its residual under its saved rq code); zero optimizer steps.
* ``add+fit``: ``add``, then the new documents' rows fitted to their queries (first words,
  pseudo-queries, and the update's training queries) against the training queries and first words
  of earlier documents, drawn afresh from the run's parts at each update (:func:`genir.dsi.row_fit.fit_rows`,
  IncDSI's idea; ``genir add --fit`` calls the same function with the sample its index keeps); the
  model is not trained.
* ``finetune``, ``replay``, ``genreplay``: ``add``, then the model trained ``update_epochs`` on the
  update's examples (:mod:`genir.continual.replay`: the new part's views and training queries, plus
  what each replays), optionally with SAM (``+sam``). The rows stay as the recipe keeps them
  (frozen by default), so training moves the decoder, which every document shares.
* ``reindex``: a fresh build of D0..Dn with the recipe, its checkpoint chosen on its own dev split
  (the upper bound, and the index built from scratch that a grown one is compared with).

A run directory holds:

* ``protocol.json``: the settings (continual and dsi), the split, and the generative memory;
* ``collections/upto-J/``: a BEIR folder of the documents of D0..DJ with the training queries of
  those parts (none in a zero-shot run) and their ``eval_split`` queries: what D0 and ``reindex``
  build from, and a collection a user can index or evaluate as it is;
* ``d0/`` and ``d0.json``: the D0 index (shared by every method) and its costs and scores;
* ``LABEL/step-J/`` and ``LABEL/step-J.json``: the index after update J (a normal ``dsi`` index:
  ``genir search``, ``genir run``, ``Searcher.load``) and that step's costs and scores;
  ``LABEL/run.json``: the method's rows and costs.

With ``resume``, every finished step (its index and record) of an interrupted run with the same
settings is reused and the run goes on from there. With ``overwrite``, an existing run directory is
deleted only when everything in it is what a run writes (the layout above, its indexes holding only
the files their manifests list, ``.train/`` and the hidden temporaries of atomic writes); a folder
holding anything else is refused. A run holds the output's lock (``.NAME.lock`` beside it, as an
index build does) from the moment it touches the folder to its end, report included: a second run
of the same folder fails at once instead of deleting the first one's files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from genir.continual.evaluation import QUERY_MEASURES, evaluate_parts
from genir.continual.protocol import ContinualSplit, split_collection
from genir.continual.replay import REPLAY_METHODS, GenerativeMemory, update_examples
from genir.continual.report import CURVES_PNG, RESULTS_JSON, RESULTS_MD, finite, write_report
from genir.dsi.config import DSIConfig
from genir.dsi.docids import docid_scheme_class, docid_scheme_names, either
from genir.dsi.row_fit import RowFitSettings, fit_rows
from genir.dsi.searcher import DSISearcher, row_fit_refusal
from genir.errors import GenirError
from genir.indexer.artifact import check_destination, destination_lock, read_json_record
from genir.indexer.collection import Collection, Document, Qrels, write_beir
from genir.measures import evaluate
from genir.retrieval.searcher import ROW_FIT_INDEXES, Searcher, build_index
from genir.seq2seq.fit import fit
from genir.seq2seq.model import Seq2Seq, freeze_output_embeddings
from genir.seq2seq.sam import DEFAULT_RHO
from genir.seq2seq.settings import LearningRate, WarmupSteps
from genir.settings import Seed
from genir.views.pairs import (
    TextPair,
    ViewConfig,
    indexing_examples,
    retrieval_examples,
    training_pairs,
)
from genir.views.querygen import query_generator

PROTOCOL_FILE = "protocol.json"
RUN_FILE = "run.json"
_FORMAT = "genir.continual"
_FORMAT_VERSION = 2
GROWING_METHODS = ("add", "add+fit")
METHODS = (*GROWING_METHODS, *REPLAY_METHODS, "reindex")
TRAIN_SPLIT = "train"  # the qrels split the part collections carry their training queries in


class ContinualConfig(RowFitSettings):
    """The protocol, the updates and the evaluation; the index itself is a :class:`~genir.dsi.config.DSIConfig`.

    ``add+fit``'s ``fit_*`` keys are :class:`~genir.dsi.row_fit.RowFitSettings`' (``genir add --fit`` reads the same).

    An update that trains (finetune, replay, genreplay) trains with the index's training settings
    less its time budget, with ``update_epochs``, ``update_lr`` and ``update_warmup_steps`` in place of
    ``max_epochs``, ``lr`` and ``warmup_steps`` (:meth:`genir.seq2seq.settings.TrainingSettings.training`).
    """

    # -- protocol
    steps: int = Field(5, ge=1, description="updates D1..Dn")
    d0_fraction: float = Field(0.5, gt=0, lt=1, description="the share of the documents in D0")
    max_docs: int = Field(0, ge=0, description="documents drawn (0: every document)")
    judged_only: bool = Field(False, description="draw documents among those some query judges relevant")
    queries_split: str = Field("train", description="each part's queries of this split train with it ('': zero-shot)")
    # -- updates that train (finetune, replay, genreplay)
    update_epochs: int = Field(1, ge=1, description="epochs of an update that trains")
    update_lr: LearningRate = 3e-4
    update_warmup_steps: WarmupSteps = 10
    sam_rho: float = Field(DEFAULT_RHO, gt=0, description="radius of SAM, for the methods run with SAM")
    replay_ratio: float = Field(1.0, ge=0, description="replayed examples per new example (replay, genreplay)")
    memory_queries: int = Field(3, ge=0, description="keyword queries per document the generative memory draws from (0: its best ones)")
    # -- evaluation
    eval_split: str = Field("test", description="queries scored per part ('': none, indexing accuracy only)")
    eval_docs: int = Field(200, ge=0, description="documents per part scored for indexing accuracy (0: all)")
    seed: Seed = 0


@dataclass(frozen=True)
class MethodRun:
    """One method of a run (:data:`METHODS`), with or without SAM."""

    method: str
    sam: bool = False

    @property
    def label(self) -> str:
        return f"{self.method}+sam" if self.sam else self.method

    @classmethod
    def parse(cls, text: str, sam: bool = False) -> MethodRun:
        """``METHOD`` or ``METHOD+sam``; ``sam`` turns SAM on for every method that trains an update."""
        text = text.strip()
        name, with_sam = (text[: -len("+sam")], True) if text.endswith("+sam") else (text, False)
        if name not in METHODS:
            raise GenirError(f"unknown continual method {text!r} (choose from {', '.join(METHODS)}; "
                             f"{', '.join(REPLAY_METHODS)} optionally with +sam)")
        if with_sam and name not in REPLAY_METHODS:
            raise GenirError(f"{name} trains no update: +sam applies to {', '.join(REPLAY_METHODS)}")
        return cls(name, with_sam or (sam and name in REPLAY_METHODS))


Log = Callable[[str], None]


def run_continual(
    collection: Collection,
    config: ContinualConfig,
    dsi: DSIConfig,
    methods: Sequence[MethodRun],
    output: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    log: Log = print,
    progress: bool = True,
    report_measure: str | None = None,
) -> dict[str, Any]:
    """Run the protocol for each method; write the indexes and records under ``output``.

    Args:
        report_measure: also write the report (:func:`genir.continual.report.write_report`, plotting
            this measure) before the output's lock is released.
    Returns:
        ``{"protocol": ..., "runs": {label: run record}}`` (what the report is made of).
    Raises:
        GenirError: bad settings or input; ``output`` exists (without ``overwrite``/``resume``) or,
            with ``overwrite``, holds files a run did not write; another run holds ``output``.
    """
    _check_config(config, dsi)
    if not methods:
        raise GenirError("no continual method given")
    refusal = row_fit_refusal(docid_scheme_class(dsi.docids), dsi)
    if refusal is not None and any(m.method == "add+fit" for m in methods):
        raise GenirError(f"add+fit fits the docid rows of added documents, which needs {ROW_FIT_INDEXES}; these dsi "
                         f"settings give {refusal}")
    if len({m.label for m in methods}) != len(methods):
        raise GenirError("a method is listed twice")
    output = Path(output)
    splits = tuple(dict.fromkeys(s for s in (config.queries_split, config.eval_split) if s))
    split = split_collection(collection, config.steps, config.d0_fraction, splits, config.max_docs, config.judged_only, config.seed)
    # Keyword queries weigh words by their idf over every document of the run.
    memory = GenerativeMemory(query_generator(dsi.querygen, [d for part in split.parts for d in part],
                                              dsi.pseudo_query_words, pool=config.memory_queries))
    fingerprint = _fingerprint(collection, config, dsi)
    output.parent.mkdir(parents=True, exist_ok=True)
    with destination_lock(output):
        _prepare_output(output, fingerprint, overwrite, resume)  # after every input check: bad input leaves no directory
        protocol = {
            "format": _FORMAT, "format_version": _FORMAT_VERSION, "fingerprint": fingerprint,
            "collection": {"name": collection.name, "path": collection.resolved_path, "sha256": collection.fingerprint},
            "config": config.model_dump(mode="json"), "dsi": dsi.model_dump(mode="json"), "split": split.describe(),
            "part_doc_ids": [[d.id for d in part] for part in split.parts],
            "generative_memory": memory.kind,
        }
        _write_json(output / PROTOCOL_FILE, protocol)
        log(f"parts: {split.describe()}")
        run = _Run(collection, config, dsi, split, memory, output, log, progress)
        result = {"protocol": protocol, "runs": {m.label: run.method(m, resume) for m in methods}}
        if report_measure is not None:
            write_report(result, output, report_measure)
    return result


class _Run:
    """The state one run shares across its methods: parts, their examples and collections, the D0 index."""

    def __init__(self, collection: Collection, config: ContinualConfig, dsi: DSIConfig, split: ContinualSplit,
                 memory: GenerativeMemory, output: Path, log: Log, progress: bool) -> None:
        self.collection, self.config, self.dsi, self.split, self.memory = collection, config, dsi, split, memory
        self.output, self.log, self.progress = output, log, progress
        self.supervised = bool(config.queries_split)
        self.train_qrels = split.qrels[config.queries_split] if self.supervised else [{} for _ in split.parts]
        self.eval_qrels = split.qrels[config.eval_split] if config.eval_split else [{} for _ in split.parts]
        self.queries = collection.queries if (self.supervised or config.eval_split) else {}
        self.views = ViewConfig(**{f.name: getattr(dsi, f.name) for f in dataclasses.fields(ViewConfig)
                                   if f.name not in ("pseudo_queries", "queries_split")},
                                pseudo_queries=dsi.pseudo_queries_setting(self.supervised), queries_split="")
        self.doc_views = [self._eval_views(docs, j) for j, docs in enumerate(split.parts)]

    # -- the parts -----------------------------------------------------------------------
    def examples(self, j: int) -> list[TextPair]:
        """Part ``j``'s training examples as a build makes them: its documents' views and its training queries."""
        views = dataclasses.replace(self.views, seed=self.dsi.seed + j)
        return training_pairs(self.collection, self.split.parts[j], views, self.memory.generator, self.train_qrels[j])

    def part_collection(self, j: int) -> Collection:
        """``collections/upto-J``: D0..DJ with the training and ``eval_split`` queries of those parts (written once)."""
        path = self.output / "collections" / f"upto-{j}"
        if not (path / "corpus.jsonl").is_file():
            qrels = {TRAIN_SPLIT: _merged(self.train_qrels[: j + 1])} if self.supervised else {}
            if self.config.eval_split:
                qrels[self.config.eval_split] = _merged(self.eval_qrels[: j + 1])
            write_beir(path, [d for part in self.split.parts[: j + 1] for d in part], self.queries, qrels)
        return Collection.open(path, allow_empty_docs=True)

    def _eval_views(self, docs: list[Document], j: int) -> dict[str, str]:
        """Document id -> the memorization query (its first words), for a sample of the part."""
        chosen = docs
        if self.config.eval_docs and len(docs) > self.config.eval_docs:
            rng = np.random.default_rng(self.config.seed + j)
            chosen = [docs[i] for i in sorted(rng.choice(len(docs), self.config.eval_docs, replace=False))]
        return {d.id: " ".join(d.contents.split()[: self.dsi.first_words]) for d in chosen if d.contents.split()}

    # -- D0 ------------------------------------------------------------------------------
    def initial(self) -> tuple[Path, dict[str, Any]]:
        """The D0 index, built now or reused, and its record (costs, row 0)."""
        directory, record_path = self.output / "d0", self.output / "d0.json"
        if record_path.is_file() and (directory / "manifest.json").is_file():
            return directory, json.loads(record_path.read_text(encoding="utf-8"))
        self.log(f"building the D0 index ({len(self.split.parts[0])} documents)")
        record = {**self._build(directory, 0), "row": None}
        record["row"] = self._evaluate(directory, 0)
        _write_json(record_path, record)
        return directory, record

    def _build(self, directory: Path, j: int) -> dict[str, Any]:
        """Build ``directory`` from ``collections/upto-J`` with the dsi recipe; its costs."""
        manifest = build_index("dsi", self.part_collection(j), directory, self.dsi, overwrite=True, device=None)
        stats = manifest.stats
        return {"updates": int(stats.get("train_steps", 0)), "seconds": round(float(stats["build_seconds"]), 1),
                "examples": int(stats.get("train_pairs", 0)), "dev_best": stats.get("dev_best")}

    # -- one method ----------------------------------------------------------------------
    def method(self, spec: MethodRun, resume: bool) -> dict[str, Any]:
        directory = self.output / spec.label
        d0, initial = self.initial()
        rows, steps = [initial["row"]], []
        previous = d0
        for j in range(1, len(self.split.parts)):
            step_dir, record_path = directory / f"step-{j}", directory / f"step-{j}.json"
            if resume and record_path.is_file() and (step_dir / "manifest.json").is_file():
                self.log(f"reusing {step_dir}")
                record = json.loads(record_path.read_text(encoding="utf-8"))
            else:
                self.log(f"{spec.label}: update {j}/{len(self.split.parts) - 1} ({len(self.split.parts[j])} new documents)")
                record = self._step(spec, j, previous, step_dir)
                record["row"] = self._evaluate(step_dir, j)
                _write_json(record_path, record)
            rows.append(record.pop("row"))
            steps.append(record)
            previous = step_dir
        record = {
            "method": spec.method, "sam": spec.sam, "label": spec.label,
            "initial": {k: initial[k] for k in ("updates", "seconds", "examples")},
            "steps": steps, "rows": rows, "final": self._final_scores(previous),
            "updates": sum(s["updates"] for s in steps),
            "seconds": round(sum(s["seconds"] for s in steps), 1),
        }
        _write_json(directory / RUN_FILE, record)
        return record

    def _step(self, spec: MethodRun, j: int, previous: Path, step_dir: Path) -> dict[str, Any]:
        """Update ``j`` of ``spec`` from the index at ``previous`` into ``step_dir``; its costs."""
        if spec.method == "reindex":
            return self._build(step_dir, j)
        if step_dir.exists():
            shutil.rmtree(step_dir)  # a step left unfinished by a killed run: never a user's directory
        shutil.copytree(previous, step_dir)
        started = time.perf_counter()
        searcher = Searcher.load(step_dir, device=None)
        try:
            change = searcher.add(self.split.parts[j], allow_empty_docs=self.collection.allow_empty_docs)
            record: dict[str, Any] = {"updates": 0, "examples": 0, "add_seconds": change.seconds,
                                      "add_embedding_seconds": change.stats.get("add_embedding_seconds")}
            if spec.method == "add+fit":
                record.update(self._fit_rows(searcher, j))
            elif spec.method in REPLAY_METHODS:
                record.update(self._train(searcher, spec, j))
        finally:
            searcher.close()
        record["seconds"] = round(time.perf_counter() - started, 1)
        return record

    def _train(self, searcher: DSISearcher, spec: MethodRun, j: int) -> dict[str, Any]:
        """Train the grown index's model on update ``j``'s examples and write it; the optimizer steps."""
        earlier = range(j)
        pairs = update_examples(
            spec.method, self.examples(j),
            [p for i in earlier for p in indexing_examples(self.split.parts[i], dataclasses.replace(self.views, seed=self.dsi.seed + i))],
            [d for i in earlier for d in self.split.parts[i]], self.config.replay_ratio, self.memory,
            seed=self.config.seed * 1000 + j,
        )
        if self.dsi.docid_embeddings_mode() == "frozen":
            freeze_output_embeddings(searcher.model)
        targets = [(text, searcher.scheme.sequence(doc_id)) for text, doc_id in pairs]
        settings = self.dsi.training(max_epochs=self.config.update_epochs, lr=self.config.update_lr,
                                     warmup_steps=self.config.update_warmup_steps, max_time=None)
        # resume=False: a leftover of a killed run must not be resumed into another model.
        stats = fit(Seq2Seq(searcher.model, searcher.tokenizer), targets, settings, self.output / ".train" / f"{spec.label}-{j}",
                    frozen_encoder=self.dsi.freeze_encoder_setting(), sam_rho=self.config.sam_rho if spec.sam else 0.0,
                    resume=False, progress=self.progress)
        searcher.save_model({"continual": {"method": spec.label, "step": j, "train_steps": stats["train_steps"]}})
        return {"updates": stats["train_steps"], "examples": len(targets), "train_seconds": stats["train_seconds"]}

    def _fit_rows(self, searcher: DSISearcher, j: int) -> dict[str, Any]:
        """Fit the rows of update ``j``'s documents (:func:`genir.dsi.row_fit.fit_rows`) and write them.

        The update's training queries (IncDSI's queries of the new documents) pull a new document's
        row; the earlier parts' training queries and first words, and an update query's judgement of
        an earlier document (a query owned by this part may judge both), constrain.
        """
        earlier = range(j)
        old = [p for i in earlier for p in retrieval_examples(self.collection, self.train_qrels[i])]
        old += indexing_examples([d for i in earlier for d in self.split.parts[i]], dataclasses.replace(self.views, spans=0))
        stats = fit_rows(searcher.model, searcher.tokenizer, searcher.row_tokens(), self.split.parts[j],
                         retrieval_examples(self.collection, self.train_qrels[j]), old, self.memory.generator,
                         self.config.row_fit(), self.dsi.first_words, self.dsi.max_source_len, self.config.seed + j)
        searcher.save_model({"continual": {"method": "add+fit", "step": j, **stats}})
        return stats

    def _final_scores(self, directory: Path) -> dict[str, float]:
        """The last index on every ``eval_split`` query at once (as ``genir eval`` scores a run of the
        whole collection): what a grown index is compared on with one built from scratch."""
        qrels = _merged(self.eval_qrels)
        if not qrels:
            return {}
        searcher = Searcher.load(directory, device=None)
        try:
            run = dict(zip(qrels, searcher.batch_search([self.queries[q] for q in qrels], min(10, searcher.num_docs))))
        finally:
            searcher.close()
        scores = evaluate(run, qrels, measures=list(QUERY_MEASURES)).aggregate
        return {f"{self.config.eval_split} {m}": float(scores[m]) for m in QUERY_MEASURES}

    def _evaluate(self, directory: Path, n: int) -> dict[str, list[float]]:
        """Row ``n`` of every measure, searched through the saved index as a user would."""
        searcher = Searcher.load(directory, device=None)
        try:
            k = min(10, searcher.num_docs)
            row = evaluate_parts(searcher, self.doc_views[: n + 1], self.eval_qrels[: n + 1], self.queries,
                                 self.config.eval_split, k)
        finally:
            searcher.close()
        self.log("  " + ", ".join(f"{name} " + " ".join(f"{v:.3f}" for v in values) for name, values in row.items()))
        return row


def _merged(parts: Sequence[Qrels]) -> Qrels:
    return {qid: judged for qrels in parts for qid, judged in qrels.items()}


def _check_config(config: ContinualConfig, dsi: DSIConfig) -> None:
    if dsi.docid_embeddings_mode() == "none":
        with_rows = either(docid_scheme_names(lambda s: s.has_token_vectors))
        raise GenirError(f"continual runs grow the index with add, which needs {with_rows} docids whose rows are "
                         f"embeddings; docids={dsi.docids} with docid_embeddings={dsi.docid_embeddings} places a new "
                         "document only by training")


def _fingerprint(collection: Collection, config: ContinualConfig, dsi: DSIConfig) -> str:
    text = json.dumps([collection.fingerprint, config.model_dump(mode="json"), dsi.model_dump(mode="json")], sort_keys=True)
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
    _refuse_foreign(output)
    shutil.rmtree(output)
    output.mkdir(parents=True)


# What a run writes (module docstring), by name pattern: a file, an index (a folder whose manifest
# lists every file in it), a folder whose content is genir's whatever it is, or a folder laid out so.
_FILE, _INDEX, _SCRATCH = "file", "index", "scratch"
_LABELS = "|".join(re.escape(label) for method in METHODS for label in (method, f"{method}+sam"))
_LAYOUT: dict[str, Any] = {
    rf"{re.escape(PROTOCOL_FILE)}|d0\.json|{'|'.join(map(re.escape, (RESULTS_JSON, RESULTS_MD, CURVES_PNG)))}": _FILE,
    r"d0": _INDEX,
    r"\.train": _SCRATCH,  # training checkpoints and logs of the updates
    r"collections": {r"upto-\d+": {r"corpus\.jsonl|queries\.jsonl": _FILE, r"qrels": {r"[^.][^/]*\.tsv": _FILE}}},
    _LABELS: {r"step-\d+": _INDEX, rf"step-\d+\.json|{re.escape(RUN_FILE)}": _FILE},
}
_TEMPORARY = re.compile(r"\..+\.(?:[0-9a-f]{8}\.(?:tmp.*|old)|lock)")  # genir.atomic_files, destination_lock


def _refuse_foreign(output: Path) -> None:
    """Raise :class:`GenirError` unless ``output`` is a run directory holding only what a run writes."""
    try:
        record = json.loads((output / PROTOCOL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise GenirError(f"{output}/{PROTOCOL_FILE} is not a genir continual run record; refusing to replace {output}")
    foreign = _foreign_entries(output, _LAYOUT)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise GenirError(f"{output} holds files a continual run did not write ({shown}); refusing to replace it "
                         "(move them away, or write the run elsewhere)")


def _foreign_entries(folder: Path, layout: dict[str, Any], prefix: str = "") -> list[str]:
    """Paths under ``folder`` (relative, with ``prefix``) that ``layout`` does not account for."""
    found = []
    for entry in sorted(folder.iterdir()):
        name = prefix + entry.name
        if _TEMPORARY.fullmatch(entry.name):
            continue
        kind = next((kind for pattern, kind in layout.items() if re.fullmatch(pattern, entry.name)), None)
        real_dir = entry.is_dir() and not entry.is_symlink()
        if kind is None or entry.is_symlink():
            found.append(name)
        elif kind == _FILE:
            found += [] if entry.is_file() else [name]
        elif kind == _SCRATCH:
            found += [] if real_dir else [name]
        elif kind == _INDEX:
            found += [] if real_dir and _is_index(entry) else [name + "/"]
        else:
            found += _foreign_entries(entry, kind, name + "/") if real_dir else [name]
    return found


def _is_index(folder: Path) -> bool:
    """Whether ``folder`` is empty or a genir index holding only the files its manifest lists."""
    try:
        check_destination(folder, overwrite=True)
    except GenirError:
        return False
    return True


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half of it."""
    from genir.atomic_files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(finite(record), indent=1) + "\n")
