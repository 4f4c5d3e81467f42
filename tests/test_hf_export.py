"""`stlm export`: a trained plain-Llama run loads in transformers with no custom code and gives
the same tokens and logits; a trained run of another architecture loads with its code
(the whole zoo, without stlm installed: tests/test_hf_remote.py)."""

from __future__ import annotations

import json

import pytest
import torch

from stlm.cli import main
from stlm.config import compose_config
from stlm.models.params import count_parameters
from stlm.runs import load_run
from stlm.train import run_training
from test_train_loop import tiny_overrides

transformers = pytest.importorskip("transformers")

BPE = ["data.tokenizer.kind=bpe", "data.tokenizer.vocab_size=300", "data.tokenizer.train_chars=200000",
       "train.max_steps=20"]


@pytest.mark.slow
def test_exported_run_matches_in_transformers(tmp_path):
    summary = run_training(compose_config(tiny_overrides(tmp_path, "bpe", *BPE)), echo=lambda s: None)
    assert main(["eval", str(tmp_path / "runs" / "bpe"), "--tasks", "bpb"]) == 0
    out = tmp_path / "hf"
    assert main(["export", str(tmp_path / "runs" / "bpe"), str(out)]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    ours = load_run(tmp_path / "runs" / "bpe")
    text = "ROMEO: But soft, what light through yonder window breaks?"
    ids = hf_tok(text, return_tensors="pt").input_ids
    assert ids[0].tolist() == ours.tokenizer.encode(text)
    with torch.no_grad():
        assert (hf(ids).logits - ours.model(ids).logits).abs().max().item() <= 1e-4

    card = (out / "README.md").read_text()  # the model card: architecture, size, data, tokens, results
    bpb = json.loads((tmp_path / "runs" / "bpe" / "eval" / "bpb.json").read_text())["bpb"]
    for fact in ("library_name: transformers", "2 layers, d_model 32, 2 attention heads", "FFN swiglu",
                 f"{count_parameters(ours.model).total:,}-parameter", "`grammar-2k`", "tokenizer: bpe, 300 ids",
                 f"tokens seen: {summary['tokens']:,} in 20 steps", f"{summary['val_bpb']:.4f} bits per byte",
                 "| bpb | val | ", f"{bpb:.4f}"):
        assert fact in card, fact


def test_a_trained_run_without_a_llama_twin_exports_with_its_code(tmp_path, capsys):
    """Shared layers with LoRA adapters (a raw KeyError before remote-code export)."""
    run_training(compose_config(tiny_overrides(tmp_path, "lora", "model.sharing.layers=groups",
                                               "model.sharing.groups=1", "model.sharing.lora_rank=2",
                                               "train.max_steps=5")), echo=lambda s: None)
    out = tmp_path / "hf"
    assert main(["export", str(tmp_path / "runs" / "lora"), str(out)]) == 0
    assert "trust_remote_code=True" in capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    ours = load_run(tmp_path / "runs" / "lora").model
    ids = torch.tensor([[72, 101, 108, 108, 111, 32, 119, 111]])
    with torch.no_grad():
        assert (hf(ids).logits - ours(ids).logits).abs().max().item() <= 1e-4
    adapters = [p for n, p in ours.named_parameters() if ".B" in n]
    assert adapters and all(p.abs().sum() > 0 for p in adapters)  # training moved the adapters


@pytest.mark.shared_data
def test_gpt2_run_exports_a_tokenizer_that_encodes_like_ours(tmp_path):
    from stlm.config.schema import ModelConfig, RunConfig, TrainConfig
    from stlm.models import build_model
    from stlm.runs import create_run_dir
    from stlm.tokenizers import GPT2Tokenizer
    from stlm.train.checkpoint import save_checkpoint
    from stlm.train.optim import build_optimizer

    from conftest import require_shared

    tok = GPT2Tokenizer(require_shared("gpt2-bpe/r50k_base.tiktoken"))
    cfg = RunConfig(model=ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, context_length=32),
                    runs_dir=str(tmp_path / "runs"), run_name="gpt2")
    cfg.data.tokenizer.kind = "gpt2"
    run = create_run_dir(cfg)
    tok.save(run / "tokenizer")
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.vocab_size)
    save_checkpoint(run / "checkpoints", 1, model, build_optimizer(model, TrainConfig(), torch.device("cpu")), {})
    out = tmp_path / "hf"
    assert main(["export", str(run), str(out)]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    texts = ["Hello world", "  leading spaces, and\ttabs\n\nnew lines", "naïve café — 東京 🙂 it's 2024!",
             "x" * 300, "'s 've 're ll"]
    for text in texts:
        assert hf_tok(text).input_ids == tok.encode(text), text
        assert hf_tok.decode(tok.encode(text)) == text
    assert hf_tok.eos_token_id == tok.eot_id == 50256
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([tok.encode(texts[2])])
    with torch.no_grad():
        assert (hf(ids).logits - model(ids).logits).abs().max().item() <= 1e-4


def test_export_to_an_unwritable_place_fails_before_loading(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "hf"  # its parent is a regular file: no one, not even root, can write there
    assert main(["export", str(tmp_path / "no_run_needed"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the exported model" in err and "Traceback" not in err
