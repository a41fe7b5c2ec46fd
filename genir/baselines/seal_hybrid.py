"""``seal-hybrid``: the ``hybrid`` method (:mod:`genir.baselines.hybrid`) with SEAL as its first
component and SEAL's tuned weights.

``weight=auto`` (the default) is, as for any hybrid, chosen on the dev carve of ``queries_split``
when SEAL held it out (the same ``dev_fraction`` and ``seed``); otherwise it is one of SEAL's two
fixed shares of the normalized interpolation:

* ``trained_weight=0.2`` when SEAL trained on every query of the split (its default,
  ``dev_fraction=0``): chosen on SciFact's train queries with ``benchmarks/tune_seal.py``;
* ``zero_shot_weight=0.15`` without dev queries (a collection with no qrels for ``queries_split``,
  where SEAL trains zero-shot): chosen by the cross-collection protocol of
  ``benchmarks/zero_shot_seal.py`` (the weight with the best mean nDCG@10 over other collections'
  real queries that is not below BM25 on any), never on the target collection's queries. So far on
  cranfield's 225 queries alone (msmarco-trecdl19-5k's SEAL builds had not finished): 0.15 was the
  best weight for both recipes (pseudo_queries 0: 0.3544, 4: 0.3576, BM25 0.3510), and main's 0.2
  was 0.0010 above BM25 there, 0.0011 below it on a held-out collection (issue 29).

The first component is built with ``of_set`` (e.g. ``of_set=model_from=INDEX`` reuses a trained
model) or copied from a seal index with ``of_from``. :func:`genir.seal.searcher.seal_component`
gives the SEAL searcher of either kind of index.
"""

from __future__ import annotations

from genir.baselines.hybrid import HybridConfig, HybridSearcher, Of, TrainedWeight, Weight, ZeroShotWeight
from genir.settings import AUTO


class SEALHybridConfig(HybridConfig):
    of: Of = "seal"
    weight: Weight = AUTO
    trained_weight: TrainedWeight = 0.2
    zero_shot_weight: ZeroShotWeight = 0.15


class SEALHybridSearcher(HybridSearcher):
    method = "seal-hybrid"
    Config = SEALHybridConfig
    description = "SEAL + BM25 (hybrid with of=seal; weight 0.2 tuned on SciFact train, zero-shot chosen on other collections)"
