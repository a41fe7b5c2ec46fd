"""Retrieval: the Searcher interface, BM25 and dense baselines, run files and evaluation."""

from genir.retrieval.evaluation import Evaluation, evaluate
from genir.retrieval.runs import read_run, write_run
from genir.retrieval.searcher import METHODS, Hit, Searcher, build_index

__all__ = ["METHODS", "Evaluation", "Hit", "Searcher", "build_index", "evaluate", "read_run", "write_run"]
