"""Collections, the built-in corpus and index artifacts (manifest, atomic writes)."""

from genir.indexer.artifact import Manifest, atomic_directory, read_manifest, write_manifest
from genir.indexer.collection import Collection, Document, Query

__all__ = ["Collection", "Document", "Manifest", "Query", "atomic_directory", "read_manifest", "write_manifest"]
