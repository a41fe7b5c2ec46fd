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
    if name in PAGES:
        return PAGES[name](name, load(name))
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


SCALE_COLUMNS = [  # (header, row key, scale, format): bench_scale's table
    ("build (s)", "build_seconds", 1, ",.1f"), ("build CPU (s)", "build_cpu_seconds", 1, ",.1f"),
    ("build in genir (s)", "build_seconds_in_genir", 1, ",.1f"),
    ("passages encoded", "encoded", 1, ",d"), ("index (MB)", "index_bytes", 1e-6, ",.1f"),
    ("peak build memory (MB)", "peak_rss_mb", 1, ",.0f"), ("queries/s k=10", "queries_per_second_k10", 1, ",.1f"),
    ("CPU ms/query k=10", "cpu_ms_per_query_k10", 1, ",.1f"), ("queries/s k=100", "queries_per_second_k100", 1, ",.1f"),
    ("CPU ms/query k=100", "cpu_ms_per_query_k100", 1, ",.1f"), ("search memory (MB)", "search_peak_rss_mb", 1, ",.0f"),
]
SCALE_EXPONENTS = [("build time", "build_seconds"), ("build CPU", "build_cpu_seconds"),
                   ("build in genir", "build_seconds_in_genir"), ("index bytes", "index_bytes"),
                   ("peak build memory", "peak_rss_mb"), ("latency k=10", "ms_per_query_k10"),
                   ("CPU/query k=10", "cpu_ms_per_query_k10"), ("latency k=100", "ms_per_query_k100"),
                   ("CPU/query k=100", "cpu_ms_per_query_k100")]


def scale_page(name: str, data: dict[str, Any]) -> str:
    """bench_scale's page: cost per method and corpus size, the fitted growth exponents, the figure."""
    corpus = data["corpus"]

    def value(row: dict[str, Any], key: str, scale: float, form: str) -> str:
        return "–" if row.get(key) is None else format(row[key] * scale if scale != 1 else row[key], form)

    rows = ["| method | docs | " + " | ".join(h for h, *_ in SCALE_COLUMNS) + " | load during build |",
            "|---|---:|" + "---:|" * len(SCALE_COLUMNS) + "---|"]
    rows += [f"| {r['method']} | {r['docs']:,} | " + " | ".join(value(r, *c[1:]) for c in SCALE_COLUMNS)
             + f" | {r['load_build'][0]:.1f} → {r['load_build'][1]:.1f} |" for r in data["rows"]]
    fits = ["| method | sizes | " + " | ".join(h for h, _ in SCALE_EXPONENTS) + " |", "|---|---|" + "---:|" * len(SCALE_EXPONENTS)]
    fits += [f"| {e['method']} | {', '.join(f'{n:,}' for n in e['sizes'])} | "
             + " | ".join("–" if e.get(key) is None else f"N^{e[key]:.2f}" for _, key in SCALE_EXPONENTS) + " |"
             for e in data["exponents"]]
    return f"""# {name}

{provenance_line(data)} Generated from `benchmarks/results/{name}.json` by `make tables`; measured by
`benchmarks/bench_scale.py` (its docstring says how). **Every time here was taken under load**: a
niced build or search got a small share of the cores, so wall times include waiting for them
(the load column: the 1-minute load average at a build's start and end); the CPU columns (the
child's own user + system seconds) are the steadier measure of cost. "build in genir" is the
build's own time as its manifest records it (without starting Python, importing torch and
transformers, or the JVM): the fixed costs that flatten the small sizes' curves.

Corpus: {corpus['name']}, {corpus['passages']:,} passages of {corpus['mean_words']} words on average: {corpus['made']};
the sizes are {corpus['sizes']}, whose passages lengthen along the corpus (the standard library comes first), so
costs that follow the text rather than the count of passages (index bytes) grow faster than N: mean words
of the first N passages {', '.join(f'{int(n):,}: {w}' for n, w in corpus.get('prefix_mean_words', {}).items())}. Queries: {data['queries']}. Training: {data['training']}.
Encoding: {data['encoding']}. Quality is not reported at scale (no judged queries).

## Cost per method and size

{chr(10).join(rows)}

## Growth exponents (cost ∝ N^a, least squares on log-log; – : fewer than two sizes)

{chr(10).join(fits)}

![Cost against corpus size](../figures/scale_curve.png)
"""


