"""Fitting the output rows of newly added atomic docids, the model untouched (IncDSI's idea).

A document added to a dense-start atomic index gets its embedding as its row
(:meth:`genir.dsi.searcher.DSISearcher.add`), which ranks it as the dense retriever would. Training
has moved the decoder's query vectors ``z`` (:meth:`genir.seq2seq.dense_start.DenseStartDecoder.vectors`)
away from the raw dense query vectors, so an embedding row can sit off where the trained model's
queries for that document land. Fitting moves only the new rows ``w`` ``[r, H]``:

    minimize  CE(new queries -> their new document)  +  CE(old queries -> their old document)
              + proximity * mean ||w - w0||^2

over every live document's row (the old rows fixed), with L-BFGS. The first term pulls a new row
toward its own queries (the document's first words and pseudo-queries); the second keeps it from
taking the queries that old documents answer (IncDSI's constraint that existing queries keep their
documents); the third keeps it near its embedding ``w0``, where the dense retriever placed it. No
other weight changes and no optimizer step of the model is taken.

Two callers, one function (:func:`fit_rows`): ``genir continual --method add+fit``
(:mod:`genir.continual.runner`), whose earlier documents' pairs come from the run's collections, and
``genir add --fit`` (:meth:`genir.dsi.searcher.DSISearcher.add`), whose come from the sample the index
keeps (:mod:`genir.dsi.fit_pairs`). Both read :class:`RowFitSettings`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.seq2seq.dense_start import is_dense_start, set_dense_rows
from genir.seq2seq.vocab import DECODER_START
from genir.settings import Settings
from genir.views.pairs import TextPair, ViewConfig, indexing_examples
from genir.views.querygen import QueryGenerator

STORED_FIT_PAIRS = 2000
"""Pairs of earlier documents an index keeps for ``genir add --fit`` (:mod:`genir.dsi.fit_pairs`), and
the default of ``fit_old_queries``: the continual runs' (issue 30) number of constraints."""


class RowFitSettings(Settings):
    """How the rows of added documents are fitted (module docstring): ``genir add --fit --set KEY=VALUE``
    and the ``fit_*`` keys of ``genir continual`` (:class:`genir.continual.ContinualConfig` is a subclass)."""

    fit_queries: int = Field(4, ge=0, description="pseudo-queries per new document its row is fitted to (with its first words)")
    fit_old_queries: int = Field(STORED_FIT_PAIRS, ge=0, description=(
        f"at most this many training queries and first words of earlier documents constrain the new rows (an index "
        f"keeps {STORED_FIT_PAIRS:,} of them for genir add --fit, which can use fewer, not more)"))
    fit_proximity: float = Field(1.0, ge=0, description="pull toward the row's embedding")
    fit_iterations: int = Field(30, ge=1, description="optimizer iterations of the row fit")

    def row_fit(self) -> RowFitSettings:
        """The row fit's settings of this config alone (a subclass's, e.g. a continual run's)."""
        return RowFitSettings(**{name: getattr(self, name) for name in RowFitSettings.model_fields})


def fit_rows(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tokens: Mapping[str, int],
    new_docs: Sequence[Document],
    queries: Sequence[TextPair],
    old: Sequence[TextPair],
    generator: QueryGenerator,
    settings: RowFitSettings,
    first_words: int,
    max_length: int,
    seed: int,
) -> dict[str, Any]:
    """Fit the rows of ``new_docs`` (already in ``model``'s head and in ``tokens``) in place: their
    pairs against ``old`` (:func:`fit_new_rows`).

    A new document's row is pulled toward its first ``first_words`` words, ``settings.fit_queries``
    pseudo-queries ``generator`` writes for it (seeded) and the ``queries`` judging it.

    Args:
        tokens: document id -> its output token, for every live document (the new ones included).
        queries: training (query, document id) pairs that came with the new documents: a pair of a new
            document pulls its row; one of an earlier document (a query judging both) constrains, as ``old``.
        old: (text, document id) pairs of earlier documents (their training queries and first words)
            that should keep their documents; at most ``settings.fit_old_queries`` of them are used
            (a seeded sample).
        max_length: tokens of a text the encoder reads.
        seed: seeds the pseudo-queries and the sample of ``old``.
    Returns:
        :func:`fit_new_rows`' figures, the pairs used (``fit_queries``, ``fit_old_queries``) and the seconds.
    Raises:
        GenirError: a pair names a document that is not in ``tokens``.
    """
    started = time.perf_counter()
    arriving = {d.id for d in new_docs}
    new = indexing_examples(new_docs, ViewConfig(first_words=first_words, spans=0))
    written = generator.pseudo_queries(new_docs, settings.fit_queries, seed)
    new += [(q, d.id) for d, qs in zip(new_docs, written) for q in qs if q.strip()]
    new += [p for p in queries if p[1] in arriving]
    old = [p for p in queries if p[1] not in arriving] + list(old)
    if len(old) > settings.fit_old_queries:
        old = random.Random(seed).sample(old, settings.fit_old_queries)
    missing = next((docid for _, docid in [*new, *old] if docid not in tokens), None)
    if missing is not None:
        raise GenirError(f"a pair to fit the new rows with names document {missing!r}, which is not in the index")
    if not new:  # nothing to pull a row toward (every new document empty): the rows stay their embeddings
        return {"fit_queries": 0, "fit_old_queries": len(old), "fit_seconds": round(time.perf_counter() - started, 1)}

    def vectors(pairs: list[TextPair]) -> torch.Tensor:
        return first_position_vectors(model, tokenizer, [text for text, _ in pairs], max_length)

    stats = fit_new_rows(
        model, vectors(new), torch.tensor([tokens[d] for _, d in new]), vectors(old),
        torch.tensor([tokens[d] for _, d in old], dtype=torch.int64), torch.tensor(sorted(tokens.values())),
        torch.tensor([tokens[d.id] for d in new_docs]), settings.fit_proximity, settings.fit_iterations,
    )
    return {**stats, "fit_queries": len(new), "fit_old_queries": len(old), "fit_seconds": round(time.perf_counter() - started, 1)}


