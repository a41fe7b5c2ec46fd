"""SEAL: n-gram identifiers decoded under an FM-index, SEAL scoring, and a BM25 hybrid."""
