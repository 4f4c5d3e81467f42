"""The conditional-computation study: what do early exit (LayerSkip), pause tokens and
mixture-of-depths buy against the dense model with the same parameters and training tokens?

Every arm is tiny-1m trained on the built-in grammar corpus (the quickstart's data and optimiser)
for the same tokens and seed; only the conditional-computation part differs. Each trained arm is
then evaluated in one or more inference modes, and for each mode the study measures

- FLOPs spent per scored token, counted from the computation performed
  (`stlm.models.params.FlopCounter` hooks every matmul and attention call of the evaluation pass:
  an early exit runs fewer blocks, a confidence exit also pays for the head at every layer it
  tries, pauses add positions, a router sends fewer tokens through a block);
- wall-clock scored tokens per second of that pass (batched; token by token for confidence exit);
- quality: validation bits per byte on the same held-out windows for every mode, the built-in
  grammar's minimal pairs (local and structural tiers), and BLiMP when a data folder holds it.

Modes: `full` (the whole model), `exit-E` (every token leaves after layer E), `conf-P` (each
token leaves at the first layer whose exit puts >= P on its top token), `pauses-K` (bits per byte
with pauses inserted into the held-out windows as in training, none cut off; minimal pairs with K
pauses before each sentence) and `no-pauses`.

A killed study resumes: trained arms are reused. An arm whose preset is missing from this build
(`tiny-1m-mod` before mixture-of-depths is merged) is skipped and named in the report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from stlm.config.loader import compose_config, list_choices
from stlm.errors import UserError
from stlm.fileio import write_atomic

TOKENS_PER_MODEL = 400_000  # training tokens per arm at budget 1
MINUTES_PER_MODEL = 6.0  # a safety cap per arm at budget 1 (a busy machine); capped rows are marked
VAL_WINDOWS = 64  # held-out windows scored per mode at budget 1
PAIRS = 100  # grammar minimal pairs per paradigm at budget 1 (at most 200)
BLIMP_PAIRS = 20  # BLiMP pairs per paradigm at budget 1 (1,000 = all)
SEED = 1337
EVAL_FILE = "conditional_eval.json"
BASE = ["data=grammar", "train=quickstart", "train.max_steps=null", "train.max_minutes=null", "train.log_every=5",
        "train.checkpoint_every=1000000", "train.keep_last=1", "eval.sample_tokens=16", "eval.minimal_pairs=false",
        f"seed={SEED}"]


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    kind: str  # full | exit | confidence | pauses | no_pauses
    value: float = 0.0  # the exit layer, the confidence threshold or the number of pauses


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    role: str
    preset: str
    overrides: tuple[str, ...]
    modes: tuple[Mode, ...]


FULL = Mode("full", "full")
ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("dense", "tiny-1m, every token through every layer", "tiny-1m", (), (FULL,)),
    Arm("layerskip", "LayerSkip: layer dropout 0.2 and an exit loss at every layer", "tiny-1m-layerskip", (),
        (FULL, Mode("exit-1", "exit", 1), Mode("exit-2", "exit", 2), Mode("exit-3", "exit", 3),
         Mode("conf-0.9", "confidence", 0.9), Mode("conf-0.5", "confidence", 0.5))),
    Arm("layerskip_rot", "LayerSkip with the rotational curriculum (R=2)", "tiny-1m-layerskip",
        ("model.early_exit_curriculum=rotational", "model.early_exit_rotation=2"),
        (FULL, Mode("exit-2", "exit", 2), Mode("conf-0.9", "confidence", 0.9))),
    Arm("pause", "pause tokens: 10% of training positions, 2 at inference", "tiny-1m-pause", (),
        (Mode("pauses-2", "pauses", 2), Mode("no-pauses", "no_pauses"))),
    Arm("mod", "mixture-of-depths (tiny-1m-mod)", "tiny-1m-mod", (), (FULL,)),
)}


@dataclasses.dataclass(frozen=True)
class ConditionalSettings:
    budget: float = 1.0
    out: Path = Path("runs/studies/conditional")
    data_root: Path | None = None  # a data folder with blimp/ (None: BLiMP is not scored)
    arms: tuple[str, ...] = tuple(ARMS)
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True
    overrides: tuple[str, ...] = ()  # config overrides for every arm, after the study's own (tests)


def arm_config(arm: Arm, s: ConditionalSettings):
    """The run configuration of one arm: the quickstart's optimiser, `budget` times 400k tokens."""
    cfg = compose_config([*BASE, f"model={arm.preset}", *arm.overrides, f"train.device={s.device}",
                          f"runs_dir={s.out / 'runs'}", f"run_name={arm.name}",
                          f"train.progress={str(s.progress).lower()}"]
                         + ([f"train.threads={s.threads}"] if s.threads else []) + list(s.overrides))
    tokens_per_step = cfg.train.batch_size * cfg.train.context_length
    steps = max(1, round(s.budget * TOKENS_PER_MODEL / tokens_per_step))
    train = dataclasses.replace(cfg.train, max_steps=steps, warmup_steps=max(1, steps // 20), eval_every=steps,
                                checkpoint_every=steps, max_minutes=max(1.0, MINUTES_PER_MODEL * s.budget))
    return dataclasses.replace(cfg, train=train)


# ---------------------------------------------------------------------------------------------
# One inference mode: bits per byte with FLOPs and time, minimal pairs, BLiMP
# ---------------------------------------------------------------------------------------------


class ExitView(torch.nn.Module):
    """The model seen through an exit after layer E: `encode` stops there (its KV cache holds the
    first E layers), everything else is the model's own, so the ordinary scorers score the exit."""

    def __init__(self, model: torch.nn.Module, exit_layer: int):
        super().__init__()
        self.model, self.exit_layer = model, exit_layer

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)

    def encode(self, ids, *, cache=None, positions=None):
        return self.model.encode(ids, cache=cache, positions=positions, exit_layer=self.exit_layer)

    def logprobs(self, ids, targets, *, cache=None, positions=None):
        h = self.encode(ids, cache=cache, positions=positions)
        logp, greedy = self.model.target_logprobs(h.reshape(-1, h.shape[-1]), targets.reshape(-1))
        return logp.view(targets.shape), greedy.view(targets.shape)


