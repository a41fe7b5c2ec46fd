"""Docid schemes: how a seq2seq decoder names each document with a sequence of output tokens.

A scheme owns a compact output vocabulary of its own, the same for every scheme at the bottom:
token ``0`` is padding, ``1`` ends every sequence (eos), ``2..vocab_size-1`` are the scheme's
tokens. ``token_names()`` gives a readable name for each id.

* ``atomic``: one new token per document (``2 + corpus position``), then eos. The vocabulary grows
  with every document.
* ``naive``: DSI's "naive string" docids. Each document's position in assignment order is written
  in decimal, one token per digit (digit ``v`` is token ``2 + v``), then eos. Positions, not the
  collection's own id strings, so that any id works; the vocabulary is fixed at 12.
* ``rq`` and ``semantic``: a code of the document embedding (residual quantization; a k-means
  tree), then the document's own token, every token a vector (:mod:`genir.dsi.coded_docids`).
* ``semantic-digits``: DSI's hierarchical k-means with shared digit tokens (:mod:`genir.dsi.digit_semantic_docids`).
* ``elaborative``: SE-DSI's query-like descriptions (:mod:`genir.dsi.elaborative_docids`).

Docids are given once (:meth:`DocidScheme.assign`) and grown later (:meth:`DocidScheme.extend`,
continual indexing, ``genir add``): a new document never takes an existing docid, and existing
docids never change. :meth:`DocidScheme.delete` removes documents (``genir delete``): their
positions stay reserved, never given again, and a deleted id added again gets a new docid; but
nothing else of a deleted document is kept: its position holds no id and no sequence (a
description, a code are the document's), and the scheme's arrays forget what was its alone
(:meth:`DocidScheme._forget`: a cluster centroid, a codebook entry, a kept vector). Two bodies may be prefixes of one another (naive ``1`` and ``10``); the trailing eos tells
them apart, as it does in the docid trie.

``save(directory)`` writes ``docid_scheme.json`` (the scheme, its configuration, every document id
with its sequence, in corpus order, ``null`` for both at a deleted document's position, and the
positions of deleted documents) and, for schemes with arrays, ``docid_scheme.npz``. Nothing
is pickled; loading checks the files and raises :class:`~genir.errors.GenirError` on any damage.

What a scheme can do is asked of the scheme, never decided by its name elsewhere: its class
attributes and methods (:class:`DocidScheme`) say whether its tokens can carry embeddings
(:attr:`~DocidScheme.has_token_vectors`), whether it needs document embeddings or a describer to
name documents, whether an index grows without training, how it is searched
(:meth:`~DocidScheme.search_mode`) and how a DSI config builds it (:meth:`~DocidScheme.from_config`).

Adding a docid scheme
---------------------
Add one file, ``genir/dsi/<name>_docids.py`` (e.g. ``genir/dsi/prefix_docids.py``), that defines a
:class:`DocidScheme` subclass with a ``name`` class attribute, plus its tests. The class registers
itself under ``name`` when its module is imported, and the registry imports every
``genir/dsi/*_docids.py`` module the first time it is asked (:func:`docid_scheme_class`,
:func:`docid_scheme_names`, :meth:`DocidScheme.load`), so ``docids=<name>`` is accepted by the DSI
config, saved indexes load, and every capability the class declares is used, with no other file
touched. Implement :meth:`~DocidScheme._extend_bodies`, :attr:`~DocidScheme.vocab_size`,
:meth:`~DocidScheme.token_names` and :meth:`~DocidScheme._check_restored`; override
:meth:`~DocidScheme.from_config` if it has settings, and the class attributes and methods of the
capabilities it has (the defaults describe a scheme that has none).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from genir.errors import GenirError
from genir.indexer.artifact import read_json_record
from genir.indexer.collection import Document
from genir.kernels.trie import DocidTrie
from genir.seq2seq.vocab import EOS, FIRST_TOKEN, PAD, SPECIAL_TOKEN_NAMES


class DocidSettings(Protocol):
    """The settings a scheme is built and searched with: the fields of
    :class:`~genir.dsi.config.DSIConfig` that schemes read (the config satisfies this; schemes do not
    import it, since the config validates ``docids`` against their registry)."""

    docids: str
    seed: int
    rq_levels: int
    rq_codes: int
    semantic_levels: int
    semantic_k: int
    description_tokens: int
    atomic_search: str
    elaborative_search: str
    code_beams: int

SCHEME_FILE = "docid_scheme.json"
ARRAYS_FILE = "docid_scheme.npz"
_FORMAT = "genir.docid_scheme"
_FORMAT_VERSION = 1

Body = tuple[int, ...]
"""A docid's tokens without the trailing eos."""

