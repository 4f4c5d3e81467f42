"""Zero-shot evaluation speed: `stlm eval` against lm-evaluation-harness's own `hf` backend on the
same weights and the same items.

Our model is exported to `transformers.LlamaForCausalLM` with copied weights (`stlm.hf.llama`),
GPT-2's tokenizer is loaded in both libraries from ../shared/data/gpt2-bpe, and lm-eval's own task
YAMLs read the same examples from local files. For each task the script prints items per second
of both (wall clock) and the speed ratio by wall clock and by CPU time (the robust one on a shared
machine; run with --threads 1 there), both accuracies, and how many items get the same prediction. With
`--full`, it also runs `stlm eval` alone on the whole standard split of every task (the acceptance
run on the full sets).

    python benchmarks/eval_throughput.py                 # 200 items per task (4 per BLiMP paradigm)
    python benchmarks/eval_throughput.py --compare 50 --threads 1
    python benchmarks/eval_throughput.py --full --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from stlm.config.loader import compose_config
from stlm.eval.runner import run_task, score_items, select_subset
from stlm.eval.tasks import TASKS
from stlm.models import build_model
from stlm.tokenizers import GPT2Tokenizer

REPO = Path(__file__).resolve().parents[1]
TASK_NAMES = ("blimp", "hellaswag", "arc_easy", "winogrande", "mmlu")
PER_SUBTASK = {"blimp": 67, "mmlu": 57}  # --compare N items = N / subtasks per subtask


def hf_gpt2_tokenizer(folder: Path):
    from transformers import GPT2TokenizerFast

    vocab, merges = str(folder / "encoder.json"), str(folder / "vocab.bpe")
    try:  # transformers >= 5
        return GPT2TokenizerFast(vocab=vocab, merges=merges)
    except TypeError:
        return GPT2TokenizerFast(vocab_file=vocab, merges_file=merges)


def compare(name, model, tok, hflm, records, batch_size, folder):
    """Time both backends on `records`; return a row of the table."""
    from lm_eval.evaluator import evaluate

    from stlm.eval.harness import harness_tasks

    task = TASKS[name]
    start, cpu = time.perf_counter(), time.process_time()
    items = [task.item(r) for r in records]
    ours = score_items(model, tok, items, batch_size)
    t_ours, c_ours = time.perf_counter() - start, time.process_time() - cpu

    tasks, order = harness_tasks(name, records, folder)  # dataset loading is not timed
    start, cpu = time.perf_counter(), time.process_time()
    out = evaluate(hflm, tasks, log_samples=True, bootstrap_iters=0)
    t_hf, c_hf = time.perf_counter() - start, time.process_time() - cpu
    samples = {(t, s["doc_id"]): s for t in tasks for s in out["samples"][t]}
    hf_acc = sum(samples[k]["acc"] for k in order) / len(order)
    same = sum(int((mine.pred == mine.gold) == bool(samples[k]["acc"])) for mine, k in zip(ours, order))
    max_diff = max(abs(a - float(b[0])) for mine, k in zip(ours, order)
                   for a, b in zip(mine.logprobs, samples[k]["filtered_resps"]))
    micro = sum(r.values["acc"] for r in ours) / len(ours)
    return name, len(items), (t_ours, c_ours), (t_hf, c_hf), micro, hf_acc, same, max_diff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--tasks", default=",".join(TASK_NAMES))
    p.add_argument("--model", default="tiny-3m", help="model preset, random init (default tiny-3m)")
    p.add_argument("--compare", type=int, default=200, help="items per task timed on both backends")
    p.add_argument("--full", action="store_true", help="also run stlm alone on every task's full split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    from stlm.hf.llama import to_hf_llama

    root = Path(args.data_dir)
    tok = GPT2Tokenizer(root / "gpt2-bpe" / "r50k_base.tiktoken")
    cfg = compose_config([f"model={args.model}"]).model
    torch.manual_seed(0)
    model = build_model(cfg, tok.vocab_size).to(args.device).eval()
    hflm = HFLM(pretrained=to_hf_llama(model).to(args.device), tokenizer=hf_gpt2_tokenizer(root / "gpt2-bpe"),
                batch_size=args.batch_size, device=args.device, max_length=cfg.context_length)
    with torch.no_grad():  # warm both up (allocator, kernels) so the first task timed is not penalised
        ids = torch.randint(0, tok.vocab_size, (args.batch_size, 64), device=args.device)
        model(ids), hflm.model(ids)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model}: {n_params / 1e6:.1f}M parameters, GPT-2 vocabulary, context {cfg.context_length}; "
          f"device {args.device}, {torch.get_num_threads()} threads, batch {args.batch_size}\n")
    print("| task | items | stlm items/s | lm-eval hf items/s | speed-up (wall) | speed-up (CPU) | acc stlm "
          "| acc hf | same prediction | max abs Δ logprob |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    total_n, total_ours, total_hf = 0, [0.0, 0.0], [0.0, 0.0]
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tasks.split(","):
            limit = max(1, args.compare // PER_SUBTASK.get(name, 1))
            records = select_subset(TASKS[name].records(root), limit, name)
            name, n, ours, hf, acc, hf_acc, same, diff = compare(name, model, tok, hflm, records,
                                                                 args.batch_size, Path(folder))
            total_n, total_ours, total_hf = total_n + n, [a + b for a, b in zip(total_ours, ours)], \
                [a + b for a, b in zip(total_hf, hf)]
            print(f"| {name} | {n} | {n / ours[0]:.1f} | {n / hf[0]:.1f} | {hf[0] / ours[0]:.1f}x | "
                  f"{hf[1] / ours[1]:.1f}x | {100 * acc:.1f} | {100 * hf_acc:.1f} | {same}/{n} | {diff:.1e} |")
    print(f"| all | {total_n} | {total_n / total_ours[0]:.1f} | {total_n / total_hf[0]:.1f} | "
          f"{total_hf[0] / total_ours[0]:.1f}x | {total_hf[1] / total_ours[1]:.1f}x | | | | |")
    if args.full:
        print("\nstlm eval alone on the full standard splits:\n\n| task | items | seconds | items/s | acc |\n"
              "|---|---:|---:|---:|---:|")
        for name in TASKS:
            if name == "arc_challenge":
                continue  # not in ../shared/data
            run = run_task(TASKS[name], model, tok, root, batch_size=args.batch_size)
            s = run.summary
            print(f"| {name} | {s['n']} | {s['seconds']:.1f} | {s['items_per_s']:.1f} | {100 * s['acc']:.1f} |")


if __name__ == "__main__":
    main()
