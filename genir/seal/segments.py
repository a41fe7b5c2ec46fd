"""FM-index segments: how a SEAL index grows and shrinks without rebuilding, as a Lucene index does.

A SEAL index is one or more *segments*, each an FM-index (:class:`~genir.kernels.fmindex.FMIndex`)
over some of its documents, with their ids. Documents are numbered globally in segment order:
segment ``s`` holds documents ``doc_offsets[s] .. doc_offsets[s + 1] - 1``.

* Adding documents writes one new segment over them alone (:meth:`SegmentedFMIndex.write_added`).
  The existing segments' files are hard-linked into the new version of the index (copied only
  where the file system cannot link): never opened for writing, never rewritten.
* Deleting documents rewrites the segments that hold them (:meth:`~SegmentedFMIndex.write_deleted`):
  each such segment is built again over its live documents (read back from its FM-index), an
  emptied segment is dropped, and the other segments are linked as they are. Nothing of a deleted
  document stays (its tokens were in its segment's BWT, from which its text can be read back), so
  its n-grams no longer count nor can be generated. Why not tombstones, as Lucene does: a tombstone
  keeps the document's text in the index until a merge, and a deletion is often a request that
  the text be gone. The cost is a build of the affected segments, in proportion to their size, not
  the index's (an index that was added to in batches rewrites only the batches that lost documents).
* Tombstones, the global numbers of deleted documents (``deleted.npy``), are what older genir wrote
  on deleting; such an index still loads (a tombstoned document is never located, its n-grams still
  count), and its next delete or merge drops them with the segments that hold them.
* Merging reads every live document's tokens back from its FM-index (:func:`document_tokens`; the
  index keeps no text) and builds one FM-index over them, in global order: exactly the FM-index a
  build of the live documents gives (Lucene's forceMerge).

Answers over segments are exactly those of one FM-index built over the concatenated documents of
all segments (deleted ones included):

* a range is one FM-index range per segment: bounds ``lo, hi`` are ``[B, S]`` int64 (``S``
  segments), and a segment where the n-gram does not occur holds an empty range;
* counts are summed over the segments (:meth:`~SegmentedFMIndex.range_counts`);
* occurrences carry global document numbers (:meth:`~SegmentedFMIndex.locate`);
* the allowed next tokens are the union of the segments' (:class:`SegmentConstraint`), whose
  decoding state interleaves the per-segment ranges, ``[N, 2S]`` = ``(lo_0, hi_0, lo_1, hi_1, ...)``;
  with one segment that is exactly :class:`~genir.kernels.fm_constraint.FMIndexConstraint`'s state.

Files, relative to the index directory (JSON and ``.npy`` only; loading runs no code: JSON is
parsed, arrays are read with ``allow_pickle=False``):

* ``fmindex/`` and ``docids.json``: the first segment, the one a build (or a merge) writes:
  :meth:`FMIndex.save`'s folder and a JSON list of the document ids, in FM-index order.
* ``segments/<s>/fmindex/`` and ``segments/<s>/docids.json``: segment ``s >= 1``.
* ``segments.json``: absent while the index is that one segment without tombstones. Otherwise
  ``{"format": "genir.seal.segments", "format_version": 1, "segments": [{"fmindex": PATH,
  "docids": PATH, "num_docs": INT, "num_tokens": INT}, ...], "deleted": INT}``, the segments in
  global order.
* ``deleted.npy``: ``[K]`` int64, the global numbers of the deleted documents, ascending and
  distinct; present when ``deleted`` is ``K > 0``.

Checked on load (:meth:`SegmentedFMIndex.load`): the record's format and fields; every path it
names stays inside the index (:func:`~genir.indexer.artifact.index_file`) and is listed in the
index's manifest (so ``Searcher.load(verify=True)`` has hashed it); each segment's FM-index and
ids agree with the record and with each other; the vocabularies agree; the tombstones are in
range, ascending and distinct; no live id repeats.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from genir.errors import CorruptIndexError, GenirError
from genir.indexer.artifact import index_file, read_json_record
from genir.kernels.constraint import Candidates, Constraint
from genir.kernels.fm_constraint import FMIndexConstraint
from genir.kernels.fm_wavelet import Int64Array
from genir.kernels.fmindex import FMIndex, Occurrences

FMINDEX_DIR, DOCIDS_FILE = "fmindex", "docids.json"
SEGMENTS_FILE, DELETED_FILE, SEGMENTS_DIR = "segments.json", "deleted.npy", "segments"
FORMAT, FORMAT_VERSION = "genir.seal.segments", 1
#: Token rows located at once while reading documents back from an FM-index (bounds the memory).
_EXTRACT_ROWS = 1 << 22


@dataclass(frozen=True)
class Segment:
    """One FM-index, the ids of its documents (in its order), and where its files lie in the index."""

    index: FMIndex
    docids: list[str]
    fmindex_path: str = FMINDEX_DIR
    docids_path: str = DOCIDS_FILE


class SegmentedFMIndex:
    """Segments and tombstones answering as one FM-index (module docstring).

    Args:
        segments: at least one, all over the same vocabulary.
        deleted: ``[K]`` int global numbers of deleted documents, ascending and distinct.
    Raises:
        ValueError: no segment, vocabularies that differ, a segment whose ids do not match its
            documents, bad tombstones, or a live id that repeats.
    """

    def __init__(self, segments: Sequence[Segment], deleted: npt.ArrayLike = ()) -> None:
        if not segments:
            raise ValueError("an index needs at least one segment")
        self.segments = list(segments)
        for s, segment in enumerate(self.segments):
            if segment.index.vocab_size != self.segments[0].index.vocab_size:
                raise ValueError(f"segment {s} has vocab_size {segment.index.vocab_size}, "
                                 f"segment 0 has {self.segments[0].index.vocab_size}")
            if len(segment.docids) != segment.index.num_docs:
                raise ValueError(f"segment {s} ({segment.docids_path}): {len(segment.docids)} ids "
                                 f"for {segment.index.num_docs} indexed documents")
        self.doc_offsets = np.zeros(len(self.segments) + 1, dtype=np.int64)
        np.cumsum([segment.index.num_docs for segment in self.segments], out=self.doc_offsets[1:])
        #: Global document number -> id (deleted documents included).
        self.docids: list[str] = [docid for segment in self.segments for docid in segment.docids]
        self.deleted = np.asarray(deleted, dtype=np.int64).reshape(-1)
        if self.deleted.size and (self.deleted[0] < 0 or self.deleted[-1] >= self.num_docs
                                  or (np.diff(self.deleted) <= 0).any()):
            raise ValueError(f"deleted documents must be distinct, ascending numbers in [0, {self.num_docs})")
        self._is_deleted = np.zeros(self.num_docs, dtype=bool)
        self._is_deleted[self.deleted] = True
        #: Id -> global number of every live document.
        self.live: dict[str, int] = {self.docids[g]: g for g in np.flatnonzero(~self._is_deleted).tolist()}
        if len(self.live) != self.num_docs - self.deleted.shape[0]:
            raise ValueError("a live document id appears twice")

    # ------------------------------------------------------------------ properties

    @property
    def num_docs(self) -> int:
        """Documents in the segments, deleted ones included (global numbers run below it)."""
        return int(self.doc_offsets[-1])

    @property
    def num_live(self) -> int:
        """Documents not deleted."""
        return len(self.live)

    @property
    def num_tokens(self) -> int:
        """Token positions in all segments, deleted documents included (what counts are out of)."""
        return sum(segment.index.num_tokens for segment in self.segments)

    @property
    def vocab_size(self) -> int:
        return self.segments[0].index.vocab_size

    @property
    def root(self) -> tuple[Int64Array, Int64Array]:
        """The empty n-gram's range in every segment: ``([S], [S])`` int64."""
        bounds = np.array([segment.index.root_range for segment in self.segments], dtype=np.int64)
        return bounds[:, 0], bounds[:, 1]

    def present_tokens(self, *extra: int) -> Int64Array:
        """``[R]`` int64, sorted: the tokens that occur in some segment (deleted documents included), and ``extra``."""
        present = np.zeros(self.vocab_size, dtype=bool)
        for segment in self.segments:
            counts = segment.index.token_counts
            present[:counts.shape[0]] |= counts > 0
        present[list(extra)] = True
        return np.flatnonzero(present).astype(np.int64)

    def owns(self, name: str) -> bool:
        """Whether the index file ``name`` (relative path) belongs to these segments."""
        return (name in {SEGMENTS_FILE, DELETED_FILE} or any(name == s.docids_path for s in self.segments)
                or name.startswith(tuple(f"{s.fmindex_path}/" for s in self.segments)))

    def __repr__(self) -> str:
        return (f"SegmentedFMIndex(segments={len(self.segments)}, num_docs={self.num_docs}, "
                f"deleted={self.deleted.shape[0]}, num_tokens={self.num_tokens})")

    # ------------------------------------------------------------------ queries

    def _check_ranges(self, lo: Any, hi: Any) -> tuple[Int64Array, Int64Array]:
        """``[B, S]`` bounds as int64 (each segment's own check comes with its query), or ``ValueError``."""
        lo_arr, hi_arr = np.asarray(lo), np.asarray(hi)
        shape = (lo_arr.shape[0] if lo_arr.ndim else 0, len(self.segments))
        if lo_arr.shape != shape or hi_arr.shape != shape:
            raise ValueError(f"segmented range bounds must be [B, {len(self.segments)}] (one range per segment), "
                             f"got lo {lo_arr.shape} and hi {hi_arr.shape}")
        return lo_arr.astype(np.int64), hi_arr.astype(np.int64)

    def ranges(self, ngrams: Any) -> tuple[Int64Array, Int64Array]:
        """Ranges of a batch of n-grams (as :meth:`FMIndex.ranges` takes them): ``([B, S], [B, S])`` int64."""
        found = [segment.index.ranges(ngrams) for segment in self.segments]
        return np.stack([f[0] for f in found], axis=1), np.stack([f[1] for f in found], axis=1)

    def range_counts(self, lo: Any, hi: Any) -> Int64Array:
        """Occurrences of the n-grams of ranges, summed over the segments: ``[B, S]`` bounds -> ``[B]`` int64."""
        lo_arr, hi_arr = self._check_ranges(lo, hi)
        total = np.zeros(lo_arr.shape[0], dtype=np.int64)
        for s, segment in enumerate(self.segments):
            total += segment.index.range_counts(lo_arr[:, s], hi_arr[:, s])
        return total

    def count(self, ngrams: Any) -> Int64Array:
        """Occurrences of a batch of n-grams -> ``[B]`` int64 (the empty n-gram: ``num_tokens``)."""
        return self.range_counts(*self.ranges(ngrams))

    def locate(self, lo: Any, hi: Any, lengths: Any) -> Occurrences:
        """Global documents and offsets of every occurrence in a live document.

        Args:
            lo, hi: ``[B, S]`` int64 range bounds.
            lengths: ``[B]`` (or scalar) int64 n-gram lengths.
        Returns:
            ``Occurrences`` in CSR layout over the ``B`` ranges, ``doc_ids`` global numbers;
            within a range, segment by segment. Deleted documents never appear.
        """
        lo_arr, hi_arr = self._check_ranges(lo, hi)
        owners, docs, offsets = [], [], []
        for s, segment in enumerate(self.segments):
            found = segment.index.locate(lo_arr[:, s], hi_arr[:, s], lengths)
            owners.append(np.repeat(np.arange(lo_arr.shape[0], dtype=np.int64), np.diff(found.row_ptr)))
            docs.append(found.doc_ids + self.doc_offsets[s])
            offsets.append(found.offsets)
        owner, doc, offset = np.concatenate(owners), np.concatenate(docs), np.concatenate(offsets)
        keep = ~self._is_deleted[doc]
        order = np.argsort(owner[keep], kind="stable")
        row_ptr = np.zeros(lo_arr.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner[keep], minlength=lo_arr.shape[0]), out=row_ptr[1:])
        return Occurrences(row_ptr, doc[keep][order], offset[keep][order])

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, directory: Path, listed: Collection[str]) -> SegmentedFMIndex:
        """Open the segments of a SEAL index directory (checks in the module docstring).

        Args:
            listed: the files the index's manifest lists; every file the segments name must be one.
        Raises:
            CorruptIndexError: anything in the module docstring's list fails.
        """
        record_path = directory / SEGMENTS_FILE
        if SEGMENTS_FILE not in listed and not (record_path.exists() or record_path.is_symlink()):
            entries, num_deleted = [{"fmindex": FMINDEX_DIR, "docids": DOCIDS_FILE}], 0
        else:
            if SEGMENTS_FILE not in listed:
                raise CorruptIndexError(f"{directory}: {SEGMENTS_FILE} is not listed in the manifest")
            index_file(directory, SEGMENTS_FILE)  # not through a symbolic link
            try:
                record = read_json_record(record_path, FORMAT, FORMAT_VERSION, "SEAL segment list")
            except GenirError as e:
                raise CorruptIndexError(str(e)) from None
            entries, num_deleted = record.get("segments"), record.get("deleted")
            if not (isinstance(entries, list) and entries and all(_is_entry(e) for e in entries)
                    and type(num_deleted) is int and num_deleted >= 0):
                raise CorruptIndexError(f"{record_path}: 'segments' must be a non-empty list of "
                                        '{"fmindex": PATH, "docids": PATH, "num_docs": INT, "num_tokens": INT} '
                                        "and 'deleted' a count")
        segments = [_load_segment(directory, entry, listed) for entry in entries]
        deleted = np.zeros(0, dtype=np.int64)
        if num_deleted:
            deleted = _load_deleted(directory, listed, num_deleted)
        try:
            return cls(segments, deleted)
        except ValueError as e:
            raise CorruptIndexError(f"{directory}: {e}") from None

    # ------------------------------------------------------------------ writing new versions

    def write_added(self, source: Path, staging: Path, index: FMIndex, docids: Sequence[str]) -> SegmentedFMIndex:
        """Write into ``staging`` these segments (linked from ``source``) plus a new one, ``index``
        over the documents ``docids`` (new ids), and the tombstones; return the grown index."""
        taken = [int(Path(s.fmindex_path).parts[1]) for s in self.segments if Path(s.fmindex_path).parts[0] == SEGMENTS_DIR]
        name = f"{SEGMENTS_DIR}/{max(taken, default=0) + 1}"  # not len(segments): a delete may have dropped one
        write_segment(staging / name, index, docids)
        added = Segment(index, list(docids), f"{name}/{FMINDEX_DIR}", f"{name}/{DOCIDS_FILE}")
        return self._write_version(source, staging, [*self.segments, added], self.deleted)

    def write_deleted(self, source: Path, staging: Path, numbers: Sequence[int], sample_rate: int) -> SegmentedFMIndex:
        """Write into ``staging`` these segments less the live documents ``numbers`` (global) and any
        tombstoned ones: each segment holding one is built again over its live documents (with
        ``sample_rate``) where it was, an emptied one is dropped, the others are linked from ``source``;
        no tombstones. Return the shrunk index."""
        gone = self._is_deleted.copy()
        gone[np.asarray(numbers, dtype=np.int64)] = True
        kept: list[Segment] = []
        carried: list[Segment] = []
        for s, segment in enumerate(self.segments):
            live = ~gone[self.doc_offsets[s]:self.doc_offsets[s + 1]]
            if live.all():
                kept.append(segment)
                carried.append(segment)
            elif live.any():
                tokens = document_tokens(segment.index)
                index = FMIndex.build([t for t, keep in zip(tokens, live.tolist()) if keep], vocab_size=self.vocab_size,
                                      sample_rate=sample_rate)
                ids = [docid for docid, keep in zip(segment.docids, live.tolist()) if keep]
                index.save(staging / segment.fmindex_path)
                (staging / segment.docids_path).write_text(json.dumps(ids) + "\n", encoding="utf-8")
                kept.append(Segment(index, ids, segment.fmindex_path, segment.docids_path))
        return self._write_version(source, staging, kept, np.zeros(0, dtype=np.int64), carried=carried)

    def copy_to(self, source: Path, target: Path) -> None:
        """Copy these segments' files (from the index at ``source``) into ``target``."""
        self._write_version(source, target, self.segments, self.deleted, link=False)

    def _write_version(self, source: Path, target: Path, segments: list[Segment], deleted: Int64Array,
                       link: bool = True, carried: Sequence[Segment] | None = None) -> SegmentedFMIndex:
        """Carry the segments ``carried`` (all of these by default) of ``source`` over to ``target``
        and write the segment list ``segments`` and the tombstones.

        Only the segment files are carried (linked, or copied); ``segments.json`` and
        ``deleted.npy`` are always written anew, so that no linked file is ever opened for writing.
        """
        for segment in self.segments if carried is None else carried:
            copy_tree(source / segment.fmindex_path, target / segment.fmindex_path, link)
            copy_file(source / segment.docids_path, target / segment.docids_path, link)
        version = SegmentedFMIndex(segments, deleted)
        if deleted.size or [(s.fmindex_path, s.docids_path) for s in segments] != [(FMINDEX_DIR, DOCIDS_FILE)]:
            record = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "deleted": int(deleted.shape[0]),
                "segments": [{"fmindex": s.fmindex_path, "docids": s.docids_path, "num_docs": s.index.num_docs,
                              "num_tokens": s.index.num_tokens} for s in segments],
            }
            (target / SEGMENTS_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if deleted.size:
            np.save(target / DELETED_FILE, deleted.astype(np.int64), allow_pickle=False)
        return version

    def stats(self, directory: Path) -> dict[str, Any]:
        """Manifest statistics of these segments, their files being in ``directory``."""
        return {
            "num_docs": self.num_live,
            "num_tokens": self.num_tokens,
            "segments": len(self.segments),
            "deleted_docs": int(self.deleted.shape[0]),
            "fmindex_bytes": sum(f.stat().st_size for s in self.segments for f in (directory / s.fmindex_path).iterdir()),
        }

    def merged(self, sample_rate: int) -> SegmentedFMIndex:
        """One segment over the live documents, in global order (not yet written: :func:`write_segment`)."""
        docs: list[Int64Array] = []
        ids: list[str] = []
        for s, segment in enumerate(self.segments):
            live = ~self._is_deleted[self.doc_offsets[s]:self.doc_offsets[s + 1]]
            if not live.any():
                continue
            tokens = document_tokens(segment.index)
            docs += [t for t, keep in zip(tokens, live.tolist()) if keep]
            ids += [docid for docid, keep in zip(segment.docids, live.tolist()) if keep]
        return SegmentedFMIndex([Segment(FMIndex.build(docs, vocab_size=self.vocab_size, sample_rate=sample_rate), ids)])


def write_segment(directory: Path, index: FMIndex, docids: Sequence[str]) -> None:
    """Write one segment's files, ``fmindex/`` and ``docids.json``, into ``directory``."""
    index.save(directory / FMINDEX_DIR)
    (directory / DOCIDS_FILE).write_text(json.dumps(list(docids)) + "\n", encoding="utf-8")


def document_tokens(index: FMIndex) -> list[Int64Array]:
    """Every document's token ids (``[m_j]`` int64 each, in ``build``'s order), read back from ``index``.

    The suffix-array rows ``[num_docs, n)`` are the token positions, grouped by token in ascending
    order (``token_counts[t]`` rows for token ``t``); locating them (as the empty n-gram's
    occurrences) gives each one's document and offset. Work: one ``locate`` of every token.
    """
    counts = index.token_counts
    row_tokens = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)  # [num_tokens]
    starts = np.zeros(index.num_docs + 1, dtype=np.int64)
    np.cumsum(index.doc_lengths, out=starts[1:])
    flat = np.empty(index.num_tokens, dtype=np.int64)
    for a in range(0, index.num_tokens, _EXTRACT_ROWS):
        b = min(a + _EXTRACT_ROWS, index.num_tokens)
        found = index.locate(np.array([index.num_docs + a]), np.array([index.num_docs + b]), 0)
        flat[starts[found.doc_ids] + found.offsets] = row_tokens[a:b]
    return np.split(flat, starts[1:-1])


