"""lm-eval's own task YAMLs run as stlm tasks (Jinja2, sandboxed) with lm-eval's results.

PIQA and ARC-Easy are lm-eval's files changed only in their data lines; COPA's `!function`
helpers (utils.py) are ported to `process_docs` transforms and templates. Each runs on stlm and,
through our adapter, on lm-eval itself (COPA with its original utils.py): the same requests,
log-likelihoods and per-item acc / acc_norm.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import require_shared
from stlm.config.schema import ModelConfig
from stlm.errors import UserError
from stlm.eval.tasks import load_task_files
from stlm.models import build_model

lm_eval = pytest.importorskip("lm_eval")
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread"), pytest.mark.shared_data]
from harness_agreement import assert_items_agree  # noqa: E402

TASKS_DIR = Path(lm_eval.__file__).parent / "tasks"

COPA = [  # aps/super_glue copa, the hub's schema
    {"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
     "choice2": "The grass was cut.", "question": "cause", "idx": 0, "label": 0},
    {"premise": "The woman tolerated her friend's difficult behavior.", "choice1": "The woman knew her friend was going through a hard time.",
     "choice2": "The woman felt that her friend took advantage of her kindness.", "question": "cause", "idx": 1, "label": 0},
    {"premise": "The women met for coffee.", "choice1": "The cafe reopened in a new location.",
     "choice2": "They wanted to catch up with each other.", "question": "cause", "idx": 2, "label": 1},
    {"premise": "The runner wore shorts.", "choice1": "The forecast predicted high temperatures.",
     "choice2": "She planned to run along the beach.", "question": "cause", "idx": 3, "label": 0},
    {"premise": "The guests of the party hid behind the couch.", "choice1": "It was a surprise party.",
     "choice2": "It was a birthday party.", "question": "cause", "idx": 4, "label": 0},
    {"premise": "The politician lost the election.", "choice1": "He ran negative campaign ads.",
     "choice2": "No one voted for him.", "question": "cause", "idx": 5, "label": 1},
    {"premise": "I knocked on my neighbor's door.", "choice1": "My neighbor invited me in.",
     "choice2": "My neighbor left his house.", "question": "effect", "idx": 6, "label": 0},
    {"premise": "The pond froze over for the winter.", "choice1": "People skated on the pond.",
     "choice2": "People brought boats to the pond.", "question": "effect", "idx": 7, "label": 0},
]
PIQA = [  # baber/piqa, the hub's schema
    {"goal": "How do I ready a guinea pig cage for its new occupants?",
     "sol1": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips.",
     "sol2": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material.", "label": 0},
    {"goal": "dresser", "sol1": "replace drawer with bobby pin ", "sol2": "finish, woodwork ", "label": 1},
    {"goal": "To fix a squeaky door,", "sol1": "spray the hinges with oil.", "sol2": "spray the hinges with water.", "label": 0},
    {"goal": "  how to keep bread fresh", "sol1": "Store it in a paper bag in the fridge's door.",
     "sol2": "Store it in a sealed bag at room temperature.", "label": 1},
    {"goal": "Make a paper airplane fly farther.", "sol1": "Fold the wings' tips up slightly.",
     "sol2": "Soak the wings in water first.", "label": 0},
    {"goal": "Clean a cast iron pan", "sol1": "Scrub with coarse salt and a little oil.",
     "sol2": "Run it through the dishwasher twice.", "label": 0},
]

# COPA's utils.py (doc_to_text / doc_to_choice / doc_to_target) as stlm transforms and templates.
COPA_PORT = """\
process_docs:
  connector: "{'cause': 'because', 'effect': 'therefore'}[question]"
  choice1: "' ' + choice1[0].lower() + choice1[1:]"
  choice2: "' ' + choice2[0].lower() + choice2[1:]"
doc_to_text: "{{ premise.strip()[:-1] }} {{ connector }}"
doc_to_target: label
doc_to_choice: "{{ [choice1, choice2] }}"
"""


def _with_local_data(yaml_text: str, data_file: Path, split: str) -> str:
    """lm-eval's YAML with only its data source changed: a local json file for `split`."""
    text = re.sub(r"(?m)^dataset_path: .*$", "dataset_path: json", yaml_text)
    text = re.sub(r"(?m)^dataset_name: .*\n", "", text)
    return text + f"dataset_kwargs:\n  data_files:\n    {split}: {data_file.name}\n"


@pytest.fixture(scope="module")
def model_and_tokenizer():
    """A random tiny model on GPT-2's tokenizer (lm-eval's tasks are usually run with BPEs)."""
    from stlm.tokenizers import GPT2Tokenizer

    tok = GPT2Tokenizer(require_shared("gpt2-bpe") / "r50k_base.tiktoken")
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=256),
                        tok.vocab_size).eval()
    return model, tok


