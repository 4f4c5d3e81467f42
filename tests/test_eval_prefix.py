"""The prefix token of an empty context (BLiMP's sentences are scored after it) follows lm-eval's
rule: a chosen `prefix_token_id`, else the tokenizer's BOS, else end-of-text; it is recorded
with every result."""

from __future__ import annotations

import json

import pytest

from conftest import require_shared
from stlm.errors import UserError
from stlm.eval.requests import encode_requests
from stlm.eval.runner import run_task, select_subset
from stlm.eval.tasks import TASKS, load_task_files
from stlm.tokenizers import ByteTokenizer
from test_eval_tasks import byte_model  # noqa: F401  (the shared random byte-level model fixture)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.shared_data]


def test_stlm_tokenizers_prefix_with_end_of_text_and_a_chosen_id_wins():
    tok = ByteTokenizer()
    assert tok.bos_id is None and tok.prefix_id() == (tok.eot_id, "eot")
    assert tok.prefix_id(65) == (65, "chosen")
    assert encode_requests(tok, [("", " ab")]) == [([256], [32, 97, 98])]
    assert encode_requests(tok, [("", " ab")], prefix_token_id=65) == [([65], [32, 97, 98])]
    assert encode_requests(tok, [("", "ab")], prefix_token_id=97) == [([97], [98])]  # lm-eval's rule
    with pytest.raises(UserError, match="prefix token id 999 is outside the vocabulary"):
        tok.prefix_id(999)


def test_the_prefix_is_used_and_recorded(tmp_path, byte_model):
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"good": g, "bad": b}) + "\n" for g, b in
                                              [("Cats sleep.", "Cats sleeps."), ("A dog runs.", "A dog run.")]))
    (tmp_path / "p.yaml").write_text('name: p\npath: p.jsonl\ncontext: ""\nchoices: ["{good}", "{bad}"]\ngold: 0\n')
    (task,) = load_task_files([tmp_path / "p.yaml"])
    default = run_task(task, *byte_model, None)
    chosen = run_task(task, *byte_model, None, prefix_token_id=10)
    assert (default.summary["prefix_token_id"], default.summary["prefix_token"]) == (256, "eot")
    assert (chosen.summary["prefix_token_id"], chosen.summary["prefix_token"]) == (10, "chosen")
    assert default.results[0].logprobs != chosen.results[0].logprobs


@pytest.mark.filterwarnings("ignore")
def test_lm_eval_agrees_with_a_chosen_prefix(byte_model, tmp_path):
    """BLiMP through lm-eval's own YAML and our adapter, with the same chosen prefix token."""
    pytest.importorskip("lm_eval")
    from harness_agreement import assert_items_agree
    from stlm.eval.harness import harness_tasks

    records = [r for r in select_subset(TASKS["blimp"].records(require_shared("")), 8, "blimp")
               if r.subtask == "adjunct_island"]
    tasks, order = harness_tasks("blimp", records, tmp_path)
    assert_items_agree(TASKS["blimp"], records, tasks, order, *byte_model, prefix_token_id=10)
