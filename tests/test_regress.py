"""``genir regress``: conditions as data, rerun through real genir processes, failing on a moved score."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genir.errors import InputError
from genir.evaluation.regress import read_conditions, select

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ROOT / "benchmarks" / "conditions"

BM25_TOY = """
- name: {name}
  collection: {toy}
  commands:
    - index -m bm25 -c {{collection}} -o {{work}}/index
    - run {{work}}/index -c {{collection}} --split test -o {{work}}/run.trec
  run: run.trec
  expected: {{nDCG@10: {expected}}}
  tolerance: 0.05
"""


def test_every_shipped_conditions_file_parses_and_names_real_collections():
    for path in sorted(CONDITIONS.glob("*.yaml")):
        conditions = read_conditions(path)
        assert conditions, path
        for condition in conditions:
            assert condition.measured.get("date") and condition.measured.get("commit"), condition.name
            assert "{collection}" in " ".join(condition.commands) and condition.run
    cheap = select(read_conditions(CONDITIONS / "scifact.yaml"), cheap=True)
    assert [(c.name, c.expected["nDCG@10"]) for c in cheap] == [("bm25", 0.6789), ("dense", 0.6451)]


@pytest.mark.parametrize("text, message", [
    ("name: x", "a conditions file is a YAML list"),
    ("- {name: x}", "condition 1: collection: Field required"),
    ("- {name: x, collection: c, commands: [a], run: r, expected: {nDCG@11: 1}, tolerance: 0}", "unknown measure"),
    ("- {name: x, collection: c, commands: [a], run: r, expected: {nDCG@10: 1}, tolerance: -1}", "tolerance"),
    ("- {name: x, collection: c, commands: [a], run: r, expected: {nDCG@10: 1}, tolerance: 0, colour: red}", "colour"),
    ("- [unclosed", r"bad.yaml:\d+: not valid YAML"),
])
def test_a_malformed_conditions_file_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_conditions(path)


@pytest.mark.slow
def test_regress_passes_within_tolerance_and_fails_when_an_expected_score_moves(tmp_path):
    toy = "builtin:toy"
    conditions = tmp_path / "c.yaml"
    conditions.write_text(BM25_TOY.format(name="as-measured", toy=toy, expected=1.0)
                          + BM25_TOY.format(name="moved", toy=toy, expected=0.9), encoding="utf-8")
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-m", "genir.cli.main", "regress", str(conditions), "--work", str(work),
                           "-o", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stderr
    assert "| as-measured | nDCG@10 | 1.0000 | 1.0000 | +0.0000 | 0.05 | ok |" in done.stdout
    assert "| moved | nDCG@10 | 0.9000 | 1.0000 | +0.1000 | 0.05 | **FAIL** |" in done.stdout
    assert "moved left the tolerance" in done.stderr and "Traceback" not in done.stderr
    assert [p.name.split(".")[0] for p in work.iterdir()] == ["moved"]  # the passing condition's folder is gone
    only = subprocess.run([sys.executable, "-m", "genir.cli.main", "regress", str(conditions), "--only", "as-measured",
                           "--work", str(work)], capture_output=True, text=True, timeout=600, check=False)
    assert only.returncode == 0, only.stderr


def test_regress_refuses_an_unknown_condition_name(tmp_path):
    done = subprocess.run([sys.executable, "-m", "genir.cli.main", "regress", str(CONDITIONS / "toy.yaml"), "--only", "nope"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "no condition named nope" in done.stderr
