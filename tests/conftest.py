"""Shared fixtures: toy collections written on the fly, and the shared test collections."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test session (each pytest-xdist worker) keeps genir's cache in its own folder, unless
    $GENIR_CACHE names one: training run folders are keyed by corpus and config, so two sessions
    building the same toy index at once would share (and delete) each other's checkpoints."""
    if "GENIR_CACHE" not in os.environ:
        os.environ["GENIR_CACHE"] = str(tmp_path_factory.getbasetemp() / "genir-cache")


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], tuple[Path, ...]]) -> tuple[Path, ...]:
    """What ``build(root)`` returns (paths under ``root``), built once per test run for every
    pytest-xdist worker: workers share the run's base folder, the first to take ``name``'s lock builds,
    and the others wait on the lock, then read the paths it recorded. For builds that tests only read."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    root, record = shared / name, shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when a worker dies
        if not record.exists():
            paths = build(root)
            record.write_text(json.dumps([str(p) for p in paths]))
        return tuple(Path(p) for p in json.loads(record.read_text()))


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


# A child process adding one document to the index in argv[1] through genir.retrieval.searcher.add_documents,
# paused in genir.atomic_files.<argv[3]> (before calling it when argv[4] == "before", else after) until the
# file go appears in the signals folder argv[2]; "paused" and (once the hook has run) "done" appear there.
# The hook "rename-aside" is the os.rename that moves the index itself aside (the first of the two renames
# that replace a directory where it cannot be swapped in one step). argv[5] == "two-step": the atomic
# exchange is unavailable, as on platforms without renameat2.
PAUSED_WRITER = """
import os, sys, time
from pathlib import Path
import genir.atomic_files as atomic_files
from genir.indexer.collection import Document
from genir.retrieval.searcher import add_documents

index, signals, hook, when, scheme = sys.argv[1:6]
signals = Path(signals)
if scheme == "two-step":
    atomic_files._exchange = lambda staging, path: False

def pause():
    (signals / "paused").write_text("")
    while not (signals / "go").exists():  # the test's event (or a SIGKILL)
        time.sleep(0.01)

def paused(original, *args):
    if when == "before":
        pause()
    result = original(*args)
    if when == "after":
        pause()
    (signals / "done").write_text("")
    return result

if hook == "rename-aside":
    rename = os.rename
    os.rename = lambda src, dst: paused(rename, src, dst) if Path(src) == Path(index) else rename(src, dst)
else:
    original = getattr(atomic_files, hook)
    setattr(atomic_files, hook, lambda *args: paused(original, *args))
add_documents(index, [Document("n1", "Giraffes", "Giraffes have long necks.")], device="cpu")
"""


def wait_for(path: Path, child: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until ``path`` exists (an event the child signals), failing if the child ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        log = path.parent / "stderr"
        assert child.poll() is None, (f"the child ended (exit {child.returncode}) before {path.name}:\n"
                                      + (log.read_text()[-3000:] if log.exists() else ""))
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.02)


@contextmanager
def paused_writer(index: Path, signals: Path, hook: str, when: str = "after", scheme: str = "exchange"):
    """Start :data:`PAUSED_WRITER` on ``index`` and yield it once it is paused in ``hook`` (the test
    then writes ``signals/go``, or kills it); the child is killed at the end if still running."""
    signals.mkdir(parents=True, exist_ok=True)
    with open(signals / "stderr", "w") as log:  # a file, not a pipe: a full pipe would stall the child
        child = subprocess.Popen([sys.executable, "-c", PAUSED_WRITER, str(index), str(signals), hook, when, scheme],
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=log)
    try:
        wait_for(signals / "paused", child)
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(60)