@torch.no_grad()
def first_position_vectors(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                           max_length: int, batch_size: int = 64) -> torch.Tensor:
    """``[len(texts), H]`` float32: each text's decoder output vector ``z`` at the first docid position.

    Raises:
        GenirError: ``model`` has no dense-start decoder.
    """
    if not is_dense_start(model):
        raise GenirError("fitting docid rows needs a dense-start model (dsi with docid_embeddings frozen or init)")
    model.eval()
    device = next(model.parameters()).device
    decoder, encoder = model.get_decoder(), model.get_encoder()
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[i:i + batch_size]), truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt").to(device)
        states = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state  # [B, S, H]
        start = torch.full((states.shape[0], 1), DECODER_START, dtype=torch.int64, device=device)  # [B, 1]
        hidden = decoder.bert(start, encoder_hidden_states=states, encoder_attention_mask=batch["attention_mask"],
                              return_dict=True).last_hidden_state  # [B, 1, H]
        out.append(decoder.vectors(hidden, states, batch["attention_mask"])[:, 0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.get_output_embeddings().weight.shape[1])


def fit_new_rows(
    model: PreTrainedModel,
    new_vectors: torch.Tensor,
    new_targets: torch.Tensor,
    old_vectors: torch.Tensor,
    old_targets: torch.Tensor,
    candidates: torch.Tensor,
    new_tokens: torch.Tensor,
    proximity: float = 1.0,
    iterations: int = 30,
) -> dict[str, float]:
    """Fit the rows of ``new_tokens`` (module docstring) and write them into ``model``'s head, in place.

    Args:
        model: a dense-start model; its scale and biases are read, its other weights unchanged.
        new_vectors: ``[m, H]`` float32 query vectors (:func:`first_position_vectors`) of the new documents' queries.
        new_targets: ``[m]`` int64 output token of each new query's document (one of ``new_tokens``).
        old_vectors: ``[n, H]`` float32 query vectors of queries of documents already indexed (may be empty).
        old_targets: ``[n]`` int64 output token of each old query's document (not in ``new_tokens``).
        candidates: ``[D]`` int64 output tokens of every live document, ``new_tokens`` included.
        new_tokens: ``[r]`` int64 output tokens whose rows are fitted.
        proximity: weight of the pull toward the rows' starting values.
        iterations: L-BFGS iterations.
    Returns:
        The objective before and after, and the mean distance the rows moved.
    """
    head = model.get_output_embeddings()
    weight = head.weight.detach().float().cpu()  # [V, H]
    bias = head.bias.detach().float().cpu() if head.bias is not None else torch.zeros(weight.shape[0])  # [V]
    scale = model.get_decoder().log_scale.detach().exp().float().cpu()  # []
    is_new = torch.isin(candidates, new_tokens)
    old_columns = candidates[~is_new]  # [D_old]
    column_of_old = {int(t): i for i, t in enumerate(old_columns.tolist())}
    column_of_new = {int(t): i for i, t in enumerate(new_tokens.tolist())}
    try:
        new_labels = torch.tensor([len(old_columns) + column_of_new[int(t)] for t in new_targets], dtype=torch.int64)
        old_labels = torch.tensor([column_of_old[int(t)] for t in old_targets], dtype=torch.int64)
    except KeyError as missing:
        raise GenirError(f"query target token {missing} is not among the candidate documents") from None
    fixed_new = scale * new_vectors @ weight[old_columns].T + bias[old_columns]  # [m, D_old]
    fixed_old = scale * old_vectors @ weight[old_columns].T + bias[old_columns]  # [n, D_old]
    start = weight[new_tokens].clone()  # [r, H]
    rows = start.clone().requires_grad_(True)
    new_bias = bias[new_tokens]  # [r]

    def objective() -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(torch.cat([fixed_new, scale * new_vectors @ rows.T + new_bias], 1), new_labels)
        if len(old_labels):
            loss = loss + torch.nn.functional.cross_entropy(
                torch.cat([fixed_old, scale * old_vectors @ rows.T + new_bias], 1), old_labels)
        return loss + proximity * (rows - start).pow(2).sum(1).mean()

    optimizer = torch.optim.LBFGS([rows], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(objective())
    optimizer.step(closure)
    with torch.no_grad():
        after = float(objective())
        set_dense_rows(model, rows.detach().to(head.weight.dtype), new_tokens.to(head.weight.device))
    return {"fit_objective_before": round(before, 4), "fit_objective_after": round(after, 4),
            "fit_mean_row_shift": round(float((rows.detach() - start).norm(dim=1).mean()), 4)}
