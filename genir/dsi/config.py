"""Settings of the ``dsi`` and ``se-dsi`` methods, and how their ``auto`` values resolve.

The defaults are the recipe the README measures ("DSI recipe"): a pretrained MiniLM encoder,
frozen, with cached states; a two-layer decoder with the dense start
(:mod:`genir.seq2seq.dense_start`); atomic docids whose output rows are the documents' MiniLM
embeddings, frozen. A collection with training queries trains on documents and those queries
(less a seeded dev split); one without trains zero-shot on documents and pseudo-queries, with
held-out pseudo-queries as its dev set. The checkpoint kept is the one best on dev, the untrained
dense start included (:mod:`genir.dsi.dev`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genir.dsi.docids import docid_scheme_class, docid_scheme_names, either
from genir.encoding.encoder import DEFAULT_ENCODER
from genir.errors import GenirError
from genir.seq2seq.model import BERT2BERT_PREFIX, T5_PREFIX
from genir.seq2seq.token_space import TOKEN_SPACE_MODEL


@dataclass
class DSIConfig:
    docids: str = "atomic"  # atomic | rq | semantic | naive | semantic-digits | elaborative
    rq_levels: int = 1  # rq docids: codebooks before the document's own token
    rq_codes: int = 64  # rq docids: codewords per codebook (a power of two); 1 x 64 chosen on dev (benchmarks/tune_rq.py)
    semantic_levels: int = 2  # semantic docids: depth of the k-means tree before the document's own token
    semantic_k: int = 10  # semantic docids: most clusters per node (DSI's 10)
    # The default recipe (README, "DSI recipe"): pretrained MiniLM encoder, frozen; a two-layer
    # decoder; atomic docids whose output rows are the documents' MiniLM embeddings, frozen.
    # or t5-config:tiny|small|base, a HF seq2seq name/path, or minilm-tokens (elaborative docids: a decoder
    # writing MiniLM's tokens through its tied word-embedding table, genir.seq2seq.token_space)
    model: str = "bert2bert:all-MiniLM-L6-v2"
    token_table: str = "frozen"  # minilm-tokens: its tied MiniLM token table is frozen or trained (train)
    decoder_layers: int = 2  # layers of the bert2bert decoder
    freeze_encoder: str = "auto"  # true | false | auto (= true unless the encoder is built from scratch, t5-config:)
    tokenizer: str = DEFAULT_ENCODER  # the encoder's tokenizer for t5-config: models
    embeddings_from: str = ""  # a dense index of the same corpus whose embeddings are reused (semantic docids, docid_embeddings)
    # atomic, rq and semantic docids' output rows: frozen | init (start from the document embeddings /
    # code vectors and residuals, then train) | none; auto = frozen for those, none for the others
    docid_embeddings: str = "auto"
    # the decoder's output = the dense query vector + a residual that starts at zero (bert2bert
    # models with docid rows); auto = on where it applies
    dense_start: str = "auto"
    # beam search's score: logit (summed raw logits) | logprob; auto = logit with the dense start
    score: str = "auto"
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
    # elaborative docids: what names a document: keywords (its most salient sentence's keywords, or
    # querygen's query) | title+keywords (its title first, then those); description_tokens caps its tokens
    description: str = "keywords"
    description_tokens: int = 16
    pseudo_queries: str = "auto"  # per document (keyword fallback without a generator); auto = 0 with training queries, else 4
    pseudo_query_words: int = 8
    querygen: str = ""  # a query generator (genir train-querygen output, or a HF doc2query checkpoint)
    queries_split: str = "train"  # a collection without this split trains zero-shot ("" forces it)
    dev_fraction: float = 0.1  # training queries held out as dev (genir.indexer.dev_split, seeded)
    dev_pseudo_queries: int = 200  # zero-shot: documents whose held-out pseudo-query is a dev query
    select_on_dev: bool = True  # keep the checkpoint best on dev (the untrained start included)
    # standard errors (paired, per dev query) a trained checkpoint must beat the untrained start by;
    # auto = 0 with training queries (every supervised SciFact dev curve measured gained, and a
    # margin of 2 kept the start in 2 of 7 builds, README "Continual indexing"), 2 zero-shot
    # (pseudo-query training gained on dev only within noise, and lost on test)
    dev_margin: str = "auto"
    min_dev_queries: int = 20  # a smaller dev set decides by noise: none is held out, the last checkpoint is kept
    retrieval_repeats: int = 1
    beams: int = 100
    # atomic docids: first = the k best first tokens, one decoder step; exact = the k best by beam
    # search's own score (+ log P(eos)) over every document, two steps (genir.kernels.single_token);
    # beam = constrained beam search with max(k, beams) beams. All three ranked SciFact test
    # identically (nDCG@10 0.7579 on the CPU); first is the fastest (README "Searching a DSI index").
    atomic_search: str = "first"
    # elaborative docids (SE-DSI): rescore = the first decoder step's logits (less the output bias, so
    # only what the query says), summed over each live description's tokens, propose the `candidates`
    # best documents; each is then scored exactly by beam search's own score (teacher-forced,
    # genir.kernels.exhaustive); beam = constrained beam search over the trie, which drops a
    # description once its first tokens fall out of the beams (dev: 0.198 -> 0.371, README "SE-DSI")
    elaborative_search: str = "rescore"
    candidates: int = 100
    # rescore's final score: logprob/length + plan_weight * plan + dense_weight * cos(q, d), where plan
    # is the mean first-step log-probability of the description's tokens (a set-based score beside the
    # sequential one, as PAG plans) and cos the dense retriever's similarity of the query (the frozen
    # encoder's pooled states) and the document (its embedding, kept with the docids): the dense start
    # of description docids, whose `candidates` best join the proposals. dense_weight > 0 needs
    # model=minilm-tokens (the encoder that embeds the documents). auto = chosen by the build on its
    # dev set with the checkpoint (PLAN_WEIGHTS x DENSE_WEIGHTS, genir.dsi.dev); without a dev set
    # 0.3 and 6 (0 where the dense term does not apply), README "SE-DSI".
    plan_weight: str = "auto"
    dense_weight: str = "auto"
    seed: int = 0


@dataclass
class SEDSIConfig(DSIConfig):
    """SE-DSI's recipe, chosen on SciFact's dev carve (README "SE-DSI"): descriptions written through
    MiniLM's token space with the table trained (dev 0.371 frozen, after 1,218 steps, vs 0.500 trained,
    860 steps, keyword descriptions), each document's title before its keywords (0.432 vs 0.410
    after 499 steps), up to 32 tokens (64, trained for the hour: dev 0.7418 vs 0.7401, a tie at ~1.45x
    the cost of a step); rescored with the plan (0.556 -> 0.627) and the dense start (0.725; dense
    alone 0.665); each build chooses those two weights on its own dev set."""

    docids: str = "elaborative"
    rehearsal: int = 3
    model: str = "minilm-tokens"
    token_table: str = "train"
    description: str = "title+keywords"
    description_tokens: int = 32


PLAN_WEIGHT, DENSE_WEIGHT = 0.3, 6.0
"""``plan_weight`` and ``dense_weight`` under ``auto`` without a choice on dev (no dev set, or an
index built before builds chose them): the best cell of a first SciFact dev grid (README "SE-DSI")."""

PLAN_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DENSE_WEIGHTS = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 14.0, 20.0)
"""The grid a build's dev set chooses ``auto`` weights from: rescoring once per dev query gives every
cell (:meth:`genir.dsi.decoding.DocidDecoder.rescore_terms`), so the grid costs next to nothing."""

def docid_embeddings_mode(config: DSIConfig) -> str:
    """``config.docid_embeddings`` resolved to ``frozen``, ``init`` or ``none`` (``config.docids`` checked:
    a registered scheme, :func:`genir.dsi.docids.docid_scheme_class`)."""
    mode = config.docid_embeddings
    has_rows = docid_scheme_class(config.docids).has_token_vectors
    if mode == "auto":
        return "frozen" if has_rows else "none"
    if mode not in {"frozen", "init", "none"}:
        raise GenirError(f"docid_embeddings={mode!r}: choose frozen, init, none or auto")
    if mode != "none" and not has_rows:
        raise GenirError(f"docid_embeddings={mode} needs {either(docid_scheme_names(lambda s: s.has_token_vectors))} docids "
                         "(output rows that are embeddings)")
    return mode


def dense_start_setting(config: DSIConfig) -> bool:
    """``config.dense_start`` resolved: ``auto`` = a bert2bert model whose docid rows are embeddings."""
    value = config.dense_start.lower()
    applies = config.model.startswith(BERT2BERT_PREFIX) and docid_embeddings_mode(config) != "none"
    if value == "auto":
        return applies
    if value not in {"true", "false"}:
        raise GenirError(f"dense_start={config.dense_start!r}: choose true, false or auto")
    if value == "true" and not applies:
        raise GenirError("dense_start=true needs a bert2bert model and atomic, rq or semantic docids with docid_embeddings "
                         "frozen or init")
    return value == "true"


def rescore_grid(config: DSIConfig, keeps_vectors: bool = True) -> list[tuple[float, float]]:
    """The ``(plan_weight, dense_weight)`` cells a build's dev set chooses from: a setting given as a
    number is that number; ``auto`` is its grid (``DENSE_WEIGHTS`` only where the dense term applies,
    :func:`rescore_weights_setting`, else 0). One cell: nothing to choose."""
    plans = PLAN_WEIGHTS if config.plan_weight == "auto" else (_count_or_auto("plan_weight", config.plan_weight, 0.0, float),)
    dense = _dense_weight(config, keeps_vectors, DENSE_WEIGHT)
    denses = DENSE_WEIGHTS if config.dense_weight == "auto" and dense > 0 else (dense,)
    return [(plan, weight) for plan in plans for weight in denses]


def rescore_weights_setting(config: DSIConfig, keeps_vectors: bool = True,
                            chosen: Sequence[float] | None = None) -> tuple[float, float]:
    """``(plan_weight, dense_weight)`` resolved. ``auto`` = the build's choice on dev (``chosen``, the
    manifest's ``rescore_weights``), else ``PLAN_WEIGHT`` and ``DENSE_WEIGHT``. The dense term needs
    elaborative docids written by MiniLM's token space (whose encoder embeds the documents) and an
    index whose docids keep vectors (``keeps_vectors`` false: built before they were kept): else
    ``auto`` is 0 and a number above 0 is refused."""
    plan = _count_or_auto("plan_weight", config.plan_weight, chosen[0] if chosen else PLAN_WEIGHT, float)
    return plan, _dense_weight(config, keeps_vectors, chosen[1] if chosen else DENSE_WEIGHT)


def _dense_weight(config: DSIConfig, keeps_vectors: bool, auto: float) -> float:
    """``config.dense_weight`` with ``auto`` = ``auto`` where the dense term applies, else 0."""
    applies = docid_scheme_class(config.docids).can_keep_vectors and config.model == TOKEN_SPACE_MODEL
    weight = _count_or_auto("dense_weight", config.dense_weight, auto if applies and keeps_vectors else 0.0, float)
    if weight > 0 and not applies:
        raise GenirError(f"dense_weight={weight} needs docids={either(docid_scheme_names(lambda s: s.can_keep_vectors))} "
                         f"and model={TOKEN_SPACE_MODEL} (the encoder that embeds the documents); set dense_weight=0 otherwise")
    return weight


def score_setting(config: DSIConfig, dense_start: bool) -> str:
    """``config.score`` resolved: ``auto`` = ``logit`` for a dense-start model, else ``logprob``."""
    if config.score == "auto":
        return "logit" if dense_start else "logprob"
    if config.score not in {"logit", "logprob"}:
        raise GenirError(f"score={config.score!r}: choose logit, logprob or auto")
    return config.score


def pseudo_queries_setting(config: DSIConfig, supervised: bool) -> int:
    """``config.pseudo_queries`` resolved: ``auto`` = 0 with training queries, 4 without."""
    return _count_or_auto("pseudo_queries", config.pseudo_queries, 0 if supervised else 4, int)


def dev_margin_setting(config: DSIConfig, supervised: bool) -> float:
    """``config.dev_margin`` resolved: ``auto`` = 0 with training queries, 2 without."""
    return _count_or_auto("dev_margin", config.dev_margin, 0.0 if supervised else 2.0, float)


def _count_or_auto(name: str, value: str, auto: float, kind: type) -> float:
    """A non-negative ``kind`` setting given as text, or ``auto``'s value."""
    if value == "auto":
        return auto
    try:
        number = kind(value)
    except ValueError:
        raise GenirError(f"{name}={value!r}: a number or auto") from None
    if number < 0:
        raise GenirError(f"{name}={number}: cannot be negative")
    return number


def freeze_encoder_setting(config: DSIConfig) -> bool:
    """``config.freeze_encoder`` resolved: ``auto`` freezes every encoder that arrives pretrained."""
    value = config.freeze_encoder.lower()
    if value == "auto":
        return not config.model.startswith(T5_PREFIX)
    if value not in {"true", "false"}:
        raise GenirError(f"freeze_encoder={config.freeze_encoder!r}: choose true, false or auto")
    return value == "true"
