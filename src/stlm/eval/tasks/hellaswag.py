"""HellaSwag (Zellers et al., 2019, arXiv 1905.07830): pick the ending of an ActivityNet or
WikiHow passage; validation split (10,042 items), the one everyone reports.

As lm-eval's `hellaswag`: the context is `activity_label: ctx_a + " " + ctx_b.capitalize()`, and
context and endings go through the same `preprocess` (WikiHow's "[title]" becomes ". ", other
bracketed markup is removed, double spaces collapse).
"""

from __future__ import annotations

import re
from pathlib import Path

from stlm.eval.sources import Record, hub_records, local_file, read_jsonl
from stlm.eval.tasks.base import Item, MultipleChoiceTask, choice_item


def preprocess(text: str) -> str:
    """lm_eval/tasks/hellaswag/utils.py `preprocess`, verbatim in effect."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


class HellaSwag(MultipleChoiceTask):
    name = "hellaswag"
    summary = "HellaSwag validation, 10,042 four-way sentence completions (acc, acc_norm)"
    split = "validation"

    def records(self, root: Path | None) -> list[Record]:
        if root is not None:
            return read_jsonl(local_file(root, "hellaswag/hellaswag_val.jsonl", self.name))
        return hub_records("Rowan/hellaswag", None, "validation")

    def item(self, record: Record) -> Item:
        ctx = record.text("ctx_a", allow_empty=True) + " " + record.text("ctx_b", allow_empty=True).capitalize()
        query = preprocess(record.text("activity_label") + ": " + ctx)
        endings = record.texts("endings")
        choices = [preprocess(e) for e in endings]
        for i, c in enumerate(choices):
            if not c:
                raise record.fail(f"endings.{i}", f"is empty after HellaSwag's preprocessing ({endings[i]!r})")
        return choice_item(query, choices, record.index("label", len(choices)))


HELLASWAG = HellaSwag()
