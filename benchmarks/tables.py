"""Every results table and figure of the docs, generated from ``benchmarks/results/*.json`` (``make tables``).

Writes ``docs/results/<name>.md`` (one page per JSON file: its provenance, then each list of
records as a table), ``docs/results/index.md`` (the SciFact headline table and the figures),
``docs/figures/*.png``, and the headline table inside README.md between its two markers. Nothing
here is typed by hand: a number in those pages is a number in a JSON file, printed with the date,
machine and commit that the file records.

``--check`` writes nothing: it exits 1 and names the pages that differ from what the JSON gives
(the figures are not compared: PNG bytes change with matplotlib's version).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
README = ROOT / "README.md"
START, END = "<!-- headline:start (make tables) -->", "<!-- headline:end -->"

# The headline: (JSON file, row label, what it is, setting). SciFact test, 300 queries.
HEADLINE = [
    ("dsi_scifact", "bm25", "BM25 (Lucene)", "baseline"),
    ("dsi_scifact", "dense", "dense (all-MiniLM-L6-v2, FAISS)", "baseline"),
    ("dense_ft_scifact", "dense-ft", "dense fine-tuned on the train queries (dense-ft)", "supervised"),
    ("dsi_scifact", "atomic", "DSI, atomic docids", "supervised"),
    ("dsi_scifact", "rq", "DSI, rq docids", "supervised"),
    ("dsi_scifact", "semantic", "DSI, semantic docids", "supervised"),
    ("seal_scifact", "se-dsi", "SE-DSI", "supervised"),
    ("seal_scifact", "seal", "SEAL", "supervised"),
    ("dense_ft_scifact", "dense-ft-bm25", "dense-ft + BM25", "supervised"),
    ("dsi_scifact", "hybrid", "DSI atomic + BM25", "supervised"),
    ("dsi_scifact", "hybrid-rq", "DSI rq + BM25", "supervised"),
    ("seal_scifact", "seal-hybrid", "SEAL + BM25", "supervised"),
    ("dsi_scifact", "atomic-zs", "DSI, atomic docids", "zero-shot"),
    ("dsi_scifact", "rq-zs", "DSI, rq docids", "zero-shot"),
    ("dsi_scifact", "semantic-zs", "DSI, semantic docids", "zero-shot"),
    ("seal_scifact", "se-dsi-zs", "SE-DSI", "zero-shot"),
    ("dsi_scifact", "hybrid-zs", "DSI atomic + BM25", "zero-shot"),
]
SOURCES = ("embeddings_from", "of_from", "model_from")  # a row built on another row's index


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def provenance_line(data: dict[str, Any]) -> str:
    p = data["provenance"]
    return f"Measured {p['date']} on {p['machine']}, commit `{p['commit']}`."


def build_minutes(rows: list[dict[str, Any]], row: dict[str, Any]) -> float:
    """A row's build time with that of every index it was built from (a hybrid's BM25 too), in minutes."""
    by_dir = {r["index_dir"]: r for r in rows}
    seconds = row["build_seconds"]
    for field in SOURCES:
        source = by_dir.get(row["config"].get(field) or "")
        if source is not None:
            seconds += 60 * build_minutes(rows, source)
    if row["config"].get("of_from"):  # a fusion also builds its BM25 component
        seconds += next(r["build_seconds"] for r in rows if r["method"] == "bm25")
    return seconds / 60


def headline_rows() -> list[dict[str, Any]]:
    """The headline entries with their scores, build minutes, speed and provenance."""
    files = {name: load(name) for name in {f for f, *_ in HEADLINE}}
    out = []
    for name, label, what, setting in HEADLINE:
        rows = files[name]["rows"]
        row = next(r for r in rows if r["method"] == label)
        out.append({"label": label, "what": what, "setting": setting, "ndcg10": row["ndcg10"], "r10": row["r10"],
                    "build_min": build_minutes(rows, row), "qps": row["queries_per_second"],
                    "date": files[name]["provenance"]["date"], "commit": files[name]["provenance"]["commit"], "dev": row["dev"]})
    return out


def headline_table() -> str:
    lines = ["| method | setting | nDCG@10 | R@10 | build (min) | queries/s | chosen on dev | measured |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in headline_rows():
        lines.append(f"| {r['what']} | {r['setting']} | {r['ndcg10']:.4f} | {r['r10']:.4f} | {r['build_min']:.{1 if r['build_min'] >= 1 else 2}f} | "
                     f"{r['qps']:.1f} | {r['dev'] or '–'} | {r['date']}, `{r['commit']}` |")
    return "\n".join(lines) + "\n"


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return "–" if value is None or value == "" else str(value).replace("|", "\\|")


def record_lists(data: Any, path: str = "") -> Iterable[tuple[str, list[dict[str, Any]]]]:
    """Every list of records (dicts) in ``data``, with where it sits, depth first in file order."""
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from record_lists(value, f"{path}.{key}" if path else key)


def table(records: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for r in records for k in r if k not in ("config", "index_dir", "run_file")))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in records]
    return "\n".join(lines) + "\n"


def results_page(name: str) -> str:
    data = load(name)
    parts = [f"# {name}\n", f"{provenance_line(data)} Generated from `benchmarks/results/{name}.json` by `make tables`.\n"]
    scalars = {k: v for k, v in data.items() if k not in ("provenance", "environment") and not isinstance(v, (list, dict))}
    settings = {k: v for k, v in scalars.items() if not (isinstance(v, str) and "\n" in v)}
    if settings:
        parts.append("Settings: " + "; ".join(f"{k} = {cell(v)}" for k, v in settings.items()) + ".\n")
    for key, text in scalars.items():  # a table the benchmark printed itself, kept verbatim
        if key not in settings:
            parts.append(f"## {key}\n\n{text.rstrip()}\n")
    found = list(record_lists({k: v for k, v in data.items() if k != "provenance"}))
    for where, records in found:
        parts.append(f"## {where}\n\n{table(records)}")
    if not found:
        parts.append("```json\n" + json.dumps({k: v for k, v in data.items() if k != "provenance"}, indent=1) + "\n```\n")
    return "\n".join(parts)


def index_page(names: list[str]) -> str:
    pages = "\n".join(f"- [{n}]({n}.md)" for n in names)
    return f"""# Results