Describer = Callable[[Sequence[Document]], list[str]]
"""Returns one description per document, in order."""

#: Scheme name -> class. Each subclass with a ``name`` registers itself when its module is imported;
#: :func:`_registry` imports every ``*_docids`` module of this package first, so all are known.
_SCHEMES: dict[str, type[DocidScheme]] = {}
_SCHEME_MODULE_SUFFIX = "_docids"


class SearchMode(Enum):
    """How a DSI index is searched (:meth:`DocidScheme.search_mode`; :mod:`genir.dsi.decoding`)."""

    BEAM = "beam"  # constrained beam search over the docid trie: any scheme
    SINGLE_TOKEN = "single-token"  # every document ranked from one or two decoder steps: single_token schemes only
    RESCORE = "rescore"  # candidates proposed from the first step's logits, then scored exactly (SE-DSI)


class DocidScheme(ABC):
    """Names documents with token sequences that end in eos, and maps sequences back to ids.

    Subclasses name new documents in :meth:`_extend_bodies` (and, if the first assignment differs,
    :meth:`_assign_bodies`); the base class checks ids, keeps the two-way map, and stores it.
    The class attributes and the methods under "capabilities" describe what a scheme can do; the
    defaults are those of a scheme that can do none of it (naive docids).
    """

    #: The scheme's registry name: ``docids=`` in a DSI config, ``scheme`` in ``docid_scheme.json``.
    #: A subclass that sets it registers itself (abstract intermediate classes leave it unset).
    name: ClassVar[str]
    #: Names of the arrays a scheme keeps in ``docid_scheme.npz`` (none by default).
    array_names: ClassVar[tuple[str, ...]] = ()

    # -- capabilities ----------------------------------------------------------------------
    #: Whether every output token can carry a vector of the document encoder's space such that the
    #: rows of one docid sum to the document's embedding: then :meth:`token_vectors`,
    #: :meth:`new_token_vectors` and :meth:`position_starts` answer, DSI's ``docid_embeddings`` and
    #: dense start apply, and an index whose rows are embeddings places a new document by its rows.
    has_token_vectors: ClassVar[bool] = False
    #: Whether each docid is one token of the document's own, ``2 + position``, then eos: one
    #: decoder step can rank every document (:attr:`SearchMode.SINGLE_TOKEN`), and a document's
    #: output row is its own (continual ``add+fit``).
    single_token: ClassVar[bool] = False
    #: Whether a new document's docid comes from its content in tokens the model already has (a
    #: k-means path, a description), so :meth:`extend` names it without training and without new
    #: output rows; an unchanged model finds it as well as it generalizes. Schemes without this
    #: place new documents only through :meth:`new_token_vectors`, or only by training.
    grows_without_training: ClassVar[bool] = False
    #: Whether naming documents reads their descriptions from :attr:`describer`, which must be set
    #: before :meth:`assign` or :meth:`extend` (it is code: never saved, None after :meth:`load`).
    needs_describer: ClassVar[bool] = False
    #: Whether the scheme can keep each document's embedding beside its docid (assigned with
    #: embeddings; :meth:`live_vectors`): the document side of rescore's dense term.
    can_keep_vectors: ClassVar[bool] = False
    #: The tokenizer (name or path) whose vocabulary the docids are written in, token = its id + 2;
    #: None for a scheme with tokens of its own.
    tokenizer: str | None = None
    #: Gives the descriptions of new documents (schemes with :attr:`needs_describer`).
    describer: Describer | None = None

    @classmethod
    def from_config(cls, config: DocidSettings) -> DocidScheme:
        """An empty scheme with the settings a DSI config gives it.

        Called on :class:`DocidScheme` it builds the scheme named by ``config.docids`` (raising
        :class:`~genir.errors.GenirError` for an unknown name); called on a subclass, that
        subclass. The default reads no settings: the constructor's defaults.
        """
        if cls is DocidScheme:
            return docid_scheme_class(config.docids).from_config(config)
        return cls()

    @classmethod
    def search_mode(cls, config: DocidSettings) -> SearchMode:
        """How an index of these docids is searched under ``config`` (whose search settings are
        checked by the decoder); :attr:`SearchMode.BEAM` by default."""
        return SearchMode.BEAM

    def step_beams(self, config: DocidSettings) -> list[int]:
        """The most running beams beam search keeps after each of its first steps under ``config``
        (:func:`genir.kernels.beam_search.beam_search`'s ``step_beams``); none narrowed by default."""
        return []

    @property
    def needs_embeddings(self) -> bool:
        """Whether naming documents (:meth:`assign`, :meth:`extend`) needs their embeddings: schemes
        that code them, and schemes that keep document vectors (:attr:`keeps_vectors`)."""
        return False

    @property
    def keeps_vectors(self) -> bool:
        """Whether this scheme holds a vector per document (:meth:`live_vectors`)."""
        return False

    def live_vectors(self) -> np.ndarray | None:
        """``[num_live, d]`` float32: the vectors of the live documents in :meth:`sequences` order, or None."""
        return None

    def token_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """The output row of every token, pad and eos zero (schemes with :attr:`has_token_vectors`).

        Args:
            embeddings: ``[num_docs, dim]`` float32, the documents in assignment order.
        Returns:
            ``[vocab_size, dim]`` float32: the rows of a document's docid sum to its embedding.
        """
        raise GenirError(f"{self.name} docids have no token vectors")

    def new_token_vectors(self, embeddings: np.ndarray, start: int) -> np.ndarray:
        """The output rows of the tokens that :meth:`extend` added for documents ``start..start+n-1``
        (schemes with :attr:`has_token_vectors`), in token order.

        Args:
            embeddings: ``[n, dim]`` float32, those documents' embeddings.
        Returns:
            ``[n, dim]`` float32: each new document's own token's row (its docid's rows sum to its embedding).
        """
        raise GenirError(f"{self.name} docids have no token vectors")

    def position_starts(self) -> list[int] | None:
        """The first token of each docid position, ascending, where position ``p`` only ever holds
        tokens ``[starts[p], starts[p + 1])`` (the dense start's per-position softmax), or None."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            known = _SCHEMES.get(cls.name)
            if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(f"docid scheme name {cls.name!r} is taken by {known.__module__}.{known.__qualname__}")
            _SCHEMES[cls.name] = cls

    def __init__(self) -> None:
        self._docids: list[str | None] = []  # None: a deleted document's reserved position
        self._bodies: list[Body] = []  # () at a deleted document's position
        self._row: dict[str, int] = {}
        self._docid_of: dict[Body, str] = {}
        self._deleted: set[int] = set()  # positions of deleted documents (their docids stay reserved)
        self._max_body = 0

    # -- naming documents ------------------------------------------------------------------
    def assign(self, docs: Sequence[Document], embeddings: np.ndarray | None = None) -> None:
        """Give docids to the first documents.

        Args:
            docs: the corpus, in corpus order.
            embeddings: ``[len(docs), d]`` float32, rows aligned with ``docs``; read by the
                schemes that code embeddings (rq, semantic, semantic-digits) and kept by elaborative
                docids (the dense start of their search), ignored by the others.
        Raises:
            GenirError: docids were already assigned, ``docs`` is empty, or an id repeats.
        """
        if self._docids:
            raise GenirError(f"the {self.name} docids are already assigned ({self.num_docs} documents); use extend() to add documents")
        docs = list(docs)
        ids = self._new_ids(docs)
        if not ids:
            raise GenirError("cannot assign docids to an empty corpus")
        self._commit(ids, self._assign_bodies(docs, embeddings))

    def extend(self, docs: Sequence[Document], embeddings: np.ndarray | None = None) -> None:
        """Give docids to documents added after :meth:`assign`, leaving every old docid as it is.

        Args:
            docs: the new documents, in corpus order.
            embeddings: ``[len(docs), d]`` float32 rows aligned with ``docs`` (as for :meth:`assign`).
        Raises:
            GenirError: nothing was assigned yet, or an id is already named or repeats.
        """
        if not self._docids:
            raise GenirError(f"the {self.name} docids have not been assigned yet; call assign() first")
        docs = list(docs)
        ids = self._new_ids(docs)
        if ids:
            self._commit(ids, self._extend_bodies(docs, embeddings))

    def delete(self, ids: Sequence[str]) -> set[int]:
        """Remove documents: they no longer appear in :meth:`sequences` or :meth:`lookup`, their
        positions stay reserved (never given to another document; a deleted id added again gets a
        new one), and nothing else of them is kept: their ids and sequences are dropped, and the
        scheme's arrays forget what was theirs alone (:meth:`_forget`).

        Returns:
            The tokens whose output rows were the deleted documents' alone, for a scheme whose rows
            are document vectors (:attr:`has_token_vectors`): tokens of their docids that no live
            document's docid has (atomic: each one's token; rq, semantic: its own token and any code
            token only they had); empty for the other schemes (their tokens are shared symbols).
        Raises:
            GenirError: an id is not a (live) document of this scheme, or repeats; nothing changes then.
        """
        rows = []
        for docid in ids:
            row = self._row.get(docid)
            if row is None:
                raise GenirError(f"document id {docid!r} has no {self.name} docid (absent or already deleted)")
            rows.append(row)
        if len(set(rows)) != len(rows):
            raise GenirError("a document id repeats among the ids to delete")
        bodies = [self._bodies[row] for row in rows]
        for docid, row in zip(ids, rows):
            del self._row[docid]
            self._docid_of.pop(self._bodies[row], None)
            self._docids[row], self._bodies[row] = None, ()
            self._deleted.add(row)
        self._max_body = max(map(len, self._bodies), default=0)  # the longest live docid, as a reload finds it
        live_tokens = {t for body in self._bodies for t in body}
        theirs = {t for body in bodies for t in body} - live_tokens
        self._forget(rows, bodies, theirs)
        return theirs if self.has_token_vectors else set()

    def _forget(self, rows: list[int], bodies: list[Body], tokens: set[int]) -> None:
        """Drop from the scheme's arrays what the deleted documents at ``rows`` (whose sequences
        were ``bodies``) alone gave them; ``tokens``: the tokens no live docid has. Nothing by default."""

    def _assign_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        return self._extend_bodies(docs, embeddings)

    @abstractmethod
    def _extend_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        """The bodies of new documents, unique and distinct from every existing body.

        Must validate its input before changing any state, so a failed call changes nothing.
        """

    def _new_ids(self, docs: list[Document]) -> list[str]:
        ids = [doc.id for doc in docs]
        seen: set[str] = set()
        for docid in ids:
            if docid in self._row:
                raise GenirError(f"document id {docid!r} already has a docid")
            if docid in seen:
                raise GenirError(f"document id {docid!r} appears twice among the new documents")
            seen.add(docid)
        return ids

    def _commit(self, ids: list[str], bodies: list[Body]) -> None:
        for docid, body in zip(ids, bodies, strict=True):
            self._row[docid] = len(self._docids)
            self._docids.append(docid)
            self._bodies.append(body)
            self._docid_of[body] = docid
            self._max_body = max(self._max_body, len(body))

    # -- reading the map -------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        """Docids given so far, deleted documents' included (the next position)."""
        return len(self._docids)

    @property
    def num_live(self) -> int:
        """Documents not deleted."""
        return len(self._docids) - len(self._deleted)

    def deleted_positions(self) -> list[int]:
        """Positions (in assignment order) of the deleted documents, ascending."""
        return sorted(self._deleted)

    def position_ids(self) -> list[str | None]:
        """The document id at each position, None at a deleted one's (atomic docid ``2 + i`` is position ``i``)."""
        return list(self._docids)

    def live_positions(self) -> list[tuple[int, str, Body]]:
        """``(position, document id, body)`` of every live document, in assignment order."""
        return [(i, docid, body) for i, (docid, body) in enumerate(zip(self._docids, self._bodies)) if docid is not None]

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Output vocabulary size: every token of every sequence is below it."""

    @abstractmethod
    def token_names(self) -> list[str]:
        """A readable name for each output id ``0..vocab_size-1``."""

    @property
    def max_length(self) -> int:
        """Tokens in the longest sequence, eos included: the decoder's generation length."""
        return self._max_body + 1

    def sequence(self, docid: str) -> list[int]:
        """The tokens that name ``docid``, ending with eos."""
        row = self._row.get(docid)
        if row is None:
            raise GenirError(f"document id {docid!r} has no {self.name} docid")
        return [*self._bodies[row], EOS]

    def sequences(self) -> dict[str, list[int]]:
        """Every document id (deleted ones left out) -> its tokens (ending with eos), in corpus order."""
        return {docid: [*body, EOS] for i, (docid, body) in enumerate(zip(self._docids, self._bodies)) if i not in self._deleted}

    def trie(self) -> DocidTrie:
        """The trie of the live documents' sequences: its row ``i`` is the ``i``-th of :meth:`sequences`."""
        return DocidTrie.from_sequences(list(self.sequences().values()), eos_token_id=EOS, vocab_size=self.vocab_size)

    def lookup(self, tokens: Iterable[int]) -> str | None:
        """The document named by a generated sequence, or None if it names none.

        ``tokens`` may end with eos or not, and may carry trailing padding after it (a decoded
        beam), e.g. ``[5, 3, 1, 0, 0]``.
        """
        body = [int(t) for t in tokens]
        while body and body[-1] == PAD:
            body.pop()
        if body and body[-1] == EOS:
            body.pop()
        docid = self._docid_of.get(tuple(body))
        row = self._row.get(docid) if docid is not None else None
        return docid if row is not None and self._bodies[row] == tuple(body) else None  # None for a deleted docid

    # -- persistence -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild an empty scheme like this one."""
        return {}

    def _state(self) -> dict[str, Any]:
        """Scheme state beyond the docids, as JSON."""
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        """Scheme state as arrays, named by :attr:`array_names`."""
        return {}

    def stored_arrays(self, state: dict[str, Any]) -> tuple[str, ...]:
        """The arrays a saved scheme with ``state`` (its :meth:`_state`) has: :attr:`array_names`."""
        return self.array_names

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        """Set the state written by :meth:`_state` and :meth:`_arrays` (before the docids)."""

    @abstractmethod
    def _check_restored(self, path: Path) -> None:
        """Raise GenirError if the loaded docids are not ones this scheme could have given.

        This includes a token at or above ``vocab_size``: only types and eos are checked before.
        """

    def save(self, directory: str | Path) -> None:
        """Write ``docid_scheme.json`` (and ``docid_scheme.npz`` if the scheme has arrays)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        record = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "scheme": self.name,
            "config": self.config(),
            "vocab_size": self.vocab_size,
            "state": self._state(),
            "docids": self._docids,
            "sequences": [None if docid is None else [*body, EOS] for docid, body in zip(self._docids, self._bodies)],
            "deleted": sorted(self._deleted),
        }
        (directory / SCHEME_FILE).write_text(json.dumps(record), encoding="utf-8")
        arrays = self._arrays()
        if arrays:
            np.savez(directory / ARRAYS_FILE, **arrays)

    @classmethod
    def load(cls, directory: str | Path) -> DocidScheme:
        """Read a scheme written by :meth:`save`.

        Called on :class:`DocidScheme` it returns whichever scheme the directory holds; called
        on a subclass it also checks that the directory holds that scheme.
        """
        path = Path(directory) / SCHEME_FILE
        record = _read_record(path)
        try:
            scheme_class = docid_scheme_class(record["scheme"])
        except GenirError as e:
            raise GenirError(f"{path}: {e}") from None
        if cls is not DocidScheme and scheme_class is not cls:
            raise GenirError(f"{path}: holds {record['scheme']} docids, not {cls.name}")
        try:
            scheme = scheme_class(**record["config"])
        except (TypeError, GenirError) as e:
            raise GenirError(f"{path}: bad {record['scheme']} configuration {record['config']!r}: {e}") from None
        scheme._restore(record["state"], _read_arrays(Path(directory) / ARRAYS_FILE, scheme.stored_arrays(record["state"])), path)
        scheme._restore_docids(record["docids"], record["sequences"], record.get("deleted", []), path)
        scheme._check_restored(path)
        if scheme.vocab_size != record["vocab_size"]:
            raise GenirError(f"{path}: vocab_size {record['vocab_size']!r} does not match the docids (expected {scheme.vocab_size})")
        return scheme

    def _restore_docids(self, docids: list[Any], sequences: list[Any], deleted: Any, path: Path) -> None:
        if len(docids) != len(sequences):
            raise GenirError(f"{path}: {len(docids)} document ids but {len(sequences)} sequences")
        if not (isinstance(deleted, list) and all(type(i) is int and 0 <= i < len(docids) for i in deleted)
                and len(set(deleted)) == len(deleted)):
            raise GenirError(f"{path}: 'deleted' is not a list of distinct positions below {len(docids)}")
        gone = set(deleted)
        bodies: list[Body] = []
        for i, (docid, seq) in enumerate(zip(docids, sequences)):
            if i in gone:  # written without its id and sequence (an older index kept them: dropped here)
                if not ((docid is None and seq is None) or isinstance(docid, str)):
                    raise GenirError(f"{path}: the deleted position {i} holds {docid!r}")
                bodies.append(())
                continue
            if not isinstance(docid, str) or not docid:
                raise GenirError(f"{path}: document id {docid!r} is not a non-empty string")
            if not isinstance(seq, list) or not seq or seq[-1] != EOS:
                raise GenirError(f"{path}: the sequence of document {docid!r} does not end with eos ({EOS})")
            body = seq[:-1]
            if not all(isinstance(t, int) and not isinstance(t, bool) and t >= FIRST_TOKEN for t in body):
                raise GenirError(f"{path}: the sequence of document {docid!r} has a token that is not a docid token: {seq}")
            bodies.append(tuple(body))
        live = [docid for i, docid in enumerate(docids) if i not in gone]
        if len(set(live)) != len(live):
            raise GenirError(f"{path}: a document id appears twice")
        if len(set(b for i, b in enumerate(bodies) if i not in gone)) != len(live):
            raise GenirError(f"{path}: two documents share a sequence")
        for i, (docid, body) in enumerate(zip(docids, bodies)):
            if i in gone:
                self._docids.append(None)
                self._bodies.append(())
            else:
                self._commit([docid], [body])
        self._max_body = max((len(b) for b in bodies), default=0)
        self._deleted = gone


class AtomicDocids(DocidScheme):
    """One output token per document: ``[2 + corpus position, eos]``.

    ``vocab_size`` is ``2 + num_docs`` and grows with :meth:`extend`, so a model trained on these
    docids needs its output layer grown with them. A document's token vector is its embedding.
    """

    name = "atomic"
    has_token_vectors = True
    single_token = True

    @classmethod
    def search_mode(cls, config: DocidSettings) -> SearchMode:
        """``atomic_search=first`` or ``exact``: single-token search; ``beam``: beam search."""
        return SearchMode.BEAM if config.atomic_search == "beam" else SearchMode.SINGLE_TOKEN

    def token_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        rows = np.zeros((self.vocab_size, embeddings.shape[1]), dtype=np.float32)
        rows[FIRST_TOKEN:] = embeddings
        return rows

    def new_token_vectors(self, embeddings: np.ndarray, start: int) -> np.ndarray:
        return np.asarray(embeddings, dtype=np.float32)

    def position_starts(self) -> list[int]:
        """One position, the document tokens."""
        return [FIRST_TOKEN]

    @property
    def vocab_size(self) -> int:
        return FIRST_TOKEN + self.num_docs

    def token_names(self) -> list[str]:
        return SPECIAL_TOKEN_NAMES + [f"<doc:{docid or '(deleted)'}>" for docid in self._docids]

    def _extend_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        return [(FIRST_TOKEN + self.num_docs + i,) for i in range(len(docs))]

    def _check_restored(self, path: Path) -> None:
        for position, docid, body in self.live_positions():
            if body != (FIRST_TOKEN + position,):
                raise GenirError(f"{path}: document {docid!r} at position {position} does not have the atomic docid {FIRST_TOKEN + position}")


def decimal_body(position: int) -> Body:
    """The naive docid of the document at ``position``: one token (``2 + digit``) per digit."""
    return tuple(FIRST_TOKEN + int(digit) for digit in str(position))


class NaiveDocids(DocidScheme):
    """DSI's naive string docids: the assignment position in decimal digits, then eos.

    Position 0 is ``[2, eos]``, position 305 is ``[5, 2, 7, eos]``; :meth:`extend` continues the
    numbering. The vocabulary is always the ten digit tokens plus pad and eos.
    """

    name = "naive"

    @property
    def vocab_size(self) -> int:
        return FIRST_TOKEN + 10

    def token_names(self) -> list[str]:
        return SPECIAL_TOKEN_NAMES + [str(digit) for digit in range(10)]

    def _extend_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        return [decimal_body(self.num_docs + i) for i in range(len(docs))]

    def _check_restored(self, path: Path) -> None:
        for position, docid, body in self.live_positions():
            if body != decimal_body(position):
                raise GenirError(f"{path}: document {docid!r} at position {position} does not have the naive docid {position}")


def _registry() -> dict[str, type[DocidScheme]]:
    """Every scheme, by name: the ``*_docids`` modules of this package are imported (once; importing
    one registers its classes), so a scheme is known wherever any is asked for."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith(_SCHEME_MODULE_SUFFIX):
            importlib.import_module(f"{__package__}.{module.name}")
    return _SCHEMES


