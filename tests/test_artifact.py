import json
import os

import pytest

from genir.errors import GenirError
from genir.indexer import artifact
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


# -- issue 12: what may be replaced, locking, stale staging, containment ---------------------------

def _edit_manifest(directory, change):
    path = directory / "manifest.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_overwrite_refuses_a_folder_that_merely_holds_a_manifest_json(tmp_path):
    extension = tmp_path / "ext"
    extension.mkdir()
    (extension / "manifest.json").write_text('{"manifest_version": 3, "name": "my extension"}')
    (extension / "background.js").write_text("chrome.runtime.onInstalled.addListener(() => {});")
    with pytest.raises(GenirError, match="not a genir index"):
        with atomic_directory(extension, overwrite=True):
            pass
    assert sorted(p.name for p in extension.iterdir()) == ["background.js", "manifest.json"]


def test_overwrite_refuses_an_index_holding_files_it_does_not_list(tmp_path):
    _make_index(tmp_path / "idx")
    (tmp_path / "idx" / "notes.txt").write_text("mine")
    (tmp_path / "idx" / "sub" / "draft.tex").write_text("mine too")
    with pytest.raises(GenirError, match=r"does not list \(notes.txt, sub/draft.tex\)"):
        with atomic_directory(tmp_path / "idx", overwrite=True):
            pass
    assert (tmp_path / "idx" / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_a_damaged_index_with_nothing_extra(tmp_path):
    _make_index(tmp_path / "idx")
    (tmp_path / "idx" / "sub" / "map.json").unlink()
    with atomic_directory(tmp_path / "idx", overwrite=True) as staging:
        (staging / "new").write_text("new")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["new"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_created_at_the_destination_during_a_build_is_kept(tmp_path, overwrite):
    destination = tmp_path / "idx"
    if overwrite:
        _make_index(destination)
    with pytest.raises(GenirError, match="not a genir index|already exists|appeared during the build"):
        with atomic_directory(destination, overwrite=overwrite) as staging:
            (staging / "new").write_text("new")
            if overwrite:
                import shutil
                shutil.rmtree(destination)
            destination.mkdir()
            (destination / "precious.txt").write_text("user data")
    assert [p.name for p in destination.iterdir()] == ["precious.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"], "no staging, no lock file"


def test_a_second_writer_of_a_destination_fails_while_the_first_holds_it(tmp_path):
    destination = tmp_path / "idx"
    with atomic_directory(destination) as staging:
        (staging / "first").write_text("1")
        for overwrite in (False, True):
            with pytest.raises(GenirError, match="being written by another genir process"):
                with atomic_directory(destination, overwrite=overwrite):
                    pass
    assert [p.name for p in destination.iterdir()] == ["first"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_the_lock_excludes_other_processes(tmp_path):
    import subprocess
    import sys

    destination = tmp_path / "idx"
    script = ("import sys, pathlib; from genir.indexer.artifact import atomic_directory\n"
              "with atomic_directory(pathlib.Path(sys.argv[1])): print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", script, str(destination)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(GenirError, match="being written by another genir process"):
            with atomic_directory(destination):
                pass
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    with atomic_directory(destination) as staging:
        (staging / "mine").write_text("x")
    assert [p.name for p in destination.iterdir()] == ["mine"]


def test_stale_staging_of_killed_builds_is_removed_by_the_next(tmp_path):
    _make_index(tmp_path / "idx")
    for name in (".idx.0123abcd.tmp", ".idx.89abcdef.old"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "big.bin").write_bytes(b"x" * 1000)
    (tmp_path / ".idx.lock").write_text("")  # left by a killed build: nobody holds it
    (tmp_path / ".idx2.0123abcd.tmp").mkdir()  # another destination's: not ours to delete
    with atomic_directory(tmp_path / "idx", overwrite=True) as staging:
        (staging / "new").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx2.0123abcd.tmp", "idx"]


def test_a_failed_build_removes_the_parent_folders_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "deep" / "a" / "b" / "idx"):
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_index_folders_get_the_users_umask(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        _make_index(tmp_path / "idx")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "idx").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "idx" / "data.bin").stat().st_mode) == 0o644


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/shadow", "sub/../../outside", "./data.bin", "",
                                  "sub//map.json", "link/secret"])
def test_manifest_paths_must_stay_inside_the_index(tmp_path, name):
    (tmp_path / "outside").write_text("secret")
    _make_index(tmp_path / "idx")
    (tmp_path / "idx" / "link").symlink_to(tmp_path)
    _edit_manifest(tmp_path / "idx", lambda raw: raw["files"].update({name: {"bytes": 6, "sha256": "0" * 64}}))
    with pytest.raises(CorruptIndexError, match="not a relative path inside it|symbolic link") as caught:
        read_manifest(tmp_path / "idx")
    assert "bytes" not in str(caught.value)


