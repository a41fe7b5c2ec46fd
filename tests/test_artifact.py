import json

import pytest

from genir.errors import GenirError
from genir.indexer.artifact import CorruptIndexError, Manifest, atomic_directory, read_manifest, write_manifest


def _make_index(path):
    with atomic_directory(path) as staging:
        (staging / "data.bin").write_bytes(b"\x00\x01\x02")
        (staging / "sub").mkdir()
        (staging / "sub" / "map.json").write_text("{}")
        write_manifest(staging, Manifest(method="bm25", config={"k1": 0.9}))


def test_manifest_lists_every_file_with_its_hash(tmp_path):
    _make_index(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx")
    assert set(manifest.files) == {"data.bin", "sub/map.json"}
    assert manifest.files["data.bin"]["bytes"] == 3 and len(manifest.files["data.bin"]["sha256"]) == 64
    assert not list(tmp_path.glob(".idx*")), "no staging directory is left behind"


def test_failed_build_leaves_nothing_and_keeps_the_old_index(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "new") as staging:
            (staging / "half").write_text("x")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    _make_index(tmp_path / "idx")
    before = (tmp_path / "idx" / "manifest.json").read_text()
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "idx", overwrite=True):
            raise RuntimeError("crash")
    assert (tmp_path / "idx" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_refuses_to_clobber(tmp_path):
    _make_index(tmp_path / "idx")
    with pytest.raises(GenirError, match="already exists"):
        with atomic_directory(tmp_path / "idx"):
            pass
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(GenirError, match="not a genir index"):
        with atomic_directory(tmp_path / "notes", overwrite=True):
            pass
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "data.bin").write_bytes(b"\x00\x01\x03"), "does not match its sha256"),
    (lambda d: (d / "data.bin").write_bytes(b"\x00"), "has 1 bytes"),
    (lambda d: (d / "sub" / "map.json").unlink(), "is missing"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "unreadable manifest"),
    (lambda d: (d / "manifest.json").unlink(), "not a genir index"),
])
def test_corruption_is_detected(tmp_path, damage, message):
    _make_index(tmp_path / "idx")
    damage(tmp_path / "idx")
    with pytest.raises(CorruptIndexError, match=message):
        read_manifest(tmp_path / "idx")


def test_future_format_is_refused(tmp_path):
    _make_index(tmp_path / "idx")
    path = tmp_path / "idx" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["format_version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(CorruptIndexError, match="rebuild the index"):
        read_manifest(tmp_path / "idx")
