"""WinoGrande (Sakaguchi et al., 2020, arXiv 1907.10641): fill the blank "_" with one of two
names; xl validation (1,267 items).

As lm-eval's `winogrande`, partial scoring (Trinh & Le, 2018): each option is substituted into the
sentence and only the text after the blank is scored, conditioned on the prefix with the option.
So the two requests share a continuation and differ in context. lm-eval reports `acc` only.
"""

from __future__ import annotations

from pathlib import Path

from stlm.eval.sources import Record, hub_records, local_file, read_jsonl
from stlm.eval.tasks.base import TARGET_DELIMITER, Item, MultipleChoiceTask


class WinoGrande(MultipleChoiceTask):
    name = "winogrande"
    summary = "WinoGrande xl validation, 1,267 two-way blanks, partial scoring (acc)"
    split = "validation"
    metrics = ("acc",)

    def records(self, root: Path | None) -> list[Record]:
        if root is not None:
            return read_jsonl(local_file(root, "winogrande/winogrande_xl-validation.jsonl", self.name))
        return hub_records("allenai/winogrande", "winogrande_xl", "validation")

    def item(self, record: Record) -> Item:
        sentence = record.text("sentence")
        if "_" not in sentence:
            raise record.fail("sentence", f"has no blank '_' to fill: {sentence!r}")
        blank = sentence.index("_")
        target = sentence[blank + 1:].strip()
        if not target:
            raise record.fail("sentence", "has nothing after the blank to score")
        contexts = [sentence[:blank] + record.text(option) for option in ("option1", "option2")]
        gold = record.index("answer", 2, ["1", "2"])
        # lm-eval's doc_to_choice is the partial contexts: their lengths are its acc_norm denominator
        return Item(tuple((c, TARGET_DELIMITER + target) for c in contexts), gold,
                    tuple(len(c) for c in contexts))


WINOGRANDE = WinoGrande()
