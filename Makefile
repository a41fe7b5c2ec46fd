# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared/data

.PHONY: demo test test-slow lint docs tables regress regress-cheap bench-scifact bench-kernels bench-scale bench-dsi bench-seal continual-scifact clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

## The main job on the built-in corpus (a slice of Python's stdlib docstrings, no download): a DSI index (default
## recipe, no query set: documents + keyword pseudo-queries) and a BM25 index, searched side by side from Python.
## 1.5 minutes measured on 2 shared cores (2.2 under heavier load); a rerun reuses both indexes (10 s; --rebuild).
demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py

## The test suite (tests that need ../shared/data skip when it is absent): every method end to end on toy corpora,
## ~5 minutes on 2 idle cores. The slow tests (kill injection, training to convergence, the docs build) are
## `make test-slow`; .ci/run runs both, the linter and the cheap regression conditions.
## Two pytest workers (pytest-xdist), one file each at a time so a file's shared fixtures are built once, each
## single-threaded: the suite's tests are small and mostly sequential, so two processes use both cores.
test: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile

test-slow: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -m slow

lint: $(VENV)/.installed
	$(BIN)/ruff check genir tests benchmarks scripts

## The documentation site (mkdocs, Material theme) into site/, failing on any warning or broken link.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## Every results table and figure of the docs (and the README's headline table) from benchmarks/results/*.json.
tables: $(VENV)/.installed
	$(BIN)/python benchmarks/tables.py

## Rerun reproducible conditions (benchmarks/conditions/*.yaml) and fail when a score leaves its tolerance.
## regress-cheap is what CI runs (every method on the toy corpus; BM25 and dense on SciFact, ~10 minutes);
## `make regress` reruns every condition (~4 hours on 2 cores).
regress-cheap: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/genir regress benchmarks/conditions/toy.yaml --data $(SHARED)
	if [ -d $(SHARED)/scifact ]; then OMP_WAIT_POLICY=PASSIVE $(BIN)/genir regress benchmarks/conditions/scifact.yaml --cheap \
		--data $(SHARED); else echo "regress-cheap: no $(SHARED)/scifact here, SciFact conditions skipped"; fi

regress: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/genir regress benchmarks/conditions/toy.yaml --data $(SHARED)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/genir regress benchmarks/conditions/scifact.yaml --data $(SHARED)

## BM25 vs dense on SciFact test: the README's baseline table (about 6 minutes on 2 cores).
bench-scifact: $(VENV)/.installed
	$(BIN)/genir bench --collection $(SHARED)/scifact --split test --methods bm25,dense --output bench-out/scifact

## Decoding-core benchmarks (FM-index, trie vs prefix_allowed_tokens_fn, decode share): tables + benchmarks/results/*.json.
bench-kernels: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_fmindex.py
	$(BIN)/python benchmarks/bench_trie.py
	$(BIN)/python benchmarks/bench_decode_share.py

## Cost at scale (issue 31): build time, bytes, peak memory and queries/s of bm25, dense, dsi (atomic, rq) and seal at
## 10k/30k/100k passages of builtin:pydocs (no download), growth exponents; benchmarks/results/bench_scale.json.
## Resumable; the dense encodings of 100k passages dominate (hours on 2 cores). Then make tables.
bench-scale: $(VENV)/.installed
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/bench_scale.py

## DSI on SciFact test beside BM25 and dense (README "DSI and SE-DSI"): atomic, rq and semantic docids with the dense
## start, supervised (train queries less a seeded 10% dev split, which chooses the checkpoint) and zero-shot
## (queries_split=: documents + 4 keyword pseudo-queries each, 200 held-out pseudo-queries as dev); atomic and rq fused
## with BM25 (hybrid: the weight chosen on the same dev split, 0.5 zero-shot); naive and semantic-digits docids as the
## DSI paper's baselines. Rerun to reuse built indexes; the dense index's embeddings are reused by every DSI entry.
## ~1.5 hours on 2 cores (80 minutes measured, the dense index reused). The table: bench-out/dsi-scifact/bench.md (and bench.json).
DSI_OUT := bench-out/dsi-scifact
DSI_EMB := $(DSI_OUT)/indexes/dense
bench-dsi: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false $(BIN)/genir bench --collection $(SHARED)/scifact --split test \
		--output $(DSI_OUT) --reuse \
		--methods bm25,dense,atomic=dsi,rq=dsi,semantic=dsi,hybrid,hybrid-rq=hybrid,atomic-zs=dsi,rq-zs=dsi,semantic-zs=dsi,hybrid-zs=hybrid,naive=dsi,semantic-digits=dsi \
		--set atomic.embeddings_from=$(DSI_EMB) \
		--set rq.embeddings_from=$(DSI_EMB) --set rq.docids=rq \
		--set semantic.embeddings_from=$(DSI_EMB) --set semantic.docids=semantic \
		--set hybrid.of=dsi --set hybrid.of_from=$(DSI_OUT)/indexes/atomic \
		--set hybrid-rq.of=dsi --set hybrid-rq.of_from=$(DSI_OUT)/indexes/rq \
		--set atomic-zs.embeddings_from=$(DSI_EMB) --set atomic-zs.queries_split= \
		--set rq-zs.embeddings_from=$(DSI_EMB) --set rq-zs.docids=rq --set rq-zs.queries_split= \
		--set semantic-zs.embeddings_from=$(DSI_EMB) --set semantic-zs.docids=semantic --set semantic-zs.queries_split= \
		--set hybrid-zs.of=dsi --set hybrid-zs.of_from=$(DSI_OUT)/indexes/atomic-zs --set hybrid-zs.queries_split= \
		--set naive.docids=naive \
		--set semantic-digits.docids=semantic-digits --set semantic-digits.embeddings_from=$(DSI_EMB)

