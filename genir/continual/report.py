"""The report of a continual run: ``results.json``, ``results.md`` (A_n, F_n, LA_n, A_n as a share
of re-indexing's, optimizer steps and minutes per method) and ``curves.png`` (the a_{n,j} curves,
one panel per method).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from genir.atomic_files import atomic_path, atomic_write_text
from genir.continual.metrics import accuracy_matrix, average_accuracy, summary

RESULTS_JSON, RESULTS_MD, CURVES_PNG = "results.json", "results.md", "curves.png"


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Per method label: per measure the matrix, ``{A, F, LA}`` at the last step and ``A`` over
    re-indexing's ``A`` (``of_reindex``, when ``reindex`` ran), and the costs."""
    runs = result["runs"]
    reindex = next((r for r in runs.values() if r["method"] == "reindex"), None)
    table: dict[str, Any] = {}
    for label, run in runs.items():
        measures = {}
        for measure in run["rows"][0]:
            matrix = accuracy_matrix([row[measure] for row in run["rows"]])
            measures[measure] = {"matrix": finite(matrix.tolist()), **finite(summary(matrix))}
        table[label] = {
            "method": run["method"], "sam": run["sam"], "measures": measures,
            "updates": run["updates"], "initial_updates": run["initial"]["updates"],
            "update_minutes": run["seconds"] / 60, "initial_minutes": run["initial"]["seconds"] / 60,
            "fewer_updates_than_reindex": reindex["updates"] / run["updates"] if reindex and run["updates"] else None,
            "final": run.get("final", {}),
        }
    if reindex is not None:
        anchor = table[reindex["label"]]["measures"]
        for row in table.values():
            for measure, scores in row["measures"].items():
                a, ref = scores.get("A"), anchor[measure].get("A")
                scores["of_reindex"] = a / ref if a is not None and ref else None
    return table


def finite(value: Any) -> Any:
    """``value`` with every NaN float (an undefined score) replaced by None, so it is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _cell(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(result: dict[str, Any], table: dict[str, Any], headline: str) -> str:
    """Tables: every measure's A/F/LA at the last step and the costs; then ``headline``'s a_{n,j} per method."""
    steps = result["protocol"]["config"]["steps"]
    measures = list(next(iter(table.values()))["measures"]) if table else []
    split = result["protocol"]["split"]
    lines = [
        f"Continual indexing of {result['protocol']['collection']['name']}: D0 + {steps} updates, "
        f"documents per part {split['documents']}; generative memory: {result['protocol']['generative_memory']}.",
        "",
        "| method | " + " | ".join(f"{m}: A_{steps} / F_{steps} / LA_{steps}" for m in measures)
        + f" | {headline}: A_{steps} / reindex's | optimizer steps D1..D{steps} | fewer than reindex "
        f"| minutes D1..D{steps} | D0 steps / minutes |",
        "|---|" + "---:|" * (len(measures) + 5),
    ]
    for label, row in table.items():
        cells = [" / ".join(_cell(row["measures"][m][key]) for key in ("A", "F", "LA")) for m in measures]
        ratio = row["fewer_updates_than_reindex"]
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {_cell(row['measures'][headline].get('of_reindex'))} "
            f"| {row['updates']} | {'n/a' if ratio is None else f'{ratio:.1f}x'} "
            f"| {row['update_minutes']:.1f} | {row['initial_updates']} / {row['initial_minutes']:.1f} |"
        )
    finals = sorted({name for row in table.values() for name in row["final"]})
    if finals:
        lines += ["", f"The index after D{steps} on every query at once (a grown index beside one built from scratch):", "",
                  "| method | " + " | ".join(finals) + " |", "|---|" + "---:|" * len(finals)]
        lines += [f"| {label} | " + " | ".join(_cell(row["final"].get(name)) for name in finals) + " |"
                  for label, row in table.items()]
    if table:
        lines += ["", f"a_(n,j) of {headline} (row n: after the update with D_n; column j: part D_j):", ""]
        for label, row in table.items():
            lines += [f"{label}:", "", "| n | " + " | ".join(f"D{j}" for j in range(steps + 1)) + " |",
                      "|---|" + "---:|" * (steps + 1)]
            for n, values in enumerate(row["measures"][headline]["matrix"]):
                lines.append(f"| {n} | " + " | ".join(_cell(v) if j <= n else "" for j, v in enumerate(values)) + " |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot(table: dict[str, Any], measure: str, path: Path) -> None:
    """``curves.png``: A_n of every method, then per method one a_{n,j} curve per part D_j."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = list(table)
    panels = len(labels) + 1
    cols = min(panels, 3)
    rows = -(-panels // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    flat = axes.ravel()
    for ax in flat[panels:]:
        ax.set_visible(False)
    for ax in flat[:panels]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax = flat[0]
    for label in labels:
        matrix = np.array(table[label]["measures"][measure]["matrix"], dtype=float)
        steps = np.arange(len(matrix))
        ax.plot(steps, [average_accuracy(matrix, n) for n in steps], marker="o", label=label)
    ax.set_title(f"A_n ({measure})")
    ax.set_xlabel("after update n")
    ax.legend(fontsize=7)
    for ax, label in zip(flat[1:], labels):
        matrix = np.array(table[label]["measures"][measure]["matrix"], dtype=float)
        for j in range(len(matrix)):
            ax.plot(np.arange(j, len(matrix)), matrix[j:, j], marker=".", label=f"D{j}")
        ax.set_title(label)
        ax.set_xlabel("after update n")
    if panels > 1:
        flat[1].legend(fontsize=7, title="a_(n,j)", title_fontsize=7)
    flat[0].set_ylabel(measure)
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=120)
    finally:
        plt.close(figure)


def write_report(result: dict[str, Any], output: Path, measure: str) -> tuple[Path, Path, Path]:
    """Write ``results.json``, ``results.md`` and ``curves.png`` (plotting ``measure``) under ``output``."""
    table = summarize(result)
    paths = output / RESULTS_JSON, output / RESULTS_MD, output / CURVES_PNG
    atomic_write_text(paths[0], json.dumps({"protocol": result["protocol"], "methods": table}, indent=1) + "\n")
    atomic_write_text(paths[1], markdown(result, table, measure))
    plot(table, measure, paths[2])
    return paths
