
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


def test_builtin_toy_has_queries_and_judgements_and_is_written_once_per_text(tmp_path, monkeypatch):
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path))
    toy = Collection.open("builtin:toy")
    assert len(toy.doc_ids) == 24 and len(toy.qrels("train")) == 24 and len(toy.qrels("test")) == 12
    assert all(set(grades) <= set(toy.doc_ids) for grades in toy.qrels("test").values())
    folders = list((tmp_path / "builtin").iterdir())
    assert [f.name[:4] for f in folders] == ["toy-"] and Collection.open("builtin:toy").fingerprint == toy.fingerprint
    assert list((tmp_path / "builtin").iterdir()) == folders  # the second open read the same copy


def test_shared_collections_validate():
    scifact = Collection.open(shared_collection("scifact"))
    assert len(scifact.doc_ids) == 5183
    assert len(scifact.qrels("test")) == 300 and len(scifact.qrels("train")) == 809
    cranfield = shared_collection("cranfield")
    with pytest.raises(InputError, match="corpus.jsonl:471: document '471' is empty"):
        list(Collection.open(cranfield).docs())
    assert len(Collection.open(cranfield, allow_empty_docs=True).qrels("test")) == 225


# -- own corpora (issue 32) -----------------------------------------------------------------------

def _docs(location, **kwargs):
    return [(d.id, d.title, d.text) for d in Collection.open(location, **kwargs).docs()]


def test_reads_pyserini_jsonl(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "contents": "hello world"}\n{"id": 7, "title": "T", "contents": "more"}\n', encoding="utf-8")
    assert _docs(path) == [("a", "", "hello world"), ("7", "T", "more")]
    path.write_text('{"docid": "a", "contents": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r'docs.jsonl:1: missing "_id" \(or "id"\): each line is .*"contents"'):
        _docs(path)


@pytest.mark.parametrize("name, content, expected", [
    ("c.tsv", "docid\tTitle\tText\na\tCats\tthe cat\nb\t\tdogs\n", [("a", "Cats", "the cat"), ("b", "", "dogs")]),
    ("c.tsv", "text\tid\turl\nthe cat\ta\thttp://x\n", [("a", "", "the cat")]),  # any order, other columns ignored
    ("c.csv", 'id,title,text\na,Cats,"the cat, on a mat"\nb,Dogs,"two\nlines"\n',
     [("a", "Cats", "the cat, on a mat"), ("b", "Dogs", "two\nlines")]),
    ("c.csv", "a,the cat\nb,Dogs,dogs bark\n", [("a", "", "the cat"), ("b", "Dogs", "dogs bark")]),  # no header
])
def test_tsv_and_csv_with_or_without_a_header(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert _docs(path) == expected


@pytest.mark.parametrize("name, content, message", [
    ("c.tsv", "id\tnotes\na\tx\n", "c.tsv:1: a header row naming an id column ('id') must also name a text column"),
    ("c.csv", "id,title,text\na,Cats,the cat\nb,Dogs\n", "c.csv:3: expected 3 columns, as the header on line 1 names, found 2"),
    ("c.csv", 'a,"the cat\n', "c.csv:1: malformed CSV"),
    ("c.csv", "id,text,body\na,x,y\n", "c.csv:1: the header names 2 text columns ('text', 'body')"),
    ("c.csv", "a,x,y,z\n", "c.csv:1: expected id,text or id,title,text (or a header row naming id, title and text columns), found 4"),
])
def test_bad_tsv_and_csv_rows_name_file_line_and_the_expected_columns(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        _docs(path)
    assert str(caught.value).startswith(f"{tmp_path / message}"), str(caught.value)


def test_reads_a_folder_of_text_and_markdown_files(tmp_path, caplog):
    folder = tmp_path / "notes"
    (folder / "animals").mkdir(parents=True)
    (folder / "animals" / "cats.md").write_text("\n# Cats\n\nThe cat sat on the mat.\n", encoding="utf-8")
    (folder / "zebras.txt").write_text("Zebras\nhave stripes.\nBlack and white.", encoding="utf-8")
    (folder / ".hidden.txt").write_text("skipped", encoding="utf-8")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8")
    coll = Collection.open(folder)
    assert coll.name == "notes" and "skipped 1 files that are not .txt or .md (photo.jpg)" in caplog.text
    assert _docs(folder) == [("animals/cats", "Cats", "The cat sat on the mat."),
                             ("zebras", "Zebras", "have stripes.\nBlack and white.")]
    before = coll.fingerprint
    (folder / "zebras.txt").write_text("Zebras\nhave stripes.", encoding="utf-8")
    assert Collection.open(folder).fingerprint != before


@pytest.mark.parametrize("name, content, message", [
    ("my notes.txt", "text", "my notes.txt: document id (the file's path without its extension) 'my notes' contains whitespace"),
    ("empty.md", "\n\n", "empty.md: document 'empty' is empty"),
    ("bad.txt", b"caf\xe9", "bad.txt:1: not valid UTF-8"),
])
def test_bad_text_files_are_named(tmp_path, name, content, message):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "fine.txt").write_text("fine", encoding="utf-8")
    (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as caught:
        _docs(folder)
    assert str(caught.value).startswith(str(folder / message.split(":")[0])) and message.split(":", 1)[1] in str(caught.value)


def test_a_folder_without_a_corpus_or_text_files_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no corpus.jsonl .a BEIR directory. and no .txt or .md files"):
        Collection.open(tmp_path / "empty")
    beir = write_beir(tmp_path / "beir")
    (beir / "corpus.jsonl").unlink()
    (beir / "README.md").write_text("# A BEIR download\n")
    with pytest.raises(InputError, match="not a BEIR collection: it has queries.jsonl or qrels/ but corpus.jsonl is missing"):
        Collection.open(beir)


def test_documents_given_in_memory_are_checked_like_a_file(tmp_path):
    from genir.indexer.collection import Document, check_documents

    coll = Collection.from_documents([Document("a", "A", "x"), Document("b", "", "y")], name="mine")
    assert coll.doc_ids == ["a", "b"] and coll.name == "mine" and coll.resolved_path is None
    assert coll.fingerprint == Collection.from_documents([Document("a", "A", "x"), Document("b", "", "y")]).fingerprint
    assert coll.fingerprint != Collection.from_documents([Document("a", "A", "x")]).fingerprint
    for docs, message in [
        ([Document("a", "", "x"), Document("a", "", "y")], "the documents given, document 2: duplicate document id 'a'"),
        ([Document("a\tb", "", "x")], "the documents given, document 1: document id 'a\\tb' contains whitespace"),
        ([Document("a", "", "")], "the documents given, document 1: document 'a' is empty"),
        ([Document(1, "", "x")], "the documents given, document 1: its id must be a string, got int"),
        ([], "the documents given: there are none"),
        ("abc", "the documents given: expected an iterable of Document objects, got one str"),
    ]:
        with pytest.raises(InputError) as caught:
            check_documents(docs)
        assert str(caught.value).startswith(message), str(caught.value)
    assert check_documents([Document("a", "", "")], allow_empty_docs=True) == [Document("a", "", "")]
