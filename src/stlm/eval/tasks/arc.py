"""ARC (Clark et al., 2018, arXiv 1803.05457): grade-school science questions; the test splits of
ARC-Easy (2,376) and ARC-Challenge (1,172).

As lm-eval's `arc_easy` / `arc_challenge`: context "Question: {question}\nAnswer:", each choice
text after a space. Two record layouts are read: the original (`choices.text`, `choices.label`,
`answerKey`, as on the hub) and the evaluation-package one with a 0-based `gold` index and a plain
`choices` list (arc-easy/ARC-Easy-test.olmes-derived.jsonl in the data folder).
"""

from __future__ import annotations

from pathlib import Path

from stlm.eval.sources import Record, hub_records, local_file, read_jsonl
from stlm.eval.tasks.base import Item, MultipleChoiceTask, choice_item


class Arc(MultipleChoiceTask):
    split = "test"

    def __init__(self, name: str, hub_config: str, local: str, n_items: str):
        self.name, self.hub_config, self.local = name, hub_config, local
        self.summary = f"{hub_config} test, {n_items} science questions (acc, acc_norm)"

    def records(self, root: Path | None) -> list[Record]:
        if root is not None:
            return read_jsonl(local_file(root, self.local, self.name))
        return hub_records("allenai/ai2_arc", self.hub_config, "test")

    def item(self, record: Record) -> Item:
        context = f"Question: {record.text('question')}\nAnswer:"
        if isinstance(record.data.get("choices"), list):  # evaluation-package layout
            choices = record.texts("choices")
            return choice_item(context, choices, record.index("gold", len(choices)))
        choices = record.texts("choices.text")
        labels = record.texts("choices.label")
        if len(labels) != len(choices):
            raise record.fail("choices.label", f"has {len(labels)} labels for {len(choices)} choices")
        return choice_item(context, choices, record.index("answerKey", len(choices), labels))


ARC_EASY = Arc("arc_easy", "ARC-Easy", "arc-easy/ARC-Easy-test.olmes-derived.jsonl", "2,376")
ARC_CHALLENGE = Arc("arc_challenge", "ARC-Challenge", "arc-challenge/ARC-Challenge-test.jsonl", "1,172")
