"""`stlm eval` agrees with lm-evaluation-harness item by item.

The same random-init checkpoint and the same examples (a seeded subset of ../shared/data) are
scored by our tasks and by lm-eval's own task YAMLs, read from local files through our `stlm`
adapter. Accuracy of a random model is noise, but the requests (context and continuation strings),
their log-likelihoods and each item's prediction must be the same; so must the reported
acc / acc_norm (within 0.2 points) and their standard errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import require_shared
from harness_agreement import assert_items_agree

pytest.importorskip("lm_eval")

from stlm.config.schema import ModelConfig  # noqa: E402
from stlm.eval.metrics import summarize  # noqa: E402
from stlm.eval.runner import select_subset  # noqa: E402
from stlm.eval.tasks import TASKS  # noqa: E402
from stlm.models import build_model  # noqa: E402

MMLU_SUBJECTS = ("anatomy", "high_school_us_history")  # short and very long prompts
CASES = {  # task: (per-subtask limit, the subtasks compared)
    "blimp": (20, ("adjunct_island", "npi_present_1")),
    "hellaswag": (40, (None,)),
    "arc_easy": (40, (None,)),  # the local test file's layout (`gold` index) converted to the hub's
    "winogrande": (40, (None,)),
    "mmlu": (20, MMLU_SUBJECTS),  # csv rows converted to the hub's schema
    "mmlu_letter": (20, MMLU_SUBJECTS),
}


# (one list: a second `pytestmark =` assignment would silently drop the first)
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread"),
              pytest.mark.shared_data]


@pytest.fixture(scope="module", params=["bpe", "gpt2"])
def model_and_tokenizer(request):
    """A random tiny model on GPT-2's tokenizer, and on a small real byte-level BPE (512 ids,
    learnt from WikiText-2 validation) whose tokens split text differently."""
    from stlm.tokenizers import BPETokenizer, GPT2Tokenizer

    if request.param == "gpt2":
        tok = GPT2Tokenizer(require_shared("gpt2-bpe") / "r50k_base.tiktoken")
    else:
        text = (require_shared("corpora/wikitext-2") / "valid.txt").read_text(encoding="utf-8")
        tok = BPETokenizer.train([text[:300_000]], 512)
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=256),
                        tok.vocab_size).eval()
    return model, tok


@pytest.fixture(scope="module")
def subsets():
    """Each case's seeded subset of the real data, read once for both tokenizers."""
    cache = {}

    def get(name):
        if name not in cache:
            limit, subtasks = CASES[name]
            chosen = select_subset(TASKS[name].records(require_shared("")), limit, name)
            cache[name] = [r for r in chosen if r.subtask in subtasks]
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CASES))
def test_items_and_scores_match_lm_eval(name, model_and_tokenizer, subsets, tmp_path):
    from stlm.eval.harness import harness_tasks as build_harness_tasks

    model, tok = model_and_tokenizer
    task = TASKS[name]
    chosen = subsets(name)
    harness_tasks, order = build_harness_tasks(name, chosen, tmp_path)
    items, ours, out = assert_items_agree(task, chosen, harness_tasks, order, model, tok)

    summary = summarize(items, ours, task.metrics, task.subtask, task.weight_by_size, ())
    results = out["results"]
    for metric in task.metrics:
        per_task = [results[t][f"{metric},none"] for t in harness_tasks]
        sizes = [sum(1 for k in order if k[0] == t) for t in harness_tasks]
        weights = sizes if task.weight_by_size else [1] * len(sizes)
        harness = sum(v * w for v, w in zip(per_task, weights)) / sum(weights)
        assert abs(summary[metric] - harness) <= 0.002, (metric, summary[metric], harness)
        if len(harness_tasks) == 1:
            (only,) = harness_tasks
            assert summary[f"{metric}_stderr"] == pytest.approx(results[only][f"{metric}_stderr,none"])
