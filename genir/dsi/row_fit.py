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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from genir.errors import GenirError
from genir.seq2seq.dense_start import is_dense_start, set_dense_rows
from genir.seq2seq.vocab import DECODER_START


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