def scorer_for(model: torch.nn.Module, mode: Mode) -> torch.nn.Module:
    return ExitView(model, int(mode.value)) if mode.kind == "exit" else model


def measure_bpb(model: torch.nn.Module, batches: list, byte_lengths: np.ndarray, mode: Mode,
                pause_fraction: float) -> dict:
    """Bits per byte of the held-out `batches` in `mode`, the inference FLOPs the pass spent per
    scored token (counted by hooks) and its scored tokens per second."""
    from stlm.batch import IGNORE_INDEX
    from stlm.data.transforms.pauses import insert_pauses
    from stlm.models.params import FlopCounter
    from stlm.speculative import confidence_exit_logprobs

    lengths = torch.as_tensor(byte_lengths, dtype=torch.long)
    if mode.kind == "pauses":  # as in training, none cut off: the same targets as every other mode
        batches = [insert_pauses(b, pause_fraction, np.random.default_rng([SEED, i]), keep_length=False)
                   for i, b in enumerate(batches)]
    nll, tokens, nbytes, layers = 0.0, 0, 0, 0
    scorer = scorer_for(model, mode)
    model.eval()
    width = max(b.ids.shape[1] for b in batches)  # a routed block's attention is costed at its share
    per_call = None if mode.kind == "confidence" else width  # token by token: one position per call
    with torch.no_grad(), FlopCounter(model, context=width, tokens=per_call) as counter:
        start = time.perf_counter()
        for b in batches:
            scored = b.targets != IGNORE_INDEX
            if b.loss_mask is not None:
                scored &= b.loss_mask
            if mode.kind == "confidence":
                rows = [confidence_exit_logprobs(model, b.ids[r], b.targets[r], mode.value) for r in range(len(b.ids))]
                logp = torch.stack([lp for lp, _ in rows])
                layers += int(sum(int(n[scored[r]].sum()) for r, (_, n) in enumerate(rows)))
            else:
                logp = scorer.logprobs(b.ids, b.targets.clamp(min=0))[0]
            nll -= float(logp[scored].double().sum())
            tokens += int(scored.sum())
            nbytes += int(lengths[b.targets[scored]].sum())
        seconds = time.perf_counter() - start
    out = {"val_bpb": nll / np.log(2) / nbytes, "val_tokens": tokens, "val_bytes": nbytes,
           "flops_per_token": counter.inference_flops / tokens, "tok_per_s": tokens / max(seconds, 1e-9)}
    if mode.kind == "confidence":
        out["mean_layers"] = layers / tokens
    return out


