"""Mixes and curricula: which documents, in which order, make up a split.

A mix interleaves several sources deterministically so that each contributes a share of the text
(in characters) proportional to its weight: the next document always comes from the source
furthest below its share (smooth weighted round robin). This is how the STLM data mix of simple
Wikipedia, Python code, OpenHermes and TinyStories is expressed (`conf/data/stlm_mix.yaml`). A
source that runs out leaves the others to continue.

Stages form a curriculum (Bengio et al. 2009, https://dl.acm.org/doi/10.1145/1553374.1553380):
the train split is stage 1's mix for `tokens` tokens, then stage 2's, and so on; a stage with
tokens=0 runs until its sources are exhausted. The validation split is the last stage's mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from stlm.config.schema import DataConfig, SourceConfig
from stlm.data.sources import Doc, check_source, read_source
from stlm.errors import UserError

Placed = Tuple[str, SourceConfig]  # (its config path for messages, e.g. data.sources.0; the source)


@dataclass(frozen=True)
class Stage:
    sources: List[Placed]
    tokens: Optional[int]  # None: until the sources (or the split's token cap) run out


def stages(cfg: DataConfig, split: str) -> List[Stage]:
    """The ordered stages that make up `split` (a single stage when no curriculum is set)."""
    if not cfg.stages:
        if not cfg.sources:
            raise UserError("data.sources is empty: add a source, e.g. data=grammar or data=tinystories")
        plan = [Stage([(f"data.sources.{i}", s) for i, s in enumerate(cfg.sources)], None)]
    else:
        plan = []
        for k, stage in enumerate(cfg.stages):
            if not stage.sources:
                raise UserError(f"data.stages.{k}.sources is empty: give each stage at least one source")
            placed = [(f"data.stages.{k}.sources.{i}", s) for i, s in enumerate(stage.sources)]
            plan.append(Stage(placed, stage.tokens if stage.tokens > 0 else None))
    for stage in plan:
        for where, src in stage.sources:
            check_source(src, where)
    return plan if split == "train" else [Stage(plan[-1].sources, None)]


def mix(sources: Sequence[Placed], split: str, cfg: DataConfig) -> Iterator[Doc]:
    """Interleave the documents of `sources` so that their characters follow the weights."""
    streams = [read_source(src, split, cfg, where) for where, src in sources]
    weights = [src.weight for _, src in sources]
    chars = [0] * len(sources)
    docs = [0] * len(sources)
    live = list(range(len(sources)))
    while live:
        i = min(live, key=lambda j: chars[j] / weights[j])  # ties: the earliest source
        doc = next(streams[i], None)
        if doc is None:
            live.remove(i)
            if split == "train" and docs[i] == 0:
                where, src = sources[i]
                raise UserError(f"{where}: source '{src.name}'" + (f" at {src.path}" if src.path else "")
                                + " has no documents (empty or whitespace-only text); check its "
                                f"files or {where}.max_documents")
            continue
        chars[i] += len(doc[0])
        docs[i] += 1
        yield doc


def training_text(cfg: DataConfig, max_chars: int) -> Iterator[str]:
    """The first `max_chars` characters of the train split for learning a tokenizer; with stages,
    an equal share from the start of each stage so that every stage's text is represented."""
    plan = stages(cfg, "train")
    share = max_chars // len(plan)
    for stage in plan:
        left = share
        for text, _ in mix(stage.sources, "train", cfg):
            yield text[:left]
            left -= min(left, len(text))
            if left == 0:
                break
