"""SE-DSI's elaborative-description docids: each document is named by a short text about it.

A document's docid is a description of it (in SE-DSI, the query a query generator finds most
likely for it, :meth:`genir.views.querygen.QueryGenerator.descriptions`), written in the
:class:`~genir.seq2seq.vocab.TextVocab` of a tokenizer: at most ``max_tokens`` tokens, each
``tokenizer id + 2``, then eos. The decoder thus generates words, which a model can tie to
the words of the query.

Docids must be unique, and descriptions need not be. The rule: documents are named in corpus
order; a document takes its description's tokens if no document has them yet, otherwise the
first free one of ``description + " 2"``, ``description + " 3"``, ... (the suffix's tokens, in the
same vocabulary, appended after the possibly truncated description; an empty description starts
at ``" 2"``). Documents already named are never renamed, so :meth:`~ElaborativeDocids.extend`
keeps every old docid.

Document vectors (optional): a scheme assigned with embeddings keeps each document's row
(``vectors`` ``[num_docs, d]`` float32, by position, deleted documents included, saved in
``docid_scheme.npz``) and then needs embeddings for every document it names later; one assigned
without keeps none. Rescoring adds the query's similarity to them (the dense start,
:mod:`genir.dsi.decoding`).

The descriptions come from :attr:`ElaborativeDocids.describer`, set before :meth:`assign` or
:meth:`extend`; it is code, so it is not saved, and a loaded scheme needs one set again before
it can name new documents (a query generator's ``descriptions`` is one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genir.dsi.docids import Body, Describer, DocidScheme, DocidSettings, SearchMode
from genir.encoding.encoder import DEFAULT_ENCODER
from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.seq2seq.vocab import TextVocab

#: The first disambiguating suffix; the undecorated description is the first candidate.
FIRST_SUFFIX = 2
#: Token limit for a suffix: never reached by a number, so no two suffixes are cut to the same tokens.
_SUFFIX_TOKENS = 64


class ElaborativeDocids(DocidScheme):
    """Docids that are descriptions of the documents, made unique by numeric suffixes.

    Args:
        tokenizer: the name or path of the tokenizer whose vocabulary the docids are written in
            (saved in the configuration; for a model to generate these docids, its decoder
            vocabulary is this tokenizer's :class:`TextVocab`).
        max_tokens: description tokens kept (a suffix may add a few more).
    Attributes:
        describer: gives the descriptions of new documents; None after :meth:`load`.
    """

    name = "elaborative"
    grows_without_training = True  # a new document is named by its description
    needs_describer = True
    can_keep_vectors = True

    def __init__(self, tokenizer: str = DEFAULT_ENCODER, max_tokens: int = 16) -> None:
        super().__init__()
        if not isinstance(tokenizer, str) or not tokenizer:
            raise GenirError(f"elaborative docids need a tokenizer name or path, got {tokenizer!r}")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise GenirError(f"elaborative docids need an integer max_tokens >= 1, got {max_tokens!r}")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.vocab = TextVocab(tokenizer)
        self.describer: Describer | None = None
        self.vectors: np.ndarray | None = None  # [num_docs, d] float32 by position, or None
        # Next suffix to try per description: skips the suffixes already taken (a speed-up only).
        self._next_suffix: dict[Body, int] = {}

    @classmethod
    def from_config(cls, config: DocidSettings) -> ElaborativeDocids:
        """Descriptions of at most ``description_tokens`` tokens, in the default encoder's vocabulary."""
        return cls(max_tokens=config.description_tokens)

    @classmethod
    def search_mode(cls, config: DocidSettings) -> SearchMode:
        """``elaborative_search=rescore``: propose, then rescore; ``beam``: beam search."""
        return SearchMode.RESCORE if config.elaborative_search == "rescore" else SearchMode.BEAM

    @property
    def needs_embeddings(self) -> bool:
        """When the scheme keeps document vectors: every document it names needs its embedding."""
        return self.keeps_vectors

    @property
    def keeps_vectors(self) -> bool:
        return self.vectors is not None

    def config(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "max_tokens": self.max_tokens}

    @property
    def vocab_size(self) -> int:
        return self.vocab.size

    def token_names(self) -> list[str]:
        return self.vocab.token_names()

    def description(self, docid: str) -> str:
        """The docid of ``docid`` as text (description and suffix)."""
        return self.vocab.decode(self.sequence(docid))

    def _extend_bodies(self, docs: list[Document], embeddings: np.ndarray | None) -> list[Body]:
        if self.describer is None:
            raise GenirError(
                "elaborative docids need a describer to name new documents (a loaded scheme has none): "
                "set scheme.describer = query_generator(...).descriptions first"
            )
        descriptions = self.describer(docs)
        if len(descriptions) != len(docs) or not all(isinstance(text, str) for text in descriptions):
            raise GenirError(f"the describer must return one string per document ({len(docs)}), got {descriptions!r:.200}")
        taken = set(self._docid_of)
        bodies: list[Body] = []
        for text in descriptions:
            body = self._unique_body(tuple(self.vocab.encode(text, self.max_tokens)[:-1]), taken)
            taken.add(body)
            bodies.append(body)
        if self.vectors is not None or (embeddings is not None and not self._docids):  # last: a refusal changes nothing
            self._keep_vectors(docs, embeddings)
        return bodies

    def _keep_vectors(self, docs: list[Document], embeddings: np.ndarray | None) -> None:
        if embeddings is None or embeddings.ndim != 2 or embeddings.shape[0] != len(docs) or (
                self.vectors is not None and embeddings.shape[1] != self.vectors.shape[1]):
            raise GenirError(f"these elaborative docids keep document vectors: naming {len(docs)} documents needs their "
                             f"[{len(docs)}, d] embeddings, got {None if embeddings is None else embeddings.shape}")
        rows = np.asarray(embeddings, dtype=np.float32)
        self.vectors = rows if self.vectors is None else np.concatenate([self.vectors, rows])

    def live_vectors(self) -> np.ndarray | None:
        """``[num_live, d]`` float32: the vectors of the live documents in :meth:`sequences` order, or None."""
        if self.vectors is None:
            return None
        return np.delete(self.vectors, self.deleted_positions(), axis=0)

    def _state(self) -> dict[str, Any]:
        return {"vectors": self.vectors is not None}

    def stored_arrays(self, state: dict[str, Any]) -> tuple[str, ...]:
        return ("vectors",) if state.get("vectors") else ()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {} if self.vectors is None else {"vectors": self.vectors}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        vectors = arrays.get("vectors")
        if vectors is not None and (vectors.ndim != 2 or vectors.dtype != np.float32):
            raise GenirError(f"{path}: the document vectors are not a 2-d float32 array")
        self.vectors = vectors

    def _unique_body(self, base: Body, taken: set[Body]) -> Body:
        """``base`` if it is non-empty and free, else ``base`` + the first free suffix " 2", " 3", ..."""
        if base and base not in taken:
            return base
        suffix = self._next_suffix.get(base, FIRST_SUFFIX)
        while (body := base + tuple(self.vocab.encode(f" {suffix}", _SUFFIX_TOKENS)[:-1])) in taken:
            suffix += 1
        self._next_suffix[base] = suffix + 1
        return body

    def _forget(self, rows: list[int], bodies: list[Body], tokens: set[int]) -> None:
        """A deleted document's kept vector (its embedding) becomes a zero row: rows stay positions."""
        if self.vectors is not None:
            self.vectors = self.vectors.copy()
            self.vectors[rows] = 0.0

    def _check_restored(self, path: Path) -> None:
        for _, docid, body in self.live_positions():
            if not body or max(body) >= self.vocab_size:
                raise GenirError(f"{path}: the sequence of document {docid!r} is empty or has a token at or above the vocabulary size {self.vocab_size}")
        if self.vectors is not None and self.vectors.shape[0] != len(self._docids):
            raise GenirError(f"{path}: {self.vectors.shape[0]} document vectors for {len(self._docids)} documents")
