"""DSI and SE-DSI: docid schemes, training views, query generation, Lightning training, search."""

from genir.dsi.coded_docids import CodedDocids
from genir.dsi.digit_semantic_docids import DigitSemanticDocids
from genir.dsi.docids import (
           AtomicDocids,
           DocidScheme,
           NaiveDocids,
           SearchMode,
           docid_scheme_class,
           docid_scheme_names,
           load_docid_scheme,
           new_docid_scheme,
)
from genir.dsi.elaborative_docids import ElaborativeDocids
from genir.dsi.rq_docids import RQDocids
from genir.dsi.semantic_docids import SemanticDocids

__all__ = ["AtomicDocids", "CodedDocids", "DigitSemanticDocids", "DocidScheme", "ElaborativeDocids", "NaiveDocids",
           "RQDocids", "SearchMode", "SemanticDocids",
           "docid_scheme_class", "docid_scheme_names", "load_docid_scheme", "new_docid_scheme"]