def _write(folder: Path, name: str, rows: list[dict]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _case(name: str, tmp_path: Path) -> tuple[Path, str, str]:
    """(data file, stlm's YAML text, lm-eval's YAML path) of each acceptance task."""
    if name == "copa":
        data = _write(tmp_path, "copa.jsonl", COPA)
        original = (TASKS_DIR / "super_glue/copa/default.yaml").read_text()
        kept = "".join(line + "\n" for line in original.splitlines() if "!function" not in line)
        return data, _with_local_data(kept, data, "validation") + COPA_PORT, "super_glue/copa/default.yaml"
    if name == "piqa":
        data = _write(tmp_path, "piqa.jsonl", PIQA)
        return data, _with_local_data((TASKS_DIR / "piqa/piqa.yaml").read_text(), data, "validation"), "piqa/piqa.yaml"
    rows = (require_shared("arc-easy") / "ARC-Easy-validation.jsonl").read_text().splitlines()[:40]
    data = _write(tmp_path, "arc.jsonl", [json.loads(r) for r in rows])
    return data, _with_local_data((TASKS_DIR / "arc/arc_easy.yaml").read_text(), data, "test"), "arc/arc_easy.yaml"


@pytest.mark.parametrize("name", ["copa", "piqa", "arc_easy"])
def test_lm_eval_yaml_runs_as_stlm_task_with_lm_eval_results(name, model_and_tokenizer, tmp_path):
    from stlm.eval.harness import local_harness_task

    data, stlm_yaml, harness_yaml = _case(name, tmp_path)
    (tmp_path / "task.yaml").write_text(stlm_yaml)
    (task,) = load_task_files([tmp_path / "task.yaml"])
    records = task.records(None)
    split = "test" if name == "arc_easy" else "validation"
    theirs = local_harness_task(harness_yaml, data, split, tmp_path / ".datasets-cache")
    order = [(theirs.config.task, i) for i in range(len(records))]
    items, _, out = assert_items_agree(task, records, {theirs.config.task: theirs}, order, *model_and_tokenizer)
    assert task.name == theirs.config.task
    assert set(task.metrics) == {k.split(",")[0] for k in out["results"][task.name] if "stderr" not in k and "," in k}
    if name == "copa":  # lm-eval's COPA request: no final period, a connector, a lower-cased choice
        assert items[0].requests[0] == ("My body cast a shadow over the grass because", "  the sun was rising.")
        assert [it.gold for it in items] == [r["label"] for r in COPA]


def test_include_and_jinja_features(tmp_path):
    """`include` inherits a base file; transforms keep types (label arithmetic), a doc_to_target
    may be a choice's text, lm-eval's regex_replace filter works, description prefixes the context."""
    _write(tmp_path, "d.jsonl", [{"q": "  Sky?", "a": "blue", "b": "green", "label": 2}])
    (tmp_path / "base.yaml").write_text(
        "task: base\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: 'Q: {{q}}'\ndoc_to_choice: '{{[a, b]}}'\ndoc_to_target: label\n")
    (tmp_path / "child.yaml").write_text(
        "include: base.yaml\ntask: child\ndescription: \"Colours.\\n\"\n"
        "process_docs: {q: q.lstrip(), label: label - 1}\n"
        "doc_to_text: \"Q: {{ q | regex_replace('\\\\?$', '') }}\"\n"
        "metric_list: [{metric: acc}]\n")
    base, child = load_task_files([tmp_path / "base.yaml", tmp_path / "child.yaml"])
    record = child.records(None)[0]
    assert child.item(record).requests == (("Colours.\nQ: Sky", " blue"), ("Colours.\nQ: Sky", " green"))
    assert child.item(record).gold == 1 and child.metrics == ("acc",)
    with pytest.raises(UserError, match="gold index 2 is out of range for 2 choices"):
        base.item(record)
    (tmp_path / "by_text.yaml").write_text((tmp_path / "base.yaml").read_text().replace(
        "doc_to_target: label", "doc_to_target: '{{b}}'"))
    (by_text,) = load_task_files([tmp_path / "by_text.yaml"])
    assert by_text.item(record).gold == 1


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",   # reaching Python internals
    "{{ q.__class__ }}",
    "{% set x = [] %}{{ x.append(1) }}",                 # mutating (immutable sandbox)
    "{{ cycler.__init__.__globals__ }}",
])
def test_templates_cannot_run_code(tmp_path, template):
    _write(tmp_path, "d.jsonl", [{"q": "Sky?", "a": "blue", "b": "green", "label": 0}])
    (tmp_path / "t.yaml").write_text(
        "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ntest_split: test\n"
        f"doc_to_text: {json.dumps(template)}\ndoc_to_choice: '{{{{[a, b]}}}}'\ndoc_to_target: label\n")
    (task,) = load_task_files([tmp_path / "t.yaml"])
    with pytest.raises(UserError, match=r"d\.jsonl, line 1: cannot render the doc_to_text template"):
        task.item(task.records(None)[0])


@pytest.mark.parametrize("extra, message", [
    ("process_docs: !function utils.process_docs\n", "runs Python code"),
    ("output_type: generate_until\n", "only multiple_choice"),
    ("metric_list: [{metric: f1}]\n", "metric_list may only hold"),
    ("filter_list: []\n", "'filter_list' is not supported"),
])
def test_unsupported_lm_eval_configs_are_explained(tmp_path, extra, message):
    (tmp_path / "t.yaml").write_text("task: t\ndataset_path: json\ntest_split: test\ndoc_to_text: q\n"
                                     "doc_to_choice: c\ndoc_to_target: 0\n" + extra)
    with pytest.raises(UserError, match=message):
        load_task_files([tmp_path / "t.yaml"])


def test_integer_gold_with_labels_maps_by_label(tmp_path):
    """An int gold with `labels: [1, 2, 3]` is a label (1 -> index 0), never an index used as is."""
    _write(tmp_path, "d.jsonl", [{"q": "x", "a": "p", "b": "q", "c": "r", "ans": 1},
                                 {"q": "y", "a": "p", "b": "q", "c": "r", "ans": 3}])
    (tmp_path / "t.yaml").write_text('name: t\npath: d.jsonl\ncontext: "{q}"\nchoices: ["{a}", "{b}", "{c}"]\n'
                                     "gold: ans\nlabels: [1, 2, 3]\n")
    (task,) = load_task_files([tmp_path / "t.yaml"])
    assert [task.item(r).gold for r in task.records(None)] == [0, 2]
    _write(tmp_path, "d.jsonl", [{"q": "x", "a": "p", "b": "q", "c": "r", "ans": 0}])
    with pytest.raises(UserError, match=r"field 'ans' = 0 is not one of the labels"):
        task.item(task.records(None)[0])
