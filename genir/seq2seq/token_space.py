"""A seq2seq model that writes text in a pretrained encoder's token space (``model=minilm-tokens``).

A model trained from scratch to write text (SEAL's n-grams) first has to learn a vocabulary, and
on a CPU budget it learns the corpus' language model and ignores its input (README, SEAL). This
recipe removes that work, as the DSI recipe does for docids: training learns a mapping into a
space that already exists.

* **Encoder**: the pretrained encoder (all-MiniLM-L6-v2 by default), frozen, so training computes
  its states once (:func:`genir.seq2seq.fit.fit` with ``frozen_encoder=True``).
* **Decoder**: a BERT decoder of ``decoder_layers`` layers warm-started from the encoder's first
  layers (bert2bert, :func:`genir.seq2seq.model.build_seq2seq`); cross-attention is fresh.
* **Query start**: the decoder is a :class:`~genir.seq2seq.query_start.QueryStartDecoder`, whose
  head adds a map of the pooled query to the decoder's output, fitted as a bag-of-words model of the
  targets before the first step (:func:`~genir.seq2seq.query_start.fit_query_start`, which
  :func:`genir.seq2seq.fit.fit` calls), so the model reads its query from the start.
* **Token table**: the decoder's input embedding and its LM head's weight are one parameter
  ``[V + 2, H]`` (tied), built from the encoder's word-embedding matrix ``[V, H]`` in genir's
  decoder vocabulary (:mod:`genir.seq2seq.vocab`): row ``t >= 2`` is the encoder's row of
  tokenizer id ``t - 2``, row 0 (pad and decoder start) its ``[CLS]`` row, row 1 (eos) its
  ``[SEP]`` row, the tokens a BERT sequence starts and ends with. ``token_table=frozen`` keeps
  the table as it is (the head's bias and transform still train); ``train`` trains it, tied.

Invariants: the table is one ``nn.Parameter`` shared by the input embedding and the head, before
training, after it, and after :func:`genir.seq2seq.model_io.save_seq2seq` /
:func:`~genir.seq2seq.model_io.load_seq2seq` (the decoder config carries
``tie_word_embeddings=True``, so loading ties it again; the safetensors file holds it once and no
code is loaded). With ``frozen`` its ``requires_grad`` is False. The encoder's tokenizer is the
decoder's: an n-gram's output tokens are its tokenizer ids plus two, the ids SEAL's FM-index holds.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn
from transformers import BertLMHeadModel

from genir.encoding.encoder import DEFAULT_ENCODER
from genir.errors import GenirError
from genir.seq2seq.model import BERT2BERT_PREFIX, Seq2Seq, build_seq2seq
from genir.seq2seq.query_start import QueryStartDecoder
from genir.seq2seq.vocab import EOS, FIRST_TOKEN, PAD, TextVocab

#: The ``model`` string that selects this recipe over :data:`~genir.encoding.encoder.DEFAULT_ENCODER`.
TOKEN_SPACE_MODEL = "minilm-tokens"
TokenTable = Literal["frozen", "train"]
TOKEN_TABLES = get_args(TokenTable)
DEFAULT_DECODER_LAYERS = 2


def check_token_table(token_table: str) -> None:
    """Raise :class:`GenirError` unless ``token_table`` is one of :data:`TOKEN_TABLES`."""
    if token_table not in TOKEN_TABLES:
        raise GenirError(f"token_table={token_table!r}: choose one of {', '.join(TOKEN_TABLES)}")


def build_token_space_seq2seq(
    encoder: str = DEFAULT_ENCODER,
    *,
    token_table: str = "frozen",
    decoder_layers: int = DEFAULT_DECODER_LAYERS,
    seed: int = 0,
) -> Seq2Seq:
    """The recipe of the module docstring: a bert2bert model whose decoder writes ``encoder``'s tokens.

    Args:
        encoder: a BERT-style encoder name or path (its tokenizer comes with it).
        token_table: ``frozen`` or ``train`` (module docstring).
        decoder_layers: layers of the decoder, at most the encoder's.
        seed: seeds the fresh weights (cross-attention, the head's transform).
    Returns:
        ``Seq2Seq(EncoderDecoderModel, the encoder's tokenizer)``; its output vocabulary is
        ``TextVocab(tokenizer).size``.
    Raises:
        GenirError: an unknown ``token_table``, or as :func:`~genir.seq2seq.model.build_seq2seq`.
    """
    check_token_table(token_table)
    vocab = TextVocab(encoder)
    built = build_seq2seq(BERT2BERT_PREFIX + encoder, vocab.size, tokenizer=vocab.tokenizer,
                          decoder_layers=decoder_layers, seed=seed)
    words = built.model.get_encoder().get_input_embeddings().weight.detach()  # [V, H]
    tokenizer = built.tokenizer
    if words.shape[0] != len(tokenizer) or tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise GenirError(f"{encoder!r}: its word embeddings ({words.shape[0]} rows) and tokenizer ({len(tokenizer)} "
                         "tokens, [CLS] and [SEP] needed) do not describe one token space")
    table = torch.empty(vocab.size, words.shape[1], dtype=words.dtype)  # [V + 2, H]
    table[PAD], table[EOS] = words[tokenizer.cls_token_id], words[tokenizer.sep_token_id]
    table[FIRST_TOKEN:] = words
    decoder = _query_start_decoder(built.model.get_decoder())
    built.model.decoder = decoder
    decoder.set_input_embeddings(nn.Embedding.from_pretrained(table, freeze=token_table == "frozen"))
    decoder.config.tie_word_embeddings = True
    decoder.tie_weights()  # the head's weight becomes the embedding's parameter
    if not tied_token_table(built.model):
        raise GenirError(f"{type(decoder).__name__} did not tie its LM head to its input embedding")
    decoder.start_query()
    return built


def _query_start_decoder(decoder: BertLMHeadModel) -> QueryStartDecoder:
    """A :class:`QueryStartDecoder` holding ``decoder``'s weights (bert2bert's warm start); its ``M`` is new."""
    query_start = QueryStartDecoder(decoder.config)
    missing, unexpected = query_start.load_state_dict(decoder.state_dict(), strict=False)
    if unexpected or any(not key.startswith("query_map.") for key in missing):
        raise GenirError(f"the decoder's weights do not fit a query-start decoder (missing {missing}, unexpected {unexpected})")
    return query_start


def tied_token_table(model: nn.Module) -> bool:
    """Whether ``model``'s decoder input embedding and LM head weight are one parameter."""
    return model.get_decoder().get_input_embeddings().weight is model.get_output_embeddings().weight
