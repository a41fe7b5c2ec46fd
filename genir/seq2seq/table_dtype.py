"""The dtype the big docid tables of a dense-start model are stored in (DSI's ``table_dtype``).

A dense-start decoder (:mod:`genir.seq2seq.dense_start`) holds two ``[V, H]`` tables with a row per
docid token (atomic: one per document; rq and semantic: the codes' rows, then one per document):
the LM head's weight, whose rows are the document vectors, and the decoder's input embedding. At
1,000,000 documents of 384 dimensions they are 2 x 1.5 GB in float32, nearly the whole index.
Stored in float16 or bfloat16 they take half, on disk and in memory; every other weight stays float32.

Where accuracy needs float32, it is kept:

* the head's products (:mod:`genir.kernels.table_products`) upcast
  a block of rows at a time and multiply and sum in float32, so the only loss is each stored row's
  rounding, never a float16 sum or a float16 logit (whose 11-bit mantissa would tie near documents);
* the input embedding's rows are added to the float32 position embeddings, which promotes them to
  float32 before the decoder's first LayerNorm (``BertEmbeddings``), so the decoder runs in float32.

A model is trained in float32 and its tables are cast when the build writes the index
(:func:`set_table_dtype`); loading keeps the dtype the file holds (:func:`genir.seq2seq.model_io.load_seq2seq`),
so an index written before this setting (float32 tables) loads and searches as it did.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedModel

TableDtype = Literal["float32", "float16", "bfloat16"]
TABLE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

def docid_tables(model: PreTrainedModel) -> tuple[nn.Parameter, nn.Parameter]:
    """The decoder's input embedding weight and the LM head's weight, each ``[V, H]``."""
    return model.get_decoder().get_input_embeddings().weight, model.get_output_embeddings().weight


def set_table_dtype(model: PreTrainedModel, dtype: TableDtype) -> None:
    """Store ``model``'s docid tables (:func:`docid_tables`) in ``dtype``, in place; the head's bias and
    every other weight stay as they are."""
    target = TABLE_DTYPES[dtype]
    for weight in docid_tables(model):
        if weight.dtype != target:
            weight.data = weight.data.to(target)


def table_dtype_name(model: PreTrainedModel) -> str:
    """The name (a key of :data:`TABLE_DTYPES`) of the dtype ``model``'s LM head table is stored in."""
    dtype = docid_tables(model)[1].dtype
    return next(name for name, known in TABLE_DTYPES.items() if known == dtype)


def table_bytes(model: PreTrainedModel) -> int:
    """Bytes of ``model``'s docid tables in memory (both of :func:`docid_tables`)."""
    return sum(weight.numel() * weight.element_size() for weight in docid_tables(model))
