"""Rank bitvectors and a wavelet matrix as plain numpy arrays, queried in batches.

Bitvector layout (``RankBits``; every array saves as ``.npy`` and loads memory-mapped):

* ``words``: ``[W]`` uint64; bit ``p`` is bit ``p & 63`` of ``words[p >> 6]``, and
  ``W = n // 64 + 1`` so that ``rank1(n)`` reads a real (zero-padded) word.
* ``word_ranks``: ``[W]`` uint16; ones in the words before word ``w`` inside its 2^16-bit block.
* ``block_ranks``: ``[n // 2^16 + 1]``; ones before each 2^16-bit block (uint32 on disk, int64
  in memory, where it is tiny).

``rank1(p) = block_ranks[p >> 16] + word_ranks[p >> 6] + popcount(words[p >> 6] & low_bits(p))``:
three gathers and no scan, for 0.25 extra bits per bit. A rank9-style 512-bit block would cost
0.06 bits per bit but a gather of eight words per query, which numpy pays for in full.

Wavelet matrix (Claude, Navarro and Ordóñez, "The wavelet matrix", SPIRE 2012) over symbols of
``L`` bits: level ``l`` stores bit ``L-1-l`` (most significant first) of the sequence as permuted
so far, then stably moves the zeros in front of the ones (``zeros[l]`` of them). After all ``L``
levels the symbols are sorted by their bit-reversed value, stably, so a traversal from position
``p`` along symbol ``c``'s bits ends at ``bottom_start[c] + rank_c(p)``. Every query below walks
the ``L`` levels once for a whole batch; no Python loop runs per query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]

#: ``_LOW_BITS[k]``: the ``k`` lowest bits set.
_LOW_BITS = (np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64)) - np.uint64(1)).astype(np.uint64)
#: ``_LOW_INTS[k]``: ``_LOW_BITS[k]`` as a Python int.
_LOW_INTS = [(1 << k) - 1 for k in range(64)]
#: ``_ONE_BIT[k]``: only bit ``k`` set.
_ONE_BIT = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
_BLOCK_SHIFT = 16
_WORDS_PER_BLOCK = 1 << (_BLOCK_SHIFT - 6)


def _pack_bits(bits: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint64]:
    """Pack ``[n]`` bool into ``[n // 64 + 1]`` uint64 words, bit ``p`` at ``p & 63`` of word ``p >> 6``."""
    num_words = bits.shape[0] // 64 + 1
    packed = np.zeros(num_words * 8, dtype=np.uint8)
    packed[: (bits.shape[0] + 7) // 8] = np.packbits(bits, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)


def _rank_directory(words: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]]:
    """Rank directory of ``[W]`` uint64 words holding fewer than 2^32 bits:
    ``([W] uint16 word ranks, [ceil(W / 1024)] uint32 block ranks)``."""
    per_word = np.bitwise_count(words).astype(np.int64)
    before = np.cumsum(per_word) - per_word
    block_ranks = before[::_WORDS_PER_BLOCK]
    word_ranks = before - np.repeat(block_ranks, _WORDS_PER_BLOCK)[: words.shape[0]]
    return word_ranks.astype(np.uint16), block_ranks.astype(np.uint32)


@dataclass(frozen=True)
class RankBits:
    """A bitvector with constant-time rank (layout in the module docstring).

    Attributes:
        words: ``[W]`` uint64 bits.
        word_ranks: ``[W]`` uint16 in-block ranks.
        block_ranks: ``[B]`` int64 block ranks.
    """

    words: npt.NDArray[np.uint64]
    word_ranks: npt.NDArray[np.uint16]
    block_ranks: Int64Array

    @classmethod
    def from_bools(cls, bits: npt.NDArray[np.bool_]) -> RankBits:
        """Index ``[n]`` bool."""
        words = _pack_bits(bits)
        word_ranks, block_ranks = _rank_directory(words)
        return cls(words, word_ranks, block_ranks.astype(np.int64))

    def rank1(self, pos: Int64Array) -> Int64Array:
        """Ones in ``[0, pos)``: ``pos`` any-shape int64 in ``[0, n]`` -> same shape int64."""
        word = pos >> 6
        return (
            self.block_ranks[pos >> _BLOCK_SHIFT]
            + self.word_ranks[word]
            + np.bitwise_count(self.words[word] & _LOW_BITS[pos & 63])
        )

    def get(self, pos: Int64Array) -> npt.NDArray[np.bool_]:
        """Bits at ``pos``: any-shape int64 in ``[0, n)`` -> same shape bool."""
        return (self.words[pos >> 6] & _ONE_BIT[pos & 63]) != 0


def bit_reverse(values: Int64Array, num_bits: int) -> Int64Array:
    """Reverse the ``num_bits`` low bits of each value: ``[K]`` int64 -> ``[K]`` int64."""
    out = np.zeros_like(values)
    for b in range(num_bits):
        out |= ((values >> b) & 1) << (num_bits - 1 - b)
    return out


@dataclass(frozen=True)
class WaveletMatrix:
    """Wavelet matrix of a sequence of ``n`` symbols in ``[0, 2^L)`` (layout in the module docstring).

    Attributes:
        levels: ``L`` bitvectors, most significant bit first (views of the ``[L, W]`` arrays).
        zeros: ``[L]`` int64 zeros per level.
    """

    levels: tuple[RankBits, ...]
    zeros: Int64Array

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @classmethod
    def build(cls, seq: npt.NDArray[np.unsignedinteger], num_levels: int) -> WaveletMatrix:
        """Index ``[n]`` unsigned symbols, each below ``2^num_levels``."""
        levels = []
        zeros = np.zeros(num_levels, dtype=np.int64)
        cur = seq
        for level in range(num_levels):
            ones = ((cur >> (num_levels - 1 - level)) & 1).astype(bool)
            levels.append(RankBits.from_bools(ones))
            zeros[level] = ones.shape[0] - np.count_nonzero(ones)
            cur = np.concatenate((cur[~ones], cur[ones]))
        return cls(tuple(levels), zeros)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save: ``words [L, W]`` uint64, ``word_ranks [L, W]`` uint16,
        ``block_ranks [L, B]`` uint32, ``zeros [L]`` int64."""
        return {
            "words": np.stack([lv.words for lv in self.levels]),
            "word_ranks": np.stack([lv.word_ranks for lv in self.levels]),
            "block_ranks": np.stack([lv.block_ranks for lv in self.levels]).astype(np.uint32),
            "zeros": self.zeros,
        }

    @classmethod
    def from_arrays(
        cls,
        words: npt.NDArray[np.uint64],
        word_ranks: npt.NDArray[np.uint16],
        block_ranks: npt.NDArray[np.uint32],
        zeros: Int64Array,
    ) -> WaveletMatrix:
        """Inverse of ``arrays()``; ``words`` and ``word_ranks`` may be memory-mapped."""
        levels = tuple(
            RankBits(np.asarray(words[i]), np.asarray(word_ranks[i]), np.asarray(block_ranks[i], dtype=np.int64))
            for i in range(words.shape[0])
        )
        return cls(levels, np.asarray(zeros, dtype=np.int64))

    def bottom_starts(self, freq: Int64Array) -> Int64Array:
        """Where each symbol's run starts below the last level: ``freq [sigma]`` int64 -> ``[sigma]`` int64."""
        order = np.argsort(bit_reverse(np.arange(freq.shape[0], dtype=np.int64), self.num_levels), kind="stable")
        starts = np.empty_like(freq)
        sorted_freq = freq[order]
        starts[order] = np.cumsum(sorted_freq) - sorted_freq
        return starts

    def descend(self, pos: Int64Array, symbols: Int64Array) -> Int64Array:
        """Follow each symbol's bits down from ``pos``: ``[K]`` int64 each -> ``[K]`` int64
        bottom positions, ``bottom_start[symbol] + rank_symbol(pos)``."""
        top = self.num_levels - 1
        for level, bits in enumerate(self.levels):
            ones = bits.rank1(pos)
            bit = ((symbols >> (top - level)) & 1).astype(bool)
            pos = np.where(bit, ones + self.zeros[level], pos - ones)
        return pos

    def descend_scalar(self, pos: list[int], symbols: list[int]) -> list[int]:
        """``descend`` on ``K`` Python ints each -> ``K`` Python ints: no numpy call per level,
        so a handful of positions (one query) costs microseconds, not ``L`` rounds of array calls."""
        top = self.num_levels - 1
        zeros = self.zeros.tolist()
        out = []
        for p, symbol in zip(pos, symbols):
            for level, bits in enumerate(self.levels):
                word = p >> 6
                ones = (
                    bits.block_ranks.item(p >> _BLOCK_SHIFT)
                    + bits.word_ranks.item(word)
                    + (bits.words.item(word) & _LOW_INTS[p & 63]).bit_count()
                )
                p = ones + zeros[level] if (symbol >> (top - level)) & 1 else p - ones
            out.append(p)
        return out

    def access_descend(self, pos: Int64Array) -> tuple[Int64Array, Int64Array]:
        """Symbol at ``pos`` and its bottom position: ``[K]`` int64 in ``[0, n)`` ->
        ``([K] int64 symbols, [K] int64 bottom_start[symbol] + rank_symbol(pos))``."""
        symbols = np.zeros_like(pos)
        for level, bits in enumerate(self.levels):
            word_idx = pos >> 6
            word = bits.words[word_idx]
            low = pos & 63
            ones = (
                bits.block_ranks[pos >> _BLOCK_SHIFT]
                + bits.word_ranks[word_idx]
                + np.bitwise_count(word & _LOW_BITS[low])
            )
            bit = (word & _ONE_BIT[low]) != 0
            pos = np.where(bit, ones + self.zeros[level], pos - ones)
            symbols = (symbols << 1) | bit
        return symbols, pos

    def distinct(self, lo: Int64Array, hi: Int64Array) -> tuple[Int64Array, Int64Array, Int64Array, Int64Array]:
        """Distinct symbols of ``seq[lo:hi]`` for a batch of ranges, by splitting every range at
        every level (work: the number of distinct symbol prefixes met, at most ``L * M``).

        Args:
            lo, hi: ``[B]`` int64 with ``0 <= lo <= hi <= n``.
        Returns:
            ``(owner, symbols, start, end)``, each ``[M]`` int64, sorted by owner (the range's
            index) then symbol; ``end - start`` is the symbol's count in its range and
            ``start - bottom_start[symbol] = rank_symbol(lo)``.
        """
        nonempty = hi > lo
        key = nonempty.nonzero()[0]
        start = lo[nonempty]
        end = hi[nonempty]
        for level, bits in enumerate(self.levels):
            zeros = self.zeros[level]
            k = start.shape[0]
            ones = bits.rank1(np.concatenate((start, end)))
            # Children interleaved (zeros child, ones child) keep the output sorted by owner, symbol.
            child_start = np.empty((k, 2), dtype=np.int64)
            child_end = np.empty((k, 2), dtype=np.int64)
            np.subtract(start, ones[:k], out=child_start[:, 0])
            np.add(ones[:k], zeros, out=child_start[:, 1])
            np.subtract(end, ones[k:], out=child_end[:, 0])
            np.add(ones[k:], zeros, out=child_end[:, 1])
            child = (child_end.ravel() > child_start.ravel()).nonzero()[0]
            start = child_start.ravel()[child]
            end = child_end.ravel()[child]
            key = (key[child >> 1] << 1) | (child & 1)
        top = self.num_levels
        return key >> top, key & ((1 << top) - 1), start, end
