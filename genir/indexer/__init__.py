"""Collections, the built-in corpus and index artifacts (manifest, atomic writes).

* :mod:`~genir.indexer.collection`: ``Document``, ``Query``, ``Qrels`` and ``Collection``, which
  reads and validates every corpus, ``builtin:NAME`` included.
* :mod:`~genir.indexer.builtin_corpus`: writes the built-in corpora as ``corpus.jsonl`` under
  :func:`genir.cache.cache_dir`; imports nothing else of this package.
* :mod:`~genir.indexer.artifact`: index directories: the manifest, and ``atomic_directory``
  (:func:`genir.atomic_files.atomic_dir` with the checks an index destination needs).
"""

from genir.indexer.artifact import Manifest, atomic_directory, read_manifest, write_manifest
from genir.indexer.collection import Collection, Document, Query

__all__ = ["Collection", "Document", "Manifest", "Query", "atomic_directory", "read_manifest", "write_manifest"]
