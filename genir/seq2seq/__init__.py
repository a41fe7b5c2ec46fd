"""The seq2seq layer every generative method shares.

* :mod:`~genir.seq2seq.vocab`: the decoder vocabulary's special tokens (pad 0, eos 1, own tokens
  from 2) and :class:`~genir.seq2seq.vocab.TextVocab` for decoders that write text;
* :mod:`~genir.seq2seq.model`: building a model whose decoder speaks such a vocabulary (built-in
  T5, bert2bert over a pretrained encoder, any HF seq2seq), output tables from given vectors,
  freezing, growing; :mod:`~genir.seq2seq.model_io`: safetensors save/load;
* :mod:`~genir.seq2seq.encoder_states`: a frozen encoder's states, computed once and cached;
* :mod:`~genir.seq2seq.training`: the Lightning data module, module and ``train``;
* :mod:`~genir.seq2seq.fit`: ``train_and_save``, the one training entry point of DSI, SE-DSI,
  SEAL, continual indexing and the query generator.

Nothing here knows a retrieval method: methods import this layer, never each other's searchers.
"""
