"""genir's cache root: derived files that are not indexes (built-in corpora, embeddings, encoder
states, training runs), shared by every layer. Set ``$GENIR_CACHE`` to move it."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

#: Cache folders whose files are computed from documents' texts: row banks of document embeddings
#: (:func:`genir.encoding.encoder.document_cache`) and of a frozen encoder's states
#: (:mod:`genir.seq2seq.encoder_states`), and training run folders (checkpoints, whose docid rows
#: are document embeddings; :func:`genir.seq2seq.fit.run_directory`).
DOCUMENT_DERIVED = ("embeddings", "encoder-states", "train")


def cache_dir() -> Path:
    """Where genir keeps derived files that are not indexes (``$GENIR_CACHE`` or ~/.cache/genir)."""
    return Path(os.environ.get("GENIR_CACHE", Path.home() / ".cache" / "genir"))


def forget_document_rows() -> dict[str, int]:
    """Remove every cache entry computed from a document's text (:data:`DOCUMENT_DERIVED`): what
    ``genir delete`` does unless ``--keep-cache``.

    Why all of them, not the deleted documents' rows alone: a row is addressed by a digest of its
    input's token ids (its text), and the indexes that need it (dense, dsi, seal) keep no text to
    recompute that digest from, nor do the views a training run encoded (pseudo-queries, spans) say
    which document they came from. Emptying the banks is the one way to be sure that nothing of a
    deleted document stays; the price is that the next build of any corpus embeds its documents
    again. A training run folder whose lock another process holds (a build training now) is left
    alone: that build still holds its documents anyway. Built-in corpora (``builtin/``) are
    downloads, not derived rows: kept.

    Returns:
        Files removed per folder of :data:`DOCUMENT_DERIVED`.
    """
    root = cache_dir()
    removed: dict[str, int] = {}
    for name in DOCUMENT_DERIVED:
        folder = root / name
        count = 0
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if entry.suffix == ".lock":
                continue
            count += _remove_unlocked(entry, entry.with_name(entry.name + ".lock"))
        removed[name] = count
    return removed


def _remove_unlocked(entry: Path, lock_path: Path) -> int:
    """Remove ``entry`` (a folder or file) unless ``lock_path`` exists and another process holds it;
    the number of files removed."""
    if not lock_path.exists():
        return _remove(entry)
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # a build is training in it (genir.seq2seq.fit takes this lock)
        return _remove(entry)


def _remove(entry: Path) -> int:
    if entry.is_dir() and not entry.is_symlink():
        count = sum(1 for p in entry.rglob("*") if p.is_file())
        shutil.rmtree(entry, ignore_errors=True)
        return count
    entry.unlink(missing_ok=True)
    return 1
