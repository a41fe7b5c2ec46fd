"""``genir regress``: rerun reproducible conditions and fail when a score leaves its tolerance."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from genir.atomic_files import atomic_write_text
from genir.cli.common import err, out, output_file, user_errors


@user_errors
def regress(
    conditions_file: Annotated[Path, typer.Argument(metavar="FILE.yaml", help="A conditions file (benchmarks/conditions/*.yaml).")],
    only: Annotated[str | None, typer.Option("--only", help="Comma-separated condition names to rerun (default: all).")] = None,
    cheap: Annotated[bool, typer.Option("--cheap", help="Only the conditions marked cheap (what CI reruns).")] = False,
    data: Annotated[Path, typer.Option("--data", envvar="GENIR_DATA", help="Folder of the shared collections that conditions name.")]
    = Path("../shared/data"),
    work: Annotated[Path, typer.Option("--work", help="Each condition runs in a new folder under this one; kept only when it fails.")]
    = Path("bench-out/regress"),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the outcomes as JSON here.")] = None,
) -> None:
    """Rerun conditions (the genir commands, then the scores) and exit 1 if any score leaves its tolerance.

    A condition is data: its commands, collection, expected scores and tolerance, and where it was
    measured (see benchmarks/conditions/). Exit 0: every score within tolerance; 1: a score moved; 2: bad input.
    """
    from genir.evaluation.regress import collection_path, markdown, read_conditions, rerun, select

    if output is not None:
        output_file(output, "--output")
    chosen = select(read_conditions(conditions_file), [n.strip() for n in only.split(",") if n.strip()] if only else None, cheap)
    work.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for condition in chosen:
        folder = Path(tempfile.mkdtemp(prefix=f"{condition.name}.", dir=work))
        with err.status(f"{condition.name}: {len(condition.commands)} command(s)"):
            outcome = rerun(condition, collection_path(condition, conditions_file, data), folder)
        outcomes.append(outcome)
        if outcome.passed:
            shutil.rmtree(folder)  # made by mkdtemp above: nothing else is in it
        err.print(f"{condition.name}: {'ok' if outcome.passed else 'FAILED (kept ' + str(folder) + ')'} in {outcome.seconds:.0f} s",
                  highlight=False)
    out.print(markdown(outcomes), end="")
    if output is not None:
        atomic_write_text(output, json.dumps([{"name": o.condition.name, "scores": o.scores, "expected": o.condition.expected,
                                       "tolerance": o.condition.tolerance, "seconds": round(o.seconds, 1), "passed": o.passed}
                                      for o in outcomes], indent=1) + "\n")
    failed = [o.condition.name for o in outcomes if not o.passed]
    if failed:
        err.print(f"[bold red]regression:[/] {', '.join(failed)} left the tolerance", highlight=False)
        raise typer.Exit(1)
