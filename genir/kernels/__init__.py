"""Decoding core: constraint structures, the fused constrained top-k step, and beam search.

* :class:`FMIndex` / :class:`FMIndexConstraint`: n-grams that occur in a corpus (SEAL).
* :class:`DocidTrie` / :class:`DocidTrieConstraint`: complete docids only (DSI, SE-DSI).
* :func:`constrained_topk`: best allowed tokens under the full softmax (Triton on CUDA, torch on CPU).
* :func:`beam_search`: constrained beam search over any Hugging Face encoder-decoder.

Import each from its module (``genir.kernels.fmindex``, ``.fm_constraint``, ``.trie``, ``.topk``,
``.constraint``, ``.beam_search``): the package imports none of them, since beam search imports
transformers (~4 s) that a process using only the FM-index, the trie or the top-k step does not need.
"""
