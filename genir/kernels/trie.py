"""The docid trie: every docid's token sequence as integer arrays, walked one step per beam.

Layout (the shape of STATIC's decoding tables, adapted to a CSR ``Candidates`` output):

* Nodes are numbered breadth-first and, within a level, by ``(parent, token)``. The children of
  a node are therefore a contiguous, token-sorted run of node ids, so one pointer array
  ``child_ptr`` is the whole CSR transition table: the children of ``u`` are the nodes
  ``child_ptr[u]:child_ptr[u + 1]`` and ``token[v]`` labels the edge into ``v``. Listing a
  beam's candidates is two gathers; its next state is the child's node id.
* Every docid sequence ends with ``eos``; the node reached by that ``eos`` is a leaf that names
  exactly one docid (``leaf_docid``). Sequences may be prefixes of one another ("1 2 eos" and
  "1 2 3 eos") because the ``eos`` edge tells them apart.
* The first levels, where fan-out is highest, also get a dense ``[nodes, V]`` transition table
  (within a memory budget), so that following a given token there is one lookup. Below, a
  token is followed by binary search in the sorted keys ``parent * V + token``. Neither path
  depends on the number of docids beyond a logarithm.

The decoding state of a beam is its node id: an ``[N, 1]`` int64 tensor, root ``0``.
"""

from __future__ import annotations

import itertools
import json
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from genir.errors import CorruptIndexError
from genir.kernels.constraint import Candidates, Constraint

_FORMAT = "genir.docid_trie"
_FORMAT_VERSION = 1
_ARRAYS_FILE = "trie.npz"
_META_FILE = "trie.json"
#: Default memory budget of the dense transition tables of the first levels.
DEFAULT_DENSE_BYTES = 32 * 2**20


