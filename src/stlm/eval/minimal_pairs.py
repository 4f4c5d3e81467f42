"""Minimal-pair accuracy (BLiMP, Warstadt et al., 2020, arXiv 1912.00582) on the built-in grammar.

Each sentence is scored as the summed log-probability of its tokens given the end-of-text token
as context (where a document starts in training). A pair counts as correct only when the good
sentence is strictly more probable than the bad one: a tie is wrong (the BabyLM/STLM evaluation
counted ties as correct, so a constant model scored 100% on pairs of equal length). Results are
reported per paradigm, per tier ("local": decidable from neighbouring words; "structural": needs
the sentence's structure) and overall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from stlm.config.schema import EvalConfig
from stlm.eval.scoring import score_continuations
from stlm.tokenizers.base import Tokenizer

LEARNED = 0.9  # accuracy at or above which a paradigm is reported as learned


@dataclass
class PairResults:
    per_paradigm: dict[str, float]  # accuracy in [0, 1]
    per_tier: dict[str, float]
    overall: float
    counts: dict[str, int] = field(default_factory=dict)  # pairs per paradigm
    tiers: dict[str, str] = field(default_factory=dict)  # paradigm -> tier

    def learned(self, paradigm: str) -> bool:
        return self.per_paradigm[paradigm] >= LEARNED

    def to_dict(self) -> dict:
        return {"overall": self.overall, "per_tier": self.per_tier, "per_paradigm": self.per_paradigm,
                "counts": self.counts, "tiers": self.tiers}

    @classmethod
    def from_dict(cls, d: dict) -> PairResults:
        return cls(d["per_paradigm"], d["per_tier"], d["overall"], d["counts"], d["tiers"])


def pair_correct(good_logprob: float, bad_logprob: float) -> bool:
    """Strictly better: a tie is not a success."""
    return good_logprob > bad_logprob


def evaluate_pairs(model: nn.Module, tokenizer: Tokenizer, pairs: Sequence, batch_size: int = 64,
                   context_length: int | None = None, pauses: int | None = None) -> PairResults:
    """Accuracy of `model` on `pairs` (objects with paradigm, tier, good, bad), scored with at most
    `context_length` tokens of context (the trained one; default the model's) and `pauses` pause
    tokens before each sentence (default: the model's)."""
    if not pairs:
        raise ValueError("no minimal pairs to evaluate")
    context = [tokenizer.eot_id]
    requests = []
    for p in pairs:
        requests += [(context, tokenizer.encode(p.good)), (context, tokenizer.encode(p.bad))]
    scores = score_continuations(model, requests, batch_size=batch_size, context_length=context_length,
                                 pauses=pauses)
    right: dict[str, int] = {}
    counts: dict[str, int] = {}
    tiers: dict[str, str] = {}
    for i, p in enumerate(pairs):
        ok = pair_correct(scores[2 * i].logprob, scores[2 * i + 1].logprob)
        right[p.paradigm] = right.get(p.paradigm, 0) + int(ok)
        counts[p.paradigm] = counts.get(p.paradigm, 0) + 1
        tiers[p.paradigm] = p.tier
    per_paradigm = {name: right[name] / counts[name] for name in counts}
    per_tier = {}
    for tier in sorted(set(tiers.values())):
        names = [n for n in counts if tiers[n] == tier]
        per_tier[tier] = sum(right[n] for n in names) / sum(counts[n] for n in names)
    overall = sum(right.values()) / sum(counts.values())
    return PairResults(per_paradigm, per_tier, overall, counts, tiers)


_EVAL = EvalConfig()  # the suite's default seed and size are stated there


def grammar_pair_accuracy(model: nn.Module, tokenizer: Tokenizer,
                          per_paradigm: int = _EVAL.pairs_per_paradigm, seed: int = _EVAL.pairs_seed,
                          batch_size: int = _EVAL.batch_size,
                          context_length: int | None = None, pauses: int | None = None) -> PairResults:
    """Accuracy on the built-in grammar's minimal-pair suite (`stlm.data.grammar`)."""
    from stlm.data.grammar import minimal_pair_suite

    return evaluate_pairs(model, tokenizer, minimal_pair_suite(seed=seed, per_paradigm=per_paradigm),
                          batch_size=batch_size, context_length=context_length, pauses=pauses)


def format_pair_table(results: PairResults, other: PairResults | None = None,
                      labels: tuple[str, str] = ("model", "other")) -> str:
    """A per-paradigm table grouped by tier; with `other`, two columns and their difference."""
    lines = []
    for tier in sorted(results.per_tier):
        head = f"  {tier} paradigms"
        if other is not None:
            head = f"{head:<40}{labels[0]:>10}{labels[1]:>10}{'diff':>8}"
        lines.append(head)
        for name in sorted(n for n in results.per_paradigm if results.tiers[n] == tier):
            acc = results.per_paradigm[name]
            if other is None:
                mark = "learned" if results.learned(name) else "not yet"
                lines.append(f"    {name:<34}{100 * acc:6.1f}%   {mark}")
            else:
                b = other.per_paradigm.get(name, float("nan"))
                lines.append(f"    {name:<36}{100 * acc:9.1f}%{100 * b:9.1f}%{100 * (acc - b):+8.1f}")
    return "\n".join(lines)
