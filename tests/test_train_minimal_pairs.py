"""Minimal-pair accuracy: a tie is wrong (the BabyLM/STLM evaluation counted it right), results
aggregate per paradigm, per tier and overall."""

import torch

from stlm.config.schema import ModelConfig
from stlm.data.grammar import PARADIGMS, Pair, minimal_pair_suite
from stlm.eval.minimal_pairs import evaluate_pairs, format_pair_table, pair_correct
from stlm.models import build_model
from stlm.tokenizers import ByteTokenizer


def constant_model():
    """A real model whose head is zero: every token gets the same probability, so any two
    sentences of equal token length tie exactly."""
    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, context_length=128), 257)
    with torch.no_grad():
        model.head.linear.weight.zero_()
    return model


def test_a_tie_is_not_a_success():
    assert not pair_correct(-3.5, -3.5)
    assert pair_correct(-3.4, -3.5) and not pair_correct(-3.6, -3.5)
    tok = ByteTokenizer()
    pairs = [Pair("agree", "local", "The dog runs.", "The dog run."),  # the bad one is shorter: wins
             Pair("agree", "local", "The dogs run.", "The dogs runs."),  # the good one is shorter
             Pair("same", "structural", "He saw himself.", "He saw herself"),  # equal length: a tie
             Pair("same", "structural", "Tom ran.", "Tom rad.")]  # a tie
    r = evaluate_pairs(constant_model(), tok, pairs)
    assert r.per_paradigm == {"agree": 0.5, "same": 0.0}  # ties counted as correct would give 1.0
    assert r.per_tier == {"local": 0.5, "structural": 0.0} and r.overall == 0.25
    assert r.counts == {"agree": 2, "same": 2}


def test_grammar_suite_reports_every_paradigm_and_tier():
    tok = ByteTokenizer()
    pairs = minimal_pair_suite(per_paradigm=6)
    r = evaluate_pairs(constant_model(), tok, pairs)
    assert set(r.per_paradigm) == set(PARADIGMS) and r.tiers == PARADIGMS
    assert set(r.per_tier) == set(PARADIGMS.values())
    for name in PARADIGMS:  # a constant model prefers the shorter sentence and never wins a tie
        mine = [p for p in pairs if p.paradigm == name]
        expected = sum(len(p.good.encode()) < len(p.bad.encode()) for p in mine) / len(mine)
        assert r.per_paradigm[name] == expected
    table = format_pair_table(r)
    assert all(name in table for name in PARADIGMS) and "not yet" in table
