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
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from genir.dsi.docids import docid_scheme_class, docid_scheme_names, either
from genir.encoding.encoder import DEFAULT_ENCODER
from genir.errors import GenirError
from genir.indexer.dev_split import DevFraction
from genir.seq2seq.model import BERT2BERT_PREFIX, T5_PREFIX
from genir.seq2seq.settings import MaxQueryLen, TrainingSettings
from genir.seq2seq.table_dtype import TableDtype
from genir.seq2seq.token_space import TOKEN_SPACE_MODEL, TokenTable
from genir.settings import AUTO, Auto
from genir.views.pairs import ZERO_SHOT_PSEUDO_QUERIES, pseudo_queries_setting

NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
# The fields SE-DSI's recipe gives other defaults: declared once here, with their help text.
Docids = Annotated[str, Field(description="docid scheme: a registered one (genir/dsi/*_docids.py: atomic, rq, semantic, naive, "
                                           "semantic-digits, elaborative)")]
Model = Annotated[str, Field(description=(
    "bert2bert:NAME (a pretrained encoder, a decoder_layers decoder), t5-config:tiny|small|base, a HF seq2seq "
    "name/path, or minilm-tokens (elaborative docids: a decoder writing MiniLM's tokens through its tied word-embedding "
    "table, genir.seq2seq.token_space)"))]
Table = Annotated[TokenTable, Field(description="minilm-tokens: its tied MiniLM token table is frozen or trained (train)")]
Rehearsal = Annotated[int, Field(ge=0, description="SE-DSI rehearsal contents: salient sentences per document")]
# elaborative docids: what names a document
Description = Annotated[Literal["keywords", "title+keywords"], Field(description=(
    "elaborative docids' description: keywords (its most salient sentence's keywords, or querygen's query) | "
    "title+keywords (its title first, then those)"))]
DescriptionTokens = Annotated[int, Field(ge=1, description="elaborative docids: most tokens of a description")]


