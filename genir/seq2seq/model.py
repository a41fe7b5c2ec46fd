"""Seq2seq models whose decoder speaks only the docid vocabulary.

The encoder reads text with its own tokenizer; the decoder's input embeddings and LM head are
sized to a docid scheme's compact output vocabulary (pad ``0``, eos ``1``, decoder start ``0``,
see :mod:`genir.seq2seq.vocab`). Three kinds of ``model`` strings are understood:

* ``"t5-config:NAME"``: a T5 built in code from :data:`T5_CONFIGS` (no download). The encoder
  vocabulary is the given tokenizer's.
* ``"bert2bert:NAME_OR_PATH"``, or the name/path of any encoder-only checkpoint (BERT, MiniLM):
  an ``EncoderDecoderModel`` with the pretrained encoder and a small BERT decoder (see
  :func:`_bert_decoder` for its initialization).
* any other Hugging Face seq2seq name or path (``AutoModelForSeq2SeqLM``): pretrained weights,
  with the decoder input embeddings and LM head replaced by fresh ones of the docid vocabulary.

Output embeddings may start from given vectors (``docid_embeddings``), e.g. document embeddings
averaged per docid token; see :func:`init_output_embeddings`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.errors import GenirError
from genir.seq2seq.dense_start import POSITIONS_KEY, DenseStartDecoder, is_dense_start, set_dense_rows
from genir.seq2seq.vocab import DECODER_START, EOS, FIRST_TOKEN, PAD, load_tokenizer

T5_PREFIX = "t5-config:"
BERT2BERT_PREFIX = "bert2bert:"

#: Built-in T5 sizes. ``small`` (the default for DSI on 2 CPU cores): d_model 256, d_ff 1024,
#: 4 heads of 64, 4 encoder + 2 decoder layers; 5.2M parameters, plus 256 per encoder token and
#: 512 per docid token (decoder embedding + LM head): 13.5M with T5's 32,100-token vocabulary.
#: ``tiny`` (d_model 32, 2 + 2 layers) is for tests.
T5_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2},
    "small": {"d_model": 256, "d_ff": 1024, "d_kv": 64, "num_heads": 4, "num_layers": 4, "num_decoder_layers": 2},
    "base": {"d_model": 512, "d_ff": 2048, "d_kv": 64, "num_heads": 8, "num_layers": 6, "num_decoder_layers": 6},
}


class Seq2Seq(NamedTuple):
    """A built model and the tokenizer its encoder reads with."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def build_seq2seq(
    model: str,
    output_vocab_size: int,
    *,
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    config_overrides: dict[str, Any] | None = None,
    decoder_layers: int = 2,
    docid_embeddings: np.ndarray | None = None,
    dense_start: bool = False,
    position_starts: list[int] | None = None,
    seed: int = 0,
) -> Seq2Seq:
    """Build a seq2seq model whose decoder emits ``output_vocab_size`` docid tokens.

    Args:
        model: ``"t5-config:NAME"`` (NAME in :data:`T5_CONFIGS`), ``"bert2bert:NAME_OR_PATH"``
            or an encoder-only checkpoint, or a Hugging Face seq2seq name or path (see module doc).
        output_vocab_size: the docid scheme's ``vocab_size`` (pad 0, eos 1, scheme tokens above).
        tokenizer: the encoder's tokenizer (object, or name/path). Required for ``t5-config:``;
            defaults to the checkpoint's own tokenizer otherwise.
        config_overrides: T5Config fields that replace the built-in size (``t5-config:`` only),
            e.g. ``{"dropout_rate": 0.0}``.
        decoder_layers: layers of the fresh BERT decoder (``bert2bert`` only).
        docid_embeddings: ``[output_vocab_size, d]`` float; initial output-token vectors.
        dense_start: the decoder's head is the dense start (:mod:`genir.seq2seq.dense_start`;
            ``bert2bert`` only): ``docid_embeddings`` become the LM head's rows as they are.
        position_starts: the first token of each docid position (dense start only), so each
            position's softmax is over its own tokens.
        seed: seeds the fresh weights, so a build is reproducible.
    Returns:
        ``Seq2Seq(model, tokenizer)``; the model's config and generation config carry pad 0,
        eos 1 and decoder start 0.
    Raises:
        GenirError: unknown model name/path or built-in size, missing tokenizer, or
            ``docid_embeddings`` of the wrong shape.
    """
    if output_vocab_size <= EOS:
        raise GenirError(f"the output vocabulary needs pad and eos at least, got size {output_vocab_size}")
    torch.manual_seed(seed)
    if model.startswith(T5_PREFIX):
        if dense_start:
            raise GenirError(f"the dense start needs a pretrained encoder whose pooled states are query vectors, not {model!r}")
        if tokenizer is None:
            raise GenirError(f"{model!r} builds a T5 from scratch and needs a tokenizer for its encoder")
        tok = load_tokenizer(tokenizer)
        built = _t5_from_config(model[len(T5_PREFIX):], len(tok), output_vocab_size, config_overrides or {})
    else:
        from genir.encoding.encoder import resolve_model

        name = model.removeprefix(BERT2BERT_PREFIX)
        path = resolve_model(name)
        config = _load_config(path, model)
        tok = load_tokenizer(tokenizer if tokenizer is not None else path)
        if model.startswith(BERT2BERT_PREFIX) or not config.is_encoder_decoder:
            built = _bert2bert(path, output_vocab_size, decoder_layers, dense_start, position_starts)
        elif dense_start:
            raise GenirError(f"the dense start needs a bert2bert model (a pretrained encoder and a BERT decoder), not {model!r}")
        else:
            built = _pretrained_seq2seq(path, output_vocab_size)
    _set_special_tokens(built)
    if docid_embeddings is not None:
        init_output_embeddings(built, docid_embeddings, seed)
    return Seq2Seq(built, tok)


