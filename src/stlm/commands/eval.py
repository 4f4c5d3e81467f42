"""`stlm eval RUN --tasks blimp,hellaswag`: zero-shot evaluation of a trained run, scored as
lm-evaluation-harness scores it. Writes RUN/eval/<task>.json, RUN/eval/results.md and, for
BLiMP, RUN/eval/blimp.png beside the published models and humans."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stlm.errors import UserError

SPECIAL = {"bpb": "bits per byte on the run's validation data (or --data NAME)",
           "grammar": "minimal pairs of the built-in grammar"}


def _task_list() -> str:
    from stlm.eval.tasks import TASKS

    lines = [f"  {name:<17}{desc}" for name, desc in SPECIAL.items()]
    lines += [f"  {name:<17}{task.summary}" for name, task in TASKS.items()]
    return "\n".join(lines)


EPILOG = f"""tasks:
{_task_list()}

Data: local files laid out as docs/data.md from --data-dir DIR, else $STLM_DATA_DIR, else
~/.cache/stlm/data if it exists; otherwise the Hugging Face hub. --limit N scores a seeded random
subset of N items per task (per BLiMP paradigm, per MMLU subject), the same every time. More
tasks: --task-file my_task.yaml (see docs/adding_a_task.md). Any lm-evaluation-harness task:
python -m stlm.eval.harness run --model stlm --model_args run=RUN --batch_size 64 --tasks NAME."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory (runs/<name>)")
    p.add_argument("--tasks", help="comma-separated task names (default: the run's eval.tasks, else bpb)")
    p.add_argument("--task-file", action="append", default=[], metavar="YAML",
                   help="a task defined in YAML, or a folder of them (repeatable); runs them too")
    p.add_argument("--limit", type=int, help="a seeded subset of N items per task, per subtask (BLiMP "
                                             "paradigm, MMLU subject); grammar: N pairs per paradigm; bpb: all")
    p.add_argument("--seed", type=int, help="seed of the --limit subset (default 1234)")
    p.add_argument("--data-dir", help="local data folder laid out as docs/data.md (default: $STLM_DATA_DIR, "
                                      "else ~/.cache/stlm/data if it exists, else the hub)")
    p.add_argument("--data", help="bpb: evaluate on this data preset's validation split instead of the run's")
    p.add_argument("--batch-size", type=int, help="sequences per forward pass (default: the run's eval.batch_size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--pauses", type=int, help="pause tokens before each scored continuation (grammar and "
                   "zero-shot tasks; default: the model's model.pause_tokens, 0 without pause training)")
    p.add_argument("--checkpoint", default="best", help="best | last | step-N (default best)")
    p.add_argument("--prefix-token-id", type=int, help="the token an empty context (BLiMP) is scored after "
                                                       "(default: the tokenizer's BOS, else end-of-text: "
                                                       "lm-eval's rule); recorded in each result")
    p.add_argument("--no-progress", action="store_true",
                   help="no items-done display on stderr (it is off anyway when stderr is not a terminal)")


class _Progress:
    """`stlm eval: blimp 12,288/67,000 items` rewritten in place on stderr (a terminal only)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.shown = False

    def for_task(self, name: str):
        if not self.enabled:
            return None

        def show(done: int, total: int) -> None:
            print(f"\rstlm eval: {name} {done:,}/{total:,} items", end="", file=sys.stderr, flush=True)
            self.shown = True
        return show

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr)
            self.shown = False


def _written(write, saved: list[Path]):
    """`write()`, whose OSError becomes a one-line error saying the results themselves are saved."""
    try:
        return write()
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or 'a file'} ({exc.strerror or exc}); the results "
                        f"are saved in {', '.join(map(str, saved))}") from None


def run(args: argparse.Namespace) -> int:
    from stlm.datadir import data_dir
    from stlm.device import resolve_device
    from stlm.eval.output import EVAL_DIR, mixed_checkpoints, save_task, write_results_md
    from stlm.eval.plots import blimp_chart
    from stlm.eval.run_tasks import run_bpb, run_grammar
    from stlm.eval.runner import SUBSET_SEED, run_task
    from stlm.eval.tasks import get_task, load_task_files
    from stlm.output_paths import writable_folder
    from stlm.runs import load_run, read_config

    if args.pauses is not None and args.pauses < 0:
        raise UserError(f"--pauses must be >= 0, got {args.pauses}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    user_tasks = {t.name: t for t in load_task_files(args.task_file)}
    if args.tasks:
        names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    elif user_tasks:
        names = list(user_tasks)
    else:
        names = list(read_config(Path(args.run)).eval.tasks) or ["bpb"]
    names += [n for n in user_tasks if n not in names]
    tasks = {n: None if n in SPECIAL else get_task(n, user_tasks) for n in names}  # fail before loading
    if args.data and "bpb" not in tasks:
        raise UserError("--data only applies to the bpb task; add bpb to --tasks")
    root = data_dir(args.data_dir) if any(tasks.values()) else None
    read_config(Path(args.run))  # a run directory, before anything is created in it
    writable_folder(Path(args.run) / EVAL_DIR, "evaluation results",
                    "make the run directory writable (or copy the run somewhere writable) and rerun")

    loaded = load_run(args.run, args.checkpoint, resolve_device(args.device))
    if args.pauses and not loaded.model.pause_tokens:
        raise UserError(f"--pauses {args.pauses}: {args.run} has no pause embedding (it was trained with "
                        "model.pause_tokens=0); drop --pauses")
    batch_size = args.batch_size or loaded.cfg.eval.batch_size
    seed = SUBSET_SEED if args.seed is None else args.seed
    where = {"run": str(loaded.run_dir), "checkpoint": loaded.checkpoint.name, "step": loaded.step}
    progress = _Progress(not args.no_progress)
    saved: list[Path] = []
    for n_done, (name, task) in enumerate(tasks.items()):
        print(f"stlm eval: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if name == "bpb":
            summary = run_bpb(loaded, args.data, batch_size)
        elif name == "grammar":
            summary = run_grammar(loaded, args.limit, batch_size, pauses=args.pauses)
        else:
            summary = run_task(task, loaded.model, loaded.tokenizer, root, args.limit, batch_size,
                               seed=seed, prefix_token_id=args.prefix_token_id, context_length=loaded.context,
                               progress=progress.for_task(name), pauses=args.pauses).summary
        progress.end()
        summary.update(where)
        path = save_task(loaded.run_dir, summary, saved, list(tasks)[n_done + 1:])
        saved.append(path)
        long = summary.get("long_continuations")
        if long:
            print(f"stlm eval: {name}: {long:,} items have a choice longer than the {loaded.context}-token "
                  f"context; scored in several windows (docs/adding_a_task.md)", file=sys.stderr)
        print(f"stlm eval: {name} done in {time.perf_counter() - t0:.1f} s -> {path}", file=sys.stderr)
        if name == "blimp":
            chart = _written(lambda: blimp_chart({loaded.run_dir.name: summary}, path.with_suffix(".png")), saved)
            print(f"stlm eval: BLiMP chart -> {chart}", file=sys.stderr)
    md, table = _written(lambda: write_results_md(loaded.run_dir), saved)
    print(table)
    print(f"\n(saved {md})")
    mixed = mixed_checkpoints(loaded.run_dir)
    if mixed:
        print(f"stlm eval: warning: {md} mixes checkpoints ({mixed}); rerun the other tasks with "
              f"--checkpoint {loaded.checkpoint.name} to compare them", file=sys.stderr)
    return 0
