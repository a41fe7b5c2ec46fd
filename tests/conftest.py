"""Shared fixtures: toy collections written on the fly, and the shared test collections."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("GENIR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

TOY_DOCS = [
    {"_id": "d1", "title": "Cats", "text": "The cat sat on the mat and purred at the dog."},
    {"_id": "d2", "title": "Dogs", "text": "Dogs chase cats, balls and the mail carrier."},
    {"_id": "d3", "title": "JSON", "text": "Parsing JSON strings into Python dictionaries."},
    {"_id": "d4", "title": "Hashing", "text": "SHA-256 digests of byte strings with hashlib."},
    {"_id": "d5", "title": "Subprocess", "text": "Run a command and capture its standard output."},
    {"_id": "d6", "title": "Zebras", "text": "Zebras have black and white stripes."},
]
TOY_QUERIES = [
    {"_id": "q1", "text": "how do I parse json"},
    {"_id": "q2", "text": "sha-256 digest of bytes"},
    {"_id": "q3", "text": "striped zebras"},
]
TOY_QRELS = [("q1", "d3", 1), ("q2", "d4", 1), ("q3", "d6", 2)]


def write_beir(root: Path, docs=TOY_DOCS, queries=TOY_QUERIES, qrels=TOY_QRELS, split="test") -> Path:
    """Write a BEIR-layout collection under ``root`` and return it."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def toy_collection(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "toy")


def shared_collection(name: str) -> Path:
    path = SHARED_DATA / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"needs the shared test collection {path} (absent on this machine)")
    return path


def run_under_triton_interpreter(script: str):
    """Run ``script`` in a fresh Python with ``TRITON_INTERPRET=1`` (it must be set before triton is
    imported, hence a subprocess) and return the JSON it prints on its last line."""
    import subprocess
    import sys

    here = Path(__file__).resolve().parent
    proc = subprocess.run(
        [sys.executable, "-c", script, str(here)],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        cwd=here.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextmanager
def add_killed_before_its_manifest(index: Path, signals: Path):
    """``genir add`` of one document to ``index`` in a child process that stalls where the new
    version's manifest would be written (it signals through a file in the existing directory
    ``signals``); yields the staging directory, then SIGKILLs the child."""
    ready = signals / "ready"
    script = f"""
import time, pathlib
import genir.retrieval.searcher as searcher_module
from genir.indexer.collection import Document
def stall(directory, manifest):
    pathlib.Path({str(ready)!r}).write_text(str(directory))
    time.sleep(600)
searcher_module.write_manifest = stall
searcher_module.add_documents({str(index)!r}, [Document("n1", "Giraffes", "long necks")], device="cpu")
"""
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the child ended before writing"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield Path(ready.read_text())
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
