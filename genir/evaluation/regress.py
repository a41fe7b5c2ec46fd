"""Reproducible conditions as data, rerun on demand (``genir regress``), after pyserini's 2CR.

A conditions file (``benchmarks/conditions/*.yaml``) lists conditions. Each one is the exact
``genir`` commands that build an index and write a run, the collection and split it is scored on,
the scores it gave with a tolerance, and where it was measured::

    - name: bm25-scifact
      collection: scifact            # under --data (../shared/data), ./PATH beside the YAML file, or builtin:NAME
      split: test
      commands:
        - index -m bm25 -c {collection} -o {work}/index
        - run {work}/index -c {collection} --split test -o {work}/run.trec
      run: run.trec                  # the run file the commands write, inside {work}
      expected: {nDCG@10: 0.6789}
      tolerance: 0.002
      cheap: true                    # CI reruns it (minutes at most on 2 cores)
      measured: {date: 2026-11-27, machine: 2 CPU cores x86_64, commit: ff633e8, build_seconds: 3}

:func:`rerun` runs the commands (a fresh ``genir`` process each, as a user would), scores the run
with :func:`genir.measures.evaluate` and compares every expected measure: a condition passes when
each score is within ``tolerance`` of its expected value. Nothing here chooses a setting: the
expected scores are what the commands gave when the condition was written.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genir.errors import InputError
from genir.evaluation.runs import read_run
from genir.indexer.builtin_corpus import BUILTIN_PREFIX, builtin_folder
from genir.indexer.collection import Collection
from genir.measures import MEASURES, evaluate


class Condition(BaseModel):
    """One reproducible condition (module docstring); validated when the file is read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    collection: str = Field(min_length=1)
    split: str = "test"
    commands: list[str] = Field(min_length=1)
    run: str = Field(min_length=1)
    expected: dict[str, float] = Field(min_length=1)
    tolerance: float = Field(ge=0)
    cheap: bool = False
    measured: dict[str, Any] = Field(default_factory=dict)

    @field_validator("expected")
    @classmethod
    def _known_measures(cls, expected: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(expected) - set(MEASURES))
        if unknown:
            raise ValueError(f"unknown measure(s) {', '.join(unknown)} (known: {', '.join(MEASURES)})")
        return expected


@dataclass(frozen=True)
class Outcome:
    """A rerun condition: the scores it gave now beside the expected ones."""

    condition: Condition
    scores: dict[str, float]
    seconds: float

    @property
    def failures(self) -> list[str]:
        """The measures whose score left the tolerance, as ``measure: got X, expected Y ± T``."""
        return [f"{m}: got {self.scores[m]:.4f}, expected {want:.4f} ± {self.condition.tolerance}"
                for m, want in self.condition.expected.items() if abs(self.scores[m] - want) > self.condition.tolerance]

    @property
    def passed(self) -> bool:
        return not self.failures


def read_conditions(path: str | Path) -> list[Condition]:
    """The conditions of a YAML file, in file order.

    Raises:
        InputError: the file cannot be read, is not a YAML list, an entry is malformed (its
            position and field named), or two conditions share a name.
    """
    import yaml

    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read the conditions file: {e.strerror}") from None
    except yaml.YAMLError as e:
        line = f":{e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        raise InputError(f"{path}{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(entries, list):
        raise InputError(f"{path}: a conditions file is a YAML list of conditions")
    conditions = []
    for i, entry in enumerate(entries, start=1):
        try:
            conditions.append(Condition.model_validate(entry))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}" for err in e.errors())
            raise InputError(f"{path}: condition {i}: {problems}") from None
    names = [c.name for c in conditions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{path}: condition names must be unique: {', '.join(repeated)}")
    return conditions


def select(conditions: list[Condition], only: list[str] | None = None, cheap: bool = False) -> list[Condition]:
    """The conditions named in ``only`` (all when None), the cheap ones alone with ``cheap``.

    Raises:
        InputError: ``only`` names a condition the file does not have.
    """
    if only:
        unknown = sorted(set(only) - {c.name for c in conditions})
        if unknown:
            raise InputError(f"no condition named {', '.join(unknown)} (the file has: {', '.join(c.name for c in conditions)})")
        conditions = [c for c in conditions if c.name in only]
    return [c for c in conditions if c.cheap] if cheap else conditions


def collection_path(condition: Condition, conditions_file: Path, data: Path) -> Path:
    """Where a condition's collection is: ``builtin:NAME`` in genir's cache, ``./PATH`` beside the
    conditions file, else under ``data``."""
    if condition.collection.startswith(BUILTIN_PREFIX):
        return builtin_folder(condition.collection[len(BUILTIN_PREFIX):])
    if condition.collection.startswith("./"):
        return conditions_file.parent / condition.collection
    return data / condition.collection


def rerun(condition: Condition, collection: Path, work: Path) -> Outcome:
    """Run ``condition``'s commands in fresh ``genir`` processes, then score its run file.

    ``{collection}`` and ``{work}`` in a command are replaced by those paths; ``work`` must be a new
    empty folder (the caller's: :func:`rerun` deletes nothing).

    Raises:
        InputError: the collection is missing, a command fails (its stderr's last line quoted), or
            the run file is not written.
    """
    if not collection.exists():
        raise InputError(f"condition {condition.name}: collection {collection} does not exist")
    started = time.perf_counter()
    for command in condition.commands:
        args = [a.format(collection=collection, work=work) for a in shlex.split(command)]
        done = subprocess.run([sys.executable, "-m", "genir.cli.main", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise InputError(f"condition {condition.name}: `genir {shlex.join(args)}` exited {done.returncode}: {last}")
    seconds = time.perf_counter() - started
    run_file = work / condition.run
    if not run_file.is_file():
        raise InputError(f"condition {condition.name}: its commands wrote no run file {run_file}")
    qrels = Collection.open(collection).qrels(condition.split)
    scores = evaluate(read_run(run_file), qrels, list(condition.expected)).aggregate
    return Outcome(condition, {m: float(scores[m]) for m in condition.expected}, seconds)


def markdown(outcomes: list[Outcome]) -> str:
    """One row per condition and measure: expected, got, difference, tolerance, verdict."""
    lines = ["| condition | measure | expected | got | diff | tolerance | |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        for m, want in o.condition.expected.items():
            got = o.scores[m]
            ok = "ok" if abs(got - want) <= o.condition.tolerance else "**FAIL**"
            lines.append(f"| {o.condition.name} | {m} | {want:.4f} | {got:.4f} | {got - want:+.4f} | {o.condition.tolerance} | {ok} |")
    return "\n".join(lines) + "\n"
