"""Zero-shot evaluation speed, phase by phase: `stlm eval` against lm-evaluation-harness's own `hf`
backend on the same weights and the same items, for a ~1M and a ~100M-parameter model.

Models (random init; timing does not depend on what the weights learnt):
- `1m`: the quickstart's tiny-1m (d_model 128, 4 layers) on a 1,024-token byte-level BPE learnt
  from WikiText-2's validation text, 1.1M parameters, context 128 (most MMLU and many HellaSwag
  and ARC requests are longer: both systems cut them from the left, so the choices of a
  question no longer share their first tokens and nothing can be shared);
- `1m-ctx512`: the same model at context 512 (rotary positions: the same parameters);
- `100m`: a Llama of d_model 768, 10 layers, 12 heads (4 key/value heads), SwiGLU 2048, tied
  embeddings, on GPT-2's tokenizer, 101.5M parameters, context 512.
Our model is exported to `transformers.LlamaForCausalLM` with copied weights (`stlm.hf.llama`), the
tokenizer is handed to lm-eval as the equivalent `transformers` tokenizer, and lm-eval's own task
YAMLs read the same examples from local files.

Each task is timed in three phases, for both systems in the same run, alternating repeats:
- requests: examples -> request strings -> token ids (stlm: `Task.item` + `build_requests`;
  lm-eval: `Task.build_all_requests` + `TemplateLM.loglikelihood`'s encoding);
- scoring: token ids -> log-likelihoods (stlm: `score_continuations`; lm-eval:
  `HFLM._loglikelihood_tokens`);
- aggregation: log-likelihoods -> predictions -> metrics (stlm: `judge_items` + `summarize`;
  lm-eval: the rest of `evaluator.evaluate`: filters, `process_results`, aggregation).
Reading the data files is not timed. Figures are medians over --repeats; the ratio is lm-eval's
time over ours (above 1: stlm is faster). Each task's row also says how many items get the same
prediction from both and the largest difference of a log-likelihood. With `--full`, stlm also
runs alone on the whole standard split of every task (the acceptance run on the full sets).

    python benchmarks/eval_throughput.py                          # every size, 40 items per task
    python benchmarks/eval_throughput.py --sizes 1m --compare 200 --repeats 5 --threads 1
    python benchmarks/eval_throughput.py --sizes 100m --compare 10 --max-subtasks 10   # ~4 min/repeat on a busy 2-core CPU
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's progress bars (read when tqdm is imported)
import stlm  # noqa: E402,F401  before torch: stlm picks the CPU threads' wait policy (docs/speed.md)

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from stlm.config.loader import compose_config
from stlm.eval.metrics import summarize
from stlm.eval.runner import build_requests, judge_items, run_task, select_subset
from stlm.eval.scoring import score_continuations
from stlm.eval.tasks import TASKS
from stlm.models import build_model

REPO = Path(__file__).resolve().parents[1]
TASK_NAMES = ("blimp", "hellaswag", "arc_easy", "winogrande", "mmlu")
PER_SUBTASK = {"blimp": 67, "mmlu": 57}  # --compare N items = N / subtasks per subtask (at least 1)
PHASES = ("requests", "scoring", "aggregation")
SIZES = {  # name: (model overrides, tokenizer)
    "1m": (["model=tiny-1m"], "bpe1024"),
    "1m-ctx512": (["model=tiny-1m", "model.context_length=512"], "bpe1024"),
    "100m": (["model=baseline", "model.d_model=768", "model.n_layers=10", "model.n_heads=12",
              "model.n_kv_heads=4", "model.d_ff=2048", "model.dropout=0.0"], "gpt2"),
}


def tokenizers(kind: str, data: Path, folder: Path):
    """(stlm tokenizer, the same tokenizer as a `transformers` one) of `kind`."""
    from stlm.hf.tokenizer import save_hf_tokenizer
    from stlm.tokenizers import BPETokenizer, GPT2Tokenizer
    from transformers import AutoTokenizer

    if kind == "gpt2":
        tok = GPT2Tokenizer(data / "gpt2-bpe" / "r50k_base.tiktoken")
    else:
        text = (data / "corpora" / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")
        tok = BPETokenizer.train([text[:300_000]], 1024)
    stlm_files, hf_files = folder / f"{kind}-stlm", folder / f"{kind}-hf"
    stlm_files.mkdir(), hf_files.mkdir()
    tok.save(stlm_files)
    save_hf_tokenizer(tok, stlm_files, hf_files)
    return tok, AutoTokenizer.from_pretrained(hf_files)


def time_stlm(task, records, model, tok, batch_size):
    """({phase: seconds}, per-item results) of stlm on `records`."""
    t0 = time.perf_counter()
    items = [task.item(r) for r in records]
    requests = build_requests(tok, items)
    t1 = time.perf_counter()
    scores = score_continuations(model, requests, batch_size)
    t2 = time.perf_counter()
    results = judge_items(items, scores)
    summarize(items, results, task.metrics, task.subtask, task.weight_by_size, task.group_keys)
    t3 = time.perf_counter()
    return {"requests": t1 - t0, "scoring": t2 - t1, "aggregation": t3 - t2}, results


def time_lm_eval(hflm, tasks):
    """({phase: seconds}, per-sample outputs) of lm-eval's `evaluate` on `tasks`, its phases
    measured by wrapping the calls that do them on these objects."""
    from lm_eval.evaluator import evaluate

    spent = {"build": 0.0, "loglikelihood": 0.0, "scoring": 0.0}

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start
        return wrapper

    for t in tasks.values():
        t.build_all_requests = timed("build", type(t).build_all_requests.__get__(t))
    hflm.loglikelihood = timed("loglikelihood", type(hflm).loglikelihood.__get__(hflm))
    hflm._loglikelihood_tokens = timed("scoring", type(hflm)._loglikelihood_tokens.__get__(hflm))
    start = time.perf_counter()
    out = evaluate(hflm, tasks, log_samples=True, bootstrap_iters=0)
    total = time.perf_counter() - start
    for t in tasks.values():
        del t.build_all_requests
    del hflm.loglikelihood, hflm._loglikelihood_tokens
    tokenize = spent["loglikelihood"] - spent["scoring"]
    return {"requests": spent["build"] + tokenize, "scoring": spent["scoring"],
            "aggregation": total - spent["build"] - spent["loglikelihood"]}, out


def compare(name, model, tok, hflm, records, batch_size, folder, repeats):
    """Median phase times of both systems on `records`, and how well they agree."""
    from stlm.eval.harness import harness_tasks

    task = TASKS[name]
    ours, theirs = {p: [] for p in PHASES}, {p: [] for p in PHASES}
    for _ in range(repeats):
        tasks, order = harness_tasks(name, records, folder)  # building lm-eval's tasks is not timed
        mine, results = time_stlm(task, records, model, tok, batch_size)
        hf, out = time_lm_eval(hflm, tasks)
        for p in PHASES:
            ours[p].append(mine[p])
            theirs[p].append(hf[p])
    samples = {(t, s["doc_id"]): s for t in tasks for s in out["samples"][t]}
    same = sum(int((r.pred == r.gold) == bool(samples[k]["acc"])) for r, k in zip(results, order))
    max_diff = max(abs(a - float(b[0])) for r, k in zip(results, order)
                   for a, b in zip(r.logprobs, samples[k]["filtered_resps"]))
    median = statistics.median
    return ({p: median(v) for p, v in ours.items()}, {p: median(v) for p, v in theirs.items()},
            len(records), same, max_diff)


def run_size(size, args, data, folder):
    from lm_eval.models.huggingface import HFLM

    from stlm.hf.llama import to_hf_llama

    overrides, tok_kind = SIZES[size]
    tok, hf_tok = tokenizers(tok_kind, data, folder)
    cfg = compose_config(overrides).model
    torch.manual_seed(0)
    model = build_model(cfg, tok.vocab_size).to(args.device).eval()
    hflm = HFLM(pretrained=to_hf_llama(model).to(args.device), tokenizer=hf_tok, batch_size=args.batch_size,
                device=args.device, max_length=cfg.context_length)
    with torch.no_grad():  # warm both up (allocator, kernels) so the first task timed is not penalised
        ids = torch.randint(0, tok.vocab_size, (args.batch_size, 64), device=args.device)
        model(ids), hflm.model(ids)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n### {size}: {n_params / 1e6:.1f}M parameters, vocabulary {tok.vocab_size} ({tok_kind}), "
          f"context {cfg.context_length}; device {args.device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, median of {args.repeats}\n")
    print("| task | items | phase | stlm s | lm-eval hf s | ratio | same prediction | max abs Δ logprob |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    totals = {p: [0.0, 0.0] for p in PHASES}
    for name in args.tasks.split(","):
        limit = max(1, args.compare // PER_SUBTASK.get(name, 1))
        records = select_subset(TASKS[name].records(data), limit, name)
        if args.max_subtasks:  # BLiMP paradigms, MMLU subjects: the first N in alphabetical order
            kept = sorted({r.subtask for r in records if r.subtask is not None})[: args.max_subtasks]
            records = [r for r in records if r.subtask is None or r.subtask in kept]
        ours, theirs, n, same, diff = compare(name, model, tok, hflm, records, args.batch_size, folder,
                                              args.repeats)
        for p in PHASES:
            totals[p][0] += ours[p]
            totals[p][1] += theirs[p]
            agree = f"{same}/{n} | {diff:.1e}" if p == "scoring" else " | "
            print(f"| {name} | {n} | {p} | {ours[p]:.3f} | {theirs[p]:.3f} | {theirs[p] / ours[p]:.1f}x | {agree} |",
                  flush=True)
    for p in [*PHASES, "all"]:
        ours, theirs = (sum(totals[q][i] for q in PHASES) for i in (0, 1)) if p == "all" else totals[p]
        print(f"| **all tasks** | | {p} | {ours:.3f} | {theirs:.3f} | **{theirs / ours:.1f}x** | | |")
    if args.full:
        print(f"\nstlm eval alone on the full standard splits ({size}):\n\n| task | items | seconds | items/s | acc |\n"
              "|---|---:|---:|---:|---:|")
        for name in TASKS:
            if name == "arc_challenge":
                continue  # not in ../shared/data
            s = run_task(TASKS[name], model, tok, data, batch_size=args.batch_size).summary
            print(f"| {name} | {s['n']} | {s['seconds']:.1f} | {s['items_per_s']:.1f} | {100 * s['acc']:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--tasks", default=",".join(TASK_NAMES))
    p.add_argument("--sizes", default=",".join(SIZES), help=f"model sizes among {', '.join(SIZES)}")
    p.add_argument("--compare", type=int, default=40, help="items per task timed on both backends")
    p.add_argument("--max-subtasks", type=int, help="time only this many BLiMP paradigms / MMLU subjects")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per task; medians are reported")
    p.add_argument("--full", action="store_true", help="also run stlm alone on every task's full split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # lm-eval's warning per truncated request
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes.split(","):
            sub = Path(folder) / size
            sub.mkdir()
            run_size(size, args, Path(args.data_dir), sub)


if __name__ == "__main__":
    main()