def copy_tree(source: Path, target: Path, link: bool) -> None:
    """Copy the folder ``source`` to ``target`` (created), hard-linking its files if ``link``."""
    shutil.copytree(source, target, copy_function=_link_or_copy if link else shutil.copy2)


def copy_file(source: Path, target: Path, link: bool) -> None:
    """Copy the file ``source`` to ``target`` (parents created), hard-linked if ``link``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    (_link_or_copy if link else shutil.copy2)(source, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link ``target`` to ``source``; copy where the file system cannot link."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _is_entry(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("fmindex"), str) and isinstance(entry.get("docids"), str)
            and all(type(entry.get(k)) is int and entry[k] >= 0 for k in ("num_docs", "num_tokens")))


def _load_segment(directory: Path, entry: dict[str, Any], listed: Collection[str]) -> Segment:
    """One segment named by a checked entry of the segment list (the FM-index memory-mapped)."""
    fmindex, docids = entry["fmindex"], entry["docids"]
    for name in (f"{fmindex}/header.json", docids):
        index_file(directory, name)  # inside the index, through no symbolic link
        if name not in listed:
            raise CorruptIndexError(f"{directory}: {name}, named by {SEGMENTS_FILE}, is not listed in the manifest")
    index = FMIndex.load(directory / fmindex)
    try:
        ids = json.loads((directory / docids).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptIndexError(f"{directory / docids}: unreadable document ids ({type(e).__name__}: {e})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise CorruptIndexError(f"{directory / docids}: not a JSON list of document ids")
    if "num_docs" in entry and (index.num_docs, index.num_tokens) != (entry["num_docs"], entry["num_tokens"]):
        raise CorruptIndexError(f"{directory / fmindex}: {index.num_docs} documents and {index.num_tokens} tokens, "
                                f"{SEGMENTS_FILE} says {entry['num_docs']} and {entry['num_tokens']}")
    return Segment(index, ids, fmindex, docids)


def _load_deleted(directory: Path, listed: Collection[str], count: int) -> Int64Array:
    """The ``[count]`` int64 tombstones of ``deleted.npy`` (range and order checked by the constructor)."""
    if DELETED_FILE not in listed:
        raise CorruptIndexError(f"{directory}: {SEGMENTS_FILE} records {count} deleted documents, "
                                f"but {DELETED_FILE} is not listed in the manifest")
    path = index_file(directory, DELETED_FILE)
    try:
        deleted = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CorruptIndexError(f"{path}: cannot load ({e})") from None
    if deleted.dtype != np.int64 or deleted.shape != (count,):
        raise CorruptIndexError(f"{path}: expected int64 [{count}], got {deleted.dtype} {list(deleted.shape)}")
    return deleted


class SegmentConstraint(Constraint):
    """SEAL's decoding constraint over segments: the n-gram generated so far must occur in one.

    A beam's state interleaves its n-gram's range in every segment, ``[N, 2S]`` int64 (module
    docstring). Each segment answers through its own
    :class:`~genir.kernels.fm_constraint.FMIndexConstraint` (with its cache), asked only about the
    distinct states where its range is not empty; a beam's candidates are the union: every token
    some segment allows, with the extended range in each segment (``(0, 0)``, empty, where that
    segment does not allow it), then eos with the beam's own ranges where its n-gram occurs. With
    one segment this is the segment's ``FMIndexConstraint``, unchanged.

    Args:
        index: the segments.
        eos_token_id: the end-of-sequence token; it must occur in no segment.
        cache_min_width, cache_capacity: each segment constraint's cache (``FMIndexConstraint``).
    Raises:
        ValueError: as ``FMIndexConstraint``.
    """

    def __init__(self, index: SegmentedFMIndex, eos_token_id: int, *, cache_min_width: int = 64,
                 cache_capacity: int = 1 << 21) -> None:
        self.parts = [FMIndexConstraint(segment.index, eos_token_id, cache_min_width=cache_min_width,
                                        cache_capacity=cache_capacity) for segment in index.segments]
        self.state_width = 2 * len(self.parts)
        self.eos_token_id = int(eos_token_id)
        self._vocab_size = index.vocab_size
        lo, hi = index.root
        self._root = np.stack((lo, hi), axis=1).reshape(-1)  # [2S]
        self._lengths = hi

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The root range in every segment for ``n`` beams: ``[n, 2S]`` int64."""
        return torch.as_tensor(self._root, dtype=torch.int64, device=device).repeat(n, 1)

    @staticmethod
    def ranges(state: npt.ArrayLike) -> tuple[Int64Array, Int64Array]:
        """Split states ``[..., 2S]`` into their ranges ``(lo [..., S], hi [..., S])`` int64."""
        state = np.asarray(state, dtype=np.int64)
        return state[..., 0::2], state[..., 1::2]

    def candidates(self, state: torch.Tensor) -> Candidates:
        """Allowed next tokens of every beam (class docstring).

        Args:
            state: ``[N, 2S]`` int64, each segment's pair a range ``0 <= lo <= hi <= n_s``.
        Returns:
            ``Candidates`` on ``state``'s device, per beam its tokens ascending, then eos.
        Raises:
            ValueError: on a state of another shape or out of range.
        """
        if len(self.parts) == 1:
            return self.parts[0].candidates(state)
        if state.ndim != 2 or state.shape[1] != self.state_width:
            raise ValueError(f"state must be [N, {self.state_width}], got {tuple(state.shape)}")
        states = state.detach().to("cpu", torch.int64).numpy()
        lo, hi = self.ranges(states)
        if ((lo < 0) | (lo > hi) | (hi > self._lengths)).any():
            raise ValueError("every state must hold a range 0 <= lo <= hi <= n in each segment")
        distinct, inverse = np.unique(states, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        row_ptr, tokens, next_state = self._union(distinct)
        counts = np.diff(row_ptr)[inverse]
        beam_ptr = np.zeros(states.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=beam_ptr[1:])
        take = np.repeat(row_ptr[inverse] - beam_ptr[:-1], counts) + np.arange(beam_ptr[-1])
        return Candidates(torch.from_numpy(beam_ptr).to(state.device), torch.from_numpy(tokens[take]).to(state.device),
                          torch.from_numpy(next_state[take]).to(state.device))

    def _union(self, distinct: Int64Array) -> tuple[Int64Array, Int64Array, Int64Array]:
        """Candidates of ``[U, 2S]`` distinct states: ``(row_ptr [U + 1], tokens [M], next_state [M, 2S])`` int64."""
        owners, tokens, segments, nexts = [], [], [], []
        for s, part in enumerate(self.parts):
            pair = np.ascontiguousarray(distinct[:, 2 * s:2 * s + 2])
            rows = np.flatnonzero(pair[:, 1] > pair[:, 0])
            if not rows.shape[0]:
                continue
            found = part.candidates(torch.from_numpy(pair[rows]))
            owners.append(np.repeat(rows, np.diff(found.row_ptr.numpy())))
            tokens.append(found.tokens.numpy())
            nexts.append(found.next_state.numpy())
            segments.append(np.full(tokens[-1].shape[0], s, dtype=np.int64))
        row_ptr = np.zeros(distinct.shape[0] + 1, dtype=np.int64)
        if not owners:
            return row_ptr, np.zeros(0, np.int64), np.zeros((0, self.state_width), np.int64)
        owner, token, segment, extended = (np.concatenate(owners), np.concatenate(tokens), np.concatenate(segments),
                                           np.concatenate(nexts))
        # One entry per (state, token), eos after every token as FMIndexConstraint lists it. Each
        # segment's entries are already in that order: a stable sort merges the S sorted runs.
        key = owner * (self._vocab_size + 1) + np.where(token == self.eos_token_id, self._vocab_size, token)
        order = np.argsort(key, kind="stable")
        starts = np.r_[True, key[order[1:]] != key[order[:-1]]]
        first = order[starts]
        entry = np.empty_like(order)
        entry[order] = np.cumsum(starts) - 1  # every entry's place in the union
        next_state = np.zeros((first.shape[0], self.state_width), dtype=np.int64)
        next_state[entry, 2 * segment] = extended[:, 0]
        next_state[entry, 2 * segment + 1] = extended[:, 1]
        np.cumsum(np.bincount(owner[first], minlength=distinct.shape[0]), out=row_ptr[1:])
        return row_ptr, token[first], next_state
