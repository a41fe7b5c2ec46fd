"""`make demo`: a generative (DSI) index of Python's standard-library docstrings, side by side with BM25.

On a slice of the built-in corpus (``builtin:stdlib``: the public docstrings of the running Python's
standard library, parsed with ast), the demo

1. writes the slice as a BEIR corpus, ``indexes/demo/stdlib-slice/corpus.jsonl``: the documents of
   about twenty everyday modules (json, subprocess, shutil, tempfile, base64, uuid, heapq, ...;
   ``--modules``), in corpus order, optionally cut to the first ``--max-docs``;
2. builds a generative index with ``genir index --method dsi``: the default DSI recipe (frozen MiniLM
   encoder ``bert2bert:all-MiniLM-L6-v2``, 2-layer decoder, atomic docids whose output rows are the
   documents' MiniLM embeddings, frozen), trained without any query set, since the corpus has none
   (``queries_split=``): on the documents' first words and on keyword pseudo-queries
   (``pseudo_queries=``);
3. builds a BM25 index of the same slice with ``genir index --method bm25``;
4. answers a few queries from Python, ``GenerativeIndex.load(dir).search(query, k)`` on both
   indexes, and prints the hits side by side (docids are names such as ``json.loads``), with the
   answer one would expect marked, whatever each method returns.

Both builds run the ``genir`` command line (printed before it runs), so the commands can be
copied. An index that already exists is reused when it was built from the same slice with the
same settings (``--rebuild`` builds it again). Per-stage and total times are printed at the end.

Why this slice and these settings: the whole corpus (~5,100 documents) takes minutes to embed with
MiniLM on 2 CPU cores before training even starts, and the demo must finish within 5 minutes there.
The slice (448 documents on Python 3.11) holds the documents the queries ask for and enough
neighbours to make them a real choice. The indexing view is the first 32 words (``first_words``,
``max_source_len=48`` tokens, no random spans): docstrings are short (median 17 words) and their
first sentence says what the code does. Up to four keyword pseudo-queries per document (one per
salient sentence: 1,262 here) give the decoder query-like inputs. 10 epochs of batches of 32 (540
steps over 1,710 pairs) did as well on 24 hand-written queries as 16-20 epochs (top-1 14/24, BM25
13/24), and 8 epochs of 64 did worse. Measured (2 CPU cores shared with other jobs, so noisy): 90 s
from nothing at load 2 (132 s at load 5.5), of which the DSI build 70 s (embedding 11 s, encoder
states 9 s, training 49 s); 8-12 s when both indexes are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning (inherited by the genir commands below). On 2 cores
# shared with other jobs (load 5), torch's spinning threads made DSI training 14x slower (108 steps:
# 210 s instead of 15 s, measured); with little load, spinning was up to 1.5x faster. Passive waits
# bound the worst case. Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Everyday modules whose documents the default queries ask for, plus neighbours that compete
# with them (448 documents on Python 3.11; the largest are pathlib, datetime and calendar).
DEFAULT_MODULES = (
    "json", "csv", "base64", "hashlib", "subprocess", "shlex", "shutil", "tempfile", "glob", "fnmatch",
    "gzip", "zipfile", "random", "secrets", "uuid", "heapq", "bisect", "textwrap", "difflib",
    "statistics", "pathlib", "datetime", "calendar",
)

# (query, the document one would pick by hand), phrased as a user would ask: some share words with
# that document's docstring, some do not.
DEFAULT_QUERIES = (
    ("parse a JSON document from a string", "json.loads"),
    ("run a command in a subprocess and capture its output", "subprocess.check_output"),
    ("recursively delete a directory tree", "shutil.rmtree"),
    ("generate a random UUID", "uuid.uuid4"),
    ("split a command line into arguments like a shell", "shlex.split"),
    ("pop the smallest item from a heap", "heapq.heappop"),
)

DEFAULT_OUTPUT = Path("indexes/demo")
DEFAULT_EPOCHS = 10
DEFAULT_PSEUDO_QUERIES = 4


def dsi_settings(epochs: int, pseudo_queries: int) -> list[str]:
    """The ``--set`` options of the DSI build: the default recipe, trained on the documents alone."""
    return [
        "queries_split=",  # the corpus has no queries: documents and pseudo-queries only
        f"pseudo_queries={pseudo_queries}",  # keyword queries from each document's salient sentences
        "first_words=32", "max_source_len=48", "spans=0",  # docstrings are short; their opening says it all
        f"max_epochs={epochs}", "batch_size=32", "warmup_steps=50",  # small batches: more updates per epoch
    ]


# -- the slice ----------------------------------------------------------------------------------
def write_slice(modules: list[str], max_docs: int, directory: Path) -> list[str]:
    """Write the documents of ``modules`` (then the first ``max_docs``) as ``directory/corpus.jsonl``; their ids."""
    from genir.indexer.collection import Collection

    wanted = set(modules)
    docs = [d for d in Collection.open("builtin:stdlib").docs() if d.id.split(".")[0] in wanted]
    if max_docs:
        docs = docs[:max_docs]
    if not docs:
        raise SystemExit(f"error: no document of builtin:stdlib belongs to the modules {', '.join(modules)}")
    text = "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs)
    corpus = directory / "corpus.jsonl"
    if not corpus.is_file() or corpus.read_text(encoding="utf-8") != text:
        directory.mkdir(parents=True, exist_ok=True)
        corpus.write_text(text, encoding="utf-8")
    return [d.id for d in docs]


# -- building -----------------------------------------------------------------------------------
def genir_command() -> list[str]:
    """The ``genir`` command of the running interpreter's environment."""
    script = Path(sys.executable).with_name("genir")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "genir.cli.main"]


