# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared/data

.PHONY: demo test bench-scifact bench-kernels bench-dsi bench-seal continual-scifact continual-scifact-v2 clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

## The main job on the built-in corpus (a slice of Python's stdlib docstrings, no download): a DSI index (default
## recipe, no query set: documents + keyword pseudo-queries) and a BM25 index, searched side by side from Python.
## 1.5 minutes measured on 2 shared cores (2.2 under heavier load); a rerun reuses both indexes (10 s; --rebuild).
demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py

## The test suite (tests that need ../shared/data skip when it is absent).
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

## BM25 vs dense on SciFact test: the README's baseline table (about 6 minutes on 2 cores).
bench-scifact: $(VENV)/.installed
	$(BIN)/genir bench --collection $(SHARED)/scifact --split test --methods bm25,dense --output bench-out/scifact

## Decoding-core benchmarks (FM-index, trie vs prefix_allowed_tokens_fn, decode share): tables + benchmarks/results/*.json.
bench-kernels: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_fmindex.py
	$(BIN)/python benchmarks/bench_trie.py
	$(BIN)/python benchmarks/bench_decode_share.py

## DSI and SE-DSI on SciFact test, every docid scheme side by side with BM25 and dense (README "DSI recipe").
## atomic = the default recipe; atomic-init / atomic-random measure the docid-embedding lever. Rerun to reuse
## built indexes; the dense index's embeddings are reused by the entries that need document embeddings.
## se-dsi's steps are ~8x slower (descriptions of up to 17 tokens over a 30k-token vocabulary): 20 minutes for it.
DSI_EMB := bench-out/dsi-scifact/indexes/dense
bench-dsi: $(VENV)/.installed
	$(BIN)/genir bench --collection $(SHARED)/scifact --split test --output bench-out/dsi-scifact --reuse \
		--methods bm25,dense,atomic=dsi,atomic-init=dsi,atomic-random=dsi,naive=dsi,semantic=dsi,se-dsi \
		--set atomic.embeddings_from=$(DSI_EMB) --set atomic-init.embeddings_from=$(DSI_EMB) \
		--set atomic-random.embeddings_from=$(DSI_EMB) --set semantic.embeddings_from=$(DSI_EMB) \
		--set atomic-init.docid_embeddings=init --set atomic-random.docid_embeddings=none \
		--set naive.docids=naive --set semantic.docids=semantic --set se-dsi.max_time=00:00:20:00

## SEAL on SciFact test: BM25, SEAL (trains for an hour), SEAL + BM25, and the two ablations (no query n-grams;
## no model: FM-index + query n-grams alone), which reuse SEAL's trained model, then the diagnostic (the share of
## test queries whose top generated n-grams hold a word of the query or of a relevant document). Rerun to reuse built indexes.
bench-seal: $(VENV)/.installed
	$(BIN)/genir bench --collection $(SHARED)/scifact --split test --output bench-out/seal-scifact --reuse \
		--methods bm25,seal,seal-hybrid,seal-no-query=seal,seal-no-model=seal \
		--set seal-hybrid.of_from=bench-out/seal-scifact/indexes/seal \
		--set seal-no-query.model_from=bench-out/seal-scifact/indexes/seal --set seal-no-query.query_ngrams=false \
		--set seal-no-model.use_model=false
	$(BIN)/python -m genir.seal.diagnostic bench-out/seal-scifact/indexes/seal --collection $(SHARED)/scifact \
		--split test --out bench-out/seal-scifact/diagnostic.json

## Continual indexing (DSI++) on a 300-document SciFact subset: every method with and without SAM, one core
## (54 minutes measured): bench-out/continual-scifact/results.md, results.json, curves.png. Rerun to resume.
continual-scifact: $(VENV)/.installed
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/genir continual \
		--collection $(SHARED)/scifact -o bench-out/continual-scifact --steps 5 \
		--method finetune,genreplay,reindex,replay,finetune+sam,genreplay+sam,replay+sam,reindex+sam \
		--set judged_only=true --set max_docs=300 --set first_words=24 --set max_source_len=32 --set spans=0 \
		--set initial_epochs=30 --set update_epochs=10 --set warmup_steps=50 --resume

## The same subset, no SAM, genreplay recipe v2: one keyword pseudo-query per document among every part's
## training views (pseudo_queries=1, D0 included) and replay_ratio=1.5 (genreplay stays at 1/3 of reindex's
## updates). bench-out/continual-scifact-v2/results.md, results.json, curves.png. Rerun to resume.
continual-scifact-v2: $(VENV)/.installed
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/genir continual \
		--collection $(SHARED)/scifact -o bench-out/continual-scifact-v2 --steps 5 \
		--method finetune,genreplay,reindex \
		--set judged_only=true --set max_docs=300 --set first_words=24 --set max_source_len=32 --set spans=0 \
		--set initial_epochs=30 --set update_epochs=10 --set warmup_steps=50 \
		--set pseudo_queries=1 --set replay_ratio=1.5 --resume

clean:
	rm -rf indexes bench-out .pytest_cache
