"""Retrieval: the Searcher interface, BM25 and dense baselines, run files and evaluation."""

from genir.retrieval.evaluation import Evaluation, evaluate
from genir.retrieval.runs import read_run, write_run
from genir.retrieval.searcher import (
    METHODS,
    Change,
    Hit,
    Searcher,
    add_documents,
    build_index,
    delete_documents,
    read_id_file,
)

__all__ = ["METHODS", "Change", "Evaluation", "Hit", "Searcher", "add_documents", "build_index", "delete_documents",
           "evaluate", "read_id_file", "read_run", "write_run"]
