"""Docid schemes: round trips, uniqueness, persistence, continual extension, and bad input."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.dsi.digit_semantic_docids import DigitSemanticDocids, position_from_tokens, position_tokens
from genir.dsi.docids import (
    ARRAYS_FILE,
    EOS,
    PAD,
    SCHEME_FILE,
    AtomicDocids,
    DocidScheme,
    NaiveDocids,
    SearchMode,
    docid_scheme_class,
    docid_scheme_names,
    load_docid_scheme,
)
from genir.dsi.semantic_docids import SemanticDocids
from genir.errors import GenirError
from genir.indexer.collection import Document

DIM = 6
SCHEMES: dict[str, Callable[[], DocidScheme]] = {
    "atomic": AtomicDocids,
    "naive": NaiveDocids,
    # Small k and c so that tiny corpora still build trees several levels deep.
    "semantic-digits": lambda: DigitSemanticDocids(k=3, c=4, seed=7),
    "semantic": lambda: SemanticDocids(k=3, levels=2, seed=7),
}

doc_ids = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=40, unique=True)


def documents(ids: list[str]) -> list[Document]:
    return [Document(docid, "", "") for docid in ids]


def random_embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def check_scheme(scheme: DocidScheme, ids: list[str]) -> dict[str, list[int]]:
    """The invariants every scheme keeps; returns its sequences."""
    seqs = scheme.sequences()
    assert list(seqs) == ids, "sequences() lists documents in corpus order"
    assert scheme.num_docs == len(ids)
    assert len({tuple(s) for s in seqs.values()}) == len(ids), "sequences are unique"
    for docid, seq in seqs.items():
        assert seq[-1] == EOS and EOS not in seq[:-1] and PAD not in seq
        assert all(2 <= t < scheme.vocab_size for t in seq[:-1])
        assert scheme.sequence(docid) == seq
        assert scheme.lookup(seq) == docid
        assert scheme.lookup(seq[:-1]) == docid, "the trailing eos is optional"
        assert scheme.lookup([*seq, PAD, PAD]) == docid, "padding after eos is ignored"
        assert scheme.lookup(np.array(seq, dtype=np.int64)) == docid
    assert scheme.max_length == max(len(s) for s in seqs.values())
    assert len(scheme.token_names()) == scheme.vocab_size
    assert scheme.token_names()[:2] == ["<pad>", "<eos>"]
    return seqs


# -- every scheme ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=25, deadline=None)
@given(ids=doc_ids, seed=st.integers(0, 2**16))
def test_assignment_is_a_unique_invertible_naming(name, ids, seed):
    scheme = SCHEMES[name]()
    scheme.assign(documents(ids), random_embeddings(len(ids), seed))
    check_scheme(scheme, ids)


@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=20, deadline=None)
@given(ids=doc_ids, cuts=st.lists(st.integers(0, 40), max_size=3), seed=st.integers(0, 2**16))
def test_extend_keeps_old_docids_and_never_collides(name, ids, cuts, seed):
    bounds = sorted({min(c, len(ids)) for c in cuts} | {len(ids)})
    first = max(1, bounds[0])
    x = random_embeddings(len(ids), seed)
    scheme = SCHEMES[name]()
    scheme.assign(documents(ids[:first]), x[:first])
    start = first
    for end in bounds:
        if end <= start:
            continue
        before = scheme.sequences()
        scheme.extend(documents(ids[start:end]), x[start:end])
        after = scheme.sequences()
        assert {d: after[d] for d in before} == before, "old docids never change"
        start = end
    check_scheme(scheme, ids)


@pytest.mark.parametrize("name", SCHEMES)
def test_save_load_round_trip_and_extend_alike(name, tmp_path):
    ids = [f"doc-{i}" for i in range(57)] + ["é/\"x", "4983", " "]
    x = random_embeddings(80, seed=3)
    scheme = SCHEMES[name]()
    scheme.assign(documents(ids), x[:60])
    scheme.save(tmp_path / "s")
    loaded = load_docid_scheme(tmp_path / "s")
    assert type(loaded) is type(scheme)
    assert loaded.sequences() == scheme.sequences()
    assert loaded.vocab_size == scheme.vocab_size and loaded.token_names() == scheme.token_names()
    assert loaded.config() == scheme.config()
    assert type(scheme).load(tmp_path / "s").sequences() == scheme.sequences()
    # The loaded scheme carries the whole state: it extends exactly as the original does.
    new = documents([f"new-{i}" for i in range(20)])
    scheme.extend(new, x[60:])
    loaded.extend(new, x[60:])
    assert loaded.sequences() == scheme.sequences()
    # A saved scheme is plain JSON (and, for the semantic scheme, arrays without pickle).
    json.loads((tmp_path / "s" / SCHEME_FILE).read_text())
    if (tmp_path / "s" / ARRAYS_FILE).exists():
        np.load(tmp_path / "s" / ARRAYS_FILE, allow_pickle=False)["centroids"]


@pytest.mark.parametrize("name", SCHEMES)
def test_a_scheme_saved_before_assignment_loads_and_assigns(name, tmp_path):
    SCHEMES[name]().save(tmp_path / "s")
    loaded = load_docid_scheme(tmp_path / "s")
    assert loaded.num_docs == 0
    loaded.assign(documents(["a", "b"]), random_embeddings(2))
    fresh = SCHEMES[name]()
    fresh.assign(documents(["a", "b"]), random_embeddings(2))
    assert loaded.sequences() == fresh.sequences() and len(set(map(tuple, fresh.sequences().values()))) == 2


@pytest.mark.parametrize("name", SCHEMES)
def test_duplicate_and_misordered_calls_raise(name):
    scheme = SCHEMES[name]()
    with pytest.raises(GenirError, match="assign"):
        scheme.extend(documents(["a"]), random_embeddings(1))
    with pytest.raises(GenirError, match="empty"):
        scheme.assign([], random_embeddings(0))
    with pytest.raises(GenirError, match="twice"):
        scheme.assign(documents(["a", "b", "a"]), random_embeddings(3))
    scheme.assign(documents(["a", "b", "c"]), random_embeddings(3))
    before = scheme.sequences()
    with pytest.raises(GenirError, match="already assigned"):
        scheme.assign(documents(["d"]), random_embeddings(1))
    with pytest.raises(GenirError, match="'b' already has a docid"):
        scheme.extend(documents(["d", "b"]), random_embeddings(2))
    with pytest.raises(GenirError, match="twice"):
        scheme.extend(documents(["d", "d"]), random_embeddings(2))
    assert scheme.sequences() == before, "a refused call changes nothing"
    scheme.extend([], random_embeddings(0))
    assert scheme.sequences() == before
    with pytest.raises(GenirError, match="no .* docid"):
        scheme.sequence("zzz")


@pytest.mark.parametrize("name", SCHEMES)
def test_lookup_of_a_sequence_that_names_nothing(name):
    scheme = SCHEMES[name]()
    scheme.assign(documents(["a", "b"]), random_embeddings(2))
    for tokens in ([], [EOS], [PAD], [EOS, EOS], [scheme.vocab_size + 5, EOS], [*scheme.sequence("a"), 2]):
        assert scheme.lookup(tokens) is None


# -- atomic and naive ----------------------------------------------------------------------
def test_atomic_gives_one_token_per_document_and_grows_its_vocabulary():
    scheme = AtomicDocids()
    scheme.assign(documents(["x", "y"]))
    assert scheme.sequences() == {"x": [2, EOS], "y": [3, EOS]}
    assert scheme.vocab_size == 4
    scheme.extend(documents(["4983"]))
    assert scheme.sequence("4983") == [4, EOS]
    assert scheme.token_names() == ["<pad>", "<eos>", "<doc:x>", "<doc:y>", "<doc:4983>"]


def test_naive_writes_the_assignment_position_in_decimal_digits():
    scheme = NaiveDocids()
    scheme.assign(documents([f"id{i}" for i in range(11)]))
    assert scheme.sequence("id0") == [2, EOS]
    assert scheme.sequence("id10") == [3, 2, EOS]
    scheme.extend(documents(["later"]))
    assert scheme.sequence("later") == [3, 3, EOS], "extend continues the numbering (11)"
    assert scheme.vocab_size == 12
    assert scheme.token_names() == ["<pad>", "<eos>"] + [str(d) for d in range(10)]


# -- semantic ------------------------------------------------------------------------------
def leaf_sizes(scheme: DigitSemanticDocids) -> Counter:
    """Documents per leaf, for docids given at assignment (a one-token leaf position)."""
    return Counter(tuple(seq[:-2]) for seq in scheme.sequences().values())


def test_semantic_is_deterministic_and_respects_the_leaf_size():
    ids = [str(i) for i in range(300)]
    x = random_embeddings(300, seed=1)
    first, second = DigitSemanticDocids(k=4, c=10, seed=3), DigitSemanticDocids(k=4, c=10, seed=3)
    first.assign(documents(ids), x)
    second.assign(documents(ids), x)
    assert first.sequences() == second.sequences()
    check_scheme(first, ids)
    assert max(leaf_sizes(first).values()) <= 10
    assert first.vocab_size == 2 + 10
    assert max(first.sequences().values(), key=len)[0] < 2 + 4, "the first token is a cluster index"


@pytest.mark.parametrize(
    "x",
    [
        np.ones((50, DIM), dtype=np.float32),  # identical: k-means cannot split them
        np.repeat(random_embeddings(2), 30, axis=0),  # two points: most clusters stay empty
        np.concatenate([np.zeros((40, DIM)), random_embeddings(5)]).astype(np.float32),
        random_embeddings(3),  # fewer documents than k
        random_embeddings(1),
    ],
    ids=["identical", "two-points", "duplicates-and-outliers", "fewer-than-k", "one-document"],
)
def test_semantic_degenerate_embeddings_still_give_valid_docids(x):
    ids = [f"d{i}" for i in range(len(x))]
    scheme = DigitSemanticDocids(k=10, c=2)
    scheme.assign(documents(ids), x)
    check_scheme(scheme, ids)
    assert max(leaf_sizes(scheme).values()) <= 2


def test_semantic_clusters_in_use_are_numbered_from_zero():
    x = np.repeat(random_embeddings(2, seed=5), 30, axis=0)
    scheme = DigitSemanticDocids(k=10, c=30)
    scheme.assign(documents([str(i) for i in range(60)]), x)
    assert {seq[0] for seq in scheme.sequences().values()} == {2, 3}


def test_semantic_small_corpus_is_one_leaf():
    scheme = DigitSemanticDocids()
    scheme.assign(documents(["a", "b", "c"]), random_embeddings(3))
    assert scheme.sequences() == {"a": [2, EOS], "b": [3, EOS], "c": [4, EOS]}


def test_semantic_extend_descends_to_the_nearest_centroid():
    rng = np.random.default_rng(0)
    centers = np.eye(3, DIM, dtype=np.float32) * 100.0
    blob = np.repeat(np.arange(3), 40)
    x = (centers[blob] + rng.normal(size=(120, DIM))).astype(np.float32)
    scheme = DigitSemanticDocids(k=10, c=5, seed=0)
    scheme.assign(documents([f"d{i}" for i in range(120)]), x)
    first_token = np.array([seq[0] for seq in scheme.sequences().values()])
    for b in range(3):
        assert set(blob[np.isin(first_token, first_token[blob == b])]) == {b}, "no top cluster spans two blobs"
    new = (centers + rng.normal(size=(3, DIM))).astype(np.float32)
    scheme.extend(documents(["n0", "n1", "n2"]), new)
    for b in range(3):
        top = scheme.sequence(f"n{b}")[0]
        assert top in set(first_token[blob == b]), f"the new document of blob {b} joins a cluster of blob {b}"


def test_semantic_full_leaf_overflows_into_longer_positions():
    scheme = DigitSemanticDocids(k=3, c=2)
    scheme.assign(documents(["a", "b"]), random_embeddings(2))
    scheme.extend(documents([f"n{i}" for i in range(8)]), random_embeddings(8, seed=1))
    seqs = check_scheme(scheme, ["a", "b"] + [f"n{i}" for i in range(8)])
    assert list(seqs.values()) == [
        [2, EOS], [3, EOS],
        [2, 2, EOS], [2, 3, EOS], [3, 2, EOS], [3, 3, EOS],
        [2, 2, 2, EOS], [2, 2, 3, EOS], [2, 3, 2, EOS], [2, 3, 3, EOS],
    ]
    assert scheme.vocab_size == 2 + 3, "the vocabulary does not grow"


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10**6), c=st.integers(1, 120))
def test_leaf_positions_have_one_spelling_each(position, c):
    tokens = position_tokens(position, c)
    assert all(2 <= t < 2 + c for t in tokens)
    assert position_from_tokens(tokens, c) == position
    if position > 0:
        assert len(position_tokens(position - 1, c)) <= len(tokens), "spellings grow with the position"


def test_semantic_rejects_bad_embeddings_and_configuration():
    scheme = DigitSemanticDocids(k=3, c=2)
    with pytest.raises(GenirError, match="need document embeddings"):
        scheme.assign(documents(["a"]))
    with pytest.raises(GenirError, match=r"shape \[2, dim\]"):
        scheme.assign(documents(["a", "b"]), random_embeddings(3))
    with pytest.raises(GenirError, match="NaN"):
        scheme.assign(documents(["a", "b"]), np.full((2, DIM), np.nan))
    scheme.assign(documents(["a", "b", "c"]), random_embeddings(3))
    with pytest.raises(GenirError, match="6-dimensional"):
        scheme.extend(documents(["d"]), np.ones((1, DIM + 1)))
    for bad in ({"k": 1}, {"c": 0}, {"niter": 0}, {"seed": 1.5}):
        with pytest.raises(GenirError):
            DigitSemanticDocids(**bad)


# -- damaged files ---------------------------------------------------------------------------
def saved(tmp_path: Path, scheme: DocidScheme, n: int = 30) -> Path:
    scheme.assign(documents([f"d{i}" for i in range(n)]), random_embeddings(n))
    scheme.save(tmp_path / "s")
    return tmp_path / "s"


def rewrite(directory: Path, change: Callable[[dict], None]) -> None:
    record = json.loads((directory / SCHEME_FILE).read_text())
    change(record)
    (directory / SCHEME_FILE).write_text(json.dumps(record))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(format="other"), "not a genir docid scheme"),
        (lambda r: r.update(format_version=99), "format 99"),
        (lambda r: r.update(scheme="bogus"), "unknown docid scheme"),
        (lambda r: r.pop("docids"), "'docids'"),
        (lambda r: r["sequences"].pop(), "30 document ids but 29 sequences"),
        (lambda r: r["sequences"][0].pop(), "does not end with eos"),
        (lambda r: r["sequences"].__setitem__(1, r["sequences"][0]), "share a sequence"),
        (lambda r: r["docids"].__setitem__(1, "d0"), "appears twice"),
        (lambda r: r["sequences"][0].insert(0, 2.0), "not a docid token"),
        (lambda r: r.update(config={"k": 1}), "bad semantic-digits configuration"),
        (lambda r: r.update(vocab_size=7), "vocab_size"),
        (lambda r: r["sequences"].__setitem__(0, [11, 11, 11, EOS]), "does not lead to a taken position"),
    ],
)
def test_damaged_semantic_files_are_refused(tmp_path, change, message):
    directory = saved(tmp_path, DigitSemanticDocids(k=3, c=4))
    rewrite(directory, change)
    with pytest.raises(GenirError, match=message):
        load_docid_scheme(directory)


@pytest.mark.parametrize("name", ["atomic", "naive"])
def test_sequences_another_scheme_would_give_are_refused(tmp_path, name):
    directory = saved(tmp_path, SCHEMES[name]())
    rewrite(directory, lambda r: r["sequences"].reverse())
    with pytest.raises(GenirError, match=f"does not have the {name} docid"):
        load_docid_scheme(directory)


def test_missing_unreadable_or_mismatched_files_are_refused(tmp_path):
    with pytest.raises(GenirError, match="no such file"):
        load_docid_scheme(tmp_path / "nothing")
    directory = saved(tmp_path, DigitSemanticDocids(k=3, c=4))
    with pytest.raises(GenirError, match="holds semantic-digits docids, not atomic"):
        AtomicDocids.load(directory)
    arrays = dict(np.load(directory / ARRAYS_FILE))
    np.savez(directory / ARRAYS_FILE, **{**arrays, "centroids": arrays["centroids"][:-1]})
    with pytest.raises(GenirError, match="inconsistent docid tree"):
        load_docid_scheme(directory)
    (directory / ARRAYS_FILE).write_bytes(b"garbage")
    with pytest.raises(GenirError, match="unreadable arrays"):
        load_docid_scheme(directory)
    (directory / ARRAYS_FILE).unlink()
    with pytest.raises(GenirError, match="arrays are missing"):
        load_docid_scheme(directory)
    (directory / SCHEME_FILE).write_text("{not json")
    with pytest.raises(GenirError, match="not valid JSON"):
        load_docid_scheme(directory)


# -- the registry and what each scheme says it can do ---------------------------------------------
def test_every_scheme_module_registers_its_scheme():
    assert docid_scheme_names() == ["atomic", "elaborative", "naive", "rq", "semantic", "semantic-digits"]
    for name in docid_scheme_names():
        assert docid_scheme_class(name).name == name
    with pytest.raises(GenirError, match=r"unknown docid scheme 'nope' \(known: atomic, elaborative, naive"):
        docid_scheme_class("nope")


NEW_SCHEME_MODULE = '''
from genir.dsi.docids import NaiveDocids


class ReversedDocids(NaiveDocids):
    """Naive docids under another name: enough to show that one file adds a scheme."""

    name = "reversed-for-test"
'''


def test_one_new_file_adds_a_scheme_that_config_build_and_load_accept(tmp_path, monkeypatch, request):
    """A ``*_docids`` module in the package is found without being imported or listed anywhere."""
    import sys

    import genir.dsi
    from genir.dsi import docids as registry
    from genir.dsi.config import DSIConfig

    (tmp_path / "reversed_for_test_docids.py").write_text(NEW_SCHEME_MODULE, encoding="utf-8")
    monkeypatch.setattr(genir.dsi, "__path__", [*genir.dsi.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_SCHEMES", dict(registry._SCHEMES))  # the test's scheme leaves with it
    request.addfinalizer(lambda: sys.modules.pop("genir.dsi.reversed_for_test_docids", None))
    assert "reversed-for-test" in docid_scheme_names()
    config = DSIConfig(docids="reversed-for-test")
    assert config.docid_embeddings_mode() == "none"
    scheme = DocidScheme.from_config(config)
    scheme.assign(documents(["a", "b"]))
    scheme.save(tmp_path / "saved")
    assert load_docid_scheme(tmp_path / "saved").sequences() == scheme.sequences()
    with pytest.raises(TypeError, match="is taken by"):
        type("Impostor", (NaiveDocids,), {"name": "reversed-for-test"})


@pytest.mark.parametrize("name, token_vectors, single_token, grows, describer, keeps_vectors", [
    ("atomic", True, True, False, False, False),
    ("rq", True, False, False, False, False),
    ("semantic", True, False, False, False, False),
    ("naive", False, False, False, False, False),
    ("semantic-digits", False, False, True, False, False),
    ("elaborative", False, False, True, True, True),
])
def test_each_scheme_declares_its_capabilities(name, token_vectors, single_token, grows, describer, keeps_vectors):
    scheme = docid_scheme_class(name)
    assert (scheme.has_token_vectors, scheme.single_token, scheme.grows_without_training, scheme.needs_describer,
            scheme.can_keep_vectors) == (token_vectors, single_token, grows, describer, keeps_vectors)


def test_schemes_built_from_a_dsi_config_take_its_settings_and_search_mode():
    from genir.dsi.config import DSIConfig, SEDSIConfig

    rq = DocidScheme.from_config(DSIConfig(docids="rq", rq_levels=2, rq_codes=8, seed=3))
    assert rq.config() == {"levels": 2, "codes": 8, "seed": 3}
    assert DocidScheme.from_config(DSIConfig(docids="semantic", semantic_k=4, semantic_levels=3)).config()["k"] == 4
    assert DocidScheme.from_config(SEDSIConfig(description_tokens=5)).max_tokens == 5
    assert isinstance(DocidScheme.from_config(DSIConfig(docids="semantic-digits")), DigitSemanticDocids)
    assert AtomicDocids.search_mode(DSIConfig(atomic_search="exact")) is SearchMode.SINGLE_TOKEN
    assert AtomicDocids.search_mode(DSIConfig(atomic_search="beam")) is SearchMode.BEAM
    assert docid_scheme_class("elaborative").search_mode(SEDSIConfig()) is SearchMode.RESCORE
    assert docid_scheme_class("elaborative").search_mode(SEDSIConfig(elaborative_search="beam")) is SearchMode.BEAM
    assert NaiveDocids.search_mode(DSIConfig(docids="naive")) is SearchMode.BEAM
    with pytest.raises(GenirError, match="docids='nope': expected one of atomic, elaborative, naive"):  # the registry's names
        DocidScheme.from_config(DSIConfig(docids="nope"))


def test_atomic_token_vectors_are_the_document_embeddings():
    scheme = AtomicDocids()
    x = random_embeddings(3)
    scheme.assign(documents(["a", "b", "c"]))
    rows = scheme.token_vectors(x)
    assert rows.shape == (scheme.vocab_size, DIM) and rows.dtype == np.float32
    assert not rows[:2].any() and np.array_equal(rows[[scheme.sequence(d)[0] for d in "abc"]], x)
    scheme.extend(documents(["d"]))
    assert np.array_equal(scheme.new_token_vectors(x[:1], 3), x[:1]) and scheme.position_starts() == [2]
    with pytest.raises(GenirError, match="naive docids have no token vectors"):
        NaiveDocids().token_vectors(x)
    assert NaiveDocids().position_starts() is None and not NaiveDocids().needs_embeddings
