"""The built-in passage corpus (builtin:pydocs) is made deterministically, without repeats, from parsed sources."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from genir.indexer.builtin_corpus import (
    MIN_PASSAGE_WORDS,
    PASSAGE_WORDS,
    docstring_records,
    passage_records,
    split_passages,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_split_passages_merges_paragraphs_and_cuts_long_ones():
    short = "one two three.\n\nfour five six."
    assert split_passages(short, words=10) == ["one two three. four five six."]
    long = " ".join(f"w{i}" for i in range(25))
    assert [len(p.split()) for p in split_passages(f"a b c\n\n{long}\n  \nx y", words=10)] == [3, 10, 10, 7]


def test_stdlib_subset_gives_many_distinct_passages_in_a_fixed_order():
    roots = [STDLIB / "email", STDLIB / "json"]
    first = list(passage_records(docstring_records(roots, private=True)))
    again = list(passage_records(docstring_records(roots, private=True)))
    assert first == again
    assert len(first) >= 300  # 337 with Python 3.11
    ids = [r["_id"] for r in first]
    texts = [r["text"] for r in first]
    assert len(set(ids)) == len(ids) and len(set(texts)) == len(texts)
    assert all(MIN_PASSAGE_WORDS <= len(t.split()) <= PASSAGE_WORDS for t in texts)
    assert all(" " not in i for i in ids)
    # modules in sorted path order: email's before json's, and private modules read only when asked
    assert ids.index(next(i for i in ids if i.startswith("decoder"))) > ids.index(next(i for i in ids if i.startswith("_parseaddr")))
    assert not any(i.startswith("_") for i in (r["_id"] for r in docstring_records(roots)))


def test_repeats_and_short_passages_are_left_out(tmp_path):
    text = "A docstring paragraph long enough to keep here."
    (tmp_path / "alpha.py").write_text(f'"""{text}"""\n\ndef f():\n    """{text}\n\n    Too short."""\n', encoding="utf-8")
    (tmp_path / "beta.py").write_text(f'"""Another module with its own words here.\n\n{text}"""\n', encoding="utf-8")
    records = list(passage_records(docstring_records([tmp_path]), words=8))  # text: 8 words, a passage of its own
    assert [(r["_id"], r["text"]) for r in records] == [("alpha#0", text), ("beta#0", "Another module with its own words here.")]
