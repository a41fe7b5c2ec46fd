"""genir: generative retrieval (DSI, SE-DSI, SEAL) with BM25 and dense baselines on one harness.

``GenerativeIndex.load(directory).search(query, k)`` opens any genir index (whatever its method)
and searches it; it is :class:`genir.retrieval.searcher.Searcher` under the name the README uses.
Imported lazily, so ``import genir`` stays cheap (no torch, no Java).
"""

from typing import Any

from genir._version import __version__

__all__ = ["GenerativeIndex", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GenerativeIndex":
        from genir.retrieval.searcher import Searcher

        return Searcher
    raise AttributeError(f"module 'genir' has no attribute {name!r}")
