"""Saving and loading docid-vocabulary seq2seq models as safetensors (never pickle).

Loading never unpickles: weights are read from ``model.safetensors`` only, and a model folder that
holds a pickle-based checkpoint (``.bin``, ``.pt``, ...) is refused, by name, before anything in
it is read (:func:`refuse_pickles`).

A model built by :func:`genir.seq2seq.model.build_seq2seq` from a T5/BART checkpoint has two
vocabularies: the encoder's (text) and the decoder's (docids), while a Hugging Face config holds
one ``vocab_size``. The encoder's size is recorded beside it so the same shapes can be rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, EncoderDecoderModel, PreTrainedModel
from transformers.initialization import no_init_weights

from genir.errors import CorruptIndexError, GenirError
from genir.seq2seq.dense_start import DENSE_START_KEY, DenseStartDecoder
from genir.seq2seq.model import replace_decoder_vocab
from genir.seq2seq.query_head import PooledQueryDecoder
from genir.seq2seq.query_start import QUERY_START_KEY, QueryStartDecoder
from genir.seq2seq.table_dtype import TABLE_DTYPES, docid_tables, set_table_dtype

INPUT_VOCAB_KEY = "genir_input_vocab_size"
WEIGHTS = "model.safetensors"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})
"""Checkpoint formats that unpickle when loaded (torch.save, pickle, joblib)."""


def refuse_pickles(directory: Path) -> None:
    """Raise :class:`CorruptIndexError` unless ``directory`` is a folder without pickle-based files."""
    if not directory.is_dir():
        raise CorruptIndexError(f"{directory}: no such model folder")
    found = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise CorruptIndexError(f"{directory}: holds {', '.join(found)}, a pickle-based checkpoint; genir loads weights "
                                "from safetensors only and never unpickles (save the model with safetensors)")


def load_pretrained(cls, directory: Path) -> PreTrainedModel:
    """``cls.from_pretrained(directory)`` from safetensors only, after :func:`refuse_pickles`."""
    refuse_pickles(directory)
    return cls.from_pretrained(directory, use_safetensors=True)


def save_seq2seq(model: PreTrainedModel, directory: Path) -> None:
    """``save_pretrained`` as one safetensors file, with the encoder's vocabulary size."""
    if model.config.model_type != "encoder-decoder":  # its sub-configs already carry both sizes
        model.config.update({INPUT_VOCAB_KEY: model.get_encoder().get_input_embeddings().num_embeddings})
    model.save_pretrained(directory, max_shard_size="100GB")


def load_seq2seq(directory: Path) -> PreTrainedModel:
    """Rebuild a model saved by :func:`save_seq2seq` and load its weights, in eval mode.

    Raises:
        CorruptIndexError: the folder is missing, holds a pickle-based checkpoint or no ``model.safetensors``.
    """
    refuse_pickles(directory)
    if not (directory / WEIGHTS).is_file():
        raise CorruptIndexError(f"{directory}: no {WEIGHTS}")
    config = AutoConfig.from_pretrained(directory)
    if config.model_type == "encoder-decoder":
        for key, decoder_class in ((DENSE_START_KEY, DenseStartDecoder), (QUERY_START_KEY, QueryStartDecoder)):
            if getattr(config.decoder, key, False):
                return _load_pooled_query(config, directory, decoder_class)
    if config.model_type == "encoder-decoder":
        return load_pretrained(EncoderDecoderModel, directory).eval()
    output_vocab = config.vocab_size
    if not hasattr(config, INPUT_VOCAB_KEY):
        raise GenirError(f"{directory}: config.json lacks {INPUT_VOCAB_KEY}; not saved by genir")
    config.vocab_size = getattr(config, INPUT_VOCAB_KEY)
    model = _unstarted(lambda: AutoModelForSeq2SeqLM.from_config(config))
    with no_init_weights():  # the fresh decoder rows are loaded next too
        replace_decoder_vocab(model, output_vocab)
    _load_weights(model, directory)  # tied copies (T5's encoder embedding is its shared embedding) are stored once
    model.tie_weights()
    return model.eval()


def _load_pooled_query(config, directory: Path, decoder_class: type[PooledQueryDecoder]) -> PreTrainedModel:
    """An ``EncoderDecoderModel`` whose decoder is a ``decoder_class`` (dense or query start), from config +
    safetensors; a tied token table (the query start's) is tied again."""
    model = _unstarted(lambda: EncoderDecoderModel(config=config, encoder=AutoModel.from_config(config.encoder),
                                                   decoder=decoder_class(config.decoder)))
    _load_weights(model, directory)
    model.get_decoder().tie_weights()
    return model.eval()


def _unstarted(build: Callable[[], PreTrainedModel]) -> PreTrainedModel:
    """``build()`` without the random start of its weights, which :func:`_load_weights` replaces next (a
    MiniLM-sized model spends ~0.3 s on it per load), tied as a started model is: ``no_init_weights``
    skips Hugging Face's ``init_weights``, which ties each model's embeddings too."""
    with no_init_weights():
        model = build()
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.tie_weights()
    return model


def _load_weights(model: PreTrainedModel, directory: Path) -> None:
    """Load ``model.safetensors`` into ``model``; every weight must fit (tied copies are stored once), so
    a model built without initializing its weights holds none of that uninitialized memory after. The
    docid tables keep the dtype they were saved in (``table_dtype``; float32 in an index written before it)."""
    state = load_file(directory / WEIGHTS)
    names = {id(weight): name for name, weight in model.named_parameters(remove_duplicate=False)}
    stored = state.get(names.get(id(docid_tables(model)[1]), ""))
    if stored is not None and stored.dtype in TABLE_DTYPES.values():
        set_table_dtype(model, next(name for name, dtype in TABLE_DTYPES.items() if dtype == stored.dtype))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - {name for name, _ in model.named_parameters()}
    if unexpected or set(missing) - tied:
        raise GenirError(f"{directory}: weights do not fit the model (missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)})")