def stale(index: Path, corpus: Path, settings: list[str]) -> str | None:
    """Why the index at ``index`` cannot be reused for ``corpus`` and ``settings`` (None: it can)."""
    from genir.errors import GenirError
    from genir.indexer.artifact import read_manifest
    from genir.indexer.collection import Collection

    try:
        manifest = read_manifest(index, verify=False)
    except GenirError as e:  # missing, incomplete or of another format: rebuilt
        return str(e)
    if manifest.collection.get("sha256") != Collection(corpus).fingerprint:
        return "built from another slice"
    for setting in settings:
        key, _, value = setting.partition("=")
        if str(manifest.config.get(key, "<unset>")).lower() != value.lower():
            return f"built with {key}={manifest.config.get(key, '<unset>')}, not {value}"
    return None


def build(method: str, collection: Path, index: Path, settings: list[str], rebuild: bool) -> str:
    """Build ``index`` with ``genir index`` unless a reusable one is there; return what was done."""
    if index.exists() and not rebuild:
        reason = stale(index, collection / "corpus.jsonl", settings)
        if reason is None:
            print(f"reusing {index} (built earlier from the same slice and settings; --rebuild builds it again)")
            return "reused"
        print(f"rebuilding {index}: {reason}")
    command = [*genir_command(), "index", "--method", method, "--collection", str(collection), "--output", str(index),
               *(arg for s in settings for arg in ("--set", s)), "--overwrite"]
    shown = ["genir", *command[len(genir_command()):]]
    print("$ " + shlex.join(shown), flush=True)
    subprocess.run(command, check=True)
    return "built"