class DocidTrie:
    """A trie over the token sequences of all docids, stored as integer tensors.

    Build it with :meth:`from_sequences`; the constructor takes the raw arrays (as written by
    :meth:`save`) and derives the lookup tables.

    Args:
        token: ``[n_nodes]`` int64; the token on the edge into each node (``-1`` for the root).
        child_ptr: ``[n_nodes + 1]`` int64; the children of node ``u`` are the node ids
            ``child_ptr[u]:child_ptr[u + 1]``, sorted by token.
        leaf_docid: ``[n_nodes]`` int64; the docid row whose ``eos`` edge ends at this node,
            ``-1`` for every other node.
        vocab_size: number of token ids ``V``; every token is in ``[0, V)``.
        eos_token_id: the token that ends every docid sequence.
        dense_bytes: memory budget of the dense transition tables of the first levels.
    """

    def __init__(
        self,
        token: torch.Tensor,
        child_ptr: torch.Tensor,
        leaf_docid: torch.Tensor,
        vocab_size: int,
        eos_token_id: int,
        dense_bytes: int = DEFAULT_DENSE_BYTES,
    ) -> None:
        self.token = token
        self.child_ptr = child_ptr
        self.leaf_docid = leaf_docid
        self.vocab_size = int(vocab_size)
        self.eos_token_id = int(eos_token_id)
        self.dense_bytes = int(dense_bytes)
        parent = _parents(child_ptr)
        # Sorted because nodes are numbered by (parent, token); binary search follows a token.
        self._edge_key = parent[1:] * self.vocab_size + token[1:]
        self._dense_next, self._n_dense = _dense_tables(
            token, child_ptr, parent, self.vocab_size, self.dense_bytes
        )
        self._completions = _completions(child_ptr, parent, leaf_docid)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[Sequence[int]] | Sequence[np.ndarray],
        eos_token_id: int = 1,
        vocab_size: int | None = None,
        add_eos: bool = False,
        dense_bytes: int = DEFAULT_DENSE_BYTES,
    ) -> DocidTrie:
        """Build the trie of ``sequences``; docid row ``i`` is ``sequences[i]``.

        Args:
            sequences: one token sequence per docid (lists of ints or 1-d integer arrays). Each
                must end with ``eos_token_id`` and contain it nowhere else, unless ``add_eos``.
            eos_token_id: the end-of-sequence token (1 for T5).
            vocab_size: ``V``; defaults to the largest token id plus one.
            add_eos: append ``eos_token_id`` to every sequence first.
            dense_bytes: memory budget of the dense tables of the first levels.
        Raises:
            ValueError: on an empty sequence, a negative or out-of-vocabulary token, a missing
                or misplaced ``eos``, or two docids with the same sequence.
        """
        matrix = _padded_matrix(sequences, eos_token_id, add_eos)
        largest = max(int(matrix.max()) if matrix.size else 0, eos_token_id)
        vocab_size = largest + 1 if vocab_size is None else vocab_size
        if largest >= vocab_size:
            raise ValueError(f"token id {largest} is outside the vocabulary of size {vocab_size}")
        token, child_ptr, leaf_docid = _build_arrays(matrix, eos_token_id)
        return cls(
            torch.from_numpy(token),
            torch.from_numpy(child_ptr),
            torch.from_numpy(leaf_docid),
            vocab_size=vocab_size,
            eos_token_id=eos_token_id,
            dense_bytes=dense_bytes,
        )

    def extend(self, sequences: Sequence[Sequence[int]] | Sequence[np.ndarray], add_eos: bool = False) -> DocidTrie:
        """Return a trie holding the current docids followed by ``sequences`` (continual indexing).

        Existing docids keep their rows ``0..num_docids-1``; new ones get the rows after them.
        The trie is rebuilt from all sequences, which is a few vectorized passes over the
        ``[num_docids, max_len]`` token matrix.

        Raises:
            ValueError: as :meth:`from_sequences`, including a new sequence equal to an old one.
        """
        old = self.sequences_matrix()
        new = _padded_matrix(sequences, self.eos_token_id, add_eos)
        width = max(old.shape[1], new.shape[1])
        matrix = np.full((old.shape[0] + new.shape[0], width), -1, dtype=np.int64)
        matrix[: old.shape[0], : old.shape[1]] = old
        matrix[old.shape[0] :, : new.shape[1]] = new
        vocab_size = max(self.vocab_size, int(new.max()) + 1 if new.size else 0)
        token, child_ptr, leaf_docid = _build_arrays(matrix, self.eos_token_id)
        return DocidTrie(
            torch.from_numpy(token),
            torch.from_numpy(child_ptr),
            torch.from_numpy(leaf_docid),
            vocab_size=vocab_size,
            eos_token_id=self.eos_token_id,
            dense_bytes=self.dense_bytes,
        ).to(self.device)

    # ------------------------------------------------------------------ properties

    @property
    def num_nodes(self) -> int:
        return int(self.token.shape[0])

    @property
    def num_docids(self) -> int:
        return int((self.leaf_docid >= 0).sum())

    @property
    def device(self) -> torch.device:
        return self.token.device

    def to(self, device: torch.device | str) -> DocidTrie:
        """Return this trie with every table on ``device`` (``self`` if already there)."""
        if torch.device(device) == self.device:
            return self
        moved = DocidTrie.__new__(DocidTrie)
        moved.__dict__.update({k: v.to(device) if torch.is_tensor(v) else v for k, v in self.__dict__.items()})
        return moved

    # ------------------------------------------------------------------ decoding

    def initial_state(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Return the root state of ``n`` beams: ``[n, 1]`` int64 zeros."""
        return torch.zeros((n, 1), dtype=torch.int64, device=device or self.device)

    def candidates(self, state: torch.Tensor) -> Candidates:
        """List every beam's allowed next tokens and the child node each leads to.

        Args:
            state: ``[N, 1]`` int64 node ids.
        Returns:
            ``Candidates`` with ``row_ptr [N + 1]``, ``tokens [M]`` (token-sorted within a row)
            and ``next_state [M, 1]``, all int64. A leaf (a complete docid) has no candidates.
        """
        node = state[:, 0]
        start = self.child_ptr[node]
        degree = self.child_ptr[node + 1] - start
        row_ptr = torch.zeros(node.shape[0] + 1, dtype=torch.int64, device=node.device)
        torch.cumsum(degree, 0, out=row_ptr[1:])
        total = int(row_ptr[-1])
        child = torch.arange(total, dtype=torch.int64, device=node.device)
        child += torch.repeat_interleave(start - row_ptr[:-1], degree, output_size=total)
        return Candidates(row_ptr=row_ptr, tokens=self.token[child], next_state=child.unsqueeze(1))

    def step(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Follow one token from each state.

        Args:
            state: ``[N, 1]`` int64 node ids, or ``-1`` for a dead state.
            tokens: ``[N]`` int64 token ids.
        Returns:
            ``[N, 1]`` int64 child node ids; ``-1`` where the token is not allowed (or the
            state was dead).
        """
        node = state[:, 0]
        live = (node >= 0) & (tokens >= 0) & (tokens < self.vocab_size)
        node_c = node.clamp(min=0)
        tok_c = tokens.clamp(0, self.vocab_size - 1)
        dense = node_c < self._n_dense
        from_dense = self._dense_next[node_c.clamp(max=max(self._n_dense - 1, 0)), tok_c].long()
        key = node_c * self.vocab_size + tok_c
        pos = torch.searchsorted(self._edge_key, key)
        pos_c = pos.clamp(max=max(self._edge_key.shape[0] - 1, 0))
        found = (pos < self._edge_key.shape[0]) & (self._edge_key[pos_c] == key)
        from_csr = torch.where(found, pos_c + 1, -1)
        child = torch.where(dense, from_dense, from_csr)
        return torch.where(live, child, -1).unsqueeze(1)

    def walk(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Return the state reached by each token prefix.

        Args:
            prefixes: ``[N, L]`` int64 token ids, right-padded with ``-1``.
        Returns:
            ``[N, 1]`` int64 node ids; ``-1`` where the prefix is not in the trie.
        """
        state = self.initial_state(prefixes.shape[0], prefixes.device)
        for column in prefixes.T:
            stepped = self.step(state, column)
            state = torch.where(column.unsqueeze(1) < 0, state, stepped)
        return state

    def completions(self, state: torch.Tensor) -> torch.Tensor:
        """The docids under each node: ``state`` ``[N, 1]`` int64 node ids (``-1``: none, counts 0) -> ``[N]`` int64."""
        node = state[:, 0]
        return torch.where(node >= 0, self._completions[node.clamp(min=0)], 0)

    def docid(self, state: torch.Tensor) -> torch.Tensor:
        """Map complete states back to docid rows.

        Args:
            state: ``[...]`` int64 node ids (``-1`` allowed).
        Returns:
            ``[...]`` int64 docid rows; ``-1`` where the state is not a complete docid.
        """
        return torch.where(state >= 0, self.leaf_docid[state.clamp(min=0)], -1)

    # ------------------------------------------------------------------ export

    def sequences_matrix(self) -> np.ndarray:
        """Return every docid's token sequence (with ``eos``): ``[num_docids, max_len]`` int64,
        right-padded with ``-1``, row ``i`` = docid ``i``."""
        token = self.token.cpu().numpy()
        parent = _parents(self.child_ptr.cpu()).numpy()
        leaf_docid = self.leaf_docid.cpu().numpy()
        leaves = np.flatnonzero(leaf_docid >= 0)
        leaves = leaves[np.argsort(leaf_docid[leaves])]
        # Climb from every leaf at once: column j holds the token j edges above the leaf.
        columns = []
        node = leaves
        while node.size and (node > 0).any():
            columns.append(np.where(node > 0, token[node], -1))
            node = np.where(node > 0, parent[node], 0)
        if not columns:
            return np.zeros((leaves.size, 0), dtype=np.int64)
        reversed_matrix = np.stack(columns[::-1], axis=1)
        shift = (reversed_matrix < 0).sum(axis=1)
        width = reversed_matrix.shape[1]
        # Rotating each row left by its padding moves the padding to the end.
        gather = (np.arange(width)[None, :] + shift[:, None]) % width
        return np.take_along_axis(reversed_matrix, gather, axis=1)

    def save(self, directory: str | Path) -> None:
        """Write ``trie.npz`` (the three raw arrays) and ``trie.json`` (metadata) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / _ARRAYS_FILE,
            token=self.token.cpu().numpy(),
            child_ptr=self.child_ptr.cpu().numpy(),
            leaf_docid=self.leaf_docid.cpu().numpy(),
        )
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "eos_token_id": self.eos_token_id,
            "num_docids": self.num_docids,
            "num_nodes": self.num_nodes,
            "dense_bytes": self.dense_bytes,
        }
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str = "cpu") -> DocidTrie:
        """Read a trie written by :meth:`save` (no pickle is ever loaded).

        Raises:
            CorruptIndexError: (a ``ValueError``) if the files are missing, not a docid trie of a
                known version, or inconsistent.
        """
        directory = Path(directory)
        try:
            meta = json.loads((directory / _META_FILE).read_text())
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
                raise CorruptIndexError(f"{directory / _META_FILE}: not a {_FORMAT} v{_FORMAT_VERSION} file")
            with np.load(directory / _ARRAYS_FILE, allow_pickle=False) as arrays:
                token = torch.from_numpy(arrays["token"].astype(np.int64))
                child_ptr = torch.from_numpy(arrays["child_ptr"].astype(np.int64))
                leaf_docid = torch.from_numpy(arrays["leaf_docid"].astype(np.int64))
            if token.shape[0] != meta["num_nodes"] or child_ptr.shape[0] != token.shape[0] + 1:
                raise CorruptIndexError(f"{directory / _ARRAYS_FILE}: array sizes disagree with {_META_FILE}")
            trie = cls(
                token,
                child_ptr,
                leaf_docid,
                vocab_size=meta["vocab_size"],
                eos_token_id=meta["eos_token_id"],
                dense_bytes=meta["dense_bytes"],
            )
        except CorruptIndexError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:  # object arrays: ValueError
            raise CorruptIndexError(f"{directory}: unreadable docid trie ({type(e).__name__}: {e})") from None
        return trie.to(device)


