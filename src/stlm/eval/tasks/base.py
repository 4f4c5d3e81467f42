"""A multiple-choice task: where its examples come from and how one becomes an `Item`.

An `Item` holds exactly the (context, continuation) strings that lm-evaluation-harness would
request for the same document, so scoring them the harness's way gives the harness's numbers.
Each task states its schema and formatting rule once, in `item`; the scoring rule is the same for
every task (`stlm.eval.metrics`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from stlm.eval.sources import Record

TARGET_DELIMITER = " "  # lm-eval's default `target_delimiter` between a context and a choice


@dataclass(frozen=True)
class Item:
    """One question: a (context, continuation) request per choice, the gold index, the lengths
    `acc_norm` divides by (lm-eval: characters of each `doc_to_choice` string, without the
    delimiter), and labels for per-group reporting, e.g. (("paradigm", "adjunct_island"),)."""

    requests: tuple[tuple[str, str], ...]
    gold: int
    norm_lengths: tuple[int, ...]
    groups: tuple[tuple[str, str], ...] = ()


def choice_item(context: str, choices: list[str], gold: int,
                groups: tuple[tuple[str, str], ...] = (), delimiter: str = TARGET_DELIMITER) -> Item:
    """The common shape: every choice continues one shared context (lm-eval's default)."""
    return Item(tuple((context, delimiter + c) for c in choices), gold,
                tuple(len(c) for c in choices), groups)


class MultipleChoiceTask(ABC):
    name: str
    summary: str
    split: str
    metrics: tuple[str, ...] = ("acc", "acc_norm")  # what lm-eval's task config reports
    subtask: str | None = None  # group key of lm-eval's subtasks: --limit applies per subtask
    weight_by_size: bool = True  # overall score: mean over items (True) or over subtasks (False)
    group_keys: tuple[str, ...] = ()  # labels reported separately (subtask first)

    @abstractmethod
    def records(self, root: Path | None) -> list[Record]:
        """All examples of the standard split: local files under `root`, or the hub when None."""

    @abstractmethod
    def item(self, record: Record) -> Item:
        """The requests lm-eval builds for this document (raises UserError on bad fields)."""
