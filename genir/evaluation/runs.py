"""TREC run files: ``qid Q0 docid rank score tag``, one retrieved document a line."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from genir.atomic_files import atomic_open
from genir.errors import InputError
from genir.indexer.collection import decoded_lines
from genir.retrieval.searcher import Hit, Run


def write_run(run: Mapping[str, Sequence[Hit]], path: str | Path, tag: str = "genir") -> None:
    """Write ``run`` atomically (a temporary file renamed into place; missing folders are created)."""
    if Path(path).is_dir():
        raise InputError(path, None, "is a folder, not a run file to write")
    with atomic_open(path) as f:
        for qid, hits in run.items():
            for rank, hit in enumerate(hits, start=1):
                f.write(f"{qid} Q0 {hit.docid} {rank} {hit.score:.6f} {tag}\n")


def read_run(path: str | Path) -> Run:
    """Read a TREC run; hits are ordered by score (descending), as trec_eval orders them.

    Raises:
        InputError: (file:line) a line without 6 fields, a score that is not a finite number,
            bytes that are not UTF-8 (a byte order mark is accepted), or no line at all.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such run file")
    run: Run = {}
    for number, line in decoded_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise InputError(path, number, f"expected 'qid Q0 docid rank score tag', found {len(fields)} field(s)")
        try:
            score = float(fields[4])
        except ValueError:
            raise InputError(path, number, f"score {fields[4]!r} is not a number") from None
        if not math.isfinite(score):
            raise InputError(path, number, f"score {fields[4]!r} is not a finite number")
        run.setdefault(fields[0], []).append(Hit(fields[2], score))
    if not run:
        raise InputError(path, None, "the run file is empty")
    for hits in run.values():
        hits.sort(key=lambda h: -h.score)
    return run
