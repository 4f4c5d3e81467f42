"""Multiple-choice tasks defined in YAML, no code: a data file (or hub dataset), templates for the
context and the choices, and the gold field. See docs/adding_a_task.md.

    name: sciq_local                       # --tasks name and output file name
    path: sciq.jsonl                       # local .jsonl/.csv, relative to this file (or `hub:`)
    context: "Question: {question}\\nAnswer:"
    choices: ["{distractor1}", "{distractor2}", "{correct_answer}"]   # or choices_field: options
    gold: 2                                # a field name, or a fixed index
    labels: [A, B, C]                      # optional: map a gold label to its index

Templates are Python format strings over the record's fields (`{field}`, `{field[0]}`,
`{field[key]}`). Scoring is the built-in tasks' (lm-eval's): each choice after `target_delimiter`
(default " "), acc and acc_norm (characters of the choice text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stlm.errors import UserError
from stlm.eval.sources import Record, hub_records, read_table
from stlm.eval.tasks.base import TARGET_DELIMITER, Item, MultipleChoiceTask, choice_item
from stlm.eval.tasks.harness_yaml import HarnessYamlTask, read_spec

KEYS = {"name", "summary", "path", "hub", "hub_config", "split", "context", "choices", "choices_field",
        "gold", "labels", "labels_field", "target_delimiter", "metrics", "group"}
METRICS = ("acc", "acc_norm")


class YamlTask(MultipleChoiceTask):
    def __init__(self, spec: dict[str, Any], origin: Path):
        def fail(problem: str) -> UserError:
            return UserError(f"{origin}: {problem}")

        unknown = sorted(set(spec) - KEYS)
        if unknown:
            raise fail(f"unknown key '{unknown[0]}' (allowed: {', '.join(sorted(KEYS))})")
        for key in ("name", "context", "gold"):
            if key not in spec:
                raise fail(f"missing required key '{key}'")
        if ("path" in spec) == ("hub" in spec):
            raise fail("give exactly one data source: 'path' (a local .jsonl/.csv) or 'hub' (a dataset id)")
        if ("choices" in spec) == ("choices_field" in spec):
            raise fail("give exactly one of 'choices' (a list of templates) or 'choices_field' (a field name)")
        if "labels" in spec and "labels_field" in spec:
            raise fail("give at most one of 'labels' and 'labels_field'")
        if "hub" in spec and "split" not in spec:
            raise fail("'hub' needs 'split' (e.g. test)")
        if not isinstance(spec["name"], str) or not spec["name"].isidentifier():
            raise fail(f"name {spec['name']!r} must be a plain identifier (letters, digits, _)")
        choices = spec.get("choices")
        if choices is not None and (not isinstance(choices, list) or len(choices) < 2
                                    or not all(isinstance(c, str) for c in choices)):
            raise fail("'choices' must be a list of at least 2 template strings")
        metrics = tuple(spec.get("metrics", METRICS))
        if not metrics or any(m not in METRICS for m in metrics):
            raise fail(f"'metrics' must be a non-empty subset of {list(METRICS)}")
        self.spec, self.origin = spec, origin
        self.name = spec["name"]
        self.split = str(spec.get("split", "all"))
        self.summary = spec.get("summary") or f"user task from {origin.name}"
        self.metrics = metrics
        self.group_keys = (spec["group"],) if spec.get("group") else ()

    def records(self, root: Path | None) -> list[Record]:
        if "path" in self.spec:
            path = (self.origin.parent / self.spec["path"]).resolve()
            if not path.is_file():
                raise UserError(f"{self.origin}: data file {path} does not exist")
            return read_table(path)
        return hub_records(self.spec["hub"], self.spec.get("hub_config"), self.spec["split"])

    def item(self, record: Record) -> Item:
        context = _render(self.spec["context"], record, "context")
        if "choices_field" in self.spec:
            choices = record.texts(self.spec["choices_field"])
        else:
            choices = [_render(t, record, f"choices[{i}]") for i, t in enumerate(self.spec["choices"])]
            for i, c in enumerate(choices):
                if not c.strip():
                    raise UserError(f"{record.where()}: choice {i} (template {self.spec['choices'][i]!r}) is empty")
        labels = self.spec.get("labels")
        if "labels_field" in self.spec:
            labels = record.texts(self.spec["labels_field"])
        gold = self.spec["gold"]
        if isinstance(gold, int):
            if not 0 <= gold < len(choices):
                raise UserError(f"{self.origin}: gold index {gold} is out of range for {len(choices)} choices")
        else:
            gold = record.index(gold, len(choices), [str(x) for x in labels] if labels is not None else None)
        groups = tuple((k, str(record.get(k))) for k in self.group_keys)
        return choice_item(context, choices, gold, groups, self.spec.get("target_delimiter", TARGET_DELIMITER))


def _render(template: str, record: Record, what: str) -> str:
    try:
        return template.format_map(record.data)
    except KeyError as e:
        raise record.fail(str(e.args[0]), f"is missing (used by the {what} template {template!r})") from e
    except (IndexError, AttributeError, TypeError, ValueError) as e:
        raise UserError(f"{record.where()}: cannot fill the {what} template {template!r} ({e})") from e


def load_task_files(paths: list[str | Path]) -> list[MultipleChoiceTask]:
    """Tasks from YAML files, or from every *.yaml / *.yml in a directory: stlm's format, or
    lm-eval's task config (a file with a `task:` key, `harness_yaml`)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise UserError(f"task directory {p} holds no .yaml files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"task file {p} does not exist")
    tasks: list[MultipleChoiceTask] = []
    for f in files:
        spec = read_spec(f)
        tasks.append(HarnessYamlTask(spec, f) if "task" in spec else YamlTask(spec, f))
    return tasks
