"""Run one multiple-choice task on a model: read examples, pick the subset, build lm-eval's
requests, score them in batches, and summarise.

`--limit N` takes a seeded random sample of N examples (per subtask: per BLiMP paradigm, per MMLU
subject, as lm-eval's --limit applies per task), kept in file order. The same N and seed give the
same subset on every run and machine; it is not the first N (files are often sorted by type).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from stlm.eval.metrics import ItemResult, judge, summarize
from stlm.eval.requests import encode_requests
from stlm.eval.scoring import Score, score_continuations
from stlm.eval.sources import Record
from stlm.eval.tasks.base import Item, MultipleChoiceTask
from stlm.tokenizers.base import Tokenizer

SUBSET_SEED = 1234


def select_subset(records: Sequence[Record], limit: int | None, task: str,
                  seed: int = SUBSET_SEED) -> list[Record]:
    """`limit` records per subtask (all when None), sampled with a generator seeded by
    (seed, task, subtask), returned in their original order."""
    if limit is None:
        return list(records)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    by_sub: dict[str | None, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_sub[r.subtask].append(i)
    keep: list[int] = []
    for sub, indices in by_sub.items():
        rng = random.Random(f"{seed}/{task}/{sub}")
        keep += indices if len(indices) <= limit else rng.sample(indices, limit)
    return [records[i] for i in sorted(keep)]


@dataclass
class TaskRun:
    """A task's summary (what goes to JSON) and its per-item outcomes (for checks and tests)."""

    summary: dict
    items: list[Item]
    results: list[ItemResult]


PROGRESS_ITEMS = 512  # items scored between two progress reports (results equal to float rounding)


def build_requests(tokenizer: Tokenizer, items: Sequence[Item],
                   prefix_token_id: int | None = None) -> list[tuple[list[int], list[int]]]:
    """The token requests (context ids, continuation ids) of `items`, every item's in order."""
    return encode_requests(tokenizer, [req for item in items for req in item.requests], prefix_token_id)


def judge_items(items: Sequence[Item], scores: Sequence[Score]) -> list[ItemResult]:
    """Each item's outcome from the scores of its requests (`scores` in `build_requests` order)."""
    out, pos = [], 0
    for item in items:
        mine = scores[pos : pos + len(item.requests)]
        out.append(judge(item, [s.logprob for s in mine], long=any(s.windows > 1 for s in mine)))
        pos += len(item.requests)
    return out


def score_items(model: torch.nn.Module, tokenizer: Tokenizer, items: Sequence[Item], batch_size: int = 64,
                device: torch.device | str | None = None, prefix_token_id: int | None = None,
                context_length: int | None = None,
                progress: Callable[[int, int], None] | None = None, pauses: int | None = None) -> list[ItemResult]:
    """Each item's outcome, scored with at most `context_length` tokens of context (the trained
    one; default the model's) and `pauses` pause tokens before each choice (default: the model's).
    `progress(done, total)` is called after every `PROGRESS_ITEMS`."""
    out: list[ItemResult] = []
    for start in range(0, len(items), PROGRESS_ITEMS):
        chunk = items[start : start + PROGRESS_ITEMS]
        requests = build_requests(tokenizer, chunk, prefix_token_id)
        out += judge_items(chunk, score_continuations(model, requests, batch_size, device, context_length,
                                                            pauses=pauses))
        if progress is not None:
            progress(len(out), len(items))
    return out


def run_task(task: MultipleChoiceTask, model: torch.nn.Module, tokenizer: Tokenizer, root: Path | None,
             limit: int | None = None, batch_size: int = 64, device: torch.device | str | None = None,
             seed: int = SUBSET_SEED, prefix_token_id: int | None = None,
             context_length: int | None = None, progress: Callable[[int, int], None] | None = None,
             pauses: int | None = None) -> TaskRun:
    """Score `task` (see the module docstring); `prefix_token_id` as in `encode_requests`, and
    recorded in the summary with where it came from (chosen, bos or eot)."""
    start = time.perf_counter()
    records = task.records(root)
    items = [task.item(r) for r in records]  # validates every example, not just the subset
    if limit is not None:
        chosen = {id(r) for r in select_subset(records, limit, task.name, seed)}
        items = [it for r, it in zip(records, items) if id(r) in chosen]
    loaded = time.perf_counter()
    window = min(context_length or model.cfg.context_length, model.cfg.context_length)
    results = score_items(model, tokenizer, items, batch_size, device, prefix_token_id, window, progress, pauses)
    prefix, prefix_source = tokenizer.prefix_id(prefix_token_id)
    scored = time.perf_counter()
    sources = {r.source for r in records}
    summary = {"task": task.name, "split": task.split,
               "source": sources.pop() if len(sources) == 1 else str(root) if root else "hub",
               "limit": limit, "subset_seed": seed if limit is not None else None, "context": window,
               "pauses": getattr(model, "pause_tokens", 0) if pauses is None else pauses,
               "prefix_token_id": prefix, "prefix_token": prefix_source,
               **summarize(items, results, task.metrics, task.subtask,
                           task.weight_by_size, task.group_keys),
               "seconds": round(scored - start, 3), "items_per_s": round(len(items) / max(scored - loaded, 1e-9), 2)}
    return TaskRun(summary, items, results)
