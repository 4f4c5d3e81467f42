"""The SLlama study: does tying the embedding and head hurt linguistic competence at
tiny scale, and what does each SLlama component (Omolaoye et al., EMNLP 2025) cost and buy?

Trains Llama untied and tied, SLlama, and SLlama's single-component ablations at SLlama's
released width on the same real text, token budget and seed, then scores each on held-out bits
per byte (a held-out fraction of the corpus and WikiText-2 test), BLiMP and BabyLM's filtered
BLiMP, and the built-in grammar's minimal pairs (local and structural tiers). A killed study
resumes: finished models are reused, an interrupted one continues from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from pathlib import Path
from typing import Callable

import torch

from stlm.config.loader import compose_config, validate
from stlm.config.schema import DataConfig, EvalConfig, RunConfig, TrainConfig
from stlm.datadir import user_data_dir
from stlm.device import resolve_device
from stlm.errors import UserError
from stlm.fileio import write_atomic
from stlm.study.corpus import study_data, test_text_ids, window_batches
from stlm.study.plan import Plan, plan_for

MODELS = ("llama_untied", "llama_tied", "sllama", "llama_rrhp", "llama_pwa", "llama_spmlp",
          "llama_shared", "sllama_noshare")
ROLES = {"llama_untied": "baseline, untied", "llama_tied": "baseline, tied", "sllama": "all four",
         "llama_rrhp": "RRHP only", "llama_pwa": "PWA only", "llama_spmlp": "SPMLP only",
         "llama_shared": "layer sharing only", "sllama_noshare": "RRHP+PWA+SPMLP"}
SEED = 1337
BPE_VOCAB = 4096
EVAL_FILE = "study_eval.json"
# The same optimiser for every model: SLlama's betas, clipping and no weight decay; a higher peak
# learning rate than its 4e-4, since the budgets here are hundreds of times smaller.
LR, MIN_LR = 3e-3, 3e-4


@dataclasses.dataclass(frozen=True)
class StudySettings:
    budget: float = 1.0
    out: Path = Path("runs/studies/sllama")
    data_root: Path = dataclasses.field(default_factory=user_data_dir)  # the local data folder
    models: tuple[str, ...] = MODELS
    bpe_vocab: int = BPE_VOCAB
    paper_vocab: bool = False  # keep the presets' 32,000 embedding rows (the paper's sizes)
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None: torch's default)
    progress: bool = True
    seeds: int = 1  # runs per model (seeds SEED, SEED+1, ...): the table shows mean ± spread


def run_config(name: str, plan: Plan, s: StudySettings, seed: int = SEED) -> RunConfig:
    """The full run configuration of one model of the study (its first seed keeps the plain name)."""
    model = compose_config([f"model={name}"]).model
    if not s.paper_vocab:
        model = dataclasses.replace(model, vocab_size=None)  # rows = the tokenizer's vocabulary
    data = study_data(s.data_root, DataConfig().cache_dir, s.bpe_vocab)
    train = TrainConfig(batch_size=plan.batch_size, context_length=plan.context, max_steps=None,
                        max_tokens=plan.tokens, max_minutes=plan.max_minutes, lr=LR, min_lr=MIN_LR,
                        warmup_steps=plan.warmup_steps, weight_decay=0.0, beta1=0.9, beta2=0.95,
                        grad_clip=1.0, device=s.device, threads=s.threads, eval_every=plan.steps,
                        eval_batches=1, log_every=max(1, plan.steps // 50),
                        checkpoint_every=plan.steps, keep_last=1, progress=s.progress)
    cfg = RunConfig(model=model, data=data, train=train, eval=EvalConfig(minimal_pairs=False),
                    run_name=name if seed == SEED else f"{name}-seed{seed}", runs_dir=str(s.out / "runs"),
                    seed=seed)
    validate(cfg)
    return cfg


def train_model(cfg: RunConfig, echo: Callable[[str], None]) -> dict:
    """Train one model, or reuse / continue the run the study left in its folder."""
    from stlm.runs import CHECKPOINTS_DIR, SUMMARY_FILE, read_config
    from stlm.train import run_training
    from stlm.train.checkpoint import latest_checkpoint

    run_dir = Path(cfg.runs_dir) / cfg.run_name
    if run_dir.exists() and any(run_dir.iterdir()):
        saved = read_config(run_dir)
        knobs = {"threads": cfg.train.threads, "progress": cfg.train.progress}  # no effect on results
        if dataclasses.replace(saved, resume=None, train=dataclasses.replace(saved.train, **knobs)) != cfg:
            raise UserError(f"{run_dir} holds a run with other settings (budget, data or model); "
                            "use another --out or delete that folder")
        if (run_dir / SUMMARY_FILE).exists():
            echo(f"{cfg.run_name}: already trained, reusing {run_dir}")
            return json.loads((run_dir / SUMMARY_FILE).read_text())
        if latest_checkpoint(run_dir / CHECKPOINTS_DIR) is not None:
            return run_training(dataclasses.replace(cfg, resume=str(run_dir)), echo)
        shutil.rmtree(run_dir)  # killed before its first checkpoint: start over
    return run_training(cfg, echo)


def evaluate_model(run_dir: Path, plan: Plan, s: StudySettings) -> dict:
    """Held-out bpb, BLiMP (full and filtered) and the grammar's minimal pairs; cached per run."""
    from stlm.data.grammar import minimal_pair_suite
    from stlm.eval.bpb import bits_per_byte
    from stlm.eval.minimal_pairs import evaluate_pairs
    from stlm.eval.runner import run_task
    from stlm.runs import load_run

    settings = {"blimp_limit": plan.blimp_limit, "grammar_pairs": plan.grammar_pairs,
                "test_tokens": plan.test_tokens}
    cache = run_dir / EVAL_FILE
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("settings") == settings:
            return saved
    run = load_run(run_dir, "last", resolve_device(s.device))
    model, tok = run.model, run.tokenizer
    ids = test_text_ids(s.data_root, tok, plan.test_tokens)
    test = bits_per_byte(model, window_batches(ids, plan.context, plan.batch_size), tok.byte_lengths())

    def blimp(name: str) -> dict | None:
        task = _read_once(name, s.data_root)
        if task is None:
            return None
        return _task_numbers(run_task(task, model, tok, s.data_root, limit=plan.blimp_limit,
                                      context_length=run.context).summary)

    pairs = evaluate_pairs(model, tok, minimal_pair_suite(EvalConfig().pairs_seed, plan.grammar_pairs),
                           context_length=run.context)
    result = {"settings": settings, "test_bpb": test["bpb"], "test_tokens": test["tokens"],
              "blimp": blimp("blimp"), "blimp_filtered": blimp("blimp_filtered"),
              "grammar_pairs": pairs.to_dict()}
    write_atomic(cache, json.dumps(result, indent=1))
    return result


