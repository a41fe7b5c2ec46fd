"""DSI and SE-DSI. So far: docid schemes (atomic, naive, semantic); training and search to come."""

from genir.dsi.docids import AtomicDocids, DocidScheme, NaiveDocids, load_docid_scheme
from genir.dsi.semantic_docids import SemanticDocids

__all__ = ["AtomicDocids", "DocidScheme", "NaiveDocids", "SemanticDocids", "load_docid_scheme"]
