"""``dsi`` and ``se-dsi``: a seq2seq model trained to map documents and queries to docids, searched
by constrained beam search over the docid trie.

``se-dsi`` is ``dsi`` with SE-DSI's defaults: elaborative-description docids (a query-like text
per document, from a query generator) and rehearsal contents (salient sentences) among the views.
Without a query generator (``querygen=``), a document's description and pseudo-queries are
keyword queries from its salient sentences (:mod:`genir.views.querygen`).

Building an index assigns docids, builds the training views, trains through the shared seq2seq
layer (:func:`genir.seq2seq.fit.fit`) and writes the files of :mod:`genir.dsi.index_files`.
Training checkpoints live outside the index (:func:`genir.seq2seq.fit.run_directory`): a build
that is killed resumes from its last checkpoint when the same command is run again. A collection
without the ``queries_split`` qrels trains zero-shot (documents and pseudo-queries); the dev set of
:mod:`genir.dsi.dev` chooses the checkpoint kept, the untrained (dense start) one included.

What differs between docid schemes is asked of the scheme (:class:`genir.dsi.docids.DocidScheme`'s
capabilities), never decided here by its name.

Growing (:meth:`Searcher.add` / ``delete``), with zero optimizer steps:

* add, docids with token vectors (``has_token_vectors``: atomic, rq, semantic) whose output rows
  are document embeddings (``docid_embeddings`` frozen or init): the scheme names the new
  document (atomic: the next token; rq and semantic: a code from the saved codebooks or k-means
  tree, then a new document token) and its new token's LM-head row is placed as a build places it
  (:meth:`~genir.dsi.docids.DocidScheme.new_token_vectors`: the embedding, or the residual left by
  its code vectors, so its summed rows are its embedding; then
  :func:`genir.seq2seq.model.grow_output_vocab`: that row itself under the dense start, else the
  seeded projection, rescaled to the docid rows' norm). Nothing else in the model changes.
* add, docids that grow without training (``grows_without_training``: semantic-digits, a path down
  the saved k-means tree and the next free position in its leaf; elaborative, a new description
  from the keyword describer or ``querygen``'s, and its embedding when the scheme keeps document
  vectors, ``dense_weight > 0``): the trie grows; the model, untouched, finds the new document as
  well as it generalizes to a code it never trained on.
* add with a fit (``genir add --fit``, :class:`~genir.retrieval.searcher.Addition`), atomic docids
  and the dense start: the new rows, placed as above, are then fitted to the new documents' first
  words, pseudo-queries and training queries against the sample of earlier documents' pairs the
  index keeps (:mod:`genir.dsi.row_fit`, :mod:`genir.dsi.fit_pairs`); still no optimizer step of the model.
  Any other docids (naive; token vectors without embedding rows) need training to place a new
  document: refused.
* delete (any docid scheme): the document leaves the trie and the results; its position stays
  reserved, with no id, sequence, description or vector left (:meth:`genir.dsi.docids.DocidScheme.delete`),
  and no pair in the sample of fit pairs (:meth:`genir.dsi.fit_pairs.FitPairs.without`).
  The model forgets as ``--forget`` says (:class:`~genir.retrieval.searcher.Forget`):

  - ``mask``: the rows that were the document's alone (atomic: its token's; rq, semantic: its own
    token's and any code token only deleted documents had) are zeroed in the decoder's input
    embedding and LM head (and bias); the rest of the model is kept as trained (it has seen the
    document: its queries, pseudo-queries and views). Exact atomic search masks the deleted rows.
  - ``unlearn``: NPO steps that push the deleted documents' training pairs (rebuilt from the
    collection, as the build made them; scored with their rows still in place) down to the dense
    start's likelihood, with a retain term on a sample of the others' (:mod:`genir.seq2seq.unlearn`),
    then ``mask``.
  - ``reindex``: a build of the remaining documents (their queries and judgements) with the same
    config: new docids, a new model.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genir.dsi.config import DSIConfig, SEDSIConfig
from genir.dsi.decoding import DocidDecoder
from genir.dsi.dev import DevSet, choose_rescore_weights, dev_evaluator, dev_set, teacher_judged
from genir.dsi.docids import (
    Describer,
    DocidScheme,
    SearchMode,
    docid_scheme_names,
    either,
    load_docid_scheme,
)
from genir.dsi.fit_pairs import FIT_PAIRS_FILE, FitPairs, fit_pairs_of
from genir.dsi.index_files import (
    DOCIDS_DIR,
    FILES,
    MODEL_DIR,
    TOKENIZER_DIR,
    TRIE_DIR,
    write_dsi_files,
)
from genir.dsi.row_fit import STORED_FIT_PAIRS, fit_rows
from genir.encoding.encoder import DEFAULT_ENCODER, TextEncoder, document_cache
from genir.encoding.stored import stored_embeddings
from genir.errors import GenirError
from genir.indexer.artifact import read_manifest
from genir.indexer.collection import Collection, Document
from genir.kernels.trie import DocidTrie
from genir.retrieval.searcher import (
    ROW_FIT_INDEXES,
    Addition,
    Deletion,
    Forget,
    Hit,
    Opening,
    Searcher,
    documents_source,
)
from genir.retrieval.teacher import teacher_labels
from genir.seq2seq.fit import fit, run_directory
from genir.seq2seq.model import (
    T5_PREFIX,
    Seq2Seq,
    build_seq2seq,
    freeze_output_embeddings,
    grow_output_vocab,
    zero_output_rows,
)
from genir.seq2seq.model_io import load_seq2seq
from genir.seq2seq.table_dtype import set_table_dtype
from genir.seq2seq.token_space import (
    TOKEN_SPACE_MODEL,
    build_token_space_seq2seq,
)
from genir.seq2seq.unlearn import unlearn
from genir.settings import parse_config
from genir.views.pairs import TextPair, ViewConfig, pseudo_query_examples, retrieval_examples, training_pairs
from genir.views.querygen import QueryGenerator, query_generator

log = logging.getLogger(__name__)


class DSISearcher(Searcher):
    method = "dsi"
    Config = DSIConfig
    description = f"DSI: seq2seq model generating docids under a docid trie ({' | '.join(docid_scheme_names())})"
    search_settings = ("max_query_len", "atomic_search", "elaborative_search", "beams", "code_beams", "candidates", "score", "plan_weight",
                       "dense_weight")

    def __init__(self, opening: Opening):
        super().__init__(opening)
        from transformers import AutoTokenizer

        directory = opening.directory
        self.model = load_seq2seq(directory / MODEL_DIR).to(opening.device)
        self.tokenizer = AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR)
        self.scheme: DocidScheme = load_docid_scheme(directory / DOCIDS_DIR)
        self.decoder = DocidDecoder(self.model, self.tokenizer, self.scheme, DocidTrie.load(directory / TRIE_DIR),
                                    rescore_weights=opening.manifest.stats.get("rescore_weights"))
        self.fit_pairs = FitPairs.load(directory)  # None: an index that cannot fit, or built before genir kept them

    @classmethod
    def build(cls, collection: Collection, config: DSIConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        supervised = bool(config.queries_split) and config.queries_split in collection.splits()
        if config.queries_split and not supervised:
            log.warning("collection %r has no qrels split %r: training zero-shot (documents and pseudo-queries)",
                        collection.name, config.queries_split)
        docs = list(collection.docs())
        scheme = DocidScheme.from_config(config)  # first: an unknown docids= is refused before a query generator loads
        generator = query_generator(config.querygen, docs, config.pseudo_query_words)
        if scheme.needs_describer:
            scheme.describer = describer(config, generator)
        docid_embeddings = config.docid_embeddings_mode()
        dense_start = config.dense_start_setting()
        frozen_encoder = config.freeze_encoder_setting()
        started = time.perf_counter()
        # rescore's weights to choose on dev (one cell: nothing to choose); the scheme keeps document
        # vectors for the dense term where one of them has it (given embeddings, it keeps them)
        grid = config.rescore_grid() if scheme.search_mode(config) is SearchMode.RESCORE else []
        needs_embeddings = scheme.needs_embeddings or docid_embeddings != "none" or any(dense > 0 for _, dense in grid)
        embeddings = _embeddings(docs, config) if needs_embeddings else None
        embedding_seconds = time.perf_counter() - started
        scheme.assign(docs, embeddings)
        dev = dev_set(collection, docs, config, supervised, generator)
        views = view_config(config, supervised)
        distilled = bool(config.teacher) and views.pseudo_queries > 0
        texts = training_pairs(collection, docs, dataclasses.replace(views, pseudo_queries=0) if distilled else views,
                               generator, dev.train_qrels if supervised else None, dev.held_out_docs)
        weights = None
        teacher_stats: dict[str, Any] = {}
        if distilled:
            started_teacher = time.perf_counter()
            plain = len(texts)
            texts, weights, dev = _distilled(texts, docs, views, generator, dev, config)
            teacher_stats = {"teacher_pairs": len(texts) - plain,
                             "teacher_seconds": round(time.perf_counter() - started_teacher, 1)}
        pairs = [(text, scheme.sequence(docid)) for text, docid in texts]
        if config.model == TOKEN_SPACE_MODEL:
            seq2seq = _token_space_seq2seq(scheme, config)
        else:
            tokenizer = config.tokenizer if config.model.startswith(T5_PREFIX) else None
            seq2seq = build_seq2seq(config.model, scheme.vocab_size, tokenizer=tokenizer, decoder_layers=config.decoder_layers,
                                    docid_embeddings=scheme.token_vectors(embeddings) if docid_embeddings != "none" else None,
                                    dense_start=dense_start, position_starts=scheme.position_starts() if dense_start else None,
                                    seed=config.seed)
        if docid_embeddings == "frozen":
            freeze_output_embeddings(seq2seq.model)
        select = dev_evaluator(dev, seq2seq.tokenizer, scheme, config, grid)
        margin = config.dev_margin_setting(supervised)
        stats = fit(seq2seq, pairs, config, run_directory(collection, config), frozen_encoder=frozen_encoder,
                    select=select, select_margin=margin, weights=weights)
        started = time.perf_counter()
        if len(grid) > 1 and dev.queries:  # the kept checkpoint's best cell, as its dev score chose it
            choice = choose_rescore_weights(DocidDecoder(seq2seq.model, seq2seq.tokenizer, scheme, scheme.trie()), dev, config,
                                            grid)
            stats.update(rescore_weights=list(choice.weights), rescore_dev_ndcg10=round(choice.score, 4),
                         rescore_choice_seconds=round(time.perf_counter() - started, 1))
            started = time.perf_counter()
        table_dtype = config.table_dtype_setting()
        set_table_dtype(seq2seq.model, table_dtype)  # trained in float32, stored and searched in table_dtype
        fit_pairs = None
        if row_fit_refusal(type(scheme), config) is None:
            # What a later genir add --fit holds new rows against: every document's first words and every
            # judgement of the split (its dev carve too, as continual add+fit constrains with), sampled.
            queries = retrieval_examples(collection, collection.qrels(config.queries_split)) if supervised else []
            fit_pairs = FitPairs.sample(fit_pairs_of(docs, queries, config.first_words), STORED_FIT_PAIRS, config.seed)
        files = write_dsi_files(directory, seq2seq.model, seq2seq.tokenizer, scheme, fit_pairs)
        return {**files, **stats, **teacher_stats, "docid_embeddings": docid_embeddings, "dense_start": dense_start, "table_dtype": table_dtype,
                "frozen_encoder": frozen_encoder, "supervised": supervised, "dev_set": dev.kind, "dev_margin": margin,
                "dev_queries": len(dev.queries), "pseudo_queries": views.pseudo_queries,
                "embedding_seconds": round(embedding_seconds, 1), "write_seconds": round(time.perf_counter() - started, 1)}

    def write_files(self, directory: Path) -> None:
        for name in FILES:
            shutil.copytree(self.directory / name, directory / name)
        if self.fit_pairs is not None:
            self.fit_pairs.save(directory)

    @property
    def num_docs(self) -> int:
        return len(self.decoder.docids)

    def to(self, device: str | torch.device | None) -> DSISearcher:
        self.decoder.to(device)
        return self

    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return [[Hit(docid, score) for docid, score in ranking] for ranking in self.decoder.search(queries, k, self.config)]

    # -- growing and shrinking -----------------------------------------------------------
    def _present(self, ids: Sequence[str]) -> set[str]:
        live = set(self.decoder.docids)
        return {docid for docid in ids if docid in live}

    def check_row_fit(self, needs_pairs: bool) -> None:
        refusal = row_fit_refusal(type(self.scheme), self.config)
        if refusal is not None:
            raise GenirError(f"fitting the docid rows of added documents (--fit) needs a dsi index with {ROW_FIT_INDEXES}; "
                             f"{self.directory} is a {self.method} index with {refusal}")
        if needs_pairs and self.fit_pairs is None:
            raise GenirError(f"{self.directory} keeps no sample of its documents' training pairs ({FIT_PAIRS_FILE}, which "
                             "new rows are fitted against: genir keeps one in indexes it builds since this version); build "
                             "it again with genir index to add with --fit, or add without --fit")

    def row_tokens(self) -> dict[str, int]:
        """Document id -> its output token, for every live document (atomic docids: one token each)."""
        return {docid: sequence[0] for docid, sequence in self.scheme.sequences().items()}

    def _write_added(self, docs: list[Document], staging: Path, addition: Addition) -> dict[str, Any]:
        mode = self.config.docid_embeddings_mode()
        scheme = self.scheme
        rows_placed = scheme.has_token_vectors and mode != "none"
        if not (rows_placed or scheme.grows_without_training):
            with_rows = either(docid_scheme_names(lambda s: s.has_token_vectors))
            growing = either(docid_scheme_names(lambda s: s.grows_without_training))
            raise GenirError(f"adding documents to a {self.method} index needs docids a new document can be placed by: "
                             f"{with_rows} docids whose output rows are embeddings (docid_embeddings=frozen or "
                             f"init), {growing} docids; this one has {scheme.name} docids"
                             + (f" with docid_embeddings={mode}" if scheme.has_token_vectors else "")
                             + ", which place a new document only by training: not supported yet")
        started = time.perf_counter()
        embeddings = _new_embeddings(docs, self.config) if rows_placed or scheme.needs_embeddings else None  # [n, d]
        embedding_seconds = time.perf_counter() - started
        started = time.perf_counter()
        if scheme.needs_describer:
            # Keyword descriptions weigh words by their idf over the documents added together.
            scheme.describer = describer(self.config, query_generator(self.config.querygen, docs, self.config.pseudo_query_words))
        first = scheme.num_docs
        scheme.extend(docs, embeddings)
        rows = scheme.new_token_vectors(embeddings, first) if rows_placed else None
        grow_output_vocab(self.model, scheme.vocab_size, rows, seed=self.config.seed)
        if mode == "frozen":
            freeze_output_embeddings(self.model)
        keeps_pairs = self.fit_pairs is not None  # (a fit needs them: Searcher.add checked)
        queries = self._added_queries(addition.collection, docs) if keeps_pairs else []
        fitted: dict[str, Any] = {}
        if addition.fit is not None:
            # Pseudo-queries' keywords weigh words by their idf over the documents added together, as descriptions' do.
            generator = query_generator(self.config.querygen, docs, self.config.pseudo_query_words)
            fitted = fit_rows(self.model, self.tokenizer, self.row_tokens(), docs, queries, self.fit_pairs.pairs, generator,
                              addition.fit, self.config.first_words, self.config.max_source_len, self.config.seed)
        if keeps_pairs:
            self.fit_pairs = self.fit_pairs.added(fit_pairs_of(docs, queries, self.config.first_words))
        files = write_dsi_files(staging, self.model, self.tokenizer, self.scheme, self.fit_pairs)
        return {**files, **fitted, "add_embedding_seconds": round(embedding_seconds, 3),
                "add_write_seconds": round(time.perf_counter() - started, 3), "add_optimizer_steps": 0}

    def _added_queries(self, collection: Collection | None, docs: list[Document]) -> list[TextPair]:
        """(query, document id) for every positive judgement, in ``collection``'s ``queries_split`` qrels, by a
        query that judges one of ``docs``: of a new document (pulls its row) or of one already indexed (constrains)."""
        split = self.config.queries_split
        if collection is None or not split or split not in collection.splits():
            return []
        new = {d.id for d in docs}
        live = new | set(self.decoder.docids)
        qrels = {qid: {d: g for d, g in judged.items() if d in live} for qid, judged in collection.qrels(split).items()
                 if any(d in new and g > 0 for d, g in judged.items())}
        return retrieval_examples(collection, qrels)

    def save_model(self, stats: dict[str, Any]) -> None:
        """Write this index again with its model as it is now in memory (trained or refitted in place
        since it was opened; :mod:`genir.continual.runner`), atomically as :meth:`add` writes;
        ``stats`` join the manifest's."""
        self._change("update", [], lambda staging: {**write_dsi_files(staging, self.model, self.tokenizer, self.scheme, self.fit_pairs),
                                                    **stats})

    def _write_deleted(self, ids: list[str], staging: Path, deletion: Deletion) -> dict[str, Any]:
        if deletion.forget is Forget.REINDEX:
            return self._reindex(self.decoder.docids, ids, staging, deletion)
        stats: dict[str, Any] = {}
        if deletion.forget is Forget.UNLEARN:
            # Before the rows are zeroed: the forgotten pairs are scored with their documents' rows
            # in place (a zeroed row's pair is at -log V already; genir.seq2seq.unlearn).
            forget, retain = self._unlearning_pairs(ids, deletion)
            # What the build kept fixed stays fixed: document rows that are embeddings, a frozen token table.
            if self.config.docid_embeddings_mode() == "frozen":
                freeze_output_embeddings(self.model)
            if self.config.model == TOKEN_SPACE_MODEL and self.config.token_table == "frozen":
                self.model.get_decoder().get_input_embeddings().requires_grad_(False)  # the head is tied to it
            stats = unlearn(self.model, self.tokenizer, forget, retain, deletion.unlearn, self.config.max_source_len)
        tokens = self.scheme.delete(ids)
        zero_output_rows(self.model, sorted(tokens))
        kept = self.fit_pairs.without(ids) if self.fit_pairs is not None else None
        return {**write_dsi_files(staging, self.model, self.tokenizer, self.scheme, kept), **stats, "zeroed_docid_rows": len(tokens)}

    def _unlearning_pairs(self, ids: list[str], deletion: Deletion) -> tuple[list[tuple[str, list[int]]], list[tuple[str, list[int]]]]:
        """The deleted documents' training pairs (source text, docid tokens) and a sample of the
        remaining documents': the views a build of this index trains on
        (:func:`view_config`), rebuilt from the documents' collection (:func:`documents_source`)."""
        config = parse_config(self.Config, self.manifest.config)
        collection = documents_source(self, deletion, self.decoder.docids)
        gone = set(ids)
        indexed = set(self.decoder.docids)
        docs = [d for d in collection.docs() if d.id in indexed]
        supervised = bool(self.manifest.stats.get("supervised"))
        views = view_config(config, supervised)
        generator = query_generator(config.querygen, docs, config.pseudo_query_words)
        # the build's split: its dev queries never trained, so they are neither forgotten nor retained
        dev = dev_set(collection, docs, config, supervised, generator)
        qrels = dev.train_qrels if supervised else {}

        def pairs(chosen: list[Document]) -> list[tuple[str, str]]:
            wanted = {d.id for d in chosen}
            judged = {q: {d: g for d, g in grades.items() if d in wanted} for q, grades in qrels.items()}
            return training_pairs(collection, chosen, views, generator, {q: g for q, g in judged.items() if g} if supervised else None,
                                  dev.held_out_docs)

        forget = [(text, self.scheme.sequence(docid)) for text, docid in pairs([d for d in docs if d.id in gone])]
        settings = deletion.unlearn
        live = [d for d in docs if d.id not in gone]
        rng = random.Random(settings.seed)
        per_doc = max(1, len(forget) // max(1, len(gone)))  # views per document, as the deleted ones have
        sample = rng.sample(live, min(len(live), -(-settings.retain_pairs // per_doc))) if settings.retain_pairs else []
        retain = [(text, self.scheme.sequence(docid)) for text, docid in pairs(sample)[:settings.retain_pairs]] if sample else []
        return forget, retain


class SEDSISearcher(DSISearcher):
    method = "se-dsi"
    Config = SEDSIConfig
    description = ("SE-DSI: elaborative-description docids (title + keywords, written in MiniLM's token space) and "
                   "rehearsal contents (else as dsi)")


def row_fit_refusal(scheme: type[DocidScheme], config: DSIConfig) -> str | None:
    """Why the rows of documents added to an index of ``scheme`` docids and ``config`` cannot be fitted
    (:mod:`genir.dsi.row_fit`: one row per document, the dense start's query vectors), or None when they can."""
    if not scheme.single_token:
        return f"{scheme.name} docids"
    if not config.dense_start_setting():
        return f"no dense start (model={config.model}, docid_embeddings={config.docid_embeddings_mode()})"
    return None


def view_config(config: DSIConfig, supervised: bool) -> ViewConfig:
    """The training views a build with ``config`` makes (supervised: with the ``queries_split`` queries)."""
    return ViewConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(ViewConfig)
                         if f.name not in ("pseudo_queries", "queries_split")},
                      pseudo_queries=config.pseudo_queries_setting(supervised),
                      queries_split=config.queries_split if supervised else "")


def _distilled(texts: list[tuple[str, str]], docs: list[Document], views: ViewConfig, generator: QueryGenerator, dev: DevSet,
               config: DSIConfig) -> tuple[list[tuple[str, str]], list[float], DevSet]:
    """``texts`` (each weighing 1) and the pseudo-queries labelled by ``config.teacher``
    (:mod:`genir.retrieval.teacher`: one pair per candidate, weighted by its soft label), shuffled with
    the seed, their weights, and ``dev`` judged by the teacher (:func:`genir.dsi.dev.teacher_judged`)."""
    queries = [text for text, _ in pseudo_query_examples(docs, views, generator, dev.held_out_docs)]
    ids = {d.id for d in docs}
    labels = teacher_labels(config.teacher, queries + list(dev.queries.values()), config.teacher_depth,
                            config.teacher_temperature, ids)
    weighted = [(text, docid, 1.0) for text, docid in texts]
    weighted += [(query, docid, weight) for query, ranked in zip(queries, labels) for docid, weight in ranked]
    random.Random(config.seed).shuffle(weighted)
    if dev.queries:
        dev = teacher_judged(dev, labels[len(queries):])
    return [(text, docid) for text, docid, _ in weighted], [weight for _, _, weight in weighted], dev


def _new_embeddings(docs: list[Document], config: DSIConfig) -> np.ndarray:
    """``[len(docs), d]`` float32 embeddings of documents added to a built index, by the encoder its
    rows came from: the dense index named by ``embeddings_from`` (its model and length), else genir's default."""
    model, max_length = DEFAULT_ENCODER, 256
    if config.embeddings_from:
        try:
            dense = read_manifest(Path(config.embeddings_from), verify=False).config
        except GenirError:
            raise GenirError(f"this index's rows came from the dense index {config.embeddings_from} (embeddings_from), "
                             "which is gone: the new documents cannot be embedded alike") from None
        model, max_length = dense.get("model", DEFAULT_ENCODER), int(dense.get("max_length", 256))
    return TextEncoder(model, max_length).encode([d.contents for d in docs], cache=document_cache())


def _embeddings(docs: list[Document], config: DSIConfig) -> np.ndarray:
    """``[len(docs), d]`` float32 document embeddings (semantic docids, docid rows), reused when possible."""
    if config.embeddings_from:
        return stored_embeddings(Path(config.embeddings_from), [d.id for d in docs])
    return TextEncoder(DEFAULT_ENCODER).encode([d.contents for d in docs], progress="embedding documents", cache=document_cache())


def describer(config: DSIConfig, generator: QueryGenerator) -> Describer:
    """Elaborative docids' descriptions as ``config.description`` says: ``keywords`` = the generator's
    description (keywords of the most salient sentence, or a query generator's query); ``title+keywords``
    = the document's title, then that (an author's own summary first; SciFact dev, README "SE-DSI")."""
    if config.description == "keywords":
        return generator.descriptions
    return lambda docs: [f"{doc.title} {text}".strip() for doc, text in zip(docs, generator.descriptions(docs))]


def _token_space_seq2seq(scheme: DocidScheme, config: DSIConfig) -> Seq2Seq:
    """``model=minilm-tokens``: elaborative docids written in MiniLM's tokens, which the decoder's tied
    table already holds (:mod:`genir.seq2seq.token_space`)."""
    if scheme.tokenizer != DEFAULT_ENCODER:
        writers = either(docid_scheme_names(lambda s: s.needs_describer))  # schemes that write descriptions
        raise GenirError(f"model={TOKEN_SPACE_MODEL} writes {DEFAULT_ENCODER}'s tokens: it needs {writers} docids "
                         f"(se-dsi) in that tokenizer, not {scheme.name} docids")
    return build_token_space_seq2seq(token_table=config.token_table, decoder_layers=config.decoder_layers, seed=config.seed)
