"""genir: generative retrieval (DSI, SE-DSI, SEAL) with BM25 and dense baselines on one harness."""

__version__ = "0.1.0"
