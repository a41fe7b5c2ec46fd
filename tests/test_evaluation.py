import math

import pytest

from genir.errors import InputError
from genir.evaluation.runs import read_run, write_run
from genir.measures import evaluate
from genir.retrieval.searcher import Hit

QRELS = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2}, "q3": {"d": 1}, "q4": {"e": 0}}
RUN = {
    "q1": [Hit("x", 3.0), Hit("a", 2.0), Hit("b", 1.0)],
    "q2": [Hit("c", 5.0), Hit("y", 1.0)],
    # q3 unanswered; q4 has no relevant document and is not evaluated.
}


def test_measures_match_hand_computation():
    result = evaluate(RUN, QRELS)
    assert result.num_queries == 3
    dcg_q1 = 1 / math.log2(3) + 1 / math.log2(4)
    ndcg_q1 = dcg_q1 / (1 + 1 / math.log2(3))
    expected = {
        "nDCG@10": (ndcg_q1 + 1.0 + 0.0) / 3,
        "RR@10": (0.5 + 1.0 + 0.0) / 3,
        "R@1": (0.0 + 1.0 + 0.0) / 3,
        "R@10": (1.0 + 1.0 + 0.0) / 3,
        "Hits@1": (0 + 1 + 0) / 3,
        "Hits@10": (1 + 1 + 0) / 3,
    }
    for name, value in expected.items():
        assert result.aggregate[name] == pytest.approx(value), name
    assert result.per_query["q3"]["nDCG@10"] == 0.0
    assert result.per_query["q1"]["RR@10"] == pytest.approx(0.5)


def test_run_file_round_trip(tmp_path):
    path = tmp_path / "runs" / "r.trec"
    write_run(RUN, path, tag="t")
    assert path.read_text().splitlines()[0] == "q1 Q0 x 1 3.000000 t"
    assert read_run(path) == RUN
    assert not [p for p in path.parent.iterdir() if p.name != "r.trec"]


def test_malformed_run_file(tmp_path):
    path = tmp_path / "r.trec"
    path.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 b 2 high t\n")
    with pytest.raises(InputError, match=r"r.trec:2: score 'high' is not a number"):
        read_run(path)
    path.write_text("q1 a 1 2.0\n")
    with pytest.raises(InputError, match=r"r.trec:1: expected"):
        read_run(path)
