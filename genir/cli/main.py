"""``genir``: build indexes, search, write runs, evaluate and benchmark from the shell.

Every command is a thin wrapper over the library. Problems with the user's input end the
command with one ``error:`` line on stderr and exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from genir._version import __version__
from genir.atomic_files import atomic_write_text
from genir.cli.common import (
    AllowEmptyOpt,
    CollectionOpt,
    DeviceOpt,
    DevicesOpt,
    SearchSetOpt,
    SplitOpt,
    configure_logging,
    err,
    out,
    output_file,
    output_folder,
    quiet_libraries,
    terminate_like_interrupt,
    user_errors,
)
from genir.cli.continual import continual
from genir.cli.regress import regress
from genir.errors import GenirError

app = typer.Typer(
    name="genir",
    help="Generative retrieval toolkit: index a collection, search it, evaluate and compare methods.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # help texts are paragraphs wrapped in the source: markdown joins a paragraph's lines, so --help
    # rewraps them to the terminal instead of breaking each source line again
    rich_markup_mode="markdown",
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"genir {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    configure_logging()
    ctx.with_resource(quiet_libraries())  # for the whole command; undone when it ends
    ctx.with_resource(terminate_like_interrupt())


@app.command()
@user_errors
def methods() -> None:
    """List the retrieval methods and their options (set them with --set KEY=VALUE when building; those
    marked "search" also for one search, `genir search/run --set`)."""
    from genir.retrieval.searcher import METHODS, searcher_class
    from genir.settings import describe_fields

    for name in METHODS:
        cls = searcher_class(name)
        out.print(f"[bold]{name}[/]: {cls.description}")
        for field, allowed, default, help_text in describe_fields(cls.Config):
            mark = "  (search)" if field in cls.search_settings else ""
            out.print(f"    {field} = {default!r}: {allowed}{mark}", highlight=False, markup=False, soft_wrap=True)
            if help_text:
                out.print(f"        {help_text}", highlight=False, markup=False, soft_wrap=True)


@app.command()
@user_errors
def index(
    method: Annotated[str, typer.Option("--method", "-m", help="Retrieval method: see `genir methods`.")],
    collection: CollectionOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Index directory to create.")],
    settings: Annotated[list[str] | None, typer.Option("--set", "-s", help="Method option KEY=VALUE (repeatable), e.g. factory=HNSW32.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing index at --output.")] = False,
    allow_empty_docs: AllowEmptyOpt = False,
    model: Annotated[str | None, typer.Option("--model", help="Model name or path (= --set model=...).")] = None,
    docids: Annotated[str | None, typer.Option("--docids", help="Docid scheme: atomic|rq|semantic|naive|semantic-digits|elaborative (= --set docids=...).")] = None,
    max_time: Annotated[str | None, typer.Option("--max-time", help="Training budget DD:HH:MM:SS (= --set max_time=...).")] = None,
    device: DeviceOpt = "auto",
    devices: DevicesOpt = 1,
) -> None:
    """Build an index of a collection. The directory appears only when the build succeeds."""
    from genir.indexer.artifact import index_size_bytes
    from genir.indexer.collection import Collection
    from genir.retrieval.searcher import build_index, searcher_class
    from genir.settings import parse_config

    shortcuts = {"model": model, "docids": docids, "max_time": max_time}
    settings = [f"{key}={value}" for key, value in shortcuts.items() if value is not None] + (settings or [])
    config = parse_config(searcher_class(method).Config, settings)
    output_folder(output, "--output")
    coll = Collection.open(collection, allow_empty_docs=allow_empty_docs)
    manifest = build_index(method, coll, output, config, overwrite=overwrite, device=device, devices=devices)
    size = index_size_bytes(output) / 2**20
    out.print(f"built {method} index of {coll.name} ({manifest.stats.get('num_docs', '?')} docs) "
              f"at {output} in {manifest.stats['build_seconds']:.1f} s, {size:.1f} MB")


@app.command()
@user_errors
def add(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="Index directory to add to (changed in place, atomically).")],
    collection: CollectionOpt,
    fit: Annotated[bool, typer.Option("--fit", help=(
        "dsi with atomic docids and the dense start (the default recipe): after adding, fit the new documents' docid "
        "rows, the model untouched (IncDSI's idea, as `genir continual --method add+fit`): each new row is pulled toward "
        "the trained model's query vectors of its document's first words, fit_queries keyword pseudo-queries and the "
        "collection's training queries judging it, against the sample of earlier documents' training queries and first "
        "words the index keeps (fit_pairs.json, at most 2,000, written by genir index; an index built before it keeps "
        "none: build it again), and held near its embedding; L-BFGS on the new rows only, no optimizer step of the "
        "model. Costs one encoder pass over the new documents' texts and the kept pairs, then seconds of L-BFGS. "
        "Refused (exit 2, nothing written) by any other index."))] = False,
    settings: Annotated[list[str] | None, typer.Option("--set", "-s", help=(
        "--fit setting KEY=VALUE (repeatable): fit_queries, fit_old_queries, fit_proximity, fit_iterations "
        "(genir.dsi.row_fit.RowFitSettings)."))] = None,
    allow_empty_docs: AllowEmptyOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Add a collection's documents to an index without rebuilding it (bm25, dense, seal, hybrid, dsi and se-dsi with atomic, rq, semantic, semantic-digits or elaborative docids).

    Old documents keep their docids; an id already in the index is an error and nothing is written.
    The index is replaced only once the new version is complete. A dsi index with atomic docids and the
    dense start also keeps the new documents' first words and their training queries (the collection's
    train qrels) in its sample of fit pairs; --fit then fits their rows.
    """
    from genir.dsi.row_fit import RowFitSettings
    from genir.indexer.collection import Collection
    from genir.retrieval.searcher import add_documents
    from genir.settings import parse_config

    if settings and not fit:
        raise GenirError("--set gives settings of --fit only")
    row_fit = parse_config(RowFitSettings, settings or []) if fit else None
    coll = Collection.open(collection, allow_empty_docs=allow_empty_docs)
    with err.status(f"adding the documents of {coll.name} to {index_dir}" + (" and fitting their rows" if fit else "")):
        change = add_documents(index_dir, coll, device=device, fit=row_fit)
    _print_change(change, index_dir)
    if fit and "fit_objective_after" in change.stats:
        stats = change.stats
        out.print(f"fitted {change.documents:,} new rows to {stats['fit_queries']:,} queries against {stats['fit_old_queries']:,} "
                  f"kept pairs: objective {stats['fit_objective_before']:.4f} -> {stats['fit_objective_after']:.4f}, rows moved "
                  f"{stats['fit_mean_row_shift']:.4f} on average, {stats['fit_seconds']:.1f} s", highlight=False)