def _load_config(path: str, model: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise GenirError(
            f"cannot load model {model!r}: not a Hugging Face model name or directory "
            f"(or a built-in '{T5_PREFIX}NAME', NAME one of {sorted(T5_CONFIGS)}): {e}"
        ) from None


def _t5_from_config(size: str, input_vocab_size: int, output_vocab_size: int, overrides: dict[str, Any]) -> PreTrainedModel:
    """A fresh T5 whose shared embedding reads ``input_vocab_size`` tokens and decoder writes docids."""
    from transformers import T5Config, T5ForConditionalGeneration

    if size not in T5_CONFIGS:
        raise GenirError(f"unknown built-in T5 size {size!r}; choose one of {sorted(T5_CONFIGS)}")
    fields = {**T5_CONFIGS[size], **overrides}
    # Built with the encoder vocabulary, untied, then the decoder side is swapped for docids.
    config = T5Config(vocab_size=input_vocab_size, tie_word_embeddings=False, **fields)
    model = T5ForConditionalGeneration(config)
    replace_decoder_vocab(model, output_vocab_size)
    # T5 initializes an untied LM head at std 1: over RMS-normed hidden states that gives logits
    # of std ~sqrt(d_model) and a first loss several times log(V), which costs a CPU-sized run
    # most of its steps to unlearn. A tied T5 scales the decoder output by d_model**-0.5 instead;
    # start the head at that scale.
    nn.init.normal_(model.get_output_embeddings().weight, std=config.d_model ** -0.5)
    return model


def _pretrained_seq2seq(path: str, output_vocab_size: int) -> PreTrainedModel:
    from transformers import AutoModelForSeq2SeqLM

    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise GenirError(f"cannot load seq2seq model {path!r}: {e}") from None
    replace_decoder_vocab(model, output_vocab_size)
    return model


def replace_decoder_vocab(model: PreTrainedModel, output_vocab_size: int) -> None:
    """Give the decoder fresh input embeddings and LM head of ``output_vocab_size`` rows.

    The encoder keeps its (possibly shared) embedding. ``config.vocab_size`` becomes the decoder's
    vocabulary, since losses (BART's) reshape logits by it.
    """
    decoder = model.get_decoder()
    old_embed, old_head = decoder.get_input_embeddings(), model.get_output_embeddings()
    d_model = old_head.in_features
    embed = nn.Embedding(output_vocab_size, d_model)
    head = nn.Linear(d_model, output_vocab_size, bias=False)
    # Each new matrix starts at the scale the architecture gave the one it replaces.
    nn.init.normal_(embed.weight, std=float(old_embed.weight.detach().std()))
    nn.init.normal_(head.weight, std=float(old_head.weight.detach().std()))
    decoder.embed_tokens = embed
    model.set_output_embeddings(head)
    if hasattr(model, "final_logits_bias"):  # BART-style models add a bias per output token
        model.register_buffer("final_logits_bias", torch.zeros((1, output_vocab_size)))
    model.config.tie_word_embeddings = False
    model.config.vocab_size = output_vocab_size


def _bert2bert(path: str, output_vocab_size: int, decoder_layers: int, dense_start: bool,
               position_starts: list[int] | None) -> PreTrainedModel:
    from transformers import AutoModel, EncoderDecoderModel

    try:
        encoder = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise GenirError(f"cannot load encoder {path!r}: {e}") from None
    decoder = _bert_decoder(encoder, output_vocab_size, decoder_layers, dense_start, position_starts)
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    if dense_start:
        model.get_decoder().start_dense()
    return model


def _bert_decoder(encoder: PreTrainedModel, output_vocab_size: int, layers: int, dense_start: bool = False,
                  position_starts: list[int] | None = None) -> PreTrainedModel:
    """A BERT decoder of ``layers`` layers over the docid vocabulary, warm-started from ``encoder``.

    Initialization (bert2bert, Rothe et al. 2020): decoder layer ``i`` copies encoder layer ``i``'s
    self-attention and feed-forward weights; cross-attention is fresh (BERT's normal(0, 0.02));
    position and token-type embeddings and their LayerNorm are copied; word embeddings and the
    LM head are fresh, over the docid vocabulary. With ``dense_start`` the head is a
    :class:`~genir.seq2seq.dense_start.DenseStartDecoder`'s.
    """
    from transformers import BertConfig, BertLMHeadModel

    enc = encoder.config
    if not hasattr(encoder, "embeddings") or not hasattr(getattr(encoder, "encoder", None), "layer"):
        raise GenirError(f"bert2bert needs a BERT-style encoder (embeddings + encoder.layer), got {type(encoder).__name__}")
    if layers > enc.num_hidden_layers:
        raise GenirError(f"the decoder cannot have more layers ({layers}) than the encoder ({enc.num_hidden_layers})")
    config = BertConfig(
        vocab_size=output_vocab_size,
        hidden_size=enc.hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=enc.num_attention_heads,
        intermediate_size=enc.intermediate_size,
        hidden_act=enc.hidden_act,
        max_position_embeddings=enc.max_position_embeddings,
        type_vocab_size=getattr(enc, "type_vocab_size", 2),
        layer_norm_eps=enc.layer_norm_eps,
        is_decoder=True,
        add_cross_attention=True,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )
    if position_starts:
        config.update({POSITIONS_KEY: list(position_starts)})
    decoder = DenseStartDecoder(config) if dense_start else BertLMHeadModel(config)
    source = encoder.embeddings
    target = decoder.bert.embeddings
    for name in ("position_embeddings", "token_type_embeddings", "LayerNorm"):
        if hasattr(source, name):
            getattr(target, name).load_state_dict(getattr(source, name).state_dict())
    for i in range(layers):
        # strict=False: the decoder layer also has cross-attention, which stays fresh.
        missing, unexpected = decoder.bert.encoder.layer[i].load_state_dict(encoder.encoder.layer[i].state_dict(), strict=False)
        if unexpected or any(not key.startswith("crossattention.") for key in missing):
            raise GenirError(f"encoder layer {i} does not fit a BERT decoder layer (missing {missing}, unexpected {unexpected})")
    return decoder


def _set_special_tokens(model: PreTrainedModel) -> None:
    """Pad 0, eos 1 and decoder start 0 on the config and the generation config."""
    for config in (model.config, model.generation_config):
        config.pad_token_id = PAD
        config.eos_token_id = EOS
        config.decoder_start_token_id = DECODER_START
    model.generation_config.bos_token_id = None


def output_embedding_layers(model: PreTrainedModel) -> tuple[nn.Embedding, nn.Linear]:
    """The decoder's input embedding and LM head, both ``[output_vocab_size, d_model]``."""
    return model.get_decoder().get_input_embeddings(), model.get_output_embeddings()


def init_output_embeddings(model: PreTrainedModel, vectors: np.ndarray, seed: int = 0) -> None:
    """Start the decoder's input embedding and LM head rows from ``vectors``.

    Args:
        model: a model built by :func:`build_seq2seq`.
        vectors: ``[output_vocab_size, d]`` float. If ``d`` differs from the model's width, rows
            are mapped by a fixed random Gaussian projection ``[d, d_model]`` (seeded by ``seed``;
            it keeps inner products in expectation, so similar documents stay similar). Each row
            is then rescaled to the mean norm of the fresh rows, so training starts at the usual
            scale. Rows that are all zero (e.g. pad, eos) keep their fresh initialization. A
            dense-start head (:func:`~genir.seq2seq.dense_start.is_dense_start`) takes every row
            as it is instead (pad and eos rows zero), the input embedding as above.
    Raises:
        GenirError: ``vectors`` has the wrong number of rows or is not 2-d.
    """
    embed, head = output_embedding_layers(model)
    rows, d_model = embed.weight.shape
    if vectors.ndim != 2 or vectors.shape[0] != rows:
        raise GenirError(f"docid embeddings must be [{rows}, d] (one row per output token), got {list(vectors.shape)}")
    values = _to_model_width(vectors, d_model, seed)  # [V, d_model]
    norms = values.norm(dim=1, keepdim=True)  # [V, 1]
    given = norms.squeeze(1) > 0
    dense = is_dense_start(model)
    if dense:
        set_dense_rows(model, torch.as_tensor(np.asarray(vectors, dtype=np.float32)))
    with torch.no_grad():
        for weight in (embed.weight,) if dense else (embed.weight, head.weight):
            scale = weight.norm(dim=1).mean()
            weight[given] = (values[given] / norms[given] * scale).to(weight.dtype)


def _to_model_width(vectors: np.ndarray, d_model: int, seed: int) -> torch.Tensor:
    """``[n, d]`` vectors as ``[n, d_model]`` float32: a fixed seeded Gaussian projection if ``d != d_model``."""
    values = torch.as_tensor(np.asarray(vectors, dtype=np.float32))  # [n, d]
    if values.shape[1] != d_model:
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(values.shape[1], d_model, generator=generator) / d_model**0.5  # [d, d_model]
        values = values @ projection
    return values


def freeze_encoder(model: PreTrainedModel) -> nn.Module:
    """Stop training ``model``'s encoder (in place) and return it, in eval mode.

    A frozen encoder computes the same states for a text at every epoch, so training can compute
    them once (:class:`genir.seq2seq.training.Seq2SeqDataModule` with ``encoder=``) and spend its
    steps on the decoder alone. It also keeps a pretrained encoder's representations intact,
    which the decoder can then read from the first step (see the README's DSI recipe).
    """
    encoder = model.get_encoder()
    encoder.requires_grad_(False)
    return encoder.eval()


def freeze_output_embeddings(model: PreTrainedModel) -> None:
    """Keep the LM head's rows (e.g. document embeddings, atomic docids) fixed during training.

    A dense-start head's biases are frozen with its rows (at zero): a bias per document would learn
    which documents the training queries ask for, a prior that favours them over the documents
    later queries need.
    """
    head = model.get_output_embeddings()
    head.weight.requires_grad_(False)
    if is_dense_start(model) and head.bias is not None:
        head.bias.requires_grad_(False)


def zero_output_rows(model: PreTrainedModel, tokens: list[int]) -> None:
    """Set the decoder's input-embedding row, LM-head row and LM-head bias of each of ``tokens`` to
    zero (in place): a deleted document's own docid token, whose rows were its embedding (or were
    trained from it) and are its alone. The vocabulary keeps its size (positions stay reserved)."""
    if not tokens:
        return
    rows = torch.tensor(sorted(tokens), dtype=torch.int64)
    embed, head = output_embedding_layers(model)
    with torch.no_grad():
        embed.weight[rows] = 0
        head.weight[rows] = 0
        if getattr(head, "bias", None) is not None:
            head.bias[rows] = 0
        bias = getattr(getattr(model.get_decoder(), "cls", None), "predictions", None)
        if bias is not None and getattr(bias, "bias", None) is not None and bias.bias is not getattr(head, "bias", None):
            bias.bias[rows] = 0  # a BERT decoder keeps the head's bias as a parameter of its own too


def grow_output_vocab(model: PreTrainedModel, vocab_size: int, vectors: np.ndarray | None = None, seed: int = 0) -> None:
    """Add output tokens (new atomic docids) to the decoder; every existing row stays as it is.

    New rows of the decoder's input embedding and LM head start where a new document is best
    guessed to be:

    * with ``vectors`` (document embeddings, as ``init_output_embeddings`` takes them): through the
      same seeded projection, rescaled to the mean norm of the current docid rows (tokens 2 and
      up), so a new document starts near the old documents it resembles, at the trained scale;
    * without: the mean of the current docid rows plus Gaussian noise of their per-dimension
      spread, so a new token starts as likely as a typical old one, and distinct from the others;
    * a dense-start head's rows (:mod:`genir.seq2seq.dense_start`) are ``vectors`` as they are,
      as a build sets them.

    Args:
        model: a model built by :func:`build_seq2seq` (in place).
        vocab_size: the new output vocabulary size (at least the current one).
        vectors: ``[vocab_size - current, d]`` float, one row per new token; None for the mean.
        seed: seeds the projection (use the one the model was built with) and the noise.
    Raises:
        GenirError: a smaller vocabulary, ``vectors`` of the wrong shape, or no docid rows to start from.
    """
    embed, head = output_embedding_layers(model)
    old, d_model = embed.weight.shape
    added = vocab_size - old
    if added < 0:
        raise GenirError(f"the output vocabulary cannot shrink (from {old} to {vocab_size} tokens)")
    if vectors is not None and (vectors.ndim != 2 or vectors.shape[0] != added):
        raise GenirError(f"expected [{added}, d] vectors for the {added} new output tokens, got {list(vectors.shape)}")
    if added == 0:
        return
    if old <= FIRST_TOKEN:
        raise GenirError("the model has no docid tokens yet to start new ones from")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model.config.model_type == "encoder-decoder":
            _grow_bert_decoder(model, vocab_size)
        else:
            replace_decoder_vocab(model, vocab_size)
        noise = torch.randn(added, d_model)  # [added, d_model]
    new_embed, new_head = output_embedding_layers(model)
    dense = is_dense_start(model) and vectors is not None
    with torch.no_grad():
        for before, after in ((embed.weight, new_embed.weight), (head.weight, new_head.weight)):
            after[:old] = before
            if dense and after is new_head.weight:  # a dense-start head takes its rows as they are
                set_dense_rows(model, torch.as_tensor(np.asarray(vectors, dtype=np.float32)), slice(old, None))
                continue
            docid_rows = before[FIRST_TOKEN:]  # [old - 2, d_model]
            if vectors is not None:
                values = _to_model_width(vectors, d_model, seed)  # [added, d_model]
                scale = docid_rows.norm(dim=1).mean()
                after[old:] = (values / values.norm(dim=1, keepdim=True).clamp_min(1e-12) * scale).to(after.dtype)
            else:
                spread = docid_rows.std(dim=0, unbiased=False) if len(docid_rows) > 1 else docid_rows.abs().mean().expand(d_model)
                after[old:] = (docid_rows.mean(dim=0) + noise * spread).to(after.dtype)


def _grow_bert_decoder(model: PreTrainedModel, vocab_size: int) -> None:
    """Give a bert2bert model's BERT decoder ``vocab_size`` output tokens (its word embeddings, LM head
    and the head's bias; the old rows copied). New biases start at the mean docid bias; the caller
    sets the new rows. (:func:`replace_decoder_vocab` does not fit BERT, whose word embeddings sit in
    ``bert.embeddings`` and whose vocabulary size is the decoder config's.)"""
    decoder = model.get_decoder()
    old_embed, old_head = decoder.get_input_embeddings(), decoder.get_output_embeddings()
    old, d_model = old_embed.weight.shape
    embed = nn.Embedding(vocab_size, d_model, padding_idx=old_embed.padding_idx)
    head = nn.Linear(d_model, vocab_size, bias=True)
    with torch.no_grad():
        embed.weight[:old] = old_embed.weight
        head.weight[:old] = old_head.weight
        bias = old_head.bias if old_head.bias is not None else torch.zeros(old)
        head.bias[:old] = bias
        head.bias[old:] = bias[FIRST_TOKEN:].mean() if old > FIRST_TOKEN else 0.0
    embed.weight.requires_grad_(old_embed.weight.requires_grad)
    head.weight.requires_grad_(old_head.weight.requires_grad)
    decoder.set_input_embeddings(embed.to(old_embed.weight.device, old_embed.weight.dtype))
    predictions = decoder.cls.predictions
    predictions.decoder = head.to(old_head.weight.device, old_head.weight.dtype)
    # A separate parameter, as the built model has it (its config does not tie it to the head's bias,
    # and a tied pair would be saved once and miss a key on loading).
    predictions.bias = nn.Parameter(predictions.decoder.bias.detach().clone())
    decoder.config.vocab_size = vocab_size
    if getattr(model.config, "decoder", None) is not None:
        model.config.decoder.vocab_size = vocab_size