Every number on these pages is generated from `benchmarks/results/*.json` by `make tables`; each
JSON file records the date, machine and commit it was measured at. The reproducible conditions
(the exact commands and the scores they must give) are `benchmarks/conditions/*.yaml`, rerun with
`genir regress` ([how](../guides/regress.md)).

## SciFact (test, 300 queries, nDCG@10)

Supervised entries train on SciFact's train queries less a seeded 10 % dev carve, which chooses
checkpoints and weights; zero-shot entries see no SciFact query. Build minutes include every index
an entry is built from (a hybrid's components, reused document embeddings).

{headline_table()}
![nDCG@10 against build minutes](../figures/scifact_quality_vs_build.png)

![Latency against corpus size](../figures/latency_vs_corpus.png)

## Every results file

{pages}
"""


def figures(out: Path) -> None:
    """``scifact_quality_vs_build.png`` and ``latency_vs_corpus.png`` under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"baseline": "s", "supervised": "o", "zero-shot": "^"}
    placed: list[float] = []
    for setting, marker in markers.items():
        rows = [r for r in headline_rows() if r["setting"] == setting]
        ax.scatter([r["build_min"] for r in rows], [r["ndcg10"] for r in rows], marker=marker, label=setting)
        for r in rows:
            stacked = sum(abs(y - r["ndcg10"]) < 0.003 for y in placed)  # labels of equal scores stack upwards
            placed.append(r["ndcg10"])
            ax.annotate(r["label"], (r["build_min"], r["ndcg10"]), fontsize=7, xytext=(4, 2 + 8 * stacked), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("build minutes (2 CPU cores, log scale)")
    ax.set_ylabel("nDCG@10, SciFact test")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scifact_quality_vs_build.png", dpi=110, metadata={"Software": None})
    plt.close(fig)

    layer = load("docid_layer")
    fig, ax = plt.subplots(figsize=(6, 4))
    for scheme in dict.fromkeys(r["scheme"] for r in layer["rows"]):
        rows = sorted((r for r in layer["rows"] if r["scheme"] == scheme), key=lambda r: r["docs"])
        ax.plot([r["docs"] for r in rows], [1000 / r["median_ms_per_query"]["k=10"] for r in rows], marker="o", label=scheme)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("documents (log)")
    ax.set_ylabel("queries/s at k=10 (log)")
    ax.set_title("DSI docid layer: one query, 2 CPU cores", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency_vs_corpus.png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def with_headline(readme: str) -> str:
    """README text with the headline table between its markers replaced."""
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{headline_table()}{END}{after}"


def pages() -> dict[Path, str]:
    """Every generated text file and its content."""
    names = sorted(p.stem for p in RESULTS.glob("*.json"))
    out = {DOCS / "results" / f"{n}.md": results_page(n) for n in names}
    out[DOCS / "results" / "index.md"] = index_page(names)
    out[README] = with_headline(README.read_text(encoding="utf-8"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from the JSON")
    args = parser.parse_args(argv)
    generated = pages()
    if args.check:
        stale = [str(p) for p, text in generated.items()
                 if not p.is_file() or p.read_text(encoding="utf-8") != text]
        if stale:
            print("out of date (run make tables): " + ", ".join(stale))
            return 1
        print(f"{len(generated)} pages match benchmarks/results/*.json")
        return 0
    for path, text in generated.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    figures(DOCS / "figures")
    print(f"wrote {len(generated)} pages and 2 figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
