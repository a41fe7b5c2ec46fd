"""Decoding core: constraint structures, the fused constrained top-k step, and beam search.

* :class:`FMIndex` / :class:`FMIndexConstraint`: n-grams that occur in a corpus (SEAL).
* :class:`DocidTrie` / :class:`DocidTrieConstraint`: complete docids only (DSI, SE-DSI).
* :func:`constrained_topk`: best allowed tokens under the full softmax (Triton on CUDA, torch on CPU).
* :func:`beam_search`: constrained beam search over any Hugging Face encoder-decoder.
"""

from genir.kernels.beam_search import BeamSearchOutput, BeamStep, beam_search
from genir.kernels.constraint import Candidates, Constraint
from genir.kernels.fm_constraint import FMIndexConstraint
from genir.kernels.fmindex import FMIndex
from genir.kernels.topk import TopK, constrained_topk
from genir.kernels.trie import DocidTrie, DocidTrieConstraint

__all__ = [
    "BeamSearchOutput", "BeamStep", "Candidates", "Constraint", "DocidTrie", "DocidTrieConstraint",
    "FMIndex", "FMIndexConstraint", "TopK", "beam_search", "constrained_topk",
]
