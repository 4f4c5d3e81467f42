"""Item-by-item agreement of stlm's scoring with lm-evaluation-harness (shared by the tests that
compare a task against lm-eval's own YAML run through our `stlm` adapter)."""

from __future__ import annotations

from stlm.eval.runner import score_items


def assert_items_agree(task, records, harness_tasks, order, model, tok, batch_size: int = 16,
                       prefix_token_id: int | None = None, lm=None, tolerance: float = 1e-3):
    """Our requests, log-likelihoods (within `tolerance`) and per-item metrics equal lm-eval's for
    each record (`order`: each record's (lm-eval task name, doc_id)), lm-eval running `lm` (default:
    our `stlm` adapter on the same model; e.g. its `hf` backend on an export); returns (items, our
    results, lm-eval's output) for further checks. A tie at the top fails: we count it wrong,
    lm-eval takes index 0."""
    from lm_eval.evaluator import evaluate

    from stlm.eval.harness import StlmLM

    items = [task.item(r) for r in records]
    ours = score_items(model, tok, items, batch_size=batch_size, prefix_token_id=prefix_token_id)
    if lm is None:
        lm = StlmLM(model=model, tokenizer=tok, batch_size=batch_size, prefix_token_id=prefix_token_id)
    out = evaluate(lm, harness_tasks,
                   log_samples=True, bootstrap_iters=1000)
    samples = {(t, s["doc_id"]): s for t in harness_tasks for s in out["samples"][t]}
    assert len(samples) == len(items)
    for item, mine, key in zip(items, ours, order):
        theirs = samples[key]
        assert [tuple(a[:2]) for a in theirs["arguments"]] == list(item.requests), key
        lls = [float(r[0]) for r in theirs["filtered_resps"]]
        assert max(abs(a - b) for a, b in zip(lls, mine.logprobs)) < tolerance, key
        assert mine.pred is not None and mine.pred_norm is not None, f"{key}: tied scores"
        for metric in task.metrics:
            assert mine.values[metric] == theirs[metric], (key, metric)
    return items, ours, out
