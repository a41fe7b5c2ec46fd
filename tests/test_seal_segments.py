"""SEAL indexes grow by FM-index segments and shrink by rebuilding the segments that held the
deleted documents (genir.seal.segments; older indexes' tombstones still load and go on the next delete).

Segments answer exactly as one FM-index over the union of their documents (counts, occurrences,
allowed next tokens, a whole constrained beam search); an index grown by ``add`` searches exactly
as a build of all its documents; a deleted document is never returned; ``optimize`` gives the
index a build of the live documents gives; every change is atomic. The index tests use
``use_model=false`` (no training) on the toy documents.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOY_DOCS, add_killed_before_its_manifest, write_beir
from transformers import T5Config, T5ForConditionalGeneration
from typer.testing import CliRunner

from genir.cli.main import app
from genir.errors import CorruptIndexError, GenirError
from genir.indexer.artifact import index_size_bytes, read_manifest, write_manifest
from genir.indexer.collection import Collection, Document
from genir.kernels.beam_search import beam_search
from genir.kernels.fm_constraint import FMIndexConstraint
from genir.kernels.fmindex import FMIndex
from genir.retrieval.searcher import Searcher, build_index, parse_config, searcher_class
from genir.seal.searcher import SEALConfig, SEALSearcher, optimize_index
from genir.seal.segments import (
    Segment,
    SegmentConstraint,
    SegmentedFMIndex,
    document_tokens,
)

runner = CliRunner()
PAD, EOS, VOCAB = 0, 1, 14
NEW_DOCS = [
    {"_id": "n1", "title": "Giraffes", "text": "Giraffes have long necks and eat acacia leaves on the savanna."},
    {"_id": "n2", "title": "Volcanoes", "text": "Lava flows from erupting volcanoes in Iceland, and the cat ran."},
]
QUERIES = ["how do I parse json", "sha-256 digest of bytes", "striped zebras", "the cat and the dog",
           "acacia leaves", "lava from volcanoes", "the mail carrier"]


# -- segments answer as one FM-index ------------------------------------------------------------
def random_corpus(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    docs = [rng.integers(2, VOCAB, size=rng.integers(0, 25)) for _ in range(40)]
    docs[7] = np.zeros(0, dtype=np.int64)  # an empty document
    return docs


def segmented(docs: list[np.ndarray], cuts: list[int], deleted=()) -> SegmentedFMIndex:
    bounds = [0, *cuts, len(docs)]
    return SegmentedFMIndex([Segment(FMIndex.build(docs[a:b], vocab_size=VOCAB), [f"d{i}" for i in range(a, b)])
                             for a, b in itertools.pairwise(bounds)], deleted)


def probe_ngrams(docs: list[np.ndarray], seed: int) -> list[list[int]]:
    """Every n-gram of up to 4 tokens that occurs (many in several segments' documents), random
    ones (most absent), and the empty n-gram."""
    rng = np.random.default_rng(seed)
    present = {tuple(d[i:i + m].tolist()) for d in docs for m in range(1, 5) for i in range(len(d) - m + 1)}
    absent = [rng.integers(2, VOCAB, size=rng.integers(1, 7)).tolist() for _ in range(300)]
    return [[], *map(list, sorted(present)), *absent]


def occurrence_sets(found, n: int) -> list[set[tuple[int, int]]]:
    return [set(zip(found.doc_ids[found.row_ptr[i]:found.row_ptr[i + 1]].tolist(),
                    found.offsets[found.row_ptr[i]:found.row_ptr[i + 1]].tolist())) for i in range(n)]


@pytest.mark.parametrize("cuts", [[], [20], [1, 2, 13, 30]])
def test_segments_count_and_locate_exactly_as_one_fm_index(cuts):
    docs = random_corpus(0)
    whole, parts = FMIndex.build(docs, vocab_size=VOCAB), segmented(docs, cuts)
    ngrams = probe_ngrams(docs, 1)
    counts = parts.count(ngrams)
    np.testing.assert_array_equal(counts, whole.count(ngrams))
    assert counts[0] == parts.num_tokens == whole.num_tokens and (counts == 0).sum() > 50
    lengths = np.array([len(g) for g in ngrams])
    lo, hi = parts.ranges(ngrams)
    assert lo.shape == hi.shape == (len(ngrams), len(cuts) + 1)
    wlo, whi = whole.ranges(ngrams)
    assert (occurrence_sets(parts.locate(lo, hi, lengths), len(ngrams))
            == occurrence_sets(whole.locate(wlo, whi, lengths), len(ngrams)))


def test_tombstones_hide_documents_from_locate_but_not_from_counts():
    docs = random_corpus(2)
    whole, parts = FMIndex.build(docs, vocab_size=VOCAB), segmented(docs, [10, 25], deleted=[3, 10, 39])
    ngrams = probe_ngrams(docs, 3)
    np.testing.assert_array_equal(parts.count(ngrams), whole.count(ngrams))
    lengths = np.array([len(g) for g in ngrams])
    wlo, whi = whole.ranges(ngrams)
    expected = [{(d, o) for d, o in s if d not in (3, 10, 39)}
                for s in occurrence_sets(whole.locate(wlo, whi, lengths), len(ngrams))]
    assert occurrence_sets(parts.locate(*parts.ranges(ngrams), lengths), len(ngrams)) == expected
    assert parts.num_live == 37 and "d10" not in parts.live and parts.live["d11"] == 11


def test_segment_constraint_allows_exactly_the_union():
    """Every state reached from the root, level by level, lists the tokens one FM-index over the
    union lists, in the same order, each leading to a state with the same count."""
    docs = random_corpus(4)
    whole, parts = FMIndex.build(docs, vocab_size=VOCAB), segmented(docs, [5, 6, 22])
    union, constraint = FMIndexConstraint(whole, eos_token_id=EOS), SegmentConstraint(parts, eos_token_id=EOS)
    assert constraint.state_width == 8
    state, reference = constraint.initial_state(3), union.initial_state(3)
    compared = 0
    for _ in range(5):
        mine, theirs = constraint.candidates(state), union.candidates(reference)
        assert torch.equal(mine.row_ptr, theirs.row_ptr) and torch.equal(mine.tokens, theirs.tokens)
        lo, hi = constraint.ranges(mine.next_state.numpy())
        np.testing.assert_array_equal(parts.range_counts(lo, hi),
                                      whole.range_counts(theirs.next_state[:, 0].numpy(), theirs.next_state[:, 1].numpy()))
        compared += mine.tokens.shape[0]
        keep = mine.tokens != EOS  # extend every n-gram by every allowed token (ended beams stop)
        state, reference = mine.next_state[keep], theirs.next_state[keep]
    assert compared > 2000
    absent = torch.tensor([[0, 0] * 4])  # an n-gram that occurs in no segment: nothing allowed
    assert constraint.candidates(absent).tokens.numel() == 0
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        constraint.candidates(torch.zeros((2, 2), dtype=torch.int64))


def test_one_segment_is_the_fm_index_constraint_unchanged():
    docs = random_corpus(5)
    parts = segmented(docs, [])
    state = torch.tensor([[0, parts.segments[0].index.root_range[1]]])
    mine = SegmentConstraint(parts, eos_token_id=EOS).candidates(state)
    theirs = FMIndexConstraint(parts.segments[0].index, eos_token_id=EOS).candidates(state)
    assert all(torch.equal(a, b) for a, b in zip((mine.row_ptr, mine.tokens, mine.next_state),
                                                  (theirs.row_ptr, theirs.tokens, theirs.next_state)))


def test_a_constrained_beam_search_over_segments_is_the_one_over_the_union():
    docs = random_corpus(6)
    whole, parts = FMIndex.build(docs, vocab_size=VOCAB), segmented(docs, [12, 13, 30])
    torch.manual_seed(0)
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, num_layers=2, num_heads=2, d_ff=64,
                      decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight[EOS] *= 4.0  # finish at several lengths
    queries = torch.randint(2, VOCAB, (5, 7))
    mine = beam_search(model, queries, SegmentConstraint(parts, eos_token_id=EOS), num_beams=6, max_new_tokens=6)
    theirs = beam_search(model, queries, FMIndexConstraint(whole, eos_token_id=EOS), num_beams=6, max_new_tokens=6)
    assert torch.equal(mine.sequences, theirs.sequences) and torch.equal(mine.valid, theirs.valid)
    torch.testing.assert_close(mine.scores, theirs.scores)
    valid = mine.valid.reshape(-1).numpy()
    lo, hi = SegmentConstraint.ranges(mine.states.reshape(-1, 8).numpy()[valid])
    np.testing.assert_array_equal(parts.range_counts(lo, hi),
                                  whole.range_counts(*theirs.states.reshape(-1, 2).numpy()[valid].T))


def test_documents_are_read_back_and_merged_into_the_fm_index_a_build_gives(tmp_path):
    docs = random_corpus(7)
    index = FMIndex.build(docs, vocab_size=VOCAB, sample_rate=3)
    back = document_tokens(index)
    assert len(back) == len(docs) and all(np.array_equal(a, b) for a, b in zip(back, docs))
    deleted = (0, 9, 21, 22)
    merged = segmented(docs, [9, 20], deleted=deleted).merged(sample_rate=5)
    assert len(merged.segments) == 1 and merged.segments[0].docids == [f"d{i}" for i in range(40) if i not in deleted]
    merged.segments[0].index.save(tmp_path / "merged")
    live = [d for i, d in enumerate(docs) if i not in deleted]
    FMIndex.build(live, vocab_size=VOCAB, sample_rate=5).save(tmp_path / "built")
    for name in sorted(p.name for p in (tmp_path / "built").iterdir()):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "built" / name).read_bytes(), name


def test_inconsistent_segments_are_refused():
    docs = random_corpus(8)
    with pytest.raises(ValueError, match="2 ids for 40"):
        SegmentedFMIndex([Segment(FMIndex.build(docs, vocab_size=VOCAB), ["a", "b"])])
    with pytest.raises(ValueError, match="vocab_size"):
        SegmentedFMIndex([Segment(FMIndex.build(docs[:1], vocab_size=VOCAB), ["a"]),
                          Segment(FMIndex.build(docs[1:2], vocab_size=VOCAB + 1), ["b"])])
    with pytest.raises(ValueError, match="appears twice"):
        SegmentedFMIndex([Segment(FMIndex.build(docs[:1], vocab_size=VOCAB), ["a"]),
                          Segment(FMIndex.build(docs[1:2], vocab_size=VOCAB), ["a"])])
    with pytest.raises(ValueError, match="distinct, ascending"):
        segmented(docs, [3], deleted=[5, 5])
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        segmented(docs, [3]).range_counts(np.zeros(4, np.int64), np.zeros(4, np.int64))


# -- a SEAL index grows, shrinks and merges -------------------------------------------------------
def docs_of(records) -> list[Document]:
    return [Document(r["_id"], r["title"], r["text"]) for r in records]


def build_seal(root: Path, name: str, records) -> Path:
    collection = Collection.open(write_beir(root / f"{name}-corpus", docs=records))
    build_index("seal", collection, root / name, parse_config(SEALConfig, ["use_model=false"]), device="cpu")
    return root / name


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The toy index, and the indexes a build gives after each change the tests make (references)."""
    root = tmp_path_factory.mktemp("segments")
    return {
        "toy": build_seal(root, "toy", TOY_DOCS),
        "all": build_seal(root, "all", [*TOY_DOCS, *NEW_DOCS]),
        "live": build_seal(root, "live", [d for d in [*TOY_DOCS, *NEW_DOCS] if d["_id"] not in ("d2", "n2")]),
    }


@pytest.fixture
def toy(built, tmp_path) -> Path:
    shutil.copytree(built["toy"], tmp_path / "index")
    return tmp_path / "index"


def tree(directory: Path) -> dict[str, bytes]:
    files = {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
    files["<siblings>"] = json.dumps(sorted(p.name for p in directory.parent.iterdir())).encode()
    return files


def corpus_ngrams(searcher: SEALSearcher, records) -> list[list[int]]:
    tokens = [[t + 2 for t in searcher.tokenizer(f"{r['title']} {r['text']}", add_special_tokens=False)["input_ids"]]
              for r in records]
    ngrams = {tuple(t[i:i + m]) for t in tokens for m in range(1, 5) for i in range(len(t) - m + 1)}
    return [list(g) for g in sorted(ngrams)] + [[5000, 6000], [tokens[0][0], tokens[-1][-1], 7]]


def test_add_writes_a_segment_and_searches_as_a_build_of_all_documents(built, toy):
    old_files = {p: (p.stat().st_ino, p.read_bytes()) for p in toy.rglob("*") if p.is_file() and p.name != "manifest.json"}
    searcher = Searcher.load(toy, device="cpu")
    change = searcher.add(docs_of(NEW_DOCS))
    assert (change.operation, change.num_docs_before, change.num_docs_after) == ("add", 6, 8)
    assert change.stats["segments"] == 2 and change.stats["add_optimizer_steps"] == 0
    record = json.loads((toy / "segments.json").read_text())
    assert [s["fmindex"] for s in record["segments"]] == ["fmindex", "segments/1/fmindex"] and record["deleted"] == 0
    for path, (inode, content) in old_files.items():  # the old segment's files: linked, never rewritten
        assert path.stat().st_ino == inode and path.read_bytes() == content
    grown, reference = Searcher.load(toy, device="cpu"), Searcher.load(built["all"], device="cpu")
    assert grown.num_docs == 8 and read_manifest(toy).stats["num_docs"] == 8
    ngrams = corpus_ngrams(grown, [*TOY_DOCS, *NEW_DOCS])
    np.testing.assert_array_equal(grown.index.count(ngrams), reference.index.count(ngrams))
    assert grown.batch_search(QUERIES, k=8) == reference.batch_search(QUERIES, k=8)  # scores too
    assert grown.search("acacia leaves", k=1)[0].docid == "n1"  # the new document's own rare n-gram
    assert searcher.search("erupting volcanoes", k=1)[0].docid == "n2"  # the searcher in memory is the new version


def test_a_model_decodes_over_segments_as_over_one_fm_index(built, tmp_path):
    """With a (barely) trained model: the grown index generates the keys, and returns the hits, that
    the same model gives under one FM-index of all the documents; deleted documents never come back."""
    collection = Collection.open(write_beir(tmp_path / "corpus", docs=TOY_DOCS, split="train"))
    config = parse_config(SEALConfig, ["model=t5-config:tiny", "max_epochs=2", "batch_size=8", "warmup_steps=0",
                                       "beams=4", "max_ngram_tokens=4"])
    torch.set_num_threads(1)
    build_index("seal", collection, tmp_path / "index", config, device="cpu")
    grown = Searcher.load(tmp_path / "index", device="cpu")
    grown.add(docs_of(NEW_DOCS))
    union = Searcher.load(tmp_path / "index", device="cpu")
    union.index = Searcher.load(built["all"], device="cpu").index  # one FM-index of the same 8 documents
    union.constraint = SegmentConstraint(union.index, eos_token_id=EOS)
    assert len(grown.index.segments) == 2 and len(union.index.segments) == 1
    generated = grown._generated(QUERIES)
    assert sum(map(len, generated)) > 20
    for mine, theirs in zip(generated, union._generated(QUERIES)):
        assert {n: lp for n, lp, *_ in mine} == {n: lp for n, lp, *_ in theirs}
        np.testing.assert_array_equal(grown.index.range_counts(np.stack([r[2] for r in mine]), np.stack([r[3] for r in mine])),
                                      union.index.count([list(n) for n, *_ in mine]))
    assert grown.batch_search(QUERIES, k=8) == union.batch_search(QUERIES, k=8)
    grown.delete(["d1", "n1"])
    for hits in grown.batch_search(QUERIES, k=6):
        assert not {"d1", "n1"} & {h.docid for h in hits}


def test_deleted_documents_are_never_returned(built, toy):
    searcher = Searcher.load(toy, device="cpu")
    searcher.add(docs_of(NEW_DOCS))
    change = searcher.delete(["n2", "d2"])
    assert (change.num_docs_before, change.num_docs_after, change.stats["deleted_docs"]) == (8, 6, 0)
    assert not (toy / "deleted.npy").exists()  # no tombstones: the segments that held them were built again
    shrunk = Searcher.load(toy, device="cpu")
    assert shrunk.num_docs == 6 and len(shrunk.index.segments) == 2
    live = Searcher.load(built["live"], device="cpu")
    # The deleted documents' n-grams no longer count: the answers of a build of the live documents.
    assert shrunk.batch_search(QUERIES, k=8) == live.batch_search(QUERIES, k=8)
    assert all(h.docid not in ("n2", "d2") for h in shrunk.search("lava from volcanoes and dogs chase cats", k=8))
    shrunk.save(toy.parent / "saved")  # segments copied (not linked), as they are
    saved = Searcher.load(toy.parent / "saved", device="cpu")
    assert saved.batch_search(QUERIES, k=6) == shrunk.batch_search(QUERIES, k=6)
    assert (toy.parent / "saved" / "docids.json").stat().st_ino != (toy / "docids.json").stat().st_ino
    back = Document("d2", "Dogs", "Dogs chase cats, balls and the mail carrier.")
    shrunk.add([back])  # a deleted id may come back, as a new document
    assert shrunk.num_docs == 7 and shrunk.search("the mail carrier", k=1)[0].docid == "d2"
    assert len(shrunk.index.segments) == 3 and shrunk.index.num_docs == 7


def test_delete_rewrites_only_the_segments_that_hold_the_documents(toy):
    """An unaffected segment is linked as it is; one emptied is dropped, and the next added segment
    takes a fresh folder (not the number of segments, which a dropped one lowered)."""
    searcher = Searcher.load(toy, device="cpu")
    searcher.add(docs_of(NEW_DOCS[:1]))
    searcher.add(docs_of(NEW_DOCS[1:]))
    first = (toy / "fmindex").iterdir().__next__().name
    before = (toy / "fmindex" / first).stat().st_ino
    searcher.delete([NEW_DOCS[0]["_id"]])  # empties segments/1
    record = json.loads((toy / "segments.json").read_text())
    assert [s["fmindex"] for s in record["segments"]] == ["fmindex", "segments/2/fmindex"]
    assert (toy / "fmindex" / first).stat().st_ino == before  # linked, not rewritten
    searcher.add([Document("n9", "Owls", "Owls hunt mice at night.")])
    record = json.loads((toy / "segments.json").read_text())
    assert [s["fmindex"] for s in record["segments"]] == ["fmindex", "segments/2/fmindex", "segments/3/fmindex"]
    assert Searcher.load(toy, device="cpu").search("owls hunt mice", k=1)[0].docid == "n9"


def _tombstone(index: Path, numbers: list[int]) -> None:
    """Make ``index`` (one segment) an index as older genir left it after deleting ``numbers``: tombstones."""
    record = {"format": "genir.seal.segments", "format_version": 1, "deleted": len(numbers),
              "segments": [{"fmindex": "fmindex", "docids": "docids.json", "num_docs": len(TOY_DOCS),
                            "num_tokens": read_manifest(index).stats["num_tokens"]}]}
    (index / "segments.json").write_text(json.dumps(record))
    np.save(index / "deleted.npy", np.array(numbers, dtype=np.int64))
    manifest = read_manifest(index)
    write_manifest(index, dataclasses.replace(manifest, stats={**manifest.stats, "num_docs": len(TOY_DOCS) - len(numbers)}))


def test_an_older_index_with_tombstones_loses_them_on_the_next_delete(toy):
    _tombstone(toy, [1])  # d2
    older = Searcher.load(toy, device="cpu")
    assert older.num_docs == 5 and all(h.docid != "d2" for h in older.search("dogs chase cats", k=6))
    older.delete(["d3"])
    assert not (toy / "deleted.npy").exists()
    shrunk = Searcher.load(toy, device="cpu")
    assert shrunk.index.num_docs == 4 and sorted(shrunk.docids) == sorted(d["_id"] for d in TOY_DOCS if d["_id"] not in ("d2", "d3"))


def test_optimize_merges_into_the_index_a_build_of_the_live_documents_gives(built, toy):
    searcher = Searcher.load(toy, device="cpu")
    searcher.add(docs_of(NEW_DOCS))
    searcher.delete(["d2", "n2"])
    before = searcher.batch_search(QUERIES, k=6)
    size_before = index_size_bytes(toy)
    change = searcher.optimize()
    assert (change.operation, change.num_docs_before, change.num_docs_after) == ("optimize", 6, 6)
    assert change.stats["merged_segments"] == 2 and change.stats["dropped_docs"] == 0 and change.stats["segments"] == 1
    assert not (toy / "segments.json").exists() and not (toy / "deleted.npy").exists() and not (toy / "segments").exists()
    assert index_size_bytes(toy) < size_before
    live = built["live"]
    for name in sorted(p.name for p in (live / "fmindex").iterdir()):  # the very FM-index a build gives
        assert (toy / "fmindex" / name).read_bytes() == (live / "fmindex" / name).read_bytes(), name
    assert json.loads((toy / "docids.json").read_text()) == json.loads((live / "docids.json").read_text())
    merged = Searcher.load(toy, device="cpu")
    after = merged.batch_search(QUERIES, k=6)
    assert after == Searcher.load(live, device="cpu").batch_search(QUERIES, k=6)
    assert [[h.docid for h in hits[:1]] for hits in after] == [[h.docid for h in hits[:1]] for hits in before]
    assert read_manifest(toy).collection["changes"][-1] == {"operation": "optimize", "documents": 0}
    again = merged.optimize()  # one segment, no tombstones: nothing to do, nothing written
    assert again.stats["merged_segments"] == 1 and again.seconds == 0.0


def test_present_or_absent_ids_are_errors_that_write_nothing(toy):
    searcher = Searcher.load(toy, device="cpu")
    searcher.add(docs_of(NEW_DOCS[:1]))
    searcher.delete(["d5"])
    before = tree(toy)
    with pytest.raises(GenirError, match="document 'n1' is already in"):
        searcher.add(docs_of(NEW_DOCS))
    with pytest.raises(GenirError, match="duplicate document id 'n2'"):
        searcher.add(docs_of(NEW_DOCS[1:]) * 2)
    with pytest.raises(GenirError, match="document 'd5' is not in"):  # deleted already
        searcher.delete(["d1", "d5"])
    with pytest.raises(GenirError, match="document 'nope' is not in"):
        searcher.delete(["nope"])
    assert tree(toy) == before and searcher.num_docs == 6


@pytest.mark.parametrize("operation", ["add", "delete", "optimize"])
def test_a_failure_after_the_new_files_leaves_the_old_index(toy, operation, monkeypatch):
    """An exception once the new version's files are all written (just before its manifest), a
    stand-in for a crash: the old index is on disk as it was, loads and answers as before."""
    import genir.retrieval.searcher as searcher_module

    searcher = Searcher.load(toy, device="cpu")
    searcher.add(docs_of(NEW_DOCS[:1]))
    searcher.delete(["d3"])
    expected = searcher.batch_search(QUERIES, k=4)
    before = tree(toy)
    seen = []

    def crash(staging, manifest):
        seen.append(sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*.json")))
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(searcher_module, "write_manifest", crash)
    change = {"add": lambda: searcher.add(docs_of(NEW_DOCS[1:])), "delete": lambda: searcher.delete(["d1"]),
              "optimize": searcher.optimize}[operation]
    with pytest.raises(RuntimeError, match="simulated crash"):
        change()
    assert seen and ("segments.json" in seen[0]) == (operation != "optimize")
    assert tree(toy) == before
    assert searcher.num_docs == 6 and searcher.batch_search(QUERIES, k=4) == expected
    assert Searcher.load(toy, device="cpu").batch_search(QUERIES, k=4) == expected
    monkeypatch.undo()
    change()  # and the next try goes through
    assert Searcher.load(toy, device="cpu").num_docs == {"add": 7, "delete": 5, "optimize": 6}[operation]


def test_sigkill_during_add_leaves_the_old_index(toy, tmp_path):
    (tmp_path / "signals").mkdir()
    before = tree(toy)
    expected = Searcher.load(toy, device="cpu").batch_search(QUERIES, k=3)
    with add_killed_before_its_manifest(toy, tmp_path / "signals") as staging:
        assert (staging / "segments" / "1" / "fmindex" / "header.json").is_file()
    assert tree(toy) == {**before, "<siblings>": tree(toy)["<siblings>"]}  # staging leftovers aside
    assert Searcher.load(toy, device="cpu").batch_search(QUERIES, k=3) == expected
    Searcher.load(toy, device="cpu").add(docs_of(NEW_DOCS))
    assert Searcher.load(toy, device="cpu").num_docs == 8


def test_a_segment_list_is_checked_on_load(toy):
    _tombstone(toy, [0])  # as older genir deleted d1
    Searcher.load(toy, device="cpu").add(docs_of(NEW_DOCS))
    original = (toy / "segments.json").read_bytes()
    record = json.loads(original)
    cases = {
        "outside": {**record, "segments": [{**record["segments"][0], "fmindex": "../toy/fmindex"}]},
        "unlisted": {**record, "segments": [*record["segments"], {**record["segments"][1], "fmindex": "elsewhere"}]},
        "counts": {**record, "segments": [{**record["segments"][0], "num_docs": 5}, record["segments"][1]]},
        "deleted": {**record, "deleted": 2},
        "shape": {**record, "segments": "fmindex"},
    }
    messages = {"outside": "not a relative path inside it", "unlisted": "not listed in the manifest",
                "counts": "segments.json says 5", "deleted": r"expected int64 \[2\]", "shape": "non-empty list"}
    manifest = read_manifest(toy)
    for case, changed in cases.items():  # each a consistent index (manifest hashed again) with a bad list
        (toy / "segments.json").write_text(json.dumps(changed))
        write_manifest(toy, manifest)
        with pytest.raises(CorruptIndexError, match=messages[case]):
            Searcher.load(toy, verify=False, device="cpu")
    (toy / "segments.json").write_bytes(original)
    write_manifest(toy, manifest)
    Searcher.load(toy, device="cpu")  # as written: verified and loaded
    with pytest.raises(CorruptIndexError, match="sha256"):  # a changed tombstone fails verification
        np.save(toy / "deleted.npy", np.array([1], dtype=np.int64))
        Searcher.load(toy, device="cpu")


def test_an_index_with_files_that_are_not_seals_refuses_to_change(toy, tmp_path):
    """A change carries over only SEAL's files (e.g. the BM25 folder of a seal-hybrid of the older
    layout would be lost): an index holding others refuses, before writing anything."""
    from genir.indexer.artifact import Manifest

    (toy / "bm25").mkdir()
    (toy / "bm25" / "segments_1").write_text("lucene")
    write_manifest(toy, read_manifest(toy))
    before = tree(toy)
    searcher = Searcher.load(toy, device="cpu")
    for change in (lambda: searcher.add(docs_of(NEW_DOCS)), lambda: searcher.delete(["d1"]), searcher.optimize):
        with pytest.raises(GenirError, match=r"holds files that are not SEAL's \(bm25/segments_1\)"):
            change()
    assert tree(toy) == before
    (tmp_path / "bm25").mkdir()
    write_manifest(tmp_path / "bm25", Manifest(method="bm25", config={}))
    with pytest.raises(GenirError, match="is a bm25 index: genir optimize merges the FM-index segments of seal"):
        optimize_index(tmp_path / "bm25")


def test_cli_add_delete_optimize(built, toy, tmp_path):
    new = write_beir(tmp_path / "new", docs=NEW_DOCS, queries=[], qrels=[])
    result = runner.invoke(app, ["add", str(toy), "--collection", str(new), "--device", "cpu"])
    assert result.exit_code == 0 and "6 -> 8 documents" in " ".join(result.output.split()), result.output
    (tmp_path / "ids.txt").write_text("n2\nd2\n", encoding="utf-8")
    result = runner.invoke(app, ["delete", str(toy), "--ids", str(tmp_path / "ids.txt")])
    assert result.exit_code == 0 and "8 -> 6 documents" in " ".join(result.output.split()), result.output
    result = runner.invoke(app, ["optimize", str(toy)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0 and "merged 2 segments" in output and "0 deleted documents dropped" in output, output
    assert Searcher.load(toy).batch_search(QUERIES, k=6) == Searcher.load(built["live"]).batch_search(QUERIES, k=6)
    result = runner.invoke(app, ["optimize", str(toy)])
    assert result.exit_code == 0 and "nothing to merge" in " ".join(result.output.split())
    result = runner.invoke(app, ["optimize", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "error:" in result.output


def test_a_seal_hybrid_grows_through_its_seal_segments(tmp_path):
    """seal-hybrid (genir.baselines.hybrid, of=seal) adds and deletes through both components: its
    SEAL component gets a segment, and the segment holding a deleted document is built again, in its
    folder. Last in this module: it starts the JVM."""
    collection = Collection.open(write_beir(tmp_path / "corpus", docs=TOY_DOCS))
    config = parse_config(searcher_class("seal-hybrid").Config, ["of_set=use_model=false"])
    build_index("seal-hybrid", collection, tmp_path / "hybrid", config, device="cpu")
    searcher = Searcher.load(tmp_path / "hybrid", device="cpu")
    searcher.add(docs_of(NEW_DOCS))
    assert len(json.loads((tmp_path / "hybrid" / "first" / "segments.json").read_text())["segments"]) == 2
    assert searcher.num_docs == 8 and searcher.search("acacia leaves", k=1)[0].docid == "n1"
    searcher.delete(["n1"])
    record = json.loads((tmp_path / "hybrid" / "first" / "segments.json").read_text())
    assert [s["num_docs"] for s in record["segments"]] == [6, 1] and record["deleted"] == 0
    assert all(h.docid != "n1" for h in Searcher.load(tmp_path / "hybrid", device="cpu").search("acacia leaves", k=7))
