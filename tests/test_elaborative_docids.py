"""Elaborative-description docids (SE-DSI): uniqueness, round trips, extension and persistence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.dsi.docids import (
    EOS,
    FIRST_TOKEN,
    SCHEME_FILE,
    DocidScheme,
    load_docid_scheme,
    new_docid_scheme,
)
from genir.dsi.elaborative_docids import ElaborativeDocids
from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.views.querygen import Seq2SeqQueryGenerator

# Descriptions that collide: equal texts, texts equal after truncation to max_tokens, a text that
# equals another's suffixed form ("cats 2"), and an empty one.
TEXTS = ["cats", "cats", "cats 2", "dogs and cats", "dogs and cats playing", "cats", "", ""]


def docs(texts: Sequence[str], prefix: str = "d") -> list[Document]:
    return [Document(f"{prefix}{i}", "", text) for i, text in enumerate(texts)]


def text_describer(documents: Sequence[Document]) -> list[str]:
    """A stub describer: the document's text is its description."""
    return [doc.text for doc in documents]


@pytest.fixture
def scheme() -> ElaborativeDocids:
    result = ElaborativeDocids("all-MiniLM-L6-v2", max_tokens=3)
    result.describer = text_describer
    result.assign(docs(TEXTS))
    return result


def check_well_formed(scheme: ElaborativeDocids) -> None:
    sequences = scheme.sequences()
    assert len({tuple(seq) for seq in sequences.values()}) == len(sequences)
    for docid, seq in sequences.items():
        assert seq[-1] == EOS and len(seq) >= 2
        assert all(FIRST_TOKEN <= t < scheme.vocab_size for t in seq[:-1])
        assert scheme.lookup(seq) == docid
        assert scheme.lookup([*seq, 0, 0]) == docid


def test_colliding_descriptions_get_unique_docids(scheme: ElaborativeDocids) -> None:
    check_well_formed(scheme)
    names = [scheme.description(f"d{i}") for i in range(len(TEXTS))]
    # The first "cats" keeps its description; later ones take the first free suffix.
    assert names == ["cats", "cats 2", "cats 2 2", "dogs and cats", "dogs and cats 2", "cats 3", "2", "3"]
    assert scheme.max_length == max(len(seq) for seq in scheme.sequences().values())


def test_extend_never_collides_nor_renames(scheme: ElaborativeDocids) -> None:
    before = scheme.sequences()
    scheme.extend(docs(["cats", "cats 3", "birds"], prefix="n"))
    after = scheme.sequences()
    assert {docid: after[docid] for docid in before} == before
    check_well_formed(scheme)
    assert [scheme.description(f"n{i}") for i in range(3)] == ["cats 4", "cats 3 2", "birds"]


def test_save_load_round_trip_and_extend_after_load(scheme: ElaborativeDocids, tmp_path: Path) -> None:
    scheme.save(tmp_path)
    loaded = load_docid_scheme(tmp_path)
    assert isinstance(loaded, ElaborativeDocids)
    assert loaded.config() == scheme.config() and loaded.vocab_size == scheme.vocab_size
    assert loaded.sequences() == scheme.sequences()
    assert loaded.describer is None
    with pytest.raises(GenirError, match="describer"):
        loaded.extend(docs(["birds"], prefix="n"))
    assert loaded.num_docs == len(TEXTS)
    # With a describer set again, a loaded scheme names documents as the original does.
    loaded.describer = text_describer
    scheme.extend(docs(["cats", "birds"], prefix="n"))
    loaded.extend(docs(["cats", "birds"], prefix="n"))
    assert loaded.sequences() == scheme.sequences()


def test_load_rejects_tokens_outside_the_vocabulary(scheme: ElaborativeDocids, tmp_path: Path) -> None:
    scheme.save(tmp_path)
    record = json.loads((tmp_path / SCHEME_FILE).read_text())
    record["sequences"][0] = [scheme.vocab_size, EOS]
    (tmp_path / SCHEME_FILE).write_text(json.dumps(record))
    with pytest.raises(GenirError, match="vocabulary size"):
        DocidScheme.load(tmp_path)


def test_describer_errors_change_nothing() -> None:
    scheme = ElaborativeDocids()
    with pytest.raises(GenirError, match="describer"):
        scheme.assign(docs(["cats"]))
    scheme.describer = lambda documents: ["only one"]
    with pytest.raises(GenirError, match="one string per document"):
        scheme.assign(docs(["cats", "dogs"]))
    assert scheme.num_docs == 0


