"""The files of a ``dsi`` / ``se-dsi`` index, written in one place.

An index directory holds, beside its manifest: ``model/`` (the seq2seq model as safetensors,
:func:`genir.seq2seq.model_io.save_seq2seq`), ``tokenizer/`` (the encoder's tokenizer),
``docids/`` (the docid scheme, :meth:`genir.dsi.docids.DocidScheme.save`) and ``trie/`` (the docid
trie over the sequences of every document not deleted, :meth:`genir.kernels.trie.DocidTrie.save`;
trie row ``i`` is the ``i``-th of :meth:`~genir.dsi.docids.DocidScheme.sequences`), and, for an
index whose added rows can be fitted (atomic docids, dense start), ``fit_pairs.json`` (the sample of
training pairs ``genir add --fit`` constrains with, :mod:`genir.dsi.fit_pairs`). ``dsi`` builds,
continual indexing's steps and ``genir add`` write them through :func:`write_dsi_files`;
``genir delete`` writes them all again (the model with the deleted documents' own rows zeroed, or unlearned).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.dsi.docids import DocidScheme
from genir.dsi.fit_pairs import FitPairs
from genir.seq2seq.model_io import save_seq2seq

MODEL_DIR, TOKENIZER_DIR, DOCIDS_DIR, TRIE_DIR = "model", "tokenizer", "docids", "trie"
FILES = (MODEL_DIR, TOKENIZER_DIR, DOCIDS_DIR, TRIE_DIR)


def write_dsi_files(directory: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    scheme: DocidScheme, fit_pairs: FitPairs | None) -> dict[str, Any]:
    """Write model, tokenizer, docid scheme, trie and the sample of fit pairs (when the index keeps one)
    into ``directory`` (a staging directory).

    Returns:
        The manifest statistics they imply: documents, docid vocabulary, longest docid, pairs kept.
    """
    save_seq2seq(model, directory / MODEL_DIR)
    tokenizer.save_pretrained(directory / TOKENIZER_DIR)
    stats = write_docid_files(directory, scheme)
    if fit_pairs is not None:
        fit_pairs.save(directory)
        stats["fit_pairs"] = len(fit_pairs.pairs)
    return stats


def write_docid_files(directory: Path, scheme: DocidScheme) -> dict[str, Any]:
    """Write the docid scheme and the trie of its live documents into ``directory``; their statistics."""
    scheme.save(directory / DOCIDS_DIR)
    scheme.trie().save(directory / TRIE_DIR)
    stats = {"num_docs": scheme.num_live, "docid_vocab": scheme.vocab_size, "docid_max_length": scheme.max_length}
    if scheme.num_live < scheme.num_docs:
        stats["deleted_docids"] = scheme.num_docs - scheme.num_live  # reserved, never given again
    return stats
