"""Settings of the ``dsi`` and ``se-dsi`` methods, and how their ``auto`` values resolve.

The defaults are the recipe the README measures ("DSI recipe"): a pretrained MiniLM encoder,
frozen, with cached states; a two-layer decoder; atomic docids whose output rows are the
documents' MiniLM embeddings, frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

from genir.errors import GenirError
from genir.retrieval.encoder import DEFAULT_ENCODER
from genir.seq2seq.model import T5_PREFIX


@dataclass
class DSIConfig:
    docids: str = "atomic"  # atomic | naive | semantic | elaborative
    # The default recipe (README, "DSI recipe"): pretrained MiniLM encoder, frozen; a two-layer
    # decoder; atomic docids whose output rows are the documents' MiniLM embeddings, frozen.
    model: str = "bert2bert:all-MiniLM-L6-v2"  # or t5-config:tiny|small|base, or a HF seq2seq name/path
    decoder_layers: int = 2  # layers of the bert2bert decoder
    freeze_encoder: str = "auto"  # true | false | auto (= true unless the encoder is built from scratch, t5-config:)
    tokenizer: str = DEFAULT_ENCODER  # the encoder's tokenizer for t5-config: models
    embeddings_from: str = ""  # a dense index of the same corpus whose embeddings are reused (semantic docids, docid_embeddings)
    # atomic docids' output rows: frozen | init (start from the document embeddings, then train) | none;
    # auto = frozen for atomic docids, none for the others
    docid_embeddings: str = "auto"
    max_source_len: int = 64
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    max_epochs: int = 8
    max_time: str = "00:01:00:00"  # DD:HH:MM:SS training budget
    # 32-true on every device: bf16-mixed training on an H200 cost 0.29 nDCG@10 on SciFact (0.43 vs
    # 0.72, README "GPU benchmark"); auto (bf16-mixed where the GPU has it) is there to choose
    precision: str = "32-true"
    first_words: int = 64
    spans: int = 2
    span_words: int = 32
    rehearsal: int = 0  # SE-DSI rehearsal contents: salient sentences per document
    pseudo_queries: int = 0  # pseudo-queries per document (keyword fallback without a generator)
    pseudo_query_words: int = 8
    querygen: str = ""  # a query generator (genir train-querygen output, or a HF doc2query checkpoint)
    queries_split: str = "train"
    retrieval_repeats: int = 1
    beams: int = 10
    # atomic docids: first = the k best first tokens, one decoder step; exact = the k best by beam
    # search's own score (+ log P(eos)) over every document, two steps (genir.kernels.single_token);
    # beam = constrained beam search with max(k, beams) beams. All three ranked SciFact test
    # identically (nDCG@10 0.7579 on the CPU); first is the fastest (README "Searching a DSI index").
    atomic_search: str = "first"
    seed: int = 0


@dataclass
class SEDSIConfig(DSIConfig):
    docids: str = "elaborative"
    rehearsal: int = 3


def docid_embeddings_mode(config: DSIConfig) -> str:
    """``config.docid_embeddings`` resolved to ``frozen``, ``init`` or ``none``."""
    mode = config.docid_embeddings
    if mode == "auto":
        return "frozen" if config.docids == "atomic" else "none"
    if mode not in {"frozen", "init", "none"}:
        raise GenirError(f"docid_embeddings={mode!r}: choose frozen, init, none or auto")
    if mode != "none" and config.docids != "atomic":
        raise GenirError(f"docid_embeddings={mode} needs atomic docids (one output token per document)")
    return mode


def freeze_encoder_setting(config: DSIConfig) -> bool:
    """``config.freeze_encoder`` resolved: ``auto`` freezes every encoder that arrives pretrained."""
    value = config.freeze_encoder.lower()
    if value == "auto":
        return not config.model.startswith(T5_PREFIX)
    if value not in {"true", "false"}:
        raise GenirError(f"freeze_encoder={config.freeze_encoder!r}: choose true, false or auto")
    return value == "true"