def evaluate_mode(run, mode: Mode, batches: list, plan: dict, data_root: Path | None) -> dict:
    """Every number of one (trained arm, inference mode) row."""
    from stlm.data.grammar import minimal_pair_suite
    from stlm.eval.minimal_pairs import evaluate_pairs
    from stlm.study.sllama import _read_once, _task_numbers

    model, tok = run.model, run.tokenizer
    row = measure_bpb(model, batches, tok.byte_lengths(), mode, run.cfg.model.pause_fraction)
    row["pairs"] = row["pairs_per_tier"] = row["blimp"] = None
    if mode.kind == "confidence":  # scored token by token: no prefix-sharing scorer for it
        return row
    pauses = int(mode.value) if mode.kind == "pauses" else 0 if mode.kind == "no_pauses" else None
    scorer = scorer_for(model, mode)
    res = evaluate_pairs(scorer, tok, minimal_pair_suite(seed=10_007, per_paradigm=plan["pairs"]),
                         context_length=run.context, pauses=pauses)
    row["pairs"], row["pairs_per_tier"] = res.overall, res.per_tier
    if data_root is not None and (data_root / "blimp").is_dir():
        from stlm.eval.runner import run_task

        row["blimp"] = _task_numbers(run_task(_read_once("blimp", data_root), scorer, tok, data_root,
                                              limit=plan["blimp_limit"], context_length=run.context,
                                              pauses=pauses).summary)
    return row


