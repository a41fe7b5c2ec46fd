"""The retrievers genir measures itself against, each a :class:`~genir.retrieval.searcher.Searcher`:
BM25 on Lucene (:mod:`~genir.baselines.bm25`, index edits in :mod:`~genir.baselines.lucene_writer`),
dense retrieval on FAISS (:mod:`~genir.baselines.dense`), and the fusion of any index with BM25
(:mod:`~genir.baselines.hybrid`; :mod:`~genir.baselines.seal_hybrid` is its SEAL preset)."""
