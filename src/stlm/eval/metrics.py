"""The scoring rule of every multiple-choice task, and its aggregation as lm-evaluation-harness does it.

- `acc`: the choice with the highest summed log-probability is the gold one.
- `acc_norm`: the same after dividing each log-probability by the number of CHARACTERS of the
  choice text (lm-eval's `completion_len = len(choice)`, the `doc_to_choice` string without the
  target delimiter) -- characters, not bytes and not tokens.
- A tie at the top counts as wrong. This is the one deliberate deviation from the harness, whose
  `np.argmax` picks the lowest tied index, so a model that scores every choice alike would be
  "right" whenever the gold answer is first (the STLM evaluator's BLiMP and MMLU bug). With real
  float scores ties practically never happen; they are counted and reported as `ties`.
- An item with a choice longer than the model's trained context window is scored whole, in
  consecutive windows (`stlm.eval.scoring`; lm-eval's `hf` backend refuses such items); such
  items are counted and reported as `long_continuations`.
- Standard errors are lm-eval's: the sample standard deviation over items / sqrt(n) for a task;
  for a task made of subtasks (BLiMP paradigms, MMLU subjects), the group formulas of
  `lm_eval.api.group`: pooled variance when the overall score weights subtasks by size, and
  sqrt(sum se_i^2) / k for an unweighted mean of k subtask scores.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from stlm.eval.tasks.base import Item


def pick(scores: Sequence[float]) -> int | None:
    """Index of the strictly highest score; None when two or more choices tie at the top."""
    best = max(scores)
    winners = [i for i, s in enumerate(scores) if s == best]
    return winners[0] if len(winners) == 1 else None


@dataclass(frozen=True)
class ItemResult:
    logprobs: tuple[float, ...]
    pred: int | None  # None: tied at the top
    pred_norm: int | None
    gold: int
    long: bool = False  # a choice was longer than the context window (scored in several windows)

    @property
    def values(self) -> dict[str, float]:
        return {"acc": float(self.pred == self.gold), "acc_norm": float(self.pred_norm == self.gold)}


def judge(item: Item, logprobs: Sequence[float], long: bool = False) -> ItemResult:
    normed = [lp / n for lp, n in zip(logprobs, item.norm_lengths)]
    return ItemResult(tuple(logprobs), pick(logprobs), pick(normed), item.gold, long)


def mean_stderr(values: Sequence[float]) -> float | None:
    """lm-eval's `mean_stderr`: sample standard deviation (n - 1) / sqrt(n); None below 2 items."""
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def _leaf(results: list[ItemResult], metrics: Sequence[str]) -> dict:
    out: dict = {"n": len(results)}
    for m in metrics:
        values = [r.values[m] for r in results]
        out[m] = sum(values) / len(values)
        out[f"{m}_stderr"] = mean_stderr(values)
    return out


def _combine(parts: list[dict], metrics: Sequence[str], weight_by_size: bool) -> dict:
    """lm_eval.api.group: aggregate_subtask_metrics + pooled_sample_stderr / unweighted_mean_stderr."""
    sizes = [p["n"] for p in parts]
    out: dict = {"n": sum(sizes)}
    for m in metrics:
        weights = sizes if weight_by_size else [1] * len(parts)
        out[m] = sum(p[m] * w for p, w in zip(parts, weights)) / sum(weights)
        errs = [p[f"{m}_stderr"] for p in parts]
        if any(e is None for e in errs) or (weight_by_size and sum(sizes) == len(parts)):
            out[f"{m}_stderr"] = None
        elif weight_by_size:
            pooled = sum((s - 1) * e ** 2 * s for s, e in zip(sizes, errs)) / (sum(sizes) - len(sizes))
            out[f"{m}_stderr"] = math.sqrt(pooled / sum(sizes))
        else:
            out[f"{m}_stderr"] = math.sqrt(sum(e ** 2 for e in errs)) / len(errs)
    return out


def summarize(items: Sequence[Item], results: Sequence[ItemResult], metrics: Sequence[str],
              subtask: str | None, weight_by_size: bool, group_keys: Sequence[str]) -> dict:
    """Overall metrics, tie counts, and the same metrics per value of each group key."""
    labels = [dict(item.groups) for item in items]

    def score(selected: list[int]) -> dict:
        if subtask is None:
            return _leaf([results[i] for i in selected], metrics)
        by_sub: dict[str, list[ItemResult]] = defaultdict(list)
        for i in selected:
            by_sub[labels[i][subtask]].append(results[i])
        return _combine([_leaf(by_sub[s], metrics) for s in sorted(by_sub)], metrics, weight_by_size)

    everything = list(range(len(results)))
    out = score(everything)
    out["ties"] = {"acc": sum(r.pred is None for r in results)}
    if "acc_norm" in metrics:
        out["ties"]["acc_norm"] = sum(r.pred_norm is None for r in results)
    out["long_continuations"] = sum(r.long for r in results)
    groups: dict[str, dict[str, dict]] = {}
    for key in group_keys:
        members: dict[str, list[int]] = defaultdict(list)
        for i in everything:
            members[labels[i][key]].append(i)
        groups[key] = {value: score(members[value]) for value in sorted(members)}
    if groups:
        out["groups"] = groups
    return out