def _evaluate_arm(arm: Arm, run_dir: Path, plan: dict, s: ConditionalSettings, echo) -> list[dict]:
    """Each mode's row of a trained arm (cached in the run folder per evaluation plan)."""
    from stlm.data import eval_batches, prepare_data
    from stlm.runs import load_run

    cache = run_dir / EVAL_FILE
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("plan") == plan:
            return saved["rows"]
    run = load_run(run_dir, "last", torch.device(s.device))
    data = prepare_data(run.cfg.data, progress=False)
    per_batch = min(16, plan["val_windows"])
    batches = list(eval_batches(data, "val", per_batch, run.context, max_batches=-(-plan["val_windows"] // per_batch)))
    rows = []
    for mode in arm.modes:
        row = {"mode": mode.name, **evaluate_mode(run, mode, batches, plan, s.data_root)}
        pairs = "n/a" if row["pairs"] is None else f"{100 * row['pairs']:.1f}%"
        echo(f"    {arm.name} {mode.name}: val bpb {row['val_bpb']:.4f}, {row['flops_per_token'] / 1e6:.3f} "
             f"MFLOP/token, {row['tok_per_s']:,.0f} tok/s, minimal pairs {pairs}")
        rows.append(row)
    write_atomic(cache, json.dumps({"plan": plan, "rows": rows}, indent=1))
    return rows


def run_conditional_study(s: ConditionalSettings, echo: Callable[[str], None] = print) -> dict:
    """Train every available arm, evaluate each in its modes, write results.{json,md,png}."""
    from stlm.study.report import write_report
    from stlm.study.sllama import train_model

    unknown = [a for a in s.arms if a not in ARMS]
    if unknown:
        raise UserError(f"unknown conditional-study arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if not s.budget > 0:
        raise UserError(f"--budget must be > 0, got {s.budget}")
    if s.threads:
        torch.set_num_threads(s.threads)
    presets = set(list_choices("model"))
    arms = [ARMS[a] for a in s.arms if ARMS[a].preset in presets]
    missing = [f"{a} (preset {ARMS[a].preset} is not in this build)" for a in s.arms if ARMS[a].preset not in presets]
    plan = {"tokens_per_model": round(s.budget * TOKENS_PER_MODEL), "val_windows": max(2, round(VAL_WINDOWS * s.budget)),
            "pairs": max(5, min(200, round(PAIRS * s.budget))),
            "blimp_limit": None if BLIMP_PAIRS * s.budget >= 1000 else max(1, round(BLIMP_PAIRS * s.budget))}
    echo(f"conditional study, budget {s.budget:g}: {len(arms)} arms, {plan['tokens_per_model']:,} tokens each, "
         f"seed {SEED}; output in {s.out}" + (f"; skipped: {', '.join(missing)}" if missing else ""))
    rows = []
    for i, arm in enumerate(arms, 1):
        echo(f"[{i}/{len(arms)}] {arm.name} ({arm.role})")
        cfg = arm_config(arm, s)
        summary = train_model(cfg, echo)
        trained = {"arm": arm.name, "role": arm.role, "preset": arm.preset, "overrides": list(arm.overrides),
                   "parameters": summary["parameters"], "tokens": summary["tokens"], "steps": summary["steps"],
                   "planned_steps": summary["planned_steps"] or cfg.train.max_steps,
                   "train_seconds": summary["train_seconds"], "run_dir": summary["run_dir"]}
        rows += [{**trained, **row} for row in _evaluate_arm(arm, Path(summary["run_dir"]), plan, s, echo)]
    dense = next((r for r in rows if r["arm"] == "dense"), None)
    for r in rows:
        r["relative_flops"] = r["flops_per_token"] / dense["flops_per_token"] if dense else None
    results = {"study": "conditional", "budget": s.budget, "plan": plan, "seed": SEED, "base": BASE,
               "skipped": missing, "device": s.device, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "blimp": s.data_root is not None and (Path(s.data_root) / "blimp").is_dir(),
               "rows": rows}
    table = write_report(results, s.out, table_of=format_table, plot_to=plot)
    echo(table)
    return results


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def format_table(results: dict) -> str:
    lines = ["| arm | inference | params | train tokens | val bpb | MFLOP / token | vs dense | tok/s | "
             "grammar pairs % | local % | structural % | BLiMP % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        tiers = r["pairs_per_tier"] or {}
        capped = "*" if r["steps"] < r["planned_steps"] else ""
        mode = r["mode"] + (f" ({r['mean_layers']:.2f} layers)" if "mean_layers" in r else "")
        rel = "n/a" if r["relative_flops"] is None else f"{r['relative_flops']:.2f}x"
        lines.append(f"| {r['arm']} | {mode} | {r['parameters']:,} | {r['tokens']:,}{capped} | {r['val_bpb']:.4f} | "
                     f"{r['flops_per_token'] / 1e6:.3f} | {rel} | {r['tok_per_s']:,.0f} | {_pct(r['pairs'])} | "
                     f"{_pct(tiers.get('local'))} | {_pct(tiers.get('structural'))} | "
                     f"{_pct(r['blimp']['acc'] if r['blimp'] else None)} |")
    p = results["plan"]
    blimp = ("not scored (no data folder with blimp/)" if not results["blimp"] else
             f"{'all' if p['blimp_limit'] is None else p['blimp_limit']} pairs per paradigm")
    lines += ["", f"Budget {results['budget']:g}: {p['tokens_per_model']:,} planned training tokens per arm (the "
              f"quickstart's tiny-1m, optimiser and built-in grammar corpus), seed {results['seed']}, "
              f"{results['device']}, {results['threads']} torch thread(s). Validation: the same first "
              f"{p['val_windows']} held-out windows for every row; FLOPs counted from the computation "
              f"of that pass (inference: 2 per matmul parameter use, attention costed at the window); tok/s "
              f"is the wall clock of that pass (batched, except confidence exit: token by token, so its "
              f"tok/s is not comparable). Grammar: {p['pairs']} pairs per paradigm; BLiMP: {blimp}. "
              "A tie between the two sentences of a pair counts as wrong."]
    if results["skipped"]:
        lines.append(f"Skipped: {', '.join(results['skipped'])}.")
    if any(r["steps"] < r["planned_steps"] for r in results["rows"]):
        lines.append('Train tokens marked "*": the per-arm time cap stopped that run early; compare it with care.')
    return "\n".join(lines)


def plot(results: dict, out: Path) -> None:
    from stlm.study.report import figure, save_figure, training_curves

    rows = results["rows"]
    fig, axes = figure(3)
    trained = list({r["arm"]: r for r in rows}.values())
    training_curves(axes[0], trained, "arm", lambda r, m: (m["tokens"], m["loss"]))
    axes[0].set(xlabel="training tokens", ylabel="train loss (nats/token)", title="training loss", yscale="log")
    for ax, key, label in ((axes[1], "val_bpb", "validation bits per byte"),
                           (axes[2], "structural", "grammar structural pairs (%)")):
        for r in rows:
            y = r["val_bpb"] if key == "val_bpb" else (100 * r["pairs_per_tier"]["structural"]
                                                       if r["pairs_per_tier"] else None)
            if y is None:
                continue
            x = r["flops_per_token"] / 1e6
            ax.scatter(x, y)
            ax.annotate(f"{r['arm']} {r['mode']}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="inference MFLOP per scored token (counted)", ylabel=label, title=f"{label} vs compute")
    save_figure(fig, axes, out)
