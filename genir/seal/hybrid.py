"""``seal-hybrid``: the ``hybrid`` method (:mod:`genir.retrieval.hybrid`) with SEAL as its first
component and SEAL's tuned weight.

The weight 0.2 (SEAL's share of the normalized interpolation) was chosen on SciFact's train
queries with ``benchmarks/tune_seal.py``; SEAL trains on every query of its ``queries_split``
unless its ``dev_fraction`` holds out a dev carve, so ``weight=auto`` on the same split is refused
unless SEAL held out the hybrid's carve (the same ``dev_fraction`` and ``seed``). The first component is
built with ``of_set`` (e.g. ``of_set=model_from=INDEX`` reuses a trained model) or copied from a
seal index with ``of_from``. :func:`seal_component` gives the SEAL searcher of either kind of index
(tools that read SEAL's keys: ``benchmarks/tune_seal.py``, :mod:`genir.seal.diagnostic`).
"""

from __future__ import annotations

from dataclasses import dataclass

from genir.errors import GenirError
from genir.retrieval.hybrid import HybridConfig, HybridSearcher
from genir.retrieval.searcher import Searcher
from genir.seal.searcher import SEALSearcher


@dataclass
class SEALHybridConfig(HybridConfig):
    of: str = "seal"
    weight: str = "0.2"


class SEALHybridSearcher(HybridSearcher):
    method = "seal-hybrid"
    Config = SEALHybridConfig
    description = "SEAL + BM25 (hybrid with of=seal, weight 0.2 tuned on SciFact train)"


def seal_component(searcher: Searcher) -> SEALSearcher:
    """``searcher`` itself if it is a seal index's, the first component of a hybrid with ``of=seal``.

    Raises:
        GenirError: neither holds a SEAL searcher.
    """
    found = searcher.first if isinstance(searcher, HybridSearcher) else searcher
    if not isinstance(found, SEALSearcher):
        raise GenirError(f"a {searcher.method} index holds no SEAL searcher (seal, or a hybrid with of=seal)")
    return found