class DSIConfig(TrainingSettings):
    """The ``dsi`` method's settings (module docstring); its training run's are :class:`TrainingSettings`'.

    Eight fields may be ``auto``: each has a method here that resolves it (``docid_embeddings_mode``,
    ``dense_start_setting``, ``freeze_encoder_setting``, ``score_setting``, ``pseudo_queries_setting``,
    ``dev_margin_setting``, ``rescore_grid`` / ``rescore_weights_setting`` for ``plan_weight`` and
    ``dense_weight``). A combination they refuse is refused when the config is made.
    """

    docids: Docids = "atomic"
    rq_levels: int = Field(1, ge=1, description="rq docids: codebooks before the document's own token")
    # 1 x 64 chosen on dev (benchmarks/tune_rq.py)
    rq_codes: int = Field(64, ge=2, description="rq docids: codewords per codebook (a power of two)")
    semantic_levels: int = Field(2, ge=1, description="semantic docids: depth of the k-means tree before the document's own token")
    semantic_k: int = Field(10, ge=2, description="semantic docids: most clusters per node (DSI's 10)")
    # The default recipe (README, "DSI recipe"): pretrained MiniLM encoder, frozen; a two-layer
    # decoder; atomic docids whose output rows are the documents' MiniLM embeddings, frozen.
    model: Model = "bert2bert:all-MiniLM-L6-v2"
    token_table: Table = "frozen"
    decoder_layers: int = Field(2, ge=1, description="layers of the bert2bert decoder")
    freeze_encoder: Auto | bool = Field(AUTO, description="auto: true unless the encoder is built from scratch (t5-config:)")
    tokenizer: str = Field(DEFAULT_ENCODER, description="the encoder's tokenizer for t5-config: models")
    embeddings_from: str = Field("", description=(
        "a dense index of the same corpus whose embeddings are reused (semantic docids, docid_embeddings)"))
    docid_embeddings: Auto | Literal["frozen", "init", "none"] = Field(AUTO, description=(
        "atomic, rq and semantic docids' output rows: frozen | init (start from the document embeddings / code vectors "
        "and residuals, then train) | none; auto = frozen for those, none for the others"))
    dense_start: Auto | bool = Field(AUTO, description=(
        "the decoder's output = the dense query vector + a residual that starts at zero (bert2bert models with docid "
        "rows); auto = on where it applies"))
    table_dtype: Auto | TableDtype = Field(AUTO, description=(
        "dtype the docid tables (the dense start's [V, H] LM head and decoder input embedding, one row per docid token) "
        "are stored in, on disk and in memory; products and sums stay float32 (genir.seq2seq.table_dtype); auto = "
        "float16 with the dense start and frozen rows (SciFact zero-shot nDCG@10 equal to float32's at half the bytes, "
        "benchmarks/results/table_dtype.json), else float32"))
    score: Auto | Literal["logit", "logprob"] = Field(AUTO, description=(
        "beam search's score: logit (summed raw logits) | logprob; auto = logit with the dense start"))
    first_words: int = Field(64, ge=1, description="indexing view: a document's first words")
    spans: int = Field(2, ge=0, description="indexing views: random spans per longer document")
    span_words: int = Field(32, ge=1, description="words per random span")
    rehearsal: Rehearsal = 0
    description: Description = "keywords"
    description_tokens: DescriptionTokens = 16
    pseudo_queries: Auto | Count = Field(AUTO, description=(
        f"per document (keyword fallback without a generator); auto = 0 with training queries, else {ZERO_SHOT_PSEUDO_QUERIES}"))
    pseudo_query_words: int = Field(8, ge=1, description="length of the keyword fallback's queries")
    querygen: str = Field("", description="a query generator (genir train-querygen output, or a HF doc2query checkpoint)")
    teacher: str = Field("", description=(
        "a built index of the same collection (the zero-shot recipe: a bm25+dense hybrid) whose rankings label the "
        "pseudo-queries: each trains toward the teacher's `teacher_depth` best documents, weighted by a softmax of their "
        "scores (genir.retrieval.teacher), and held-out dev pseudo-queries are judged by it; empty: a pseudo-query's "
        "label is the document it was written from"))
    teacher_depth: int = Field(10, ge=1, description="teacher: documents per pseudo-query")
    teacher_temperature: float = Field(0.1, gt=0, description=(
        "teacher: softmax temperature over each query's scores min-max normalized to [0, 1] (lower: nearer its top 1)"))
    queries_split: str = Field("train", description="a collection without this split trains zero-shot ('' forces it)")
    dev_fraction: DevFraction = 0.1
    dev_pseudo_queries: int = Field(200, ge=0, description="zero-shot: documents whose held-out pseudo-query is a dev query")
    select_on_dev: bool = Field(True, description="keep the checkpoint best on dev (the untrained start included)")
    # auto = 0 with training queries (every supervised SciFact dev curve measured gained, and a
    # margin of 2 kept the start in 2 of 7 builds, README "Continual indexing"), 2 zero-shot
    # (pseudo-query training gained on dev only within noise, and lost on test)
    dev_margin: Auto | NonNegative = Field(AUTO, description=(
        "standard errors (paired, per dev query) a trained checkpoint must beat the untrained start by; "
        "auto = 0 with training queries, 2 zero-shot"))
    min_dev_queries: int = Field(20, ge=0, description=(
        "a smaller dev set decides by noise: none is held out, the last checkpoint is kept"))
    retrieval_repeats: int = Field(1, ge=0, description="training queries' examples repeated per epoch")
    beams: int = Field(100, ge=1, description="beams of the constrained beam search")
    # 32 chosen on SciFact's dev carve (benchmarks/tune_code_beams.py, a supervised rq 1 x 64 index): the
    # smallest value whose dev nDCG@10 is within 0.002 of every code's (16 lost 0.006; 32 tied it and R@100);
    # semantic's dev carve allowed 16 (test, once, at 32: -0.006, docs/methods/dsi.md)
    code_beams: int = Field(32, ge=1, description=(
        "rq and semantic docids: beams kept at each code level, the best prefixes by summed logits, so that the "
        "document step scores only the documents under them; at least a level's codes (rq: rq_codes) keeps "
        "them all, as beam search with max(k, beams) beams does"))
    max_query_len: MaxQueryLen = 256
    # All three ranked SciFact test identically (nDCG@10 0.7579 on the CPU); first is the fastest
    # (README "Searching a DSI index").
    atomic_search: Literal["first", "exact", "beam"] = Field("first", description=(
        "atomic docids: first = the k best first tokens, one decoder step; exact = the k best by beam search's own "
        "score (+ log P(eos)) over every document, two steps (genir.kernels.single_token); beam = constrained beam "
        "search with max(k, beams) beams"))
    # beam drops a description once its first tokens fall out of the beams (dev: 0.198 -> 0.371, README "SE-DSI")
    elaborative_search: Literal["rescore", "beam"] = Field("rescore", description=(
        "elaborative docids (SE-DSI): rescore = the first decoder step's logits (less the output bias), summed over "
        "each live description's tokens, propose the `candidates` best documents, each then scored exactly by beam "
        "search's own score (genir.kernels.exhaustive); beam = constrained beam search over the trie"))
    candidates: int = Field(100, ge=1, description="rescore: documents proposed per query (and as many dense ones)")
    # rescore's final score: logprob/length + plan_weight * plan + dense_weight * cos(q, d), where plan
    # is the mean first-step log-probability of the description's tokens (a set-based score beside the
    # sequential one, as PAG plans) and cos the dense retriever's similarity of the query (the frozen
    # encoder's pooled states) and the document (its embedding, kept with the docids): the dense start
    # of description docids, whose `candidates` best join the proposals. auto = chosen by the build on
    # its dev set with the checkpoint (PLAN_WEIGHTS x DENSE_WEIGHTS, genir.dsi.dev); without a dev set
    # 0.3 and 6 (0 where the dense term does not apply), README "SE-DSI".
    plan_weight: Auto | NonNegative = Field(AUTO, description=(
        "rescore: weight of the plan (mean first-step log-probability of the description's tokens); auto = chosen on dev"))
    dense_weight: Auto | NonNegative = Field(AUTO, description=(
        "rescore: weight of the dense similarity of query and document (needs model=minilm-tokens); auto = chosen on dev"))

    # -- the auto values, resolved -----------------------------------------------------------
    def docid_embeddings_mode(self) -> str:
        """``docid_embeddings`` resolved to ``frozen``, ``init`` or ``none``."""
        mode = self.docid_embeddings
        has_rows = docid_scheme_class(self.docids).has_token_vectors
        if mode == "auto":
            return "frozen" if has_rows else "none"
        if mode != "none" and not has_rows:
            raise GenirError(f"docid_embeddings={mode} needs {either(docid_scheme_names(lambda s: s.has_token_vectors))} docids "
                             "(output rows that are embeddings)")
        return mode

    def dense_start_setting(self) -> bool:
        """``dense_start`` resolved: ``auto`` = a bert2bert model whose docid rows are embeddings."""
        applies = self.model.startswith(BERT2BERT_PREFIX) and self.docid_embeddings_mode() != "none"
        if self.dense_start == AUTO:
            return applies
        if self.dense_start and not applies:
            raise GenirError(f"dense_start=true needs a bert2bert model and {either(docid_scheme_names(lambda s: s.has_token_vectors))} "
                             "docids with docid_embeddings frozen or init")
        return self.dense_start

    def rescore_grid(self, keeps_vectors: bool = True) -> list[tuple[float, float]]:
        """The ``(plan_weight, dense_weight)`` cells a build's dev set chooses from: a setting given as a
        number is that number; ``auto`` is its grid (``DENSE_WEIGHTS`` only where the dense term applies,
        :meth:`rescore_weights_setting`, else 0). One cell: nothing to choose."""
        plans = PLAN_WEIGHTS if self.plan_weight == AUTO else (self.plan_weight,)
        dense = self._dense_weight(keeps_vectors, DENSE_WEIGHT)
        denses = DENSE_WEIGHTS if self.dense_weight == AUTO and dense > 0 else (dense,)
        return [(plan, weight) for plan in plans for weight in denses]

    def rescore_weights_setting(self, keeps_vectors: bool = True, chosen: Sequence[float] | None = None) -> tuple[float, float]:
        """``(plan_weight, dense_weight)`` resolved. ``auto`` = the build's choice on dev (``chosen``, the
        manifest's ``rescore_weights``), else ``PLAN_WEIGHT`` and ``DENSE_WEIGHT``. The dense term needs
        elaborative docids written by MiniLM's token space (whose encoder embeds the documents) and an
        index whose docids keep vectors (``keeps_vectors`` false: built before they were kept): else
        ``auto`` is 0 and a number above 0 is refused."""
        plan = (chosen[0] if chosen else PLAN_WEIGHT) if self.plan_weight == AUTO else self.plan_weight
        return plan, self._dense_weight(keeps_vectors, chosen[1] if chosen else DENSE_WEIGHT)

    def _dense_weight(self, keeps_vectors: bool, auto: float) -> float:
        """``dense_weight`` with ``auto`` = ``auto`` where the dense term applies, else 0."""
        applies = docid_scheme_class(self.docids).can_keep_vectors and self.model == TOKEN_SPACE_MODEL
        if self.dense_weight == AUTO:
            return auto if applies and keeps_vectors else 0.0
        weight = self.dense_weight
        if weight > 0 and not applies:
            raise GenirError(f"dense_weight={weight} needs docids={either(docid_scheme_names(lambda s: s.can_keep_vectors))} "
                             f"and model={TOKEN_SPACE_MODEL} (the encoder that embeds the documents); set dense_weight=0 otherwise")
        return weight

    def table_dtype_setting(self) -> str:
        """``table_dtype`` resolved: ``auto`` = :data:`TABLE_DTYPE` for a dense-start model with frozen rows, else
        float32; a low-precision dtype needs the dense start (whose head multiplies it in float32)."""
        dense_start = self.dense_start_setting()
        if self.table_dtype == AUTO:
            return TABLE_DTYPE if dense_start and self.docid_embeddings_mode() == "frozen" else "float32"
        if self.table_dtype != "float32" and not dense_start:
            raise GenirError(f"table_dtype={self.table_dtype} needs the dense start (a bert2bert model with "
                             f"{either(docid_scheme_names(lambda s: s.has_token_vectors))} docids and docid_embeddings "
                             "frozen or init); other models keep float32 tables")
        return self.table_dtype

    def score_setting(self, dense_start: bool) -> str:
        """``score`` resolved: ``auto`` = ``logit`` for a dense-start model, else ``logprob``."""
        if self.score == AUTO:
            return "logit" if dense_start else "logprob"
        return self.score

    def pseudo_queries_setting(self, supervised: bool) -> int:
        """``pseudo_queries`` resolved (:func:`genir.views.pairs.pseudo_queries_setting`)."""
        return pseudo_queries_setting(self.pseudo_queries, supervised)

    def dev_margin_setting(self, supervised: bool) -> float:
        """``dev_margin`` resolved: ``auto`` = 0 with training queries, 2 without."""
        return (0.0 if supervised else 2.0) if self.dev_margin == AUTO else self.dev_margin

    def freeze_encoder_setting(self) -> bool:
        """``freeze_encoder`` resolved: ``auto`` freezes every encoder that arrives pretrained."""
        if self.freeze_encoder == AUTO:
            return not self.model.startswith(T5_PREFIX)
        return self.freeze_encoder

    # -- checks ------------------------------------------------------------------------------
    @field_validator("docids")
    @classmethod
    def _registered(cls, docids: str) -> str:
        if docids not in docid_scheme_names():
            raise ValueError(f"expected one of {', '.join(docid_scheme_names())}")
        return docids

    @field_validator("rq_codes")
    @classmethod
    def _power_of_two(cls, codes: int) -> int:
        if codes & (codes - 1):
            raise ValueError("expected a power of two >= 2")
        return codes

    @model_validator(mode="after")
    def _consistent(self) -> DSIConfig:
        """Refuse at once the combinations the resolution methods refuse (a build would, hours later)."""
        self.docid_embeddings_mode()
        self.dense_start_setting()
        self.table_dtype_setting()
        self.rescore_grid()
        return self