@app.command()
@user_errors
def delete(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="Index directory to delete from (changed in place, atomically).")],
    ids: Annotated[Path, typer.Option("--ids", help="File of document ids to delete, one per line.")],
    forget: Annotated[str, typer.Option("--forget", help=(
        "What a trained model (dsi, se-dsi, seal) keeps of the documents. mask: the model stays as trained, less the "
        "rows that were the documents' own; its other weights have seen them (their text, queries, pseudo-queries), "
        "which a membership attack on its losses may still tell. unlearn: a few NPO steps that push the model's "
        "likelihood of the documents' training pairs down to what its dense start gives them (for a dense-start DSI: "
        "the pretrained retriever, which never saw them), keeping the others', then mask (approximate; --set steps=, "
        "passes=, lr=, beta=, retain_weight=, batch_size=, retain_pairs=, seed=). reindex: build the index again from the remaining documents with the "
        "same settings (exact; as slow as a build). Indexes without a trained model delete exactly in every mode."))] = "mask",
    collection: Annotated[Path | None, typer.Option("--collection", "-c", help=(
        "unlearn, reindex: the collection holding the documents' texts, queries and judgements (default: the one the "
        "index was built from, as its manifest records it)."))] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", "-s", help="unlearn setting KEY=VALUE (repeatable).")] = None,
    keep_cache: Annotated[bool, typer.Option("--keep-cache", help=(
        "Keep $GENIR_CACHE's embeddings, encoder states and training runs; by default every entry computed from a "
        "document's text is removed (the cache cannot tell which rows were the deleted documents', so all go; the next "
        "build of any corpus embeds its documents again)."))] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Delete documents from an index (bm25, dense, dense-ft, hybrid, dsi, se-dsi, seal, seal-hybrid): they are
    never returned again, and nothing of them stays in the index's files or in $GENIR_CACHE.

    Each method writes its files without the documents: bm25 merges them out of its segments, dense
    rewrites its rows, seal rebuilds the FM-index segments that held them (no tombstones: the text would
    stay until a merge), dsi drops their ids, sequences, descriptions, vectors and trie entries (their
    positions stay reserved) and zeroes their own docid rows. An id not in the index is an error and
    nothing is written. The index is replaced only once the new version is complete.
    """
    from genir.indexer.collection import Collection
    from genir.retrieval.searcher import Deletion, Forget, delete_documents, read_id_file
    from genir.seq2seq.settings import UnlearnSettings
    from genir.settings import parse_config

    try:
        mode = Forget(forget)
    except ValueError:
        raise GenirError(f"--forget {forget!r}: choose mask, unlearn or reindex") from None
    if settings and mode is not Forget.UNLEARN:
        raise GenirError("--set gives settings of --forget unlearn only")
    unlearn = parse_config(UnlearnSettings, settings or [])
    doc_ids = read_id_file(ids)
    deletion = Deletion(mode, Collection.open(collection) if collection is not None else None, unlearn)
    with err.status(f"deleting {len(doc_ids):,} documents from {index_dir} (--forget {mode.value})"):
        change = delete_documents(index_dir, doc_ids, device=device, deletion=deletion, keep_cache=keep_cache)
    _print_change(change, index_dir)


@app.command()
@user_errors
def optimize(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="seal index to merge (changed in place, atomically).")],
) -> None:
    """Merge a seal index's FM-index segments into one over its live documents (Lucene's forceMerge).

    Adds write new segments (deletes rebuild the segments that held the documents, and drop an older
    index's tombstones); after a merge the index is the one a build of its documents gives.
    """
    from genir.seal.searcher import optimize_index

    with err.status(f"merging the segments of {index_dir}"):
        change = optimize_index(index_dir)
    stats = change.stats
    if stats["merged_segments"] == 1 and not stats["dropped_docs"]:
        out.print(f"{index_dir} is one segment without deleted documents: nothing to merge", highlight=False)
        return
    out.print(f"merged {stats['merged_segments']} segments of {index_dir} into one ({stats['dropped_docs']:,} deleted "
              f"documents dropped, {change.num_docs_after:,} documents): FM-index {stats['fmindex_bytes_before'] / 2**20:.1f} MB "
              f"-> {stats['fmindex_bytes'] / 2**20:.1f} MB in {change.seconds:.2f} s", highlight=False)


def _print_change(change, index_dir: Path) -> None:
    verb = "added" if change.operation == "add" else "deleted"
    out.print(f"{verb} {change.documents:,} documents {'to' if verb == 'added' else 'from'} {index_dir}: "
              f"{change.num_docs_before:,} -> {change.num_docs_after:,} documents in {change.seconds:.2f} s", highlight=False)


@app.command("train-querygen")
@user_errors
def train_querygen(
    collection: CollectionOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the trained generator.")],
    split: Annotated[str, typer.Option("--split", help="qrels split whose (document, query) pairs it learns from.")] = "train",
    model: Annotated[str | None, typer.Option("--model", help=(
        "t5-config:tiny|small|base (t5-config:small by default), bert2bert:NAME, a HF seq2seq, or minilm-tokens "
        "(the frozen --tokenizer encoder writing through its word embeddings, with the query start)."))] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer of queries and documents (all-MiniLM-L6-v2 by default).")] = None,
    max_epochs: Annotated[int | None, typer.Option("--max-epochs", min=1, help="Epochs (10 by default).")] = None,
    max_time: Annotated[str | None, typer.Option("--max-time", help="Training budget DD:HH:MM:SS (none by default).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Pairs per step (32 by default).")] = None,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Any other setting KEY=VALUE (repeatable): lr, seed, max_source_len, max_query_tokens, warmup_steps, "
                            "decay, precision (genir.views.querygen.QueryGenConfig).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing generator at --output.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Train a document-to-query generator (doc2query) for pseudo-queries and SE-DSI descriptions.

    Use it with `genir index --method dsi|se-dsi --set querygen=OUTPUT`.
    """
    from genir.devices import using_device
    from genir.indexer.artifact import Manifest, atomic_directory, write_manifest
    from genir.indexer.collection import Collection
    from genir.seq2seq.fit import run_directory
    from genir.settings import parse_config
    from genir.views.querygen import QueryGenConfig, train_query_generator

    shortcuts = {"model": model, "tokenizer": tokenizer, "max_epochs": max_epochs, "max_time": max_time, "batch_size": batch_size}
    config = parse_config(QueryGenConfig, [*(settings or []), *(f"{key}={value}" for key, value in shortcuts.items() if value is not None)])
    output_folder(output, "--output")
    coll = Collection.open(collection)
    docs = {d.id: d for d in coll.docs()}
    queries = coll.queries
    pairs = [(docs[d].contents, queries[q]) for q, judged in coll.qrels(split).items() for d, grade in judged.items() if grade > 0]
    recorded = {**config.model_dump(mode="json"), "split": split}
    run_dir = run_directory(coll, {"querygen": recorded})
    with using_device(device), atomic_directory(output, overwrite) as staging:
        generator = train_query_generator(pairs, out_dir=run_dir, config=config, enable_progress_bar=True)
        generator.save(staging)
        write_manifest(staging, Manifest(method="querygen", config=recorded, stats={"train_pairs": len(pairs)},
                                         collection={"name": coll.name, "sha256": coll.fingerprint}))
    out.print(f"trained a query generator on {len(pairs)} (document, query) pairs of {coll.name} {split}: {output}")


@app.command()
@user_errors
def search(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="Index directory.")],
    queries: Annotated[list[str], typer.Argument(metavar="QUERY...", help="One or more queries.")],
    k: Annotated[int, typer.Option("-k", help="Number of hits per query.")] = 10,
    settings: SearchSetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON (one object: index, method, k, and per "
                                                         "query its hits with rank, docid, score and text) instead of tables.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Search an index and print the hits as a table, with each document's text where the index stores it
    (bm25 and the hybrids that include it; dense, dsi, se-dsi and seal indexes keep no document text)."""
    from genir.retrieval.searcher import Searcher, check_queries

    check_queries(queries)  # before the index is opened
    searcher = Searcher.load(index_dir, device=device, settings=settings or ())
    results = [
        (query, [(rank, hit, searcher.doc_text(hit.docid)) for rank, hit in enumerate(hits, start=1)])
        for query, hits in zip(queries, searcher.batch_search(queries, k))
    ]
    if as_json:
        print(json.dumps({"index": str(index_dir), "method": searcher.method, "k": k, "results": [
            {"query": query, "hits": [{"rank": rank, "docid": hit.docid, "score": hit.score, "text": text}
                                      for rank, hit, text in hits]}
            for query, hits in results]}, ensure_ascii=False, indent=1))
        return
    for query, hits in results:
        table = Table(title=f"{query}  [{searcher.method}]", title_justify="left", expand=True)
        table.add_column("rank", justify="right", no_wrap=True)
        table.add_column("docid", no_wrap=True, max_width=40)
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("text", overflow="ellipsis", no_wrap=True, ratio=1)
        for rank, hit, text in hits:
            table.add_row(str(rank), hit.docid, f"{hit.score:.4f}", (text or "").replace("\n", " "))
        out.print(table)


@app.command()
@user_errors
def run(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="Index directory.")],
    collection: CollectionOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="TREC run file to write.")],
    split: SplitOpt = "test",
    k: Annotated[int, typer.Option("-k", help="Hits per query.")] = 100,
    allow_empty_docs: AllowEmptyOpt = False,
    settings: SearchSetOpt = None,
    device: DeviceOpt = "auto",
    devices: DevicesOpt = 1,
) -> None:
    """Search every query of a split and write a TREC run file.

    A collection with queries but no qrels at all (your own queries.jsonl): every query is searched,
    and a note says the run cannot be evaluated against this collection.
    """
    from genir.evaluation.runs import write_run
    from genir.evaluation.sharded_search import sharded_batch_search
    from genir.indexer.artifact import read_manifest
    from genir.indexer.collection import Collection
    from genir.retrieval.searcher import Searcher

    output_file(output, "--output")
    coll = Collection.open(collection, allow_empty_docs=allow_empty_docs)
    if coll.splits():
        queries = coll.split_queries(split)
    else:
        queries = coll.queries
        err.print(f"note: {coll.name} has no qrels: searching all {len(queries):,} queries of {coll.queries_path}; "
                  "the run cannot be evaluated against this collection", markup=False, highlight=False)
    with err.status(f"searching {len(queries)} queries"):
        if devices > 1:
            method = read_manifest(index_dir).method
            accelerator = "cpu" if device == "cpu" else "auto"
            results = sharded_batch_search(index_dir, list(queries.values()), k, devices, accelerator, settings=settings or ())
        else:
            searcher = Searcher.load(index_dir, device=device, settings=settings or ())
            method = searcher.method
            results = searcher.batch_search(list(queries.values()), k)
    write_run(dict(zip(queries, results)), output, tag=f"genir-{method}")
    out.print(f"wrote {output} ({len(queries)} queries, k={k})")


@app.command(name="eval")
@user_errors
def evaluate_runs(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="TREC run file(s).")],
    collection: CollectionOpt,
    split: SplitOpt = "test",
    per_query: Annotated[Path | None, typer.Option("--per-query", help="Write per-query scores (JSON) here, for significance tests.")] = None,
    allow_empty_docs: AllowEmptyOpt = False,
) -> None:
    """Evaluate TREC run files: nDCG@10, RR@10, R@1/10/100, Hits@1/10."""
    from genir.evaluation.runs import read_run
    from genir.indexer.collection import Collection
    from genir.measures import DEFAULT_MEASURES, evaluate

    if per_query is not None:
        output_file(per_query, "--per-query")
    qrels = Collection.open(collection, allow_empty_docs=allow_empty_docs).qrels(split)
    table = Table(title=f"{collection} ({split})", title_justify="left")
    table.add_column("run")
    for measure in DEFAULT_MEASURES:
        table.add_column(measure, justify="right")
    per_query_scores = {}
    for path in runs:
        result = evaluate(read_run(path), qrels)
        per_query_scores[str(path)] = result.per_query
        table.add_row(path.name, *(f"{result.aggregate[m]:.4f}" for m in DEFAULT_MEASURES))
    out.print(table)
    if per_query is not None:
        atomic_write_text(per_query, json.dumps(per_query_scores, indent=1) + "\n")
        out.print(f"per-query scores: {per_query}")


@app.command()
@user_errors
def bench(
    collection: CollectionOpt,
    split: SplitOpt = "test",
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated METHOD or LABEL=METHOD entries, e.g. bm25,dense,atomic=dsi.")] = "bm25,dense",
    output: Annotated[Path, typer.Option("--output", "-o", help="Work directory: indexes/, runs/, bench.md, bench.json.")] = Path("bench-out"),
    settings: Annotated[list[str] | None, typer.Option("--set", "-s", help="LABEL.KEY=VALUE (repeatable), e.g. dense.factory=HNSW32.")] = None,
    reuse: Annotated[bool, typer.Option("--reuse", help="Reuse indexes in the work directory built with the same config and corpus.")] = False,
    k: Annotated[int, typer.Option("-k", help="Hits per query in the run files.")] = 100,
    allow_empty_docs: AllowEmptyOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Build, run and evaluate each method; write one markdown table and JSON."""
    from genir.evaluation.bench import markdown_table, run_bench, write_report
    from genir.indexer.collection import Collection

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise GenirError("--methods is empty")
    coll = Collection.open(collection, allow_empty_docs=allow_empty_docs)
    rows = run_bench(coll, split, names, output, settings or [], reuse=reuse, k=k, device=device,
                     log=lambda line: err.print(line, markup=False, highlight=False))
    md_path, json_path = write_report(rows, coll, split, output)
    out.print(markdown_table(rows))
    out.print(f"\nwrote {md_path} and {json_path}")


# Commands defined in other modules (they import genir.cli.common, never this module), listed last in --help.
app.command()(continual)
app.command()(regress)

if __name__ == "__main__":
    app()
