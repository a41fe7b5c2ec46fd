"""The harness: TREC run files (:mod:`~genir.evaluation.runs`), ``genir bench``
(:mod:`~genir.evaluation.bench`) and batch search over several devices
(:mod:`~genir.evaluation.sharded_search`). Measures themselves are :mod:`genir.measures`, which
the methods' dev selection uses too."""
