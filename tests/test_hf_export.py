"""`stlm export`: a trained plain-Llama run loads in transformers with no custom code and gives
the same tokens and logits."""

from __future__ import annotations

import pytest
import torch

from stlm.cli import main
from stlm.config import compose_config
from stlm.errors import UserError
from stlm.hf.export import export_run
from stlm.runs import load_run
from stlm.train import run_training
from test_train_loop import tiny_overrides

transformers = pytest.importorskip("transformers")

BPE = ["data.tokenizer.kind=bpe", "data.tokenizer.vocab_size=300", "data.tokenizer.train_chars=200000",
       "train.max_steps=20"]


@pytest.mark.slow
def test_exported_run_matches_in_transformers(tmp_path):
    run_training(compose_config(tiny_overrides(tmp_path, "bpe", *BPE)), echo=lambda s: None)
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


def test_export_refuses_a_model_without_a_llama_twin(tmp_path):
    run_training(compose_config(tiny_overrides(tmp_path, "gelu", "model.ffn=gelu", "train.max_steps=5")),
                 echo=lambda s: None)
    with pytest.raises(UserError, match="not a plain Llama"):
        export_run(tmp_path / "runs" / "gelu", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