class SEDSIConfig(DSIConfig):
    """SE-DSI's recipe, chosen on SciFact's dev carve (README "SE-DSI"): descriptions written through
    MiniLM's token space with the table trained (dev 0.371 frozen, after 1,218 steps, vs 0.500 trained,
    860 steps, keyword descriptions), each document's title before its keywords (0.432 vs 0.410
    after 499 steps), up to 32 tokens (64, trained for the hour: dev 0.7418 vs 0.7401, a tie at ~1.45x
    the cost of a step); rescored with the plan (0.556 -> 0.627) and the dense start (0.725; dense
    alone 0.665); each build chooses those two weights on its own dev set."""

    docids: Docids = "elaborative"
    rehearsal: Rehearsal = 3
    model: Model = TOKEN_SPACE_MODEL
    token_table: Table = "train"
    description: Description = "title+keywords"
    description_tokens: DescriptionTokens = 32


TABLE_DTYPE = "float16"
"""``table_dtype`` under ``auto`` with the dense start and frozen rows: float16 measured equal to float32 on SciFact
(zero-shot atomic and rq, benchmarks/bench_table_dtype.py) and, of the two half-width dtypes, the one with the finer
mantissa (unit-norm rows need no bfloat16 range)."""

PLAN_WEIGHT, DENSE_WEIGHT = 0.3, 6.0
"""``plan_weight`` and ``dense_weight`` under ``auto`` without a choice on dev (no dev set, or an
index built before builds chose them): the best cell of a first SciFact dev grid (README "SE-DSI")."""

PLAN_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DENSE_WEIGHTS = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 14.0, 20.0)
"""The grid a build's dev set chooses ``auto`` weights from: rescoring once per dev query gives every
cell (:meth:`genir.dsi.decoding.DocidDecoder.rescore_terms`), so the grid costs next to nothing."""
