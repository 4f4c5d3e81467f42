"""Facts stated once: device resolution, key/value heads, the trained context, the minimal-pair
suite's seed and size, the smallest BPE vocabulary."""

from __future__ import annotations

import inspect

import pytest
import torch

from stlm.config.schema import EvalConfig, ModelConfig, RunConfig, TrainConfig, trained_context
from stlm.device import resolve_device
from stlm.errors import UserError


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match=r"^train.device=cuda:1 but no CUDA device is available; "
                                        r"use train.device=cpu$"):
        resolve_device("cuda:1", "train.device")
    with pytest.raises(UserError, match=r"^--device cuda but .* use --device cpu$"):
        resolve_device("cuda")
    assert resolve_device("cuda:0", fallback=True) == "cpu"  # lm-eval's default device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"


def test_kv_heads_and_trained_context():
    assert ModelConfig(n_heads=8).kv_heads == 8 and ModelConfig(n_heads=8, n_kv_heads=2).kv_heads == 2
    cfg = RunConfig(model=ModelConfig(context_length=128))
    assert trained_context(cfg) == 128
    cfg.train = TrainConfig(context_length=64)
    assert trained_context(cfg) == 64


def test_minimal_pair_defaults_come_from_eval_config():
    from stlm.data.grammar import minimal_pair_suite
    from stlm.eval.minimal_pairs import grammar_pair_accuracy

    ev = EvalConfig()
    for fn in (minimal_pair_suite, grammar_pair_accuracy):
        params = inspect.signature(fn).parameters
        assert params["seed"].default == ev.pairs_seed
        assert params["per_paradigm"].default == ev.pairs_per_paradigm


def test_study_accepts_the_smallest_bpe_vocabulary_the_tokenizer_does(capsys):
    from stlm.cli import main
    from stlm.tokenizers.bpe import MIN_VOCAB

    assert main(["study", "sllama", "--bpe-vocab", str(MIN_VOCAB - 1), "--data-dir", "/nonexistent"]) == 2
    assert f"--bpe-vocab must be at least {MIN_VOCAB}" in capsys.readouterr().err
