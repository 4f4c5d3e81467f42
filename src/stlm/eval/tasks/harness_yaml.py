"""lm-evaluation-harness task YAMLs, run by stlm without lm-eval and without running code.

A file with a `task:` key is read as lm-eval 0.4 task config: `doc_to_text`, `doc_to_choice`,
`doc_to_target` (a field name or a Jinja2 template, `templates`), `target_delimiter`,
`description`, `metric_list` (acc, acc_norm), `include` of a base file, and data from
`dataset_path` (+ `dataset_name`, a hub dataset) or `dataset_path: json|csv` with
`dataset_kwargs: {data_files: {split: file}}` (relative paths are relative to the YAML file).
Requests are built exactly as lm-eval's `ConfigurableTask` builds them for zero-shot multiple
choice: context = description + doc_to_text, each choice after target_delimiter, gold an index
or the text of a choice.

Python hooks (`!function utils.f`) are refused with a message: express them as templates or as
`process_docs` transforms (see `templates` and docs/adding_a_task.md, which ports COPA).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

from stlm.errors import UserError
from stlm.eval.sources import Record, hub_records, read_table
from stlm.eval.tasks import templates
from stlm.eval.tasks.base import TARGET_DELIMITER, Item, MultipleChoiceTask, choice_item

USED = {"task", "dataset_path", "dataset_name", "dataset_kwargs", "output_type", "validation_split",
        "test_split", "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter",
        "description", "metric_list", "num_fewshot", "process_docs"}
IGNORED = {"tag", "group", "task_alias", "training_split", "fewshot_split", "fewshot_config",
           "fewshot_delimiter", "should_decontaminate", "doc_to_decontamination_query", "metadata",
           "unsafe_code"}  # no effect on zero-shot multiple-choice scoring
METRICS = ("acc", "acc_norm")
LOCAL_BUILDERS = ("json", "csv")


class Function(str):
    """A `!function module.name` value: Python code, which a task file may not run."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: Function(loader.construct_scalar(node)))


