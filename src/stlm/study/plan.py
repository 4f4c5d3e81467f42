"""How a study's budget turns into training and evaluation sizes.

Budget 1 is the default, sized for 2 CPU cores and at most ~30 minutes for the eight models of
the SLlama study. Measured on the development machine (2-core AMD EPYC, torch's default 2
threads, 4,096-token vocabulary): 9,000 to 14,000 training tokens per second when the cores are
idle, so 1.2M tokens take 1.5 to 2.2 minutes per model (evaluation adds well under a minute).
Other processes on the same cores can slow this tenfold (`--threads 1` then helps); the per-model
time cap, set well above the idle time so that it only bounds a study on a busy machine, keeps the
total bounded, and the report marks any run it cut short. `--budget X` multiplies
the tokens (for a GPU). The batch grows with sqrt(budget), so a larger budget gets both more and
larger steps; evaluation subsets grow with the budget until they cover whole task files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TOKENS_PER_MODEL = 1_200_000  # training tokens per model at budget 1
MINUTES_PER_MODEL = 5.0  # wall-clock cap per model at budget 1 (scaled with the budget, >= 1 min)
BLIMP_PAIRS = 50  # BLiMP pairs per paradigm at budget 1 (1,000 = all)
GRAMMAR_PAIRS = 100  # built-in grammar pairs per paradigm at budget 1 (at most 200)
TEST_TOKENS = 100_000  # tokens of WikiText-2 test scored at budget 1 (the file has ~300k)


@dataclass(frozen=True)
class Plan:
    budget: float
    context: int
    batch_size: int
    tokens: int  # training tokens per model (rounded up to whole steps)
    steps: int
    warmup_steps: int
    max_minutes: float  # a safety cap; the table reports the tokens each model really saw
    blimp_limit: int | None  # pairs per paradigm; None: all 1,000
    grammar_pairs: int  # per paradigm
    test_tokens: int

    def describe(self) -> str:
        blimp = "all" if self.blimp_limit is None else str(self.blimp_limit)
        return (f"budget {self.budget:g}: {self.tokens:,} tokens per model ({self.steps} steps of "
                f"{self.batch_size} x {self.context}), at most {self.max_minutes:g} min each; BLiMP "
                f"{blimp} pairs per paradigm, grammar {self.grammar_pairs} pairs per paradigm, "
                f"{self.test_tokens:,} WikiText-2 test tokens")


def plan_for(budget: float, context: int = 256) -> Plan:
    if not budget > 0:
        raise ValueError(f"--budget must be > 0, got {budget}")
    batch = int(min(128, max(8, 8 * 2 ** round(math.log2(max(budget, 1.0)) / 2))))
    steps = max(1, math.ceil(budget * TOKENS_PER_MODEL / (batch * context)))
    blimp = max(1, round(BLIMP_PAIRS * budget))
    return Plan(budget=budget, context=context, batch_size=batch, tokens=steps * batch * context,
                steps=steps, warmup_steps=max(1, steps // 10),
                max_minutes=max(1.0, MINUTES_PER_MODEL * budget),
                blimp_limit=None if blimp >= 1000 else blimp,
                grammar_pairs=max(5, min(200, round(GRAMMAR_PAIRS * budget))),
                test_tokens=max(2 * context, round(TEST_TOKENS * budget)))