class DocidTrieConstraint(Constraint):
    """``Constraint`` adapter of a :class:`DocidTrie`: state width 1 (the node id), ``eos`` is a
    candidate exactly where a docid ends, and the state after it is a leaf (no candidates).

    Args:
        trie: the docid trie.
        device: where the trie's tables live; the beam states must be on the same device.
    """

    state_width = 1

    def __init__(self, trie: DocidTrie, device: torch.device | str | None = None) -> None:
        self.trie = trie if device is None else trie.to(device)

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Return the root state of ``n`` beams: ``[n, 1]`` int64 zeros."""
        return self.trie.initial_state(n, device)

    def candidates(self, state: torch.Tensor) -> Candidates:
        """See :meth:`DocidTrie.candidates`; ``state`` is ``[N, 1]`` int64."""
        return self.trie.candidates(state)

    def completions(self, state: torch.Tensor) -> torch.Tensor:
        """See :meth:`DocidTrie.completions`; ``state`` is ``[N, 1]`` int64."""
        return self.trie.completions(state)

    def docid(self, state: torch.Tensor) -> torch.Tensor:
        """Map ``[..., 1]`` int64 final states to ``[...]`` int64 docid rows (``-1`` if incomplete)."""
        return self.trie.docid(state[..., 0])


# ---------------------------------------------------------------------- array building


def _padded_matrix(
    sequences: Iterable[Sequence[int]] | Iterable[np.ndarray], eos_token_id: int, add_eos: bool
) -> np.ndarray:
    """Validate docid sequences and return them as ``[D, L]`` int64, right-padded with ``-1``."""
    sequences = list(sequences)
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if (lengths == 0).any():
        raise ValueError(f"docid {int(np.flatnonzero(lengths == 0)[0])} has an empty token sequence")
    flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
    if add_eos:
        ends = np.cumsum(lengths)
        flat = np.insert(flat, ends, eos_token_id)
        lengths = lengths + 1
    if (flat < 0).any():
        raise ValueError(f"docid sequences contain a negative token id ({int(flat.min())})")
    rows = np.repeat(np.arange(len(sequences)), lengths)
    last = np.cumsum(lengths) - 1
    bad_end = flat[last] != eos_token_id
    if bad_end.any():
        raise ValueError(
            f"docid {int(np.flatnonzero(bad_end)[0])} does not end with eos={eos_token_id} "
            "(pass add_eos=True to append it)"
        )
    eos_count = np.bincount(rows[flat == eos_token_id], minlength=len(sequences))
    if (eos_count > 1).any():
        raise ValueError(f"docid {int(np.flatnonzero(eos_count > 1)[0])} contains eos={eos_token_id} before its end")
    width = int(lengths.max()) if len(sequences) else 0
    matrix = np.full((len(sequences), width), -1, dtype=np.int64)
    columns = np.arange(flat.size) - np.repeat(last + 1 - lengths, lengths)
    matrix[rows, columns] = flat
    return matrix


def _build_arrays(matrix: np.ndarray, eos_token_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build ``(token, child_ptr, leaf_docid)`` from a ``[D, L]`` padded token matrix.

    Sorting the rows lexicographically makes every trie node the first row of a run of rows
    sharing a prefix, so a node exists at (row, level) iff the row differs from the previous
    one somewhere in columns ``0..level``; numbering those level by level, in row order, gives
    the breadth-first ``(parent, token)`` order.
    """
    n_docs, width = matrix.shape
    order = np.lexsort(matrix.T[::-1]) if n_docs else np.zeros(0, dtype=np.int64)
    rows = matrix[order]
    present = rows >= 0
    differs = np.ones_like(present)
    if n_docs > 1:
        differs[1:] = np.logical_or.accumulate(rows[1:] != rows[:-1], axis=1)
        duplicate = ~differs[1:, -1]
        if duplicate.any():
            r = int(np.flatnonzero(duplicate)[0])
            raise ValueError(f"docids {int(order[r])} and {int(order[r + 1])} have the same token sequence")
    is_new = differs & present
    level_sizes = is_new.sum(axis=0)
    level_start = 1 + np.concatenate([[0], np.cumsum(level_sizes)[:-1]])
    n_nodes = 1 + int(level_sizes.sum())
    token = np.full(n_nodes, -1, dtype=np.int64)
    parent = np.zeros(n_nodes, dtype=np.int64)
    leaf_docid = np.full(n_nodes, -1, dtype=np.int64)
    row_node = np.zeros(n_docs, dtype=np.int64)  # node of each sorted row at the previous level
    for level in range(width):
        new = is_new[:, level]
        node_here = level_start[level] + np.cumsum(new) - 1
        ids = node_here[new]
        token[ids] = rows[new, level]
        parent[ids] = row_node[new]
        ends = new & (rows[:, level] == eos_token_id)
        leaf_docid[node_here[ends]] = order[ends]
        row_node = np.where(present[:, level], node_here, row_node)
    child_ptr = np.ones(n_nodes + 1, dtype=np.int64)
    child_ptr[1:] += np.cumsum(np.bincount(parent[1:], minlength=n_nodes))
    return token, child_ptr, leaf_docid


