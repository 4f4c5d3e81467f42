"""BabyLM's checkpoint schedule: words are counted as BabyLM counts them, checkpoints appear when
training passes each word threshold, and export writes one transformers folder per chck_{N}M."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import require_shared
from stlm.cli import main
from stlm.config import compose_config
from stlm.runs import load_run
from stlm.tokenizers import BPETokenizer, ByteTokenizer
from stlm.train import run_training
from stlm.train.babylm import count_words, schedule_millions
from stlm.train.checkpoint import load_weights
from test_train_loop import tiny_overrides


def test_schedule_is_1_to_10_then_every_10_to_100_million():
    assert schedule_millions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


@pytest.mark.shared_data
@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_words_counted_from_tokens_equal_whitespace_split(kind):
    text = require_shared("corpora/tinyshakespeare/input.txt").read_text()[:60_000]
    docs = [d for d in text.split("\n\n") if d] + ["  leading and trailing  ", "tab\tand\nnewline", "x"]
    tok = ByteTokenizer() if kind == "byte" else BPETokenizer.train([text], 400)
    ids = []
    for d in docs:
        ids += tok.encode(d) + [tok.eot_id]  # documents as training sees them
    assert count_words(ids, tok) == sum(len(d.split()) for d in docs)


@pytest.mark.slow
def test_babylm_checkpoints_and_export(tmp_path, small_data):
    """60 words make one 'M' here, so 6 steps of 256 byte tokens (about 280 words) pass 1M..4M."""
    overrides = tiny_overrides(tmp_path, "babylm", "train.max_steps=6", "train.eval_every=6",
                               "train.checkpoint_every=6", "eval.final_val_batches=2", "eval.sample_tokens=4",
                               "train.babylm_checkpoints=true", "train.babylm_words_per_m=60", *small_data)
    run_training(compose_config(overrides), echo=lambda s: None)
    run_dir = tmp_path / "runs" / "babylm"
    folders = sorted((run_dir / "babylm").iterdir(), key=lambda p: int(p.name[5:-1]))
    assert [p.name for p in folders] == [f"chck_{n}M" for n in range(1, 5)]
    metas = [json.loads((p / "meta.json").read_text()) for p in folders]
    per_step = metas[0]["words_per_token"] * 256
    for n, meta in zip(range(1, 5), metas):  # saved at the first step that reached N "million"
        assert meta["words"] >= n * 60 > int((meta["step"] - 1) * per_step)
    assert main(["export", str(run_dir), str(tmp_path / "hf"), "--babylm"]) == 0
    out = tmp_path / "hf"
    assert sorted(p.name for p in out.iterdir()) == sorted(["main", *(p.name for p in folders)])
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out / "chck_2M").eval()
    ours = load_run(run_dir)
    load_weights(ours.model, run_dir / "babylm" / "chck_2M")
    ids = torch.tensor([ByteTokenizer().encode("ROMEO: soft!")])
    with torch.no_grad():
        assert (hf(ids).logits - ours.model(ids).logits).abs().max().item() <= 1e-4
    assert f"in {metas[1]['step']} steps" in (out / "chck_2M" / "README.md").read_text()
