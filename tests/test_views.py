"""Training views: indexing examples, salient sentences, pseudo-queries, retrieval pairs."""

from conftest import write_beir

from genir.indexer.collection import Collection, Document
from genir.views.pairs import ViewConfig, indexing_examples, retrieval_examples, training_pairs
from genir.views.querygen import KeywordQueryGenerator
from genir.views.salience import Salience, split_sentences

LONG = Document("long", "Kinases", "Cells divide often. The kinase ZX9 phosphorylates ZX9 targets in ZX9 pathways. "
                "Results were significant. " + "Cells divide often and study results were significant. " * 8)
OTHERS = [Document(f"o{i}", "", f"Cells divide often. Results were significant. Study {i}.") for i in range(5)]


def test_split_sentences():
    assert split_sentences("One two. Three four! (Five) six? 7 eight.") == ["One two.", "Three four!", "(Five) six?", "7 eight."]


def test_first_words_and_spans():
    pairs = indexing_examples([LONG, OTHERS[0]], ViewConfig(first_words=10, spans=3, span_words=5))
    long_views = [text for text, doc in pairs if doc == "long"]
    assert len(long_views) == 4 and long_views[0] == " ".join(LONG.contents.split()[:10])
    assert all(len(v.split()) == 5 for v in long_views[1:])
    assert [text for text, doc in pairs if doc == "o0"] == [OTHERS[0].contents]  # short: no spans


def test_salient_sentence_has_the_documents_rare_words():
    salience = Salience([LONG, *OTHERS])
    assert salience.rehearsal_contents(LONG, 1) == ["The kinase ZX9 phosphorylates ZX9 targets in ZX9 pathways."]
    query = salience.keyword_queries(LONG, 1, words=3)[0]
    assert len(query.split()) == 3 and "zx9" in query.split()
    assert salience.keyword_queries(LONG, 2, seed=1) == salience.keyword_queries(LONG, 2, seed=1)


def test_training_pairs_mix_every_view(tmp_path):
    root = write_beir(tmp_path / "c", split="train")
    coll = Collection.open(root)
    docs = list(coll.docs())
    assert retrieval_examples(coll, coll.qrels("train")) == [("how do I parse json", "d3"), ("sha-256 digest of bytes", "d4"),
                                                 ("striped zebras", "d6")]
    config = ViewConfig(spans=0, rehearsal=1, pseudo_queries=2, retrieval_repeats=2)
    pairs = training_pairs(coll, docs, config, KeywordQueryGenerator(docs))
    assert len(pairs) == 6 + 6 + 6 * 2 + 3 * 2

    class Numbered(KeywordQueryGenerator):
        def pseudo_queries(self, docs, n, seed=0):
            return [[f"q{i}"] * n for i in range(len(docs))]

    generated = training_pairs(coll, docs, config, Numbered(docs))
    assert ("q5", "d6") in generated and sorted(generated) != sorted(pairs)
    assert training_pairs(coll, docs, config, KeywordQueryGenerator(docs)) == pairs  # deterministic for a seed
    held_out = training_pairs(coll, docs, config, Numbered(docs), no_pseudo_queries=frozenset({"d6"}))
    assert ("q5", "d6") not in held_out and ("q4", "d5") in held_out  # d6 keeps its other views
    assert sum(doc == "d6" for _, doc in held_out) == sum(doc == "d6" for _, doc in generated) - 2
