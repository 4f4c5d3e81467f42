"""The zero-shot multiple-choice tasks by name, plus user tasks from YAML (`yaml_task`)."""

from __future__ import annotations

from stlm.errors import UserError
from stlm.eval.tasks.arc import ARC_CHALLENGE, ARC_EASY
from stlm.eval.tasks.base import Item, MultipleChoiceTask, choice_item
from stlm.eval.tasks.blimp import BLIMP, BLIMP_FILTERED, BLIMP_SUPPLEMENT
from stlm.eval.tasks.hellaswag import HELLASWAG
from stlm.eval.tasks.mmlu import MMLU_CONTINUATION, MMLU_LETTER
from stlm.eval.tasks.winogrande import WINOGRANDE
from stlm.eval.tasks.yaml_task import YamlTask, load_task_files

TASKS: dict[str, MultipleChoiceTask] = {t.name: t for t in (
    BLIMP, BLIMP_FILTERED, BLIMP_SUPPLEMENT, HELLASWAG, ARC_EASY, ARC_CHALLENGE, WINOGRANDE,
    MMLU_CONTINUATION, MMLU_LETTER)}


def get_task(name: str, extra: dict[str, MultipleChoiceTask] | None = None) -> MultipleChoiceTask:
    known = {**TASKS, **(extra or {})}
    if name not in known:
        raise UserError(f"unknown task '{name}'; known: {', '.join(known)} (or define one in YAML, "
                        f"see docs/adding_a_task.md)")
    return known[name]


__all__ = ["TASKS", "Item", "MultipleChoiceTask", "YamlTask", "choice_item", "get_task", "load_task_files"]
