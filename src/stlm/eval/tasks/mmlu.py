"""MMLU (Hendrycks et al., 2021, arXiv 2009.03300): 57 subjects of four-way questions; the test
split (14,042 items). Two formats, both as lm-evaluation-harness writes them:

- `mmlu` = lm-eval's `mmlu_continuation`: "Question: {question}\nAnswer:" and each answer text as
  the continuation. It suits tiny models: they can rank answer texts long before they can map
  them to letters.
- `mmlu_letter` = lm-eval's `mmlu` (the standard format): question, the options as "A. ...", and
  the letters " A" ... " D" as the continuations.

Each subject's prompt starts with its description ("The following are [multiple choice]
questions (with answers) about {subject}.\n\n"), as in the harness. The four choices are exactly
the four options, each once (the STLM evaluator duplicated the correct answer among the
distractors). The overall score is the mean over all items (lm-eval: weight_by_size true).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stlm.eval.sources import Record, hub_records, local_file, read_csv
from stlm.eval.tasks.base import Item, MultipleChoiceTask, choice_item

# lm_eval/tasks/mmlu/_generate_configs.py: subject -> category
SUBJECTS = {
    "abstract_algebra": "stem", "anatomy": "stem", "astronomy": "stem", "business_ethics": "other",
    "clinical_knowledge": "other", "college_biology": "stem", "college_chemistry": "stem",
    "college_computer_science": "stem", "college_mathematics": "stem", "college_medicine": "other",
    "college_physics": "stem", "computer_security": "stem", "conceptual_physics": "stem",
    "econometrics": "social_sciences", "electrical_engineering": "stem", "elementary_mathematics": "stem",
    "formal_logic": "humanities", "global_facts": "other", "high_school_biology": "stem",
    "high_school_chemistry": "stem", "high_school_computer_science": "stem",
    "high_school_european_history": "humanities", "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences", "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem", "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem", "high_school_psychology": "social_sciences",
    "high_school_statistics": "stem", "high_school_us_history": "humanities",
    "high_school_world_history": "humanities", "human_aging": "other", "human_sexuality": "social_sciences",
    "international_law": "humanities", "jurisprudence": "humanities", "logical_fallacies": "humanities",
    "machine_learning": "stem", "management": "other", "marketing": "other", "medical_genetics": "other",
    "miscellaneous": "other", "moral_disputes": "humanities", "moral_scenarios": "humanities",
    "nutrition": "other", "philosophy": "humanities", "prehistory": "humanities",
    "professional_accounting": "other", "professional_law": "humanities", "professional_medicine": "other",
    "professional_psychology": "social_sciences", "public_relations": "social_sciences",
    "security_studies": "social_sciences", "sociology": "social_sciences", "us_foreign_policy": "social_sciences",
    "virology": "other", "world_religions": "humanities",
}
LETTERS = ("A", "B", "C", "D")


class MMLU(MultipleChoiceTask):
    split = "test"
    subtask = "subject"
    group_keys = ("subject", "category")

    def __init__(self, name: str, letter: bool):
        self.name, self.letter = name, letter
        fmt = "letter format, choices ' A'..' D' (acc)" if letter else "continuation format (acc, acc_norm)"
        self.summary = f"MMLU test, 57 subjects, 14,042 questions, {fmt}"
        self.metrics = ("acc",) if letter else ("acc", "acc_norm")  # as lm-eval's mmlu / mmlu_continuation

    def records(self, root: Path | None) -> list[Record]:
        if root is not None:
            return [r for s in SUBJECTS for r in read_csv(local_file(root, f"mmlu/test/{s}_test.csv", self.name), s)]
        return [dataclasses.replace(r, subtask=r.get("subject")) for r in hub_records("cais/mmlu", "all", "test")]

    def options(self, record: Record) -> list[str]:
        """The four options: hub layout `choices`, or csv columns choice0..choice3."""
        if "choices" in record.data:
            options = record.texts("choices", min_len=4)
            if len(options) != 4:
                raise record.fail("choices", f"has {len(options)} options; MMLU has exactly 4")
            return options
        return [record.text(f"choice{i}") for i in range(4)]

    def item(self, record: Record) -> Item:
        subject = record.subtask or ""
        if subject not in SUBJECTS:
            raise record.fail("subject", f"= {subject!r} is not one of the 57 MMLU subjects")
        question = record.text("question").strip()
        options = self.options(record)
        gold = record.index("answer", 4)
        groups = (("subject", subject), ("category", SUBJECTS[subject]))
        topic = subject.replace("_", " ")
        if self.letter:
            listed = "".join(f"\n{letter}. {o}" for letter, o in zip(LETTERS, options))
            context = (f"The following are multiple choice questions (with answers) about {topic}.\n\n"
                       f"{question}{listed}\nAnswer:")
            return choice_item(context, list(LETTERS), gold, groups)
        context = f"The following are questions (with answers) about {topic}.\n\nQuestion: {question}\nAnswer:"
        return choice_item(context, options, gold, groups)


MMLU_CONTINUATION = MMLU("mmlu", letter=False)
MMLU_LETTER = MMLU("mmlu_letter", letter=True)
