"""``seal-hybrid``: the ``hybrid`` method (:mod:`genir.baselines.hybrid`) with SEAL as its first
component and SEAL's tuned weight.

The weight 0.2 (SEAL's share of the normalized interpolation) was chosen on SciFact's train
queries with ``benchmarks/tune_seal.py``; SEAL trains on every query of its ``queries_split``
unless its ``dev_fraction`` holds out a dev carve, so ``weight=auto`` on the same split is refused
unless SEAL held out the hybrid's carve (the same ``dev_fraction`` and ``seed``). The first component is
built with ``of_set`` (e.g. ``of_set=model_from=INDEX`` reuses a trained model) or copied from a
seal index with ``of_from``. :func:`genir.seal.searcher.seal_component` gives the SEAL searcher of either
kind of index.
"""

from __future__ import annotations

from genir.baselines.hybrid import HybridConfig, HybridSearcher, Of, Weight


class SEALHybridConfig(HybridConfig):
    of: Of = "seal"
    weight: Weight = 0.2


class SEALHybridSearcher(HybridSearcher):
    method = "seal-hybrid"
    Config = SEALHybridConfig
    description = "SEAL + BM25 (hybrid with of=seal, weight 0.2 tuned on SciFact train)"
