"""The retrieval interface: :class:`Searcher`, :class:`Hit`, the method registry, and building,
growing and shrinking an index of any method (:func:`build_index`, :func:`add_documents`,
:func:`delete_documents`). Methods live in their own packages (``baselines``, ``dsi``, ``seal``);
the harness that runs and scores them in ``evaluation``."""

from genir.retrieval.searcher import (
    METHODS,
    Change,
    Hit,
    Run,
    Searcher,
    add_documents,
    build_index,
    delete_documents,
    read_id_file,
)

__all__ = ["METHODS", "Change", "Hit", "Run", "Searcher", "add_documents", "build_index", "delete_documents", "read_id_file"]