def read_spec(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's keys over those of its `include` (lm-eval's inheritance, relative to the file)."""
    if path in seen:
        raise UserError(f"{path}: include cycle ({' -> '.join(map(str, seen + (path,)))})")
    try:
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a YAML task file (not UTF-8 text: a binary file?)") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a mapping of task keys")
    for key, value in spec.items():
        if isinstance(value, Function):
            raise UserError(f"{path}: '{key}: !function {value}' runs Python code, which stlm task files "
                            f"cannot; write it as a Jinja2 template or a process_docs transform "
                            f"(docs/adding_a_task.md shows COPA's utils.py ported)")
    include = spec.pop("include", None)
    if include is None:
        return spec
    base = path.parent / str(include)
    if not base.is_file():
        raise UserError(f"{path}: included file {base} does not exist")
    return {**read_spec(base, seen + (path,)), **spec}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


class HarnessYamlTask(MultipleChoiceTask):
    """One lm-eval `multiple_choice` task config, zero-shot."""

    def __init__(self, spec: dict[str, Any], origin: Path):
        def fail(problem: str) -> UserError:
            return UserError(f"{origin}: {problem}")

        unknown = sorted(set(spec) - USED - IGNORED)
        if unknown:
            raise fail(f"lm-eval key '{unknown[0]}' is not supported by stlm's YAML tasks "
                       f"(supported: {', '.join(sorted(USED))})")
        name = spec["task"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise fail(f"task {name!r} must be a name of letters, digits, '_', '.', '-'")
        if spec.get("output_type", "multiple_choice") != "multiple_choice":
            raise fail(f"output_type {spec['output_type']!r} is not supported (only multiple_choice)")
        if spec.get("num_fewshot") not in (None, 0):
            raise fail("num_fewshot must be 0 (stlm evaluates zero-shot)")
        for key in ("dataset_path", "doc_to_text", "doc_to_target", "doc_to_choice"):
            if key not in spec:
                raise fail(f"missing required key '{key}'")
        self.split = spec.get("test_split") or spec.get("validation_split")
        if not self.split:
            raise fail("give test_split or validation_split (the split that is evaluated)")
        metrics = tuple(m.get("metric") if isinstance(m, dict) else m for m in spec.get("metric_list") or [])
        self.metrics = metrics or METRICS  # lm-eval's default for multiple_choice
        if any(m not in METRICS for m in self.metrics):
            raise fail(f"metric_list may only hold {list(METRICS)}, got {list(self.metrics)}")
        self.transforms = spec.get("process_docs") or {}
        if not isinstance(self.transforms, dict) or not all(isinstance(v, str) for v in self.transforms.values()):
            raise fail("process_docs must map field names to Jinja2 expressions, e.g. "
                       "{goal: 'goal.lstrip()', label: 'label - 1'}")
        for field, source in self.transforms.items():
            templates.check_expression(source, f"process_docs.{field}", origin)
        for key in ("doc_to_text", "doc_to_target", "doc_to_choice", "description"):
            if isinstance(spec.get(key), str):
                templates.check_template(spec[key], key, origin)
        self.spec, self.origin, self.name = spec, origin, name
        self.summary = f"lm-eval task config {origin.name}"
        self.group_keys = ()

    def records(self, root: Path | None) -> list[Record]:
        """The evaluated split, from the files in `dataset_kwargs.data_files` or the hub."""
        path = self.spec["dataset_path"]
        if path not in LOCAL_BUILDERS:
            return hub_records(path, self.spec.get("dataset_name"), self.split)
        files = (self.spec.get("dataset_kwargs") or {}).get("data_files")
        if isinstance(files, dict):
            files = files.get(self.split)
        if files is None:
            raise UserError(f"{self.origin}: dataset_path: {path} needs dataset_kwargs.data_files "
                            f"with a file for the split '{self.split}'")
        out = []
        for f in [files] if isinstance(files, str) else files:
            file = (self.origin.parent / f).resolve()
            if not file.is_file():
                raise UserError(f"{self.origin}: data file {file} does not exist")
            out += read_table(file)
        return out

    def _field_or_template(self, key: str, doc: dict[str, Any], record: Record) -> Any:
        """lm-eval's rule: a string naming a field is that field's value, else a template."""
        value = self.spec.get(key)
        if isinstance(value, str) and value in doc:
            return doc[value]
        if isinstance(value, str):
            return templates.render(value, doc, record, key)
        return value

    def item(self, record: Record) -> Item:
        doc = templates.process_doc(self.transforms, record)
        text = self._field_or_template("doc_to_text", doc, record)
        if not isinstance(text, str) or text.isdigit():
            raise UserError(f"{record.where()}: doc_to_text gave {text!r}; multiple-input tasks (a choice "
                            f"index as the context, like WinoGrande) are not supported in YAML")
        choices = self._choices(doc, record)
        gold = self._gold(doc, record, choices)
        description = self._field_or_template("description", doc, record) or ""
        return choice_item(description + text, choices, gold,
                           delimiter=self.spec.get("target_delimiter", TARGET_DELIMITER))

    def _choices(self, doc: dict[str, Any], record: Record) -> list[str]:
        spec = self.spec["doc_to_choice"]
        if isinstance(spec, dict):
            choices = list(spec.values())
        elif isinstance(spec, str) and spec not in doc:
            choices = _literal(templates.render(spec, doc, record, "doc_to_choice"))
        else:
            choices = self._field_or_template("doc_to_choice", doc, record)
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise UserError(f"{record.where()}: doc_to_choice must give a list of at least 2 strings, "
                            f"got {choices!r}")
        return choices

    def _gold(self, doc: dict[str, Any], record: Record, choices: list[str]) -> int:
        target = self._field_or_template("doc_to_target", doc, record)
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        elif isinstance(target, str) and target.startswith("[") and target.endswith("]"):
            target = _literal(target) or target
        if isinstance(target, str):
            if target not in choices:
                raise UserError(f"{record.where()}: doc_to_target {target!r} is not one of the choices {choices}")
            return choices.index(target)
        if isinstance(target, bool) or not isinstance(target, int):
            raise UserError(f"{record.where()}: doc_to_target gave {target!r}; expected a choice index or "
                            f"a choice's text (several gold answers are not supported)")
        if not 0 <= target < len(choices):
            raise UserError(f"{record.where()}: gold index {target} is out of range for {len(choices)} choices")
        return target
