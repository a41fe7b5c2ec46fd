"""BERT decoders whose LM head reads the pooled query as well as the decoder's hidden state.

A decoder trained from a fresh cross-attention reads its input only once training has taught it
to; until then (and on a CPU budget, for good) it writes what is likely regardless of the query.
The decoders here give the head a direct path from the query: the L2-normalized mean of the
encoder's states, the dense query vector of :class:`genir.encoding.encoder.TextEncoder`. Two heads
use it, each in its own module: the dense start (:mod:`genir.seq2seq.dense_start`, docid rows that
are document embeddings) and the query start (:mod:`genir.seq2seq.query_start`, token rows that
are the encoder's word embeddings).

:class:`PooledQueryDecoder` owns what they share: the BERT forward, the loss and the output; a
subclass says how ``head_logits`` turns hidden states and the encoder's states into logits. Both
need ``encoder_hidden_states`` and ``encoder_attention_mask``, which an ``EncoderDecoderModel``
passes its decoder (the source's attention mask), in training and in :mod:`genir.kernels.beam_search`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import BertLMHeadModel, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions


class PooledQueryDecoder(BertLMHeadModel):
    """A :class:`~transformers.BertLMHeadModel` whose logits come from :meth:`head_logits` (module docstring)."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithCrossAttentions:
        """``input_ids`` ``[B, T]`` -> logits ``[B, T, V]`` (float of the model's dtype).

        ``encoder_hidden_states`` ``[B, S, H]`` and ``encoder_attention_mask`` ``[B, S]`` are required:
        the head pools them. The loss, when ``labels`` are given, is the mean cross-entropy (labels
        ``-100`` ignored); an ``EncoderDecoderModel`` computes its own from the logits.
        """
        cache = cache if cache is not None else past_key_values
        past = cache.get_seq_length() if cache is not None else 0  # read before the forward extends it
        kwargs.pop("return_dict", None)
        outputs = self.decode(input_ids, encoder_hidden_states, encoder_attention_mask, cache,
                              use_cache=use_cache if labels is None else False, attention_mask=attention_mask, **kwargs)
        logits = self.head_logits(outputs.last_hidden_state, encoder_hidden_states, encoder_attention_mask, past)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return CausalLMOutputWithCrossAttentions(loss=loss, logits=logits, cache=outputs.cache,
                                                 hidden_states=outputs.hidden_states, attentions=outputs.attentions,
                                                 cross_attentions=outputs.cross_attentions)

    def decode(self, input_ids: torch.Tensor | None, encoder_hidden_states: torch.Tensor,
               encoder_attention_mask: torch.Tensor | None, cache: Any, use_cache: bool | None = True, **kwargs: Any) -> Any:
        """The BERT decoder's forward without the head: ``last_hidden_state`` ``[B, T, H]`` and the extended ``cache``."""
        return self.bert(input_ids, encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
                         cache=cache, use_cache=use_cache, return_dict=True, **kwargs)

    def head_logits(self, hidden: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor | None, past: int) -> torch.Tensor:
        """Logits ``[B, T, V]`` of the decoder's ``hidden`` ``[B, T, H]`` (decoder positions ``past, ...``),
        given the encoder's states ``[B, S, H]`` and mask ``[B, S]``."""
        raise NotImplementedError

    def linear_head(self) -> Any:
        """What computes :meth:`head_logits`' input and names its output layer (a
        :class:`~genir.kernels.candidate_scores.LinearHead`), where those logits are one linear layer of
        a head input; None here, and a subclass whose head is such a layer returns one. With None a
        search reads the logits alone."""
        return None


def pooled_query(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The dense query vector: ``states`` ``[B, S, H]`` averaged over ``mask`` ``[B, S]``, L2-normalized -> ``[B, H]``."""
    if mask is None:
        pooled = states.mean(1)
    else:
        weights = mask.unsqueeze(-1).to(states.dtype)  # [B, S, 1]
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1)


def linear_head(model: PreTrainedModel) -> Any:
    """``model``'s decoder as a :class:`~genir.kernels.candidate_scores.LinearHead`, as the decoder
    describes itself (:meth:`PooledQueryDecoder.linear_head`); None for a decoder that does not (a plain
    BERT or T5 decoder, the dense start)."""
    describe = getattr(model.get_decoder(), "linear_head", None) if hasattr(model, "get_decoder") else None
    return describe() if describe is not None else None
