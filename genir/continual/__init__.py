"""Continual indexing (DSI++): replay, generative memory, SAM and forgetting metrics (not built yet)."""
