"""lm-evaluation-harness's template language (Jinja2), sandboxed, plus document transforms.

lm-eval renders `doc_to_text`, `doc_to_choice` and `doc_to_target` as Jinja2 templates over a
document's fields (`lm_eval.utils.apply_template`: StrictUndefined, trailing newlines kept, a
`regex_replace` filter). We render them the same way, but in Jinja's
`ImmutableSandboxedEnvironment`: a task file can call safe methods (`premise.strip()`,
`choices.label.index(answerKey)`), index, slice and do arithmetic, but cannot reach Python
internals, import, or mutate anything, so a task file still cannot run code.

`process_docs` (stlm's declarative stand-in for lm-eval's Python `process_docs` / `!function`
helpers) is a mapping `field: expression`, evaluated in order, each seeing the fields set before it:

    process_docs:
      connector: "{'cause': 'because', 'effect': 'therefore'}[question]"   # a lookup
      goal: "goal.lstrip()"                                                  # string methods
      label: "label - 1"                                                     # label arithmetic

Expressions keep their Python type (an int stays an int).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from stlm.errors import UserError
from stlm.eval.sources import Record


def _regex_replace(string: str, pattern: str, repl: str, count: int = 0) -> str:
    """lm-eval's `regex_replace` filter (`re.sub`)."""
    return re.sub(pattern, repl, string, count=count)


_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = _regex_replace


@lru_cache(maxsize=256)
def _template(source: str):
    return _ENV.from_string(source)


@lru_cache(maxsize=256)
def _expression(source: str) -> Callable[..., Any]:
    return _ENV.compile_expression(source, undefined_to_none=False)


def check_template(source: str, what: str, origin: object) -> None:
    """Fail at load time, naming the file and key, when a template does not parse."""
    try:
        _template(source)
    except TemplateError as e:
        raise UserError(f"{origin}: {what} is not a valid Jinja2 template ({e})") from e


def check_expression(source: str, what: str, origin: object) -> None:
    try:
        _expression(source)
    except TemplateError as e:
        raise UserError(f"{origin}: {what} is not a valid Jinja2 expression ({e})") from e


def render(source: str, doc: dict[str, Any], record: Record, what: str) -> str:
    """The template filled with the document's fields (lm-eval's `apply_template`)."""
    try:
        return _template(source).render(**doc)
    except Exception as e:  # noqa: BLE001  (undefined fields, sandbox refusals, type errors in the template)
        raise UserError(f"{record.where()}: cannot render the {what} template {source!r} "
                        f"({type(e).__name__}: {e})") from e


def evaluate(source: str, doc: dict[str, Any], record: Record, what: str) -> Any:
    try:
        return _expression(source)(**doc)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{record.where()}: cannot evaluate {what} = {source!r} ({type(e).__name__}: {e})") from e


def process_doc(transforms: dict[str, str], record: Record) -> dict[str, Any]:
    """The record's fields after `process_docs` (a new dict; the record is unchanged)."""
    doc = dict(record.data)
    for field, source in transforms.items():
        doc[field] = evaluate(source, doc, record, f"process_docs.{field}")
    return doc
