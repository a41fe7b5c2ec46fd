"""FM-index over documents of integer token ids, queried in batches (numpy; no loop per query).

Layout
------
Text. Document ``d_j = t_1 .. t_m`` is stored reversed and followed by a separator:
``T = rev(d_0) $ rev(d_1) $ ... rev(d_{D-1}) $`` of length ``n = num_tokens + num_docs``.
Symbols are ``token + 1``; the separator ``$ = 0`` is the smallest symbol and never a query
token, so no n-gram spans two documents. Reversing (as SEAL does) turns backward search on ``T``
into *forward* extension of an n-gram: the range of ``g`` holds the suffixes of ``T`` that start
with ``rev(g)``, and the BWT symbol of such a row is the token that follows that occurrence of
``g`` in its document (``$`` where ``g`` ends the document).

Ranges. An n-gram is a half-open range ``[lo, hi)`` of rows of the suffix array of ``T``. The
empty n-gram is ``[0, n)``. Rows ``[0, num_docs)`` are the suffixes that start with ``$``, so the
occurrences of a range are rows ``[max(lo, num_docs), hi)``: the empty n-gram occurs once at
every token position. Extending ``[lo, hi)`` by token ``c`` (symbol ``s = c + 1``) gives
``[C[s] + rank_s(lo), C[s] + rank_s(hi))``.

Arrays (``save`` writes each as ``<name>.npy`` beside ``header.json``; ``load`` memory-maps them):

* ``bwt_words [L, W]`` uint64, ``bwt_word_ranks [L, W]`` uint16, ``bwt_block_ranks [L, B]`` uint32:
  the wavelet matrix of the BWT (``fm_wavelet``), ``L = vocab_size.bit_length()`` levels.
* ``symbol_starts [vocab_size + 2]`` uint32: ``C``, the rows before each symbol's block.
* ``doc_starts [num_docs + 1]`` uint32: where each reversed document starts in ``T``.
* ``sampled_words``, ``sampled_word_ranks``, ``sampled_block_ranks``: a ``RankBits`` over rows,
  set where the row's text position is a multiple of ``sample_rate`` from its document's start.
* ``samples [num_sampled]`` uint32: the text positions of the sampled rows, in row order.

Every document start is sampled, so locating a row walks LF at most ``sample_rate - 1`` steps and
never crosses a separator (whose LF would be ill-defined: the separators are not unique).
Space: ``L * (1 + 1/4)`` bits per token for the BWT, ``1.25 + 32 / sample_rate`` for locating,
plus ``32 * (vocab_size + num_docs) / n``; 15 levels for T5's 32,128 tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydivsufsort

from genir.errors import CorruptIndexError
from genir.kernels.fm_wavelet import Int64Array, RankBits, WaveletMatrix

FORMAT = "genir.fmindex"
FORMAT_VERSION = 1
#: Largest text (tokens + one separator per document): positions are stored as uint32 and a
#: range ``(lo, hi)`` packs into one int64 key.
MAX_TEXT_LENGTH = 2**31 - 1
#: Largest vocabulary: symbols (``token + 1``) are stored in 32 bits.
MAX_VOCAB_SIZE = 2**32 - 2

#: Up to this many ranges, a backward-search step runs on Python ints (``descend_scalar``).
_SCALAR_MAX_RANGES = 4

_ARRAY_DTYPES = {
    "bwt_words": np.uint64,
    "bwt_word_ranks": np.uint16,
    "bwt_block_ranks": np.uint32,
    "symbol_starts": np.uint32,
    "doc_starts": np.uint32,
    "sampled_words": np.uint64,
    "sampled_word_ranks": np.uint16,
    "sampled_block_ranks": np.uint32,
    "samples": np.uint32,
}


@dataclass(frozen=True)
class NextTokens:
    """Distinct next tokens of ``B`` ranges, in CSR layout.

    Attributes:
        row_ptr: ``[B + 1]`` int64; range ``i`` owns entries ``row_ptr[i]:row_ptr[i+1]``.
        tokens: ``[M]`` int64 token ids, ascending within a range.
        lo, hi: ``[M]`` int64, the range extended by the token; ``hi - lo`` is how often the
            token follows the range's n-gram.
    """

    row_ptr: Int64Array
    tokens: Int64Array
    lo: Int64Array
    hi: Int64Array


@dataclass(frozen=True)
class Occurrences:
    """Where the n-grams of ``B`` ranges occur, in CSR layout (suffix-array order within a range).

    Attributes:
        row_ptr: ``[B + 1]`` int64; range ``i`` owns entries ``row_ptr[i]:row_ptr[i+1]``.
        doc_ids: ``[M]`` int64 document indices (order of ``build``'s ``docs``).
        offsets: ``[M]`` int64 position of the n-gram's first token in its document.
    """

    row_ptr: Int64Array
    doc_ids: Int64Array
    offsets: Int64Array


def _csr_positions(starts: Int64Array, counts: Int64Array) -> tuple[Int64Array, Int64Array]:
    """Concatenate ``arange(starts[i], starts[i] + counts[i])`` over ``i``.

    Args:
        starts, counts: ``[B]`` int64, ``counts >= 0``.
    Returns:
        ``(row_ptr [B + 1] int64, values [sum(counts)] int64)``.
    """
    row_ptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=row_ptr[1:])
    values = np.repeat(starts - row_ptr[:-1], counts) + np.arange(row_ptr[-1], dtype=np.int64)
    return row_ptr, values


def _as_doc(doc: Any, index: int) -> npt.NDArray[np.integer]:
    """Check one input document: a 1-D integer sequence (an empty one of any dtype)."""
    arr = np.asarray(doc)
    if arr.ndim != 1:
        raise ValueError(f"document {index}: expected a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"document {index}: token ids must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"document {index}: token id {arr.max()} does not fit in 64-bit signed ids")
    return arr


class FMIndex:
    """FM-index of a tokenized corpus (layout and range semantics in the module docstring).

    Build with ``FMIndex.build(docs)`` or open a saved one with ``FMIndex.load(dir)``.
    """

    def __init__(
        self,
        bwt: WaveletMatrix,
        symbol_starts: Int64Array,
        doc_starts: Int64Array,
        sampled: RankBits,
        samples: npt.NDArray[np.uint32],
        vocab_size: int,
        sample_rate: int,
    ) -> None:
        self._bwt = bwt
        self._symbol_starts = symbol_starts
        self._doc_starts = doc_starts
        self._sampled = sampled
        self._samples = samples
        self._vocab_size = vocab_size
        self._sample_rate = sample_rate
        self._length = int(symbol_starts[-1])
        freq = np.diff(symbol_starts)
        # A descent along symbol s ends at bottom_start[s] + rank_s(p); C[s] - bottom_start[s]
        # turns that into the extended range bound C[s] + rank_s(p) with one add.
        self._shift = symbol_starts[:-1] - bwt.bottom_starts(freq)
        tokens = np.flatnonzero(freq[1:])
        self._root_next = NextTokens(
            np.array([0, tokens.shape[0]], dtype=np.int64), tokens, symbol_starts[tokens + 1], symbol_starts[tokens + 2]
        )
        self._nonempty_docs = int(np.count_nonzero(np.diff(doc_starts) > 1))

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, docs: Sequence[Any], *, vocab_size: int | None = None, sample_rate: int = 32) -> FMIndex:
        """Index a corpus.

        Args:
            docs: ``D >= 1`` documents, each a 1-D integer sequence (numpy array, list, CPU
                tensor) of token ids in ``[0, vocab_size)``; empty documents are allowed.
            vocab_size: number of token ids (default: largest id + 1); at most ``2^32 - 2``.
            sample_rate: suffix-array sampling step: locating costs at most
                ``sample_rate - 1`` LF steps per occurrence, the samples ``32 / sample_rate``
                bits per token.
        Raises:
            ValueError: on no documents, a non-integer or multi-dimensional document, a
                negative id or one ``>= vocab_size``, or a corpus over ``MAX_TEXT_LENGTH``.
        """
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        arrays = [_as_doc(doc, i) for i, doc in enumerate(docs)]
        if not arrays:
            raise ValueError("cannot index an empty corpus: pass at least one document")
        lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
        flat = np.concatenate(arrays, dtype=np.int64, casting="unsafe")
        flat_ends = np.cumsum(lengths)
        if vocab_size is None:
            # Capped so that an id too wide for 32 bits is reported with its document below.
            vocab_size = min(int(flat.max()) + 1, MAX_VOCAB_SIZE) if flat.size else 1
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
            raise ValueError(f"vocab_size must be an integer, got {vocab_size!r}")
        if not 1 <= vocab_size <= MAX_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be in [1, {MAX_VOCAB_SIZE}], got {vocab_size}")
        vocab_size = int(vocab_size)
        for bad, what in ((flat < 0, "is negative"), (flat >= vocab_size, f"is >= vocab_size ({vocab_size})")):
            if bad.any():
                where = int(np.argmax(bad))
                doc = int(np.searchsorted(flat_ends, where, side="right"))
                raise ValueError(f"document {doc}: token id {flat[where]} {what}")
        n = int(flat.shape[0]) + len(arrays)
        if n > MAX_TEXT_LENGTH:
            raise ValueError(f"corpus too long: {n} tokens + separators > {MAX_TEXT_LENGTH}")

        doc_starts = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=doc_starts[1:])
        symbol_dtype = np.uint16 if vocab_size < 2**16 else np.uint32
        text = np.zeros(n, dtype=symbol_dtype)
        # Token o of document j lands at doc_starts[j] + m_j - 1 - o (reversed, separator after).
        reversed_end = doc_starts[:-1] + lengths - 1 + (flat_ends - lengths)
        text[np.repeat(reversed_end, lengths) - np.arange(flat.shape[0])] = flat + 1
        del flat

        sa = pydivsufsort.divsufsort(text)
        num_symbols = vocab_size + 1
        symbol_starts = np.zeros(num_symbols + 1, dtype=np.int64)
        np.cumsum(np.bincount(text, minlength=num_symbols), out=symbol_starts[1:])
        # sa - 1 = -1 wraps to the final separator, the cyclic predecessor of position 0.
        bwt = WaveletMatrix.build(text[sa - 1], num_levels=vocab_size.bit_length())

        offset_in_doc = np.arange(n, dtype=np.int64) - np.repeat(doc_starts[:-1], lengths + 1)
        sampled_text = (text != 0) & (offset_in_doc % sample_rate == 0)
        del offset_in_doc, text
        sampled_rows = sampled_text[sa]
        samples = sa[sampled_rows].astype(np.uint32)
        return cls(
            bwt,
            symbol_starts,
            doc_starts,
            RankBits.from_bools(sampled_rows),
            samples,
            vocab_size,
            int(sample_rate),
        )

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> None:
        """Write ``header.json`` and one ``.npy`` per array (layout in the module docstring)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        wm = self._bwt.arrays()
        arrays = {
            "bwt_words": wm["words"],
            "bwt_word_ranks": wm["word_ranks"],
            "bwt_block_ranks": wm["block_ranks"],
            "symbol_starts": self._symbol_starts,
            "doc_starts": self._doc_starts,
            "sampled_words": self._sampled.words,
            "sampled_word_ranks": self._sampled.word_ranks,
            "sampled_block_ranks": self._sampled.block_ranks,
            "samples": self._samples,
        }
        shapes = {}
        for name, arr in arrays.items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(arr, dtype=_ARRAY_DTYPES[name]), allow_pickle=False)
            shapes[name] = list(arr.shape)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "vocab_size": self._vocab_size,
            "sample_rate": self._sample_rate,
            "num_docs": self.num_docs,
            "num_tokens": self.num_tokens,
            "bwt_zeros": [int(z) for z in wm["zeros"]],
            "arrays": shapes,
        }
        (directory / "header.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = True) -> FMIndex:
        """Open an index written by ``save``; with ``mmap`` the large arrays stay on disk.

        Raises:
            CorruptIndexError: (a ``ValueError``) if a file is missing, of another format, or
                inconsistent with the header.
        """
        directory = Path(directory)
        try:
            header_path = directory / "header.json"
            try:
                header = json.loads(header_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as err:
                raise CorruptIndexError(f"{header_path}: cannot read an FM-index header ({err})") from err
            if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
                found = (header.get("format"), header.get("version")) if isinstance(header, dict) else header
                raise CorruptIndexError(f"{header_path}: not a {FORMAT} v{FORMAT_VERSION} header (found {found!r})")
            missing = {"vocab_size", "sample_rate", "num_docs", "num_tokens", "bwt_zeros", "arrays"} - header.keys()
            if missing:
                raise CorruptIndexError(f"{header_path}: header lacks {sorted(missing)}")
            arrays = {}
            for name, dtype in _ARRAY_DTYPES.items():
                path = directory / f"{name}.npy"
                try:
                    arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
                except (OSError, ValueError) as err:
                    raise CorruptIndexError(f"{path}: cannot load ({err})") from err
                if arr.dtype != dtype or list(arr.shape) != header["arrays"].get(name):
                    expected = f"{np.dtype(dtype)} {header['arrays'].get(name)}"
                    raise CorruptIndexError(f"{path}: expected {expected}, got {arr.dtype} {list(arr.shape)}")
                arrays[name] = np.asarray(arr)
            bwt = WaveletMatrix.from_arrays(
                arrays["bwt_words"],
                arrays["bwt_word_ranks"],
                arrays["bwt_block_ranks"],
                np.array(header["bwt_zeros"], dtype=np.int64),
            )
            sampled = RankBits(
                arrays["sampled_words"], arrays["sampled_word_ranks"], arrays["sampled_block_ranks"].astype(np.int64)
            )
            index = cls(
                bwt,
                arrays["symbol_starts"].astype(np.int64),
                arrays["doc_starts"].astype(np.int64),
                sampled,
                arrays["samples"],
                int(header["vocab_size"]),
                int(header["sample_rate"]),
            )
            if index.num_docs != header["num_docs"] or index.num_tokens != header["num_tokens"]:
                raise CorruptIndexError(f"{header_path}: num_docs/num_tokens disagree with the arrays")
        except CorruptIndexError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise CorruptIndexError(f"{directory}: unreadable FM-index ({type(err).__name__}: {err})") from None
        return index

    # ------------------------------------------------------------------ properties

    @property
    def num_docs(self) -> int:
        return self._doc_starts.shape[0] - 1

    @property
    def num_tokens(self) -> int:
        """Token positions in the corpus (separators not counted)."""
        return self._length - self.num_docs

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def root_range(self) -> tuple[int, int]:
        """The range ``(lo, hi)`` of the empty n-gram."""
        return 0, self._length

    @property
    def doc_lengths(self) -> Int64Array:
        """``[num_docs]`` int64 tokens per document."""
        return np.diff(self._doc_starts) - 1

    @property
    def token_counts(self) -> Int64Array:
        """``[vocab_size]`` int64 occurrences of each token id."""
        return np.diff(self._symbol_starts)[1:]

    def __repr__(self) -> str:
        return (
            f"FMIndex(num_docs={self.num_docs}, num_tokens={self.num_tokens}, "
            f"vocab_size={self._vocab_size}, sample_rate={self._sample_rate})"
        )

    # ------------------------------------------------------------------ validation at the edge

    def _check_tokens(self, tokens: Any) -> Int64Array:
        """Token ids of any shape as int64, or ``ValueError``."""
        arr = np.asarray(tokens)
        if arr.size == 0:
            return arr.astype(np.int64)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"token ids must be integers, got dtype {arr.dtype}")
        low, high = arr.min(), arr.max()
        if low < 0:
            raise ValueError(f"token id {low} is negative")
        if high >= self._vocab_size:
            raise ValueError(f"token id {high} is >= vocab_size ({self._vocab_size})")
        return arr.astype(np.int64)

    def _check_ranges(self, lo: Any, hi: Any) -> tuple[Int64Array, Int64Array]:
        """Broadcast ``lo``, ``hi`` to 1-D int64, or ``ValueError`` unless ``0 <= lo <= hi <= n``."""
        lo_arr, hi_arr = np.broadcast_arrays(np.asarray(lo), np.asarray(hi))
        for name, arr in (("lo", lo_arr), ("hi", hi_arr)):
            if arr.size and arr.dtype.kind not in "iu":
                raise ValueError(f"range bounds must be integers, got {name} of dtype {arr.dtype}")
        lo_arr = lo_arr.astype(np.int64).ravel()
        hi_arr = hi_arr.astype(np.int64).ravel()
        bad = (lo_arr < 0) | (lo_arr > hi_arr) | (hi_arr > self._length)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"range [{lo_arr[i]}, {hi_arr[i]}) is not within [0, {self._length}) with lo <= hi")
        return lo_arr, hi_arr

    def _check_ngrams(self, ngrams: Any) -> tuple[Int64Array, Int64Array]:
        """A batch of n-grams as ``([B, K] int64 tokens, zero-padded; [B] int64 lengths)``."""
        if isinstance(ngrams, np.ndarray) or hasattr(ngrams, "__array__") and not isinstance(ngrams, (list, tuple)):
            arr = np.asarray(ngrams)
            if arr.ndim != 2:
                raise ValueError(f"an array batch of n-grams must be 2-D [B, K], got shape {arr.shape}")
            return self._check_tokens(arr), np.full(arr.shape[0], arr.shape[1], dtype=np.int64)
        rows = [np.asarray(g) for g in ngrams]
        for i, row in enumerate(rows):
            if row.ndim != 1:
                raise ValueError(f"n-gram {i}: expected a 1-D sequence of token ids, got shape {row.shape}")
        lengths = np.array([row.shape[0] for row in rows], dtype=np.int64)
        tokens = np.zeros((len(rows), int(lengths.max()) if rows else 0), dtype=np.int64)
        for i, row in enumerate(rows):
            tokens[i, : row.shape[0]] = self._check_tokens(row)
        return tokens, lengths

    # ------------------------------------------------------------------ queries

    def _extend_symbols(self, lo: Int64Array, hi: Int64Array, symbols: Int64Array) -> tuple[Int64Array, Int64Array]:
        """Backward-search step: ``[K]`` int64 ranges and symbols -> ``[K]`` int64 ``(lo, hi)``.

        A few ranges (a single query) descend on Python ints, where ``L`` rounds of numpy calls
        would cost more than the arithmetic."""
        k = lo.shape[0]
        both = np.concatenate((symbols, symbols))
        if k <= _SCALAR_MAX_RANGES:
            bottom = np.array(self._bwt.descend_scalar(lo.tolist() + hi.tolist(), both.tolist()), dtype=np.int64)
        else:
            bottom = self._bwt.descend(np.concatenate((lo, hi)), both)
        bounds = bottom + self._shift[both]
        return bounds[:k], bounds[k:]

    def extend(self, lo: Any, hi: Any, tokens: Any) -> tuple[Int64Array, Int64Array]:
        """Extend n-gram ranges by one token each (forward: ``g -> g + [token]``).

        Args:
            lo, hi, tokens: int arrays broadcast together to ``[K]`` (e.g. ``lo[:, None]``,
                ``hi[:, None]``, ``tokens[None, :]`` for every range with every token; the
                result is then flattened row-major).
        Returns:
            ``(lo, hi)``, ``[K]`` int64; ``lo == hi`` where the extended n-gram occurs nowhere.
        """
        lo_b, hi_b, tok_b = np.broadcast_arrays(np.asarray(lo), np.asarray(hi), np.asarray(tokens))
        lo_arr, hi_arr = self._check_ranges(lo_b, hi_b)
        return self._extend_symbols(lo_arr, hi_arr, self._check_tokens(tok_b).ravel() + 1)

    def ranges(self, ngrams: Any) -> tuple[Int64Array, Int64Array]:
        """Ranges of a batch of n-grams.

        Args:
            ngrams: ``[B, K]`` integer array, or a sequence of ``B`` 1-D integer sequences
                (ragged; empty ones allowed).
        Returns:
            ``(lo, hi)``, ``[B]`` int64.
        """
        tokens, lengths = self._check_ngrams(ngrams)
        lo = np.zeros(tokens.shape[0], dtype=np.int64)
        hi = np.full(tokens.shape[0], self._length, dtype=np.int64)
        for step in range(tokens.shape[1]):
            active = np.flatnonzero(lengths > step)
            new_lo, new_hi = self._extend_symbols(lo[active], hi[active], tokens[active, step] + 1)
            lo[active] = new_lo
            hi[active] = new_hi
        return lo, hi

    def range_counts(self, lo: Any, hi: Any) -> Int64Array:
        """Occurrences of the n-grams of ranges: ``[B]`` int64 bounds -> ``[B]`` int64."""
        lo_arr, hi_arr = self._check_ranges(lo, hi)
        return np.maximum(hi_arr - np.maximum(lo_arr, self.num_docs), 0)

    def count(self, ngrams: Any) -> Int64Array:
        """Occurrences of a batch of n-grams (input as in ``ranges``) -> ``[B]`` int64.

        The empty n-gram occurs ``num_tokens`` times (once per token position).
        """
        lo, hi = self.ranges(ngrams)
        return self.range_counts(lo, hi)

    def next_tokens(self, lo: Any, hi: Any) -> NextTokens:
        """The tokens that follow the n-grams of ranges, with counts and extended ranges.

        The root (the empty n-gram) is answered from ``C``; other ranges by one batched
        wavelet-matrix descent whose work is at most ``L`` times the number of entries returned.

        Args:
            lo, hi: ``[B]`` int64 range bounds.
        Returns:
            ``NextTokens`` with ``B + 1`` row pointers; the separator is never listed.
        """
        lo_arr, hi_arr = self._check_ranges(lo, hi)
        return self._next_tokens(lo_arr, hi_arr)

    def _next_tokens(self, lo: Int64Array, hi: Int64Array) -> NextTokens:
        """``next_tokens`` on checked ``[B]`` int64 bounds."""
        is_root = (lo == 0) & (hi == self._length)
        if not is_root.any():
            return self._descend_next_tokens(lo, hi)
        inner = np.flatnonzero(~is_root)
        below = self._descend_next_tokens(lo[inner], hi[inner])
        root = self._root_next
        root_size = root.tokens.shape[0]
        counts = np.full(lo.shape[0], root_size, dtype=np.int64)
        counts[inner] = np.diff(below.row_ptr)
        sources = np.zeros(lo.shape[0], dtype=np.int64)
        sources[inner] = root_size + below.row_ptr[:-1]
        row_ptr, take = _csr_positions(sources, counts)
        return NextTokens(
            row_ptr,
            np.concatenate((root.tokens, below.tokens))[take],
            np.concatenate((root.lo, below.lo))[take],
            np.concatenate((root.hi, below.hi))[take],
        )

    def _descend_next_tokens(self, lo: Int64Array, hi: Int64Array) -> NextTokens:
        """``next_tokens`` by a wavelet-matrix descent, for checked ``[B]`` int64 bounds."""
        owner, symbols, start, end = self._bwt.distinct(lo, hi)
        keep = symbols != 0
        if not keep.all():
            owner, symbols, start, end = owner[keep], symbols[keep], start[keep], end[keep]
        shift = self._shift[symbols]
        row_ptr = np.zeros(lo.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=lo.shape[0]), out=row_ptr[1:])
        return NextTokens(row_ptr, symbols - 1, start + shift, end + shift)

    def _text_positions(self, rows: Int64Array) -> Int64Array:
        """Text positions (in ``T``) of token rows: ``[K]`` int64 rows ``>= num_docs`` -> ``[K]`` int64."""
        positions = np.empty_like(rows)
        pending = np.arange(rows.shape[0])
        current = rows
        for step in range(self._sample_rate):
            hit = self._sampled.get(current)
            found = pending[hit]
            positions[found] = self._samples[self._sampled.rank1(current[hit])] + step
            pending = pending[~hit]
            if pending.shape[0] == 0:
                break
            symbols, bottom = self._bwt.access_descend(current[~hit])
            current = bottom + self._shift[symbols]
        return positions

    def _occurrence_rows(self, lo: Int64Array, hi: Int64Array) -> tuple[Int64Array, Int64Array]:
        """Rows of the occurrences of checked ``[B]`` int64 ranges: ``(row_ptr [B + 1], rows [M])``."""
        first = np.maximum(lo, self.num_docs)
        return _csr_positions(first, np.maximum(hi - first, 0))

    def _doc_of(self, positions: Int64Array) -> Int64Array:
        """Document of text positions: ``[K]`` int64 -> ``[K]`` int64."""
        return np.searchsorted(self._doc_starts, positions, side="right") - 1

    def locate(self, lo: Any, hi: Any, lengths: Any) -> Occurrences:
        """Documents and offsets of every occurrence of the n-grams of ranges.

        Work: up to ``sample_rate - 1`` wavelet-matrix descents per occurrence, batched.

        Args:
            lo, hi: ``[B]`` int64 range bounds.
            lengths: ``[B]`` (or scalar) int64, the n-gram lengths (a range does not know its own).
        Returns:
            ``Occurrences``; the empty n-gram occurs at every offset ``0 .. m-1`` of every document.
        """
        lo_arr, hi_arr = self._check_ranges(lo, hi)
        len_arr = np.broadcast_to(np.asarray(lengths), lo_arr.shape)
        if len_arr.size and (len_arr.dtype.kind not in "iu" or len_arr.min() < 0):
            raise ValueError("n-gram lengths must be non-negative integers")
        row_ptr, rows = self._occurrence_rows(lo_arr, hi_arr)
        positions = self._text_positions(rows)
        docs = self._doc_of(positions)
        doc_start = self._doc_starts[docs]
        doc_length = self._doc_starts[docs + 1] - doc_start - 1
        # Reversed offset q holds the n-gram's last token, at m - 1 - q in the document.
        span = np.repeat(np.maximum(len_arr.astype(np.int64), 1), np.diff(row_ptr))
        return Occurrences(row_ptr, docs, doc_length - (positions - doc_start) - span)

    def doc_freq(self, lo: Any, hi: Any) -> Int64Array:
        """Number of distinct documents containing the n-grams of ranges.

        Work: one ``locate`` of every occurrence, except the root (answered in O(1)).

        Args:
            lo, hi: ``[B]`` int64 range bounds.
        Returns:
            ``[B]`` int64; the empty n-gram's is the number of non-empty documents.
        """
        lo_arr, hi_arr = self._check_ranges(lo, hi)
        is_root = (lo_arr == 0) & (hi_arr == self._length)
        inner = np.flatnonzero(~is_root)
        row_ptr, rows = self._occurrence_rows(lo_arr[inner], hi_arr[inner])
        owner = np.repeat(np.arange(inner.shape[0]), np.diff(row_ptr))
        pairs = np.unique(owner * self.num_docs + self._doc_of(self._text_positions(rows)))
        out = np.full(lo_arr.shape[0], self._nonempty_docs, dtype=np.int64)
        out[inner] = np.bincount(pairs // self.num_docs, minlength=inner.shape[0])
        return out
