"""`stlm export`: a trained plain-Llama run loads in transformers with no custom code and gives
the same tokens and logits."""

from __future__ import annotations

import json

import pytest
import torch

from stlm.cli import main
from stlm.config import compose_config
from stlm.errors import UserError
from stlm.hf.export import export_run
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
                 f"{count_parameters(ours.model).total:,}-parameter", "`shakespeare`", "tokenizer: bpe, 300 ids",
                 f"tokens seen: {summary['tokens']:,} in 20 steps", f"{summary['val_bpb']:.4f} bits per byte",
                 f"| bpb | val | ", f"{bpb:.4f}"):
        assert fact in card, fact


def test_export_refuses_a_model_without_a_llama_twin(tmp_path):
    run_training(compose_config(tiny_overrides(tmp_path, "gelu", "model.ffn=gelu", "train.max_steps=5")),
                 echo=lambda s: None)
    with pytest.raises(UserError, match="not a plain Llama"):
        export_run(tmp_path / "runs" / "gelu", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
