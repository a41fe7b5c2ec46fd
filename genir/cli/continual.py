"""``genir continual``: the DSI++ protocol from the shell.

:mod:`genir.cli.main` registers :func:`continual` on its app; this module needs only
:mod:`genir.cli.common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genir.cli.common import AllowEmptyOpt, CollectionOpt, DeviceOpt, err, out, user_errors


@user_errors
def continual(
    collection: CollectionOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory: indexes per step, results.json/.md, curves.png.")],
    method: Annotated[str, typer.Option(
        "--method", "-m",
        help="add (genir add: new rows from embeddings, no training) | add+fit (add, then the new rows fitted to "
             "their pseudo-queries, IncDSI) | finetune (add, then train on the new documents and queries) | replay (plus "
             "earlier indexing examples) | genreplay (plus pseudo-queries of earlier documents) | reindex (a fresh build "
             "of every document so far: upper bound). Comma-separated to compare several; finetune/replay/genreplay+sam "
             "trains that update with SAM.",
    )] = "add,reindex",
    sam: Annotated[bool, typer.Option("--sam", help="Train every listed update (finetune, replay, genreplay) with sharpness-aware minimization.")] = False,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Updates D1..Dn after D0 (n).")] = 5,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Option KEY=VALUE (repeatable). The run's: d0_fraction, max_docs, judged_only, queries_split "
                            "('' = zero-shot), update_epochs, update_lr, replay_ratio, sam_rho, fit_queries, "
                            "fit_proximity, eval_split, eval_docs, seed (genir.continual.ContinualConfig); any other key "
                            "is the dsi index's (docids, embeddings_from, max_epochs...: genir.dsi.DSIConfig, README).",
    )] = None,
    measure: Annotated[str, typer.Option(
        "--measure", help="Measure of the plot and of the a_(n,j) tables; auto: nDCG@10 of eval_split's queries "
                          "(index Hits@10 without them).")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help=(
        "Replace an existing run directory: only one holding nothing but what a run writes (anything else: refused)."))] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Reuse the D0 models and finished methods of an interrupted run with the same settings.")] = False,
    allow_empty_docs: AllowEmptyOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Continual indexing (DSI++): build a DSI index of D0, grow it with D1..Dn, measure forgetting.

    The collection is split into D0 (half the documents) and n equal updates, each with the queries whose
    relevant documents it completes. D0's index and reindex's are built by the dsi method's recipe (its
    checkpoint chosen on a dev split of their own training queries, or of held-out pseudo-queries zero-shot).

    After each step the index is scored on every part so far: a_(n,j) is indexing accuracy (a document's first
    words -> its own docid: index Hits@1, Hits@10) and Hits@10 / nDCG@10 of the part's eval_split queries.

    The report (results.md, results.json, curves.png) gives A_n (mean over parts), F_n (forgetting: drop from each
    part's best earlier score), LA_n (each part's score when it arrived), and the optimizer steps and minutes each
    method spent. Every step's index is a normal dsi index (genir search, genir run, Searcher.load).
    """
    from genir.continual.evaluation import measure_names
    from genir.continual.report import CURVES_PNG, RESULTS_JSON, RESULTS_MD
    from genir.continual.runner import ContinualConfig, MethodRun, run_continual
    from genir.devices import using_device
    from genir.dsi.config import DSIConfig
    from genir.errors import GenirError
    from genir.indexer.collection import Collection
    from genir.settings import parse_config, split_assignment

    assignments = [split_assignment(entry) for entry in settings or []]
    own = ContinualConfig.model_fields
    for key, _ in assignments:
        if key not in own and key not in DSIConfig.model_fields:
            raise GenirError(f"unknown option {key!r}: neither the run's ({', '.join(own)}) nor the dsi index's "
                             "(genir.dsi.config.DSIConfig, README)")
    config = parse_config(ContinualConfig, {**{k: v for k, v in assignments if k in own}, "steps": steps})
    dsi = parse_config(DSIConfig, {k: v for k, v in assignments if k not in own})
    runs = [MethodRun.parse(entry, sam) for entry in method.split(",") if entry.strip()]
    known = measure_names(config.eval_split) if config.eval_split else measure_names("")[:2]
    if measure == "auto":
        measure = known[-1]
    if measure not in known:
        raise GenirError(f"unknown --measure {measure!r} (choose from {', '.join(known)})")
    coll = Collection.open(collection, allow_empty_docs=allow_empty_docs)
    with using_device(device):
        run_continual(coll, config, dsi, runs, output, overwrite=overwrite, resume=resume,
                      log=lambda line: err.print(line, markup=False, highlight=False), report_measure=measure)
    md, js, png = output / RESULTS_MD, output / RESULTS_JSON, output / CURVES_PNG
    out.print(md.read_text(encoding="utf-8"), markup=False, highlight=False)
    out.print(f"wrote {js}, {md} and {png}")
