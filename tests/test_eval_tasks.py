"""Every task reads its real data (../shared/data), formats items as lm-eval does, picks seeded
subsets, rejects bad input with file/line/field, and scores ties and acc_norm correctly."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from conftest import require_shared
from stlm.config.schema import ModelConfig
from stlm.errors import UserError
from stlm.eval.metrics import ItemResult, _combine, judge, mean_stderr, pick, summarize
from stlm.eval.runner import run_task, score_items, select_subset
from stlm.eval.sources import Record
from stlm.eval.tasks import TASKS, choice_item, load_task_files
from stlm.models import build_model
from stlm.tokenizers import ByteTokenizer

SIZES = {"blimp": 67_000, "blimp_filtered": 59_875, "blimp_supplement": 5_218, "hellaswag": 10_042,
         "arc_easy": 2_376, "winogrande": 1_267, "mmlu": 14_042, "mmlu_letter": 14_042}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def byte_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=256),
                       257).eval(), ByteTokenizer()


@pytest.fixture(scope="module")
def uniform_model():
    """Zero head weights: every next token has probability 1/257, so equal-length choices tie."""
    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, context_length=64), 257)
    with torch.no_grad():
        model.head.linear.weight.zero_()
    return model.eval(), ByteTokenizer()


@pytest.fixture(scope="module")
def records():
    root = require_shared("")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = TASKS[name].records(root)
        return cache[name]

    return get


# -- acceptance on the real data -------------------------------------------------------------

@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(SIZES))
def test_every_task_reads_the_full_split_and_scores_a_subset(name, records, byte_model):
    task = TASKS[name]
    recs = records(name)
    assert len(recs) == SIZES[name]
    items = [task.item(r) for r in recs]  # the whole split is well-formed
    assert all(0 <= it.gold < len(it.requests) == len(it.norm_lengths) for it in items)
    subset = select_subset(recs, 2, name)
    model, tok = byte_model
    results = score_items(model, tok, [task.item(r) for r in subset], batch_size=32)
    summary = summarize([task.item(r) for r in subset], results, task.metrics, task.subtask,
                        task.weight_by_size, task.group_keys)
    for metric in task.metrics:
        assert 0.0 <= summary[metric] <= 1.0 and summary[f"{metric}_stderr"] is not None
    if task.subtask:
        n_sub = len({r.subtask for r in recs})
        assert summary["n"] == 2 * n_sub and len(summary["groups"][task.subtask]) == n_sub


def test_arc_challenge_names_the_missing_local_file(tmp_path):
    with pytest.raises(UserError, match=r"arc-challenge/ARC-Challenge-test\.jsonl"):
        TASKS["arc_challenge"].records(tmp_path)


@pytest.mark.shared_data
def test_blimp_items_score_each_sentence_after_end_of_text(records):
    rec = records("blimp")[0]
    item = TASKS["blimp"].item(rec)
    assert item.requests == (("", " Who should Derek hug after shocking Richard?"),
                             ("", " Who should Derek hug Richard after shocking?"))
    assert item.gold == 0
    assert dict(item.groups) == {"paradigm": "adjunct_island", "field": "syntax", "phenomenon": "island_effects"}
    fields = {dict(TASKS["blimp"].item(r).groups)["field"] for r in records("blimp")[::1000]}
    assert fields == {"morphology", "syntax", "semantics", "syntax_semantics"}


@pytest.mark.shared_data
def test_hellaswag_preprocessing(records):
    recs = records("hellaswag")
    first = TASKS["hellaswag"].item(recs[0])
    assert first.requests[3] == ("Roof shingle removal: A man is sitting on a roof. He",
                                 " starts pulling up roofing on a roof.")
    assert first.gold == 3 and first.norm_lengths[3] == len("starts pulling up roofing on a roof.")
    wikihow = TASKS["hellaswag"].item(recs[3243])  # "[header] ... [title] ..." markup
    assert wikihow.requests[0][0].startswith("Personal Care and Style: How to become a fashion consultant. "
                                             "Obtain your high school diploma or ged. This job")
    assert "[" not in wikihow.requests[0][0]


@pytest.mark.shared_data
def test_arc_reads_both_layouts(records):
    item = TASKS["arc_easy"].item(records("arc_easy")[0])  # evaluation-package layout: gold index
    assert item.requests[0] == ("Question: Which statement best explains why photosynthesis is the foundation "
                                "of most food webs?\nAnswer:", " Sunlight is the source of energy for nearly "
                                "all ecosystems.")
    assert item.gold == 0
    lines = (require_shared("arc-easy") / "ARC-Easy-validation.jsonl").read_text().splitlines()
    original = [json.loads(line) for line in lines if '"label": ["1"' in line][0]  # digit labels
    item = TASKS["arc_easy"].item(Record("val.jsonl", 1, original))
    assert item.gold == original["choices"]["label"].index(original["answerKey"])
    assert [c for _, c in item.requests] == [" " + t for t in original["choices"]["text"]]


@pytest.mark.shared_data
def test_winogrande_partial_scoring(records):
    item = TASKS["winogrande"].item(records("winogrande")[0])
    stem = "Sarah was a much better surgeon than Maria so "
    assert item.requests == ((stem + "Sarah", " always got the easier cases."),
                             (stem + "Maria", " always got the easier cases."))
    assert item.gold == 1


@pytest.mark.shared_data
def test_mmlu_choices_are_exactly_the_four_options(records):
    """Regression (STLM): the gold answer was duplicated among the distractors."""
    for rec in records("mmlu")[::7]:
        options = [rec.data[f"choice{i}"] for i in range(4)]
        item = TASKS["mmlu"].item(rec)
        assert [c for _, c in item.requests] == [" " + o for o in options]
        assert item.gold == int(rec.data["answer"])
        if len(set(options)) == 4:
            assert [c for _, c in item.requests].count(" " + options[item.gold]) == 1
    rec = records("mmlu")[0]
    cont, letter = TASKS["mmlu"].item(rec), TASKS["mmlu_letter"].item(rec)
    assert cont.requests[0][0] == ("The following are questions (with answers) about abstract algebra.\n\n"
                                   f"Question: {rec.data['question'].strip()}\nAnswer:")
    assert letter.requests[0][0].endswith(f"\nD. {rec.data['choice3']}\nAnswer:")
    assert [c for _, c in letter.requests] == [" A", " B", " C", " D"]


# -- subsets ------------------------------------------------------------------------------------

@pytest.mark.shared_data
def test_limit_subset_is_seeded_and_not_the_first_n(records):
    """Regression (STLM): unseeded random subsets gave different scores on every evaluation."""
    recs = records("hellaswag")
    first, again = select_subset(recs, 50, "hellaswag"), select_subset(recs, 50, "hellaswag")
    assert [r.line for r in first] == [r.line for r in again]
    assert [r.line for r in first] != [r.line for r in recs[:50]]
    assert [r.line for r in first] == sorted(r.line for r in first)
    assert [r.line for r in select_subset(recs, 50, "hellaswag", seed=7)] != [r.line for r in first]
    blimp = select_subset(records("blimp"), 3, "blimp")
    assert len(blimp) == 3 * 67 and len({r.subtask for r in blimp}) == 67


# -- the scoring rule ------------------------------------------------------------------------------

def test_ties_count_as_wrong(uniform_model):
    """Regression (STLM/BabyLM): a model giving every choice the same score got 100% (first index)."""
    model, tok = uniform_model
    items = [choice_item("Pick one:", ["cat", "dog", "pig"], 0), choice_item("", ["good.", "bad.."], 0)]
    results = score_items(model, tok, items)
    assert all(r.logprobs[0] == r.logprobs[1] for r in results)
    summary = summarize(items, results, ("acc", "acc_norm"), None, True, ())
    assert summary["acc"] == 0.0 and summary["acc_norm"] == 0.0
    assert summary["ties"] == {"acc": 2, "acc_norm": 2}
    assert pick([1.0, 2.0, 2.0]) is None and pick([3.0, 2.0, 2.0]) == 0


def test_acc_norm_divides_by_characters_and_can_differ_from_acc(uniform_model):
    """Regression (STLM): summed log-probability was the only metric, favouring short answers."""
    model, tok = uniform_model
    item = choice_item("Q:", ["a", "abcdefgh"], 1)  # uniform model: the short answer has more probability
    (result,) = score_items(model, tok, [item])
    assert result.pred == 0 and result.pred_norm == 1
    assert result.values == {"acc": 0.0, "acc_norm": 1.0}
    per_token = -math.log(257)
    assert result.logprobs == pytest.approx((2 * per_token, 9 * per_token), abs=1e-4)
    assert item.norm_lengths == (1, 8)  # characters of the choice text, without the delimiter
    # "é" is 1 character but 2 bytes: per character -4 < -2 so "ab" wins; per byte it would be a tie
    assert judge(choice_item("Q:", ["é", "ab"], 0), [-4.0, -4.0]).pred_norm == 1


def test_stderr_formulas_match_lm_eval():
    metrics = pytest.importorskip("lm_eval.api.metrics")
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert mean_stderr(values) == pytest.approx(metrics.mean_stderr(values))
    parts = [{"n": 7, "acc": 4 / 7, "acc_stderr": mean_stderr(values)},
             {"n": 3, "acc": 1 / 3, "acc_stderr": mean_stderr([1.0, 0.0, 0.0])}]
    pooled = _combine(parts, ("acc",), weight_by_size=True)
    assert pooled["acc"] == pytest.approx(5 / 10)
    assert pooled["acc_stderr"] == pytest.approx(metrics.pooled_sample_stderr([p["acc_stderr"] for p in parts], [7, 3]))
    macro = _combine(parts, ("acc",), weight_by_size=False)
    assert macro["acc"] == pytest.approx((4 / 7 + 1 / 3) / 2)
    assert macro["acc_stderr"] == pytest.approx(metrics.unweighted_mean_stderr([p["acc_stderr"] for p in parts]))
    assert ItemResult((0.0,), None, 0, 0).values == {"acc": 0.0, "acc_norm": 1.0}


# -- bad input --------------------------------------------------------------------------------------

GOOD_HELLASWAG = {"activity_label": "Cooking", "ctx_a": "A man cuts onions.", "ctx_b": "he",
                  "endings": ["cries.", "sings.", "runs.", "sleeps."], "label": 0}


def _hellaswag_file(tmp_path, lines: list[str]):
    folder = tmp_path / "hellaswag"
    folder.mkdir()
    (folder / "hellaswag_val.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder / "hellaswag_val.jsonl"


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in GOOD_HELLASWAG.items() if k != "endings"}, r"line 2: field 'endings' is missing"),
    ({**GOOD_HELLASWAG, "label": 7}, r"line 2: field 'label' = 7 is out of range for 4 choices"),
    ({**GOOD_HELLASWAG, "label": "B"}, r"line 2: field 'label' = 'B' is not an integer choice index"),
    ({**GOOD_HELLASWAG, "endings": ["a", ""]}, r"line 2: field 'endings' must be a list of at least 2 non-empty"),
])
def test_bad_records_name_file_line_and_field(tmp_path, bad, message, byte_model):
    path = _hellaswag_file(tmp_path, [json.dumps(GOOD_HELLASWAG), json.dumps(bad)])
    with pytest.raises(UserError, match=message) as err:
        run_task(TASKS["hellaswag"], *byte_model, tmp_path)
    assert str(path) in str(err.value)


def test_empty_and_malformed_files(tmp_path):
    path = _hellaswag_file(tmp_path, [])
    with pytest.raises(UserError, match=f"{path} holds no examples"):
        TASKS["hellaswag"].records(tmp_path)
    path.write_text(json.dumps(GOOD_HELLASWAG) + "\n{not json\n")
    with pytest.raises(UserError, match="line 2: not valid JSON"):
        TASKS["hellaswag"].records(tmp_path)
    (tmp_path / "winogrande").mkdir()
    wino = tmp_path / "winogrande" / "winogrande_xl-validation.jsonl"
    wino.write_text(json.dumps({"sentence": "No blank here.", "option1": "a", "option2": "b", "answer": "1"}) + "\n")
    with pytest.raises(UserError, match="line 1: field 'sentence' has no blank"):
        TASKS["winogrande"].item(TASKS["winogrande"].records(tmp_path)[0])


def test_mmlu_csv_errors_name_the_line(tmp_path):
    from stlm.eval.sources import read_csv

    path = tmp_path / "anatomy_test.csv"
    path.write_text('question,choice0,choice1,choice2,choice3,answer\n"Two\nlines?",a,b,c,d,1\nQ?,a,b,c,d,4\n')
    recs = read_csv(path, "anatomy")
    assert [r.line for r in recs] == [2, 4]
    assert TASKS["mmlu"].item(recs[0]).gold == 1
    with pytest.raises(UserError, match=rf"{path}, line 4: field 'answer' = 4 is out of range"):
        TASKS["mmlu"].item(recs[1])
    path.write_text("question,choice0,choice1,choice2,choice3,answer\nQ?,a,b,c\n")
    with pytest.raises(UserError, match="line 2: field 'choice3' is missing"):
        read_csv(path)


def test_unreachable_hub_fails_fast_with_a_fix(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub.*--data-dir"):
        TASKS["hellaswag"].records(None)
    assert time.perf_counter() - start < 5
    with pytest.raises(UserError, match="blimp_filtered has no hub copy.*--data-dir"):
        TASKS["blimp_filtered"].records(None)


# -- tasks from YAML --------------------------------------------------------------------------------

def test_yaml_task_without_code(tmp_path, byte_model):
    rows = [{"q": "Sky colour?", "opts": ["blue", "green", "red"], "key": "A", "topic": "nature"},
            {"q": "2 + 2?", "opts": ["3", "4", "5"], "key": "B", "topic": "math"},
            {"q": "Ice is?", "opts": ["hot", "cold", "loud"], "key": "B", "topic": "nature"}]
    (tmp_path / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "quiz.yaml").write_text(
        'name: quiz\npath: quiz.jsonl\ncontext: "Question: {q}\\nAnswer:"\nchoices_field: opts\n'
        "gold: key\nlabels: [A, B, C]\ngroup: topic\n")
    (tmp_path / "pairs.csv").write_text("good,bad\nThe cat sleeps.,The cat sleep.\n")
    (tmp_path / "pairs.yml").write_text('name: pairs\npath: pairs.csv\ncontext: ""\n'
                                        'choices: ["{good}", "{bad}"]\ngold: 0\nmetrics: [acc]\n')
    pairs, quiz = load_task_files([tmp_path])  # a folder of task files, sorted by file name
    assert (pairs.name, quiz.name) == ("pairs", "quiz")
    run = run_task(quiz, *byte_model, None)
    assert [it.requests[0] for it in run.items] == [("Question: Sky colour?\nAnswer:", " blue"),
                                                      ("Question: 2 + 2?\nAnswer:", " 3"),
                                                      ("Question: Ice is?\nAnswer:", " hot")]
    assert [it.gold for it in run.items] == [0, 1, 1]
    assert set(run.summary["groups"]["topic"]) == {"math", "nature"} and "acc_norm" in run.summary
    pair_run = run_task(pairs, *byte_model, None)
    assert pair_run.items[0].requests == (("", " The cat sleeps."), ("", " The cat sleep."))
    assert "acc_norm" not in pair_run.summary


@pytest.mark.parametrize("text, message", [
    ("name: t\npath: x.jsonl\ncontext: q\nchoices_field: c\n", "missing required key 'gold'"),
    ("name: t\npath: x.jsonl\ncontext: q\nchoices_field: c\ngold: a\ncolour: red\n", "unknown key 'colour'"),
    ("name: t\ncontext: q\nchoices_field: c\ngold: a\n", "exactly one data source"),
    ("name: t\npath: x.jsonl\ncontext: q\nchoices: [a]\ngold: 0\n", "at least 2 template"),
    ("- just a list\n", "expected a mapping"),
])
def test_bad_yaml_tasks_are_explained(tmp_path, text, message):
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(UserError, match=message) as err:
        load_task_files([tmp_path / "t.yaml"])
    assert "t.yaml" in str(err.value)


def test_yaml_template_errors_name_the_record(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"q": "x", "a": "1", "b": "2"}) + "\n")
    (tmp_path / "t.yaml").write_text('name: t\npath: d.jsonl\ncontext: "{question}"\nchoices: ["{a}", "{b}"]\n'
                                     "gold: 5\n")
    (task,) = load_task_files([tmp_path / "t.yaml"])
    with pytest.raises(UserError, match=r"d\.jsonl, line 1: field 'question' is missing \(used by the context"):
        task.item(task.records(None)[0])


def test_hub_layouts(monkeypatch):
    """Each task asks `datasets` for the canonical hub dataset and reads its schema (the hub is
    unreachable here, so `load_dataset` answers with rows in the hub's schema)."""
    import datasets

    rows = {
        ("nyu-mll/blimp", "train"): {"sentence_good": "Cats sleep.", "sentence_bad": "Cats sleeps.",
                                     "field": "morphology", "linguistics_term": "subject_verb_agreement",
                                     "UID": "x", "pair_id": 0},
        ("Rowan/hellaswag", "validation"): {**GOOD_HELLASWAG, "label": "2"},
        ("allenai/ai2_arc", "test"): {"id": "q1", "question": "Which is a gas?", "answerKey": "3",
                                      "choices": {"text": ["rock", "ice", "steam"], "label": ["1", "2", "3"]}},
        ("allenai/winogrande", "validation"): {"sentence": "Tom paid Ann because _ was kind.",
                                               "option1": "Tom", "option2": "Ann", "answer": "2"},
        ("cais/mmlu", "test"): {"question": "2+2?", "subject": "elementary_mathematics",
                                "choices": ["3", "4", "5", "6"], "answer": 1},
    }
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([rows[(path, split)]])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    golds = {}
    for name in ("blimp", "hellaswag", "arc_easy", "arc_challenge", "winogrande", "mmlu"):
        task = TASKS[name]
        recs = task.records(None)
        golds[name] = task.item(recs[0]).gold
        assert recs[0].where().startswith("hub:") and recs[0].where().endswith("row 1")
    assert len([c for c in calls if c[0] == "nyu-mll/blimp"]) == 67
    assert ("allenai/ai2_arc", "ARC-Challenge", "test") in calls and ("cais/mmlu", "all", "test") in calls
    assert golds == {"blimp": 0, "hellaswag": 2, "arc_easy": 2, "arc_challenge": 2, "winogrande": 1, "mmlu": 1}
    assert TASKS["mmlu"].records(None)[0].subtask == "elementary_mathematics"


@pytest.mark.shared_data
def test_blimp_pairs_with_identical_sentences_tie_and_count_wrong(records, byte_model):
    """7 BLiMP pairs have the same sentence twice: any model ties them, and we count them wrong
    (lm-eval's argmax counts them right); this is the whole difference on the full set."""
    same = [r for r in records("blimp") if r.data["sentence_good"] == r.data["sentence_bad"]]
    assert sorted({r.subtask for r in same}) == ["passive_1", "principle_A_case_2"] and len(same) == 7
    items = [TASKS["blimp"].item(r) for r in same]
    results = score_items(*byte_model, items)
    summary = summarize(items, results, ("acc",), "paradigm", False, ())
    assert summary["acc"] == 0.0 and summary["ties"] == {"acc": 7}