def test_a_symlinked_file_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "secret").write_bytes(b"\x00\x01\x02")
    _make_index(tmp_path / "idx")
    (tmp_path / "idx" / "data.bin").unlink()
    (tmp_path / "idx" / "data.bin").symlink_to(tmp_path / "secret")
    with pytest.raises(CorruptIndexError, match="symbolic link"):
        read_manifest(tmp_path / "idx")


@pytest.mark.parametrize("change, message", [
    (lambda raw: raw.update(files=["data.bin"]), "'files' must be a JSON object"),
    (lambda raw: raw["files"].update({"data.bin": 3}), "entry of file 'data.bin'"),
    (lambda raw: raw["files"]["data.bin"].update(bytes="3"), "entry of file 'data.bin'"),
    (lambda raw: raw.update(config=[]), "'config' must be a JSON object"),
    (lambda raw: raw.pop("method"), "'method' must be a JSON string, found missing"),
    (lambda raw: raw.update(format_version="1"), "format_version '1' is not an integer"),
])
def test_malformed_manifests_are_corrupt_indexes(tmp_path, change, message):
    _make_index(tmp_path / "idx")
    _edit_manifest(tmp_path / "idx", change)
    with pytest.raises(CorruptIndexError, match=message):
        read_manifest(tmp_path / "idx")
    (tmp_path / "idx" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CorruptIndexError, match="not a JSON object"):
        read_manifest(tmp_path / "idx")


def test_the_existing_output_error_names_the_cli_flag_and_the_python_parameter(tmp_path):
    _make_index(tmp_path / "idx")
    with pytest.raises(GenirError, match=r"pass --overwrite \(overwrite=True from Python\)"):
        with atomic_directory(tmp_path / "idx"):
            pass


# -- issue 32: interrupted replacements, readers during a replacement ----------------------------

def _left_aside(tmp_path):
    """What a writer killed between renaming ``idx`` aside and its new version into place leaves."""
    _make_index(tmp_path / "idx")
    os.rename(tmp_path / "idx", tmp_path / ".idx.0123abcd.old")
    (tmp_path / ".idx.89abcdef.tmp").mkdir()  # its staging


def test_a_reader_puts_back_the_version_a_killed_writer_left_aside(tmp_path):
    _left_aside(tmp_path)
    manifest = read_manifest(tmp_path / "idx")
    assert set(manifest.files) == {"data.bin", "sub/map.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.89abcdef.tmp", "idx"]


def test_the_next_build_puts_a_version_left_aside_back_instead_of_deleting_it(tmp_path):
    _left_aside(tmp_path)
    with pytest.raises(GenirError, match="already exists"), atomic_directory(tmp_path / "idx"):
        pass  # without overwrite: the index put back is there
    assert set(read_manifest(tmp_path / "idx").files) == {"data.bin", "sub/map.json"}
    with atomic_directory(tmp_path / "idx", overwrite=True) as staging:
        (staging / "data.bin").write_bytes(b"new")
        write_manifest(staging, Manifest(method="bm25", config={}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # the killed writer's staging is gone


def test_an_incomplete_version_left_aside_is_not_put_back(tmp_path):
    _left_aside(tmp_path)
    (tmp_path / ".idx.0123abcd.old" / "data.bin").unlink()
    with pytest.raises(CorruptIndexError, match="no such index directory"):
        read_manifest(tmp_path / "idx")


def test_a_reader_never_mixes_two_versions(tmp_path, monkeypatch):
    """The index is replaced after the reader read the old manifest and before it checked the files:
    it reads the new version whole instead of reporting the old manifest's sizes as a corruption."""
    _make_index(tmp_path / "idx")
    original, replaced = artifact._parse_manifest, []

    def replaced_after_reading(directory):
        manifest = original(directory)
        if not replaced:
            replaced.append(directory)
            with atomic_directory(tmp_path / "idx", overwrite=True) as staging:
                (staging / "data.bin").write_bytes(b"a longer version")
                write_manifest(staging, Manifest(method="bm25", config={"k1": 1.2}))
        return manifest

    monkeypatch.setattr(artifact, "_parse_manifest", replaced_after_reading)
    manifest = read_manifest(tmp_path / "idx")
    assert manifest.config == {"k1": 1.2} and manifest.files["data.bin"]["bytes"] == len(b"a longer version")