def _parents(child_ptr: torch.Tensor) -> torch.Tensor:
    """``[n_nodes + 1]`` int64 child pointers -> ``[n_nodes]`` int64 parent ids (root: 0)."""
    n_nodes = child_ptr.shape[0] - 1
    degree = child_ptr[1:] - child_ptr[:-1]
    parent = torch.zeros(n_nodes, dtype=torch.int64, device=child_ptr.device)
    parent[1:] = torch.repeat_interleave(torch.arange(n_nodes, device=child_ptr.device), degree)
    return parent


def _completions(child_ptr: torch.Tensor, parent: torch.Tensor, leaf_docid: torch.Tensor) -> torch.Tensor:
    """``[n_nodes]`` int64 docids under each node (a leaf: 1), summed level by level from the deepest
    up (breadth-first numbering makes each level a contiguous run of node ids)."""
    counts = (leaf_docid >= 0).to(torch.int64)
    levels = [(0, 1)]  # [start, end) of each level's node ids
    while levels[-1][1] > levels[-1][0]:
        start, end = levels[-1]
        levels.append((int(child_ptr[start]), int(child_ptr[end])))
    for start, end in reversed(levels[1:-1]):
        counts.index_add_(0, parent[start:end], counts[start:end].clone())  # parents lie on the level above
    return counts


def _dense_tables(
    token: torch.Tensor, child_ptr: torch.Tensor, parent: torch.Tensor, vocab_size: int, budget: int
) -> tuple[torch.Tensor, int]:
    """Dense ``[n_dense, V]`` int32 child table of the first levels that fit in ``budget`` bytes.

    Breadth-first numbering makes "the first levels" a prefix ``0..n_dense-1`` of node ids.
    Returns the table (``-1`` where no child) and ``n_dense`` (0 if not even the root fits).
    """
    n_dense = 0
    level_end = 1  # the levels taken so far are the nodes 0..level_end-1
    while level_end > n_dense and level_end * vocab_size * 4 <= budget:
        n_dense = level_end
        level_end = int(child_ptr[level_end])  # one past the last child of those levels
    table = torch.full((max(n_dense, 1), vocab_size), -1, dtype=torch.int32, device=token.device)
    children = torch.arange(1, int(child_ptr[n_dense]) if n_dense else 1, device=token.device)
    table[parent[children], token[children]] = children.to(torch.int32)
    return table, n_dense
