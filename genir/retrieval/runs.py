"""TREC run files: ``qid Q0 docid rank score tag``, one retrieved document a line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from genir.atomic_files import atomic_open
from genir.errors import InputError
from genir.retrieval.searcher import Hit

Run = dict[str, list[Hit]]
"""query id -> hits, best first."""


def write_run(run: Mapping[str, Sequence[Hit]], path: str | Path, tag: str = "genir") -> None:
    """Write ``run`` atomically (a temporary file renamed into place; missing folders are created)."""
    if Path(path).is_dir():
        raise InputError(path, None, "is a folder, not a run file to write")
    with atomic_open(path) as f:
        for qid, hits in run.items():
            for rank, hit in enumerate(hits, start=1):
                f.write(f"{qid} Q0 {hit.docid} {rank} {hit.score:.6f} {tag}\n")


def read_run(path: str | Path) -> Run:
    """Read a TREC run; hits are ordered by score (descending), as trec_eval orders them."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such run file")
    run: Run = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(path, number, "not valid UTF-8") from None
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise InputError(path, number, f"expected 'qid Q0 docid rank score tag', found {len(fields)} field(s)")
            try:
                score = float(fields[4])
            except ValueError:
                raise InputError(path, number, f"score {fields[4]!r} is not a number") from None
            run.setdefault(fields[0], []).append(Hit(fields[2], score))
    if not run:
        raise InputError(path, None, "the run file is empty")
    for hits in run.values():
        hits.sort(key=lambda h: -h.score)
    return run
