"""Document embeddings stored in an index folder (the dense index's layout), read by other methods.

A dense index keeps its documents' embeddings (``embeddings.npy``, ``[N, d]`` float32, row ``i``
for the ``i``-th id of ``docids.json``). Other methods reuse them (DSI's docid rows, semantic
docids: ``embeddings_from=``) instead of encoding the same documents again; this module is the one
home of that layout, so they read it without standing on the dense baseline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genir.errors import GenirError
from genir.indexer.artifact import read_manifest

EMBEDDINGS = "embeddings.npy"
DOCIDS = "docids.json"


def stored_embeddings(directory: Path, doc_ids: Sequence[str]) -> np.ndarray:
    """``[len(doc_ids), d]`` float32: the stored embeddings of those documents in a dense index.

    Other methods reuse a dense index of the same corpus (semantic docids, docid rows) instead of
    encoding the documents again.

    Raises:
        GenirError: ``directory`` is not a dense index, or it lacks one of the documents.
    """
    manifest = read_manifest(directory, verify=False)
    if not {EMBEDDINGS, DOCIDS} <= set(manifest.files):
        raise GenirError(f"{directory}: not a dense index (method {manifest.method!r}); its embeddings cannot be reused")
    row = {doc_id: i for i, doc_id in enumerate(json.loads((directory / DOCIDS).read_text(encoding="utf-8")))}
    missing = [d for d in doc_ids if d not in row]
    if missing:
        raise GenirError(f"{directory}: {len(missing)} of the documents are not in this dense index (e.g. {missing[0]!r})")
    matrix = np.load(directory / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    return np.asarray(matrix[[row[d] for d in doc_ids]], dtype=np.float32)