def minutes(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def zero_shot_seal_page(name: str, data: dict[str, Any]) -> str:
    """zero_shot_seal's page: the protocol, per collection BM25, dense and SEAL (alone, + BM25) before and
    after, each way round, then every recipe's cells (benchmarks/zero_shot_seal.py)."""
    chosen, before, target = data["chosen"], data["before"], data["target_name"]
    weight, before_weight = f"{chosen['weight']:.2f}", f"{before['weight']:.2f}"
    collections = data["collections"]
    lines = ["| collection | queries | BM25 | dense | SEAL before | SEAL + BM25 before | SEAL after | SEAL + BM25 after "
             "| after − BM25: SEAL | after − BM25: hybrid |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for collection, result in collections.items():
        bm25, old, new = result["baselines"]["bm25"]["nDCG@10"], result["seal"][before["recipe"]], result["seal"][chosen["recipe"]]
        hybrid = new["hybrid_curve"][weight]
        role = "" if collection == target else " (chose)"
        lines.append(f"| {collection}{role} | {result['queries']} | {bm25:.4f} | {result['baselines']['dense']['nDCG@10']:.4f} "
                     f"| {old['nDCG@10']:.4f} | {old['hybrid_curve'][before_weight]:.4f} | {new['nDCG@10']:.4f} | {hybrid:.4f} "
                     f"| {new['nDCG@10'] - bm25:+.4f} | {hybrid - bm25:+.4f} |")
    rounds = ["| held out | chosen on | recipe | weight | BM25 | SEAL | SEAL + BM25 | hybrid − BM25 |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    rounds += [f"| {r['target']} | {', '.join(r['selection'])} | {r['recipe']} | {r['weight']:.2f} | {r['bm25']:.4f} "
               f"| {r['seal']:.4f} | {r['seal_hybrid']:.4f} | {r['hybrid_minus_bm25']:+.4f} |" for r in data["rounds"]]
    grid = ["| collection | recipe | settings | SEAL | SEAL + BM25 at the shipped weight | best weight there (hindsight) "
            "| build (min) | queries/s |", "|---|---|---|---:|---:|---|---:|---:|"]
    for collection, result in collections.items():
        for recipe, entry in result["seal"].items():
            curve = entry["hybrid_curve"]
            best = max(curve, key=lambda w: (curve[w], -float(w)))
            grid.append(f"| {collection} | {recipe} | {cell(entry['settings'])} | {entry['nDCG@10']:.4f} | {curve[weight]:.4f} "
                        f"| {best}: {curve[best]:.4f} | {minutes(entry['build_minutes'])} | {entry['queries_per_second']:.1f} |")
    baselines = ["| collection | method | nDCG@10 | build (min) | queries/s |", "|---|---|---:|---:|---:|"]
    baselines += [f"| {collection} | {method} | {b['nDCG@10']:.4f} | {minutes(b['build_minutes'])} | {b['queries_per_second']:.1f} |"
                  for collection, result in collections.items() for method, b in result["baselines"].items()]
    selection = ", ".join(n for n in collections if n != target)
    return "\n".join([
        f"# {name}\n", f"{provenance_line(data)} Generated from `benchmarks/results/{name}.json` by `make tables`.\n",
        "SEAL zero-shot (no training queries: `queries_split=''`), nDCG@10 on each collection's test queries. "
        f"Before: main's zero-shot SEAL (recipe `{before['recipe']}`) and seal-hybrid weight {before_weight}. After: the "
        f"shipped defaults, recipe `{chosen['recipe']}` and weight {weight}, chosen on {selection} (marked: their "
        f"numbers are in-sample) and reported on {target}, whose queries were never read to choose.\n",
        f"## Protocol\n\n{data['protocol'].replace('``', '`')}\n", "## Before and after (shipped defaults)\n", "\n".join(lines) + "\n",
        "## Each way round (every collection held out in turn)\n", "\n".join(rounds) + "\n",
        f"## The grid\n\nWith {target} held out: recipe kept for the best mean SEAL nDCG@10 ({cell(chosen['seal_mean'])}); "
        f"weight kept for the best mean hybrid among those not below BM25 on any collection that chose "
        f"({cell(chosen['weights_not_below_bm25'])}).\n", "\n".join(grid) + "\n",
        "## Baselines\n", "\n".join(baselines) + "\n",
    ])


PAGES = {"bench_scale": scale_page, "zero_shot_seal": zero_shot_seal_page}  # files with a page of their own; the others get results_page's tables


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
    """``scifact_quality_vs_build.png``, ``latency_vs_corpus.png`` and ``scale_curve.png`` under ``out``."""
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
    ax.set_title(f"DSI docid layer: one query, {layer['threads']} torch thread(s), 2 shared CPU cores", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency_vs_corpus.png", dpi=110, metadata={"Software": None})
    plt.close(fig)

    scale = load("bench_scale")
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.5))
    panels = [("build_seconds", "build seconds (wall)", 1), ("build_cpu_seconds", "build CPU seconds", 1),
              ("index_bytes", "index MB", 1e-6), ("peak_rss_mb", "peak build memory (MB)", 1),
              ("ms_per_query_k10", "ms per query, k=10 (wall)", 1), ("cpu_ms_per_query_k10", "CPU ms per query, k=10", 1)]
    for ax, (metric, label, scale_by) in zip(axes.flat, panels):
        for method in dict.fromkeys(r["method"] for r in scale["rows"]):
            rows = sorted((r for r in scale["rows"] if r["method"] == method and r.get(metric)), key=lambda r: r["docs"])
            ax.plot([r["docs"] for r in rows], [r[metric] * scale_by for r in rows], marker="o", label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("passages (builtin:pydocs, log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Cost against corpus size: 2 shared, loaded CPU cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "scale_curve.png", dpi=110, metadata={"Software": None})
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
    print(f"wrote {len(generated)} pages and 3 figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
