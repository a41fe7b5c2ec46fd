
import pytest
from conftest import TOY_DOCS, shared_collection, write_beir

from genir.errors import GenirError, InputError
from genir.indexer.collection import Collection


def test_reads_beir_collection(toy_collection):
    coll = Collection.open(toy_collection)
    docs = list(coll.docs())
    assert [d.id for d in docs] == [d["_id"] for d in TOY_DOCS]
    assert docs[0].contents == "Cats The cat sat on the mat and purred at the dog."
    assert coll.qrels("test") == {"q1": {"d3": 1}, "q2": {"d4": 1}, "q3": {"d6": 2}}
    assert list(coll.split_queries("test")) == ["q1", "q2", "q3"]
    assert coll.splits() == ["test"]


def test_reads_tsv_corpus(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("a\thello world\nb\tTitle\tsome text\n", encoding="utf-8")
    docs = list(Collection.open(path).docs())
    assert [(d.id, d.title, d.text) for d in docs] == [("a", "", "hello world"), ("b", "Title", "some text")]


def test_integer_ids_are_read_as_strings(tmp_path):
    root = write_beir(tmp_path / "c", docs=[{"_id": 7, "text": "seven"}], queries=[{"_id": 1, "text": "q"}], qrels=[("1", "7", 1)])
    coll = Collection.open(root)
    assert coll.doc_ids == ["7"] and coll.qrels("test") == {"1": {"7": 1}}


def _corpus_error(tmp_path, corpus_bytes: bytes) -> InputError:
    root = write_beir(tmp_path / "c")
    (root / "corpus.jsonl").write_bytes(corpus_bytes)
    with pytest.raises(InputError) as info:
        list(Collection.open(root).docs())
    return info.value


GOOD = b'{"_id": "a", "text": "x"}\n'


@pytest.mark.parametrize("bad_line, reason", [
    (b'{"_id": "b", "text": }\n', "malformed JSON"),
    (b'{"text": "no id"}\n', 'missing "_id"'),
    (b'{"_id": "a", "text": "again"}\n', "duplicate document id 'a'"),
    (b'{"_id": "b", "title": "", "text": "  "}\n', "is empty"),
    (b'{"_id": "b", "text": "caf\xe9"}\n', "not valid UTF-8"),
    (b'["not", "an", "object"]\n', "expected a JSON object"),
    (b'{"_id": "b", "text": 5}\n', '"text" must be a string'),
])
def test_bad_corpus_lines_name_file_and_line(tmp_path, bad_line, reason):
    error = _corpus_error(tmp_path, GOOD + bad_line)
    assert error.line == 2 and error.path.name == "corpus.jsonl"
    assert reason in str(error) and str(error).startswith(f"{error.path}:2: ")


def test_empty_documents_can_be_allowed(tmp_path, caplog):
    root = write_beir(tmp_path / "c", docs=[{"_id": "a", "text": "x"}, {"_id": "b", "title": "", "text": ""}], qrels=[])
    docs = list(Collection.open(root, allow_empty_docs=True).docs())
    assert [d.id for d in docs] == ["a", "b"]
    assert "document 'b' is empty" in caplog.text


def test_empty_corpus_is_an_error(tmp_path):
    assert "the corpus has no documents" in str(_corpus_error(tmp_path, b"\n"))


def test_empty_query_is_an_error(tmp_path):
    root = write_beir(tmp_path / "c", queries=[{"_id": "q1", "text": "ok"}, {"_id": "q2", "text": " "}], qrels=[("q1", "d1", 1)])
    with pytest.raises(InputError, match=r"queries.jsonl:2: query 'q2' is empty"):
        _ = Collection.open(root).queries


@pytest.mark.parametrize("line, reason", [
    ("qX\td1\t1", "unknown query id 'qX'"),
    ("q1\tdX\t1", "unknown document id 'dX'"),
    ("q1\td1\tyes", "is not an integer"),
    ("q1\td1", "found 2 column(s)"),
])
def test_bad_qrels_lines(tmp_path, line, reason):
    root = write_beir(tmp_path / "c")
    path = root / "qrels" / "test.tsv"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(InputError) as info:
        Collection.open(root).qrels("test")
    assert info.value.line == 5 and reason in str(info.value)


def test_missing_split_and_missing_path(tmp_path, toy_collection):
    with pytest.raises(GenirError, match="no qrels for split 'dev'"):
        Collection.open(toy_collection).qrels("dev")
    with pytest.raises(InputError, match="no such collection"):
        Collection.open(tmp_path / "nowhere")


def test_builtin_stdlib_corpus_is_deterministic():
    coll = Collection.open("builtin:stdlib")
    ids = coll.doc_ids
    assert len(ids) > 1000 and len(ids) == len(set(ids))
    assert "json.dumps" in ids
    assert Collection.open("builtin:stdlib").fingerprint == coll.fingerprint


def test_shared_collections_validate():
    scifact = Collection.open(shared_collection("scifact"))
    assert len(scifact.doc_ids) == 5183
    assert len(scifact.qrels("test")) == 300 and len(scifact.qrels("train")) == 809
    cranfield = shared_collection("cranfield")
    with pytest.raises(InputError, match="corpus.jsonl:471: document '471' is empty"):
        list(Collection.open(cranfield).docs())
    assert len(Collection.open(cranfield, allow_empty_docs=True).qrels("test")) == 225
