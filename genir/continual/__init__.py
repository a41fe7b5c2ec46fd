"""Continual indexing (DSI++): add corpora D1..Dn to a DSI index trained on D0, and measure forgetting.

* :mod:`~genir.continual.protocol`: the split into D0..Dn, with each part's queries;
* :mod:`~genir.continual.replay`: what an update that trains learns from (fine-tuning, experience
  replay, generative-memory replay);
* :mod:`~genir.seq2seq.sam` (re-exported here): sharpness-aware minimization for any of them;
* :mod:`~genir.continual.metrics`: DSI++'s A_n, F_n and LA_n;
* :mod:`~genir.continual.runner` and :mod:`~genir.continual.report`: runs, indexes and reports.
"""

from genir.continual.metrics import accuracy_matrix, average_accuracy, forgetting, learning_accuracy
from genir.continual.protocol import ContinualSplit, split_collection
from genir.continual.replay import REPLAY_METHODS, GenerativeMemory, update_examples
from genir.continual.runner import METHODS, ContinualConfig, MethodRun, run_continual
from genir.seq2seq.sam import SAM, SAMSeq2SeqModule

__all__ = ["METHODS", "REPLAY_METHODS", "SAM", "ContinualConfig", "ContinualSplit", "GenerativeMemory", "MethodRun", "SAMSeq2SeqModule",
           "accuracy_matrix", "average_accuracy", "forgetting", "learning_accuracy", "run_continual", "split_collection",
           "update_examples"]