def test_document_vectors_follow_the_docids_through_extend_delete_and_save(tmp_path: Path) -> None:
    """A scheme assigned with embeddings keeps one row per position (deleted ones too), needs them for
    every later document (a refusal changes nothing), and saves them; one assigned without keeps none."""
    rng = np.random.default_rng(0)
    first, later = rng.standard_normal((3, 4), dtype=np.float32), rng.standard_normal((2, 4), dtype=np.float32)
    scheme = ElaborativeDocids("all-MiniLM-L6-v2", max_tokens=3)
    scheme.describer = text_describer
    scheme.assign(docs(["cats", "dogs", "birds"]), first)
    with pytest.raises(GenirError, match="keep document vectors"):
        scheme.extend(docs(["fish", "frogs"], prefix="n"))
    assert scheme.num_docs == 3 and scheme.vectors.shape == (3, 4)
    scheme.extend(docs(["fish", "frogs"], prefix="n"), later)
    scheme.delete(["d1"])
    np.testing.assert_array_equal(scheme.live_vectors(), np.concatenate([first, later])[[0, 2, 3, 4]])
    assert list(scheme.sequences()) == ["d0", "d2", "n0", "n1"]  # live_vectors' row order
    scheme.save(tmp_path / "with")
    loaded = load_docid_scheme(tmp_path / "with")
    np.testing.assert_array_equal(loaded.vectors, scheme.vectors)
    np.testing.assert_array_equal(loaded.live_vectors(), scheme.live_vectors())
    plain = ElaborativeDocids("all-MiniLM-L6-v2", max_tokens=3)
    plain.describer = text_describer
    plain.assign(docs(["cats"]))
    plain.extend(docs(["dogs"], prefix="n"), later[:1])  # ignored: this scheme keeps no vectors
    plain.save(tmp_path / "without")
    assert load_docid_scheme(tmp_path / "without").live_vectors() is None and not (tmp_path / "without" / "docid_scheme.npz").exists()


def test_registered_and_configurable() -> None:
    scheme = new_docid_scheme("elaborative")
    assert isinstance(scheme, ElaborativeDocids)
    assert len(scheme.token_names()) == scheme.vocab_size
    with pytest.raises(GenirError):
        ElaborativeDocids(max_tokens=0)


def test_query_describer_uses_document_contents() -> None:
    class Echo(Seq2SeqQueryGenerator):
        def __init__(self) -> None:  # no model: describe() is replaced
            pass

        def describe(self, texts: Sequence[str]) -> list[str]:
            return [text.upper() for text in texts]

    describe = Echo().descriptions
    assert describe([Document("a", "Title", "body")]) == ["TITLE BODY"]


def test_title_first_descriptions_and_their_token_cap() -> None:
    """``description=title+keywords`` names a document by its title, then the generator's description;
    ``description_tokens`` caps the docid; an unknown kind is one clear error before anything is named."""
    from genir.dsi.config import SEDSIConfig
    from genir.dsi.docids import DocidScheme
    from genir.dsi.searcher import describer
    from genir.views.querygen import KeywordQueryGenerator

    corpus = [Document("a", "Zebra stripes", "Zebras have black and white stripes."), Document("b", "", "Cats purr loudly.")]
    generator = KeywordQueryGenerator(corpus, words=2)
    keywords = generator.descriptions(corpus)
    config = SEDSIConfig(description="title+keywords", description_tokens=3)
    assert describer(config, generator)(corpus) == [f"Zebra stripes {keywords[0]}", keywords[1]]
    scheme = DocidScheme.from_config(config)
    scheme.describer = describer(config, generator)
    scheme.assign(corpus)
    assert all(len(scheme.sequence(d.id)) <= 3 + 1 for d in corpus)  # 3 tokens, then eos
    with pytest.raises(GenirError, match=r"description='abstract': expected one of keywords, title\+keywords"):
        describer(SEDSIConfig(description="abstract"), generator)


@settings(max_examples=25, deadline=None)
@given(
    texts=st.lists(st.sampled_from(["cats", "cats 2", "cats 3", "dogs", "dogs cats", "2", ""]), min_size=1, max_size=12),
    split=st.integers(min_value=1, max_value=12),
)
def test_any_descriptions_in_any_batches_stay_unique(texts: list[str], split: int) -> None:
    scheme = ElaborativeDocids(max_tokens=2)
    scheme.describer = text_describer
    documents = docs(texts)
    scheme.assign(documents[:split])
    first = scheme.sequences()
    scheme.extend(documents[split:])
    check_well_formed(scheme)
    assert {docid: scheme.sequence(docid) for docid in first} == first