## SEAL and SE-DSI on SciFact test beside BM25 and dense (README "SEAL", "SE-DSI"): SEAL with its defaults (MiniLM's
## token space: frozen MiniLM encoder, query start, tied trained token table, three epochs; PMI-ranked beams; all chosen
## on the seeded 10% dev carve of the train queries, which it does not train on), its ablations on the same trained
## model (no PMI, no query n-grams, no model: FM-index + query n-grams alone), SEAL + BM25 (weight chosen on the dev
## carve), and SE-DSI with its defaults (title + keywords descriptions over the same token space, 40 minutes, the
## epoch and the rescore weights of the plan and the dense start chosen together on its dev carve; zero-shot: 15 minutes on documents
## and pseudo-queries, 200 held-out pseudo-queries as dev); then the diagnostic (the share of test queries whose top generated n-grams hold a word of
## the query or of a relevant document).
## ~2 hours on 2 cores (SEAL 31 and SE-DSI 44 minutes of it, measured in parts). Rerun to reuse built indexes.
## The table: bench-out/seal-scifact/bench.md (and bench.json).
SEAL_OUT := bench-out/seal-scifact
SEAL_IDX := $(SEAL_OUT)/indexes/seal
bench-seal: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false $(BIN)/genir bench --collection $(SHARED)/scifact --split test \
		--output $(SEAL_OUT) --reuse \
		--methods bm25,dense,seal,seal-no-pmi=seal,seal-no-query=seal,seal-no-model=seal,seal-hybrid,se-dsi,se-dsi-zs=se-dsi \
		--set seal.dev_fraction=0.1 \
		--set seal-no-pmi.model_from=$(SEAL_IDX) --set seal-no-pmi.pmi_lambda=0 \
		--set seal-no-query.model_from=$(SEAL_IDX) --set seal-no-query.query_ngrams=false \
		--set seal-no-model.use_model=false \
		--set seal-hybrid.of_from=$(SEAL_IDX) --set seal-hybrid.weight=auto --set seal-hybrid.dev_fraction=0.1 \
		--set se-dsi.max_time=00:00:40:00 \
		--set se-dsi-zs.max_time=00:00:15:00 --set se-dsi-zs.queries_split=
	$(BIN)/python -m genir.seal.diagnostic $(SEAL_IDX) --collection $(SHARED)/scifact \
		--split test --out $(SEAL_OUT)/diagnostic.json

## DSI++ on all of SciFact with the default dsi recipe (README "Continual indexing"): D0 = half the corpus, five
## updates of ~518 documents. add / add+fit (no model training), finetune / genreplay with and without SAM, reindex
## (a fresh build of every document so far at each step). Supervised (each part's train queries), then zero-shot
## (no queries; max_epochs=2 for D0 and reindex, the CPU budget) on SciFact and cranfield. ~2 hours on 2 cores.
## bench-out/continual/<run>/results.md, results.json, curves.png. Rerun to resume.
CONTINUAL := OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false $(BIN)/genir continual
continual-scifact: $(VENV)/.installed
	test -f $(DSI_EMB)/manifest.json || $(BIN)/genir index -m dense -c $(SHARED)/scifact -o $(DSI_EMB)
	$(CONTINUAL) --collection $(SHARED)/scifact -o bench-out/continual/scifact \
		--method add,add+fit,reindex,finetune,genreplay,finetune+sam,genreplay+sam \
		--set embeddings_from=$(DSI_EMB) --resume
	$(CONTINUAL) --collection $(SHARED)/scifact -o bench-out/continual/scifact-zs \
		--method add,add+fit,reindex,genreplay --set queries_split= --set max_epochs=2 \
		--set embeddings_from=$(DSI_EMB) --resume
	$(CONTINUAL) --collection $(SHARED)/cranfield --allow-empty-docs -o bench-out/continual/cranfield-zs \
		--method add,add+fit,reindex,genreplay --set queries_split= --set max_epochs=2 --resume

clean:
	rm -rf indexes bench-out .pytest_cache site
