"""genir.atomic_files: a reader sees the old file or the new one; a failed write leaves nothing behind."""

import os
import stat
import sys

import numpy as np
import pytest

from genir import atomic_files
from genir.atomic_files import (
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
)


def _names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_writes_text_and_bytes_and_creates_the_parent(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.json", "héllo\n")
    assert (tmp_path / "a" / "b.json").read_text(encoding="utf-8") == "héllo\n"
    atomic_write_bytes(tmp_path / "a" / "b.json", b"\x00\xff")
    assert (tmp_path / "a" / "b.json").read_bytes() == b"\x00\xff"
    assert _names(tmp_path / "a") == ["b.json"]


def test_new_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "run.trec"
    target.write_text("old\n")
    with pytest.raises(error), atomic_open(target) as f:
        f.write("new, but only half")
        f.flush()
        assert target.read_text() == "old\n"  # a reader during the write sees the old file
        raise error()
    assert target.read_text() == "old\n"
    assert _names(tmp_path) == ["run.trec"]
    with pytest.raises(error), atomic_path(tmp_path / "new.png") as temporary:
        temporary.write_bytes(b"partial")
        raise error()
    assert _names(tmp_path) == ["run.trec"]


def test_atomic_path_keeps_the_suffix_for_writers_that_need_it(tmp_path):
    with atomic_path(tmp_path / "states.npy") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".npy" and temporary.name.startswith(".states.npy.")
        np.save(temporary, np.arange(3))  # np.save would append ".npy" to any other name
    assert np.load(tmp_path / "states.npy").tolist() == [0, 1, 2]
    assert _names(tmp_path) == ["states.npy"]


def test_concurrent_writers_of_one_path_get_different_temporaries(tmp_path):
    target = tmp_path / "results.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.exists() and second.exists()
        assert first.name != f".{target.name}.tmp" and second.name != f".{target.name}.tmp"
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block ended last
    assert _names(tmp_path) == ["results.json"]


def test_atomic_open_refuses_modes_that_read_or_append(tmp_path):
    for mode in ["a", "r+", "w+", "x"]:
        with pytest.raises(ValueError), atomic_open(tmp_path / "f", mode):
            pass
    assert _names(tmp_path) == []


def test_atomic_dir_installs_replaces_and_refuses(tmp_path):
    target = tmp_path / "cache" / "key"
    with atomic_dir(target) as staging:
        assert staging.parent == target.parent and not target.exists()
        (staging / "a.txt").write_text("one")
    assert _names(target) == ["a.txt"]
    with pytest.raises(FileExistsError), atomic_dir(target):
        raise AssertionError("not reached: refused before the block runs")
    with pytest.raises(RuntimeError), atomic_dir(target, replace=True) as staging:
        (staging / "b.txt").write_text("half")
        raise RuntimeError("crash")
    assert _names(target) == ["a.txt"] and _names(tmp_path / "cache") == ["key"]
    with atomic_dir(target, replace=True) as staging:
        (staging / "b.txt").write_text("two")
    assert _names(target) == ["b.txt"] and _names(tmp_path / "cache") == ["key"]


def test_atomic_dir_loses_a_race_without_harm(tmp_path):
    target = tmp_path / "key"
    with pytest.raises(FileExistsError), atomic_dir(target) as staging:
        (staging / "ours").write_text("ours")
        target.mkdir()  # another writer finishes first
        (target / "theirs").write_text("theirs")
    assert _names(tmp_path) == ["key"] and _names(target) == ["theirs"]


def test_many_threads_writing_one_file_leave_one_whole_version(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    target = tmp_path / "shared.txt"
    versions = [str(i) * 10_000 for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda text: atomic_write_text(target, text), versions * 4))
    assert target.read_text() in versions
    assert _names(tmp_path) == ["shared.txt"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_atomic_dir_swaps_in_one_step_where_the_platform_can(tmp_path, monkeypatch):
    """Replacing never renames the old directory aside (which leaves a moment with nothing at the path)."""
    target = tmp_path / "key"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("one")
    monkeypatch.setattr(atomic_files, "_retire", lambda path: pytest.fail(f"{path} was renamed aside"))
    with atomic_dir(target, replace=True) as staging:
        (staging / "b.txt").write_text("two")
    assert _names(target) == ["b.txt"] and _names(tmp_path) == ["key"]


def test_atomic_dir_replaces_in_two_renames_where_it_cannot_swap(tmp_path, monkeypatch):
    target = tmp_path / "key"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("one")
    monkeypatch.setattr(atomic_files, "_exchange", lambda staging, path: False)
    with atomic_dir(target, replace=True) as staging:
        (staging / "b.txt").write_text("two")
    assert _names(target) == ["b.txt"] and _names(tmp_path) == ["key"]