# -- searching ----------------------------------------------------------------------------------
def side_by_side(queries: list[tuple[str, str | None]], dsi_dir: Path, bm25_dir: Path, k: int) -> None:
    """Search both indexes from Python and print one table: query, rank, DSI docid, BM25 docid."""
    from rich.console import Console
    from rich.table import Table

    from genir import GenerativeIndex

    dsi = GenerativeIndex.load(dsi_dir)
    bm25 = GenerativeIndex.load(bm25_dir)
    judged = sum(expected is not None for _, expected in queries)
    title = f"top {k} of {dsi.num_docs} documents" + ("; * = the expected answer" if judged else "")
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("query (expected answer)" if judged else "query", overflow="fold", min_width=20)
    table.add_column("rank", justify="right")
    table.add_column("DSI (generative)", no_wrap=True, overflow="ellipsis")
    table.add_column("BM25", no_wrap=True, overflow="ellipsis")
    found = {"DSI": 0, "BM25": 0}
    for query, expected in queries:
        dsi_hits, bm25_hits = dsi.search(query, k), bm25.search(query, k)
        found["DSI"] += any(h.docid == expected for h in dsi_hits)
        found["BM25"] += any(h.docid == expected for h in bm25_hits)
        cells = [[(f"* {h.docid}" if h.docid == expected else h.docid) for h in hits] for hits in (dsi_hits, bm25_hits)]
        rows = max(len(cells[0]), len(cells[1]))
        first = f"{query} ({expected})" if expected else query
        table.add_row(first if rows else query, "\n".join(str(r) for r in range(1, rows + 1)),
                      "\n".join(cells[0]) or "(none)", "\n".join(cells[1]) or "(none)")
    console = Console()
    (console if console.is_terminal else Console(width=120)).print(table)  # a log gets the whole table
    if judged:
        print(f"expected answer in the top {k}: DSI {found['DSI']}/{judged}, BM25 {found['BM25']}/{judged}")


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build a DSI index and a BM25 index of a slice of Python's stdlib docstrings "
                    "(builtin:stdlib) and search both side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="directory for the slice (stdlib-slice/) and the two indexes (dsi/, bm25/)")
    parser.add_argument("--modules", default=",".join(DEFAULT_MODULES),
                        help="comma-separated top-level modules whose documents form the slice")
    parser.add_argument("--max-docs", type=int, default=0, help="keep only the slice's first N documents (0: all)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="DSI training epochs (max_epochs)")
    parser.add_argument("--pseudo-queries", type=int, default=DEFAULT_PSEUDO_QUERIES,
                        help="keyword pseudo-queries per document among DSI's training views")
    parser.add_argument("-k", type=int, default=3, help="hits per query")
    parser.add_argument("--query", action="append", metavar="TEXT",
                        help="a query to ask instead of the built-in ones (repeatable)")
    parser.add_argument("--rebuild", action="store_true", help="build both indexes again even if they exist")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    queries = [(q, None) for q in args.query] if args.query else list(DEFAULT_QUERIES)
    collection, dsi_dir, bm25_dir = args.output / "stdlib-slice", args.output / "dsi", args.output / "bm25"
    times: dict[str, float] = {}
    started = time.perf_counter()

    def stage(name: str, number: int) -> None:
        print(f"\n[{number}/4] {name}", flush=True)

    stage("slicing builtin:stdlib", 1)
    t = time.perf_counter()
    ids = write_slice(modules, args.max_docs, collection)
    times["slice"] = time.perf_counter() - t
    present = sorted({i.split(".")[0] for i in ids})
    print(f"{len(ids)} documents of {len(present)} modules ({', '.join(present)}) -> {collection / 'corpus.jsonl'}")

    stage(f"DSI index (default recipe; max_epochs={args.epochs}, pseudo_queries={args.pseudo_queries})", 2)
    t = time.perf_counter()
    dsi_done = build("dsi", collection, dsi_dir, dsi_settings(args.epochs, args.pseudo_queries), args.rebuild)
    times[f"DSI index ({dsi_done})"] = time.perf_counter() - t

    stage("BM25 index", 3)
    t = time.perf_counter()
    bm25_done = build("bm25", collection, bm25_dir, [], args.rebuild)
    times[f"BM25 index ({bm25_done})"] = time.perf_counter() - t

    stage("searching from Python: GenerativeIndex.load(dir).search(query, k)", 4)
    t = time.perf_counter()
    side_by_side(queries, dsi_dir, bm25_dir, args.k)
    times["load + search"] = time.perf_counter() - t

    total = time.perf_counter() - started
    print("\ntimes: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times.items()) + f"; total {total:.1f} s")


if __name__ == "__main__":
    main()