class _ReadOnce:
    """A task whose examples are read from disk once per study, not once per model."""

    def __init__(self, name: str, root: Path):
        from stlm.eval.tasks import get_task

        self._task = get_task(name)
        self._records = self._task.records(root)

    def __getattr__(self, name: str):
        return getattr(self._task, name)

    def records(self, root: Path | None):
        return self._records


@functools.lru_cache(maxsize=None)
def _read_once(name: str, root: Path) -> _ReadOnce | None:
    """The task, read once; None for BabyLM's filtered BLiMP when the data folder lacks it."""
    from stlm.eval.tasks import get_task

    if name == "blimp_filtered" and not (root / get_task(name).folder).is_dir():
        return None
    return _ReadOnce(name, root)


def _task_numbers(summary: dict) -> dict:
    fields = summary.get("groups", {}).get("field", {})
    return {"acc": summary["acc"], "acc_stderr": summary["acc_stderr"], "n": summary["n"],
            "ties": summary["ties"]["acc"], "by_field": {k: v["acc"] for k, v in fields.items()}}


def paper_parameters(name: str) -> int:
    """Parameters of the preset at its own 32,000-row vocabulary (the paper's table)."""
    from stlm.models import build_model
    from stlm.models.params import count_parameters

    return count_parameters(build_model(compose_config([f"model={name}"]).model), flops=False).total


def _train_and_evaluate(name: str, plan: Plan, s: StudySettings, seed: int,
                        echo: Callable[[str], None]) -> dict:
    """One model at one seed: trained (or reused) and evaluated; its row of the table."""
    cfg = run_config(name, plan, s, seed)
    summary = train_model(cfg, echo)
    run_dir = Path(summary["run_dir"])
    ev = evaluate_model(run_dir, plan, s)
    if summary["tokens"] < plan.tokens:
        echo(f"warning: {name} (seed {seed}) hit the {plan.max_minutes:g}-minute cap after "
             f"{summary['tokens']:,} of {plan.tokens:,} tokens; compare it with care (or lower "
             "--budget / use a GPU)")
    return {"model": name, "role": ROLES[name], "tied": cfg.model.tie_embeddings, "seed": seed,
            "parameters": summary["parameters"], "paper_parameters": paper_parameters(name),
            "tokens": summary["tokens"], "steps": summary["steps"],
            "planned_tokens": plan.tokens, "train_seconds": summary["train_seconds"],
            "device": summary["device"], "val_bpb": summary["val_bpb"], "test_bpb": ev["test_bpb"],
            "blimp": ev["blimp"], "blimp_filtered": ev["blimp_filtered"],
            "grammar": {k: ev["grammar_pairs"][k] for k in ("overall", "per_tier")},
            "run_dir": str(run_dir)}


def run_study(s: StudySettings, echo: Callable[[str], None] = print) -> dict:
    """Train and evaluate every model of the study; write results.{json,md} and results.png."""
    from stlm.study.report import write_report
    from stlm.study.seeds import mean_and_spread, study_seeds

    unknown = [m for m in s.models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown study model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    plan = plan_for(s.budget)
    seeds = study_seeds(SEED, s.seeds)
    echo(f"SLlama study, {plan.describe()}, {len(seeds)} seed(s); output in {s.out}")
    rows = []
    for i, name in enumerate(s.models, 1):
        runs = []
        for seed in seeds:
            echo(f"[{i}/{len(s.models)}] {name} ({ROLES[name]}), seed {seed}")
            runs.append(_train_and_evaluate(name, plan, s, seed, echo))
        rows.append(mean_and_spread(runs))
    results = {"study": "sllama", "plan": dataclasses.asdict(plan), "seed": SEED, "seeds": seeds,
               "bpe_vocab": s.bpe_vocab, "paper_vocab": s.paper_vocab, "data_root": str(s.data_root),
               "torch": torch.__version__, "rows": rows}
    table = write_report(results, s.out)
    echo(table)
    return results