def docid_scheme_class(name: str) -> type[DocidScheme]:
    """The scheme registered as ``name`` (``docids=`` of a DSI config).

    Raises:
        GenirError: no scheme has that name; the message lists those that do.
    """
    schemes = _registry()
    if name not in schemes:
        raise GenirError(f"unknown docid scheme {name!r} (known: {', '.join(sorted(schemes))})")
    return schemes[name]


def docid_scheme_names(where: Callable[[type[DocidScheme]], bool] = lambda scheme: True) -> list[str]:
    """The names of the registered schemes for which ``where`` holds, sorted."""
    return sorted(name for name, scheme in _registry().items() if where(scheme))


def either(names: Sequence[str]) -> str:
    """Names as a message lists alternatives: ``"a"``, ``"a or b"``, ``"a, b or c"``."""
    return " or ".join(filter(None, (", ".join(names[:-1]), names[-1]))) if names else "none"


def load_docid_scheme(directory: str | Path) -> DocidScheme:
    """Load whichever docid scheme ``directory`` holds (dispatching on its ``scheme`` field)."""
    return DocidScheme.load(directory)


def new_docid_scheme(name: str, **options: Any) -> DocidScheme:
    """An empty scheme of the named kind (:func:`docid_scheme_names`), built with ``options`` (its
    constructor's arguments; the defaults otherwise)."""
    return docid_scheme_class(name)(**options)


def _read_record(path: Path) -> dict[str, Any]:
    record = read_json_record(path, _FORMAT, _FORMAT_VERSION, "docid scheme")
    expected = {"scheme": str, "config": dict, "state": dict, "docids": list, "sequences": list, "vocab_size": int}
    for key, kind in expected.items():
        if not isinstance(record.get(key), kind):
            raise GenirError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    return record


def _read_arrays(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not names:
        return {}
    if not path.is_file():
        raise GenirError(f"{path}: no such file (the docid scheme's arrays are missing)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            missing = [name for name in names if name not in stored.files]
            if missing:
                raise GenirError(f"{path}: missing array(s) {', '.join(missing)}")
            return {name: stored[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GenirError(f"{path}: unreadable arrays ({e})") from None
