"""genir's cache root: derived files that are not indexes (built-in corpora, embeddings, encoder
states, training runs), shared by every layer. Set ``$GENIR_CACHE`` to move it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where genir keeps derived files that are not indexes (``$GENIR_CACHE`` or ~/.cache/genir)."""
    return Path(os.environ.get("GENIR_CACHE", Path.home() / ".cache" / "genir"))
