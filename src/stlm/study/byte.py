"""The byte-level study: does STLM's byte-level model (Hillier, Guertler et al., 2024,
section 5.2) keep quality while replacing the vocabulary-sized embedding and head?

Four arms share one core (the tiny-1m preset: d_model 128, 4 layers), the study corpus
(`stlm.study.corpus`), the optimiser and the seed, and each sees the same number of training
*bytes* (not tokens, since the tokenizers differ):

- `bpe_tied`, `bpe_untied`: token embedder and head over a BPE vocabulary (trained on the corpus,
  or GPT-2's with `--gpt2`), tied or not;
- `byte_token`: the byte tokenizer (257 ids), no pooling, with a 4x longer context in tokens so
  that a sequence spans about as much text;
- `byte_pooled`: the same BPE's boundaries as byte chunks (at most 16 bytes), byte-pooled embedder
  and byte decoder head.

Reported per arm: embedding + head parameters (and, for reference, GPT-2's 50,257-id embedding
and head at the same width), total parameters, bits per byte on the held-out split and on
WikiText-2 test, BLiMP, training bytes per second, and peak memory. A killed study resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
from pathlib import Path
from typing import Callable

import torch

from stlm.config.loader import compose_config, validate
from stlm.config.schema import DataConfig, EvalConfig, ModelConfig, RunConfig, TokenizerConfig, TrainConfig
from stlm.datadir import user_data_dir
from stlm.device import resolve_device
from stlm.errors import UserError
from stlm.study.corpus import study_data, test_text_ids, window_batches

ARMS = ("bpe_tied", "bpe_untied", "byte_token", "byte_pooled")
ROLES = {"bpe_tied": "BPE, tied", "bpe_untied": "BPE, untied", "byte_token": "byte tokens",
         "byte_pooled": "byte-pooled chunks"}
SEED = 1337
BPE_VOCAB = 4096
CHUNK_BYTES = 16
CONTEXT = 128  # tokens (chunks) per sequence; the byte-token arm gets BYTE_CONTEXT bytes
BYTE_CONTEXT = 512
BYTES_PER_ARM = 1_000_000  # training bytes per arm at budget 1
MINUTES_PER_ARM = 15.0  # wall-clock cap per arm at budget 1: a safety bound for a busy machine
BLIMP_PAIRS = 20  # pairs per paradigm at budget 1
TEST_BYTES = 200_000  # bytes of WikiText-2 test scored at budget 1
LR, MIN_LR = 3e-3, 3e-4
EVAL_FILE = "byte_study_eval.json"


@dataclasses.dataclass(frozen=True)
class ByteStudySettings:
    budget: float = 1.0
    out: Path = Path("runs/studies/byte")
    data_root: Path = dataclasses.field(default_factory=user_data_dir)  # the local data folder
    arms: tuple[str, ...] = ARMS
    bpe_vocab: int = BPE_VOCAB
    gpt2: bool = False  # GPT-2's tokenizer for the BPE and byte-pooled arms (the paper's)
    device: str = "auto"
    threads: int | None = None
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class BytePlan:
    budget: float
    batch_size: int
    train_bytes: int
    max_minutes: float
    blimp_limit: int | None
    test_bytes: int

    def describe(self) -> str:
        blimp = "all" if self.blimp_limit is None else str(self.blimp_limit)
        return (f"budget {self.budget:g}: {self.train_bytes:,} training bytes per arm in batches of "
                f"{self.batch_size} sequences, at most {self.max_minutes:g} min each; BLiMP {blimp} "
                f"pairs per paradigm, {self.test_bytes:,} bytes of WikiText-2 test")


def plan_for(budget: float) -> BytePlan:
    if not budget > 0:
        raise UserError(f"--budget must be > 0, got {budget}")
    blimp = max(1, round(BLIMP_PAIRS * budget))
    return BytePlan(budget=budget,
                    batch_size=int(min(128, max(8, 8 * 2 ** round(math.log2(max(budget, 1.0)) / 2)))),
                    train_bytes=round(BYTES_PER_ARM * budget),
                    max_minutes=max(1.0, MINUTES_PER_ARM * budget),
                    blimp_limit=None if blimp >= 1000 else blimp,
                    test_bytes=max(20_000, round(TEST_BYTES * budget)))


def arm_model(arm: str) -> ModelConfig:
    """The arm's model: the tiny-1m core with the arm's embedder and head."""
    preset = {"bpe_tied": "tiny-1m", "bpe_untied": "tiny-1m", "byte_token": "byte_token",
              "byte_pooled": "byte_pooled"}[arm]
    model = dataclasses.replace(compose_config([f"model={preset}"]).model, name=arm,
                                tie_embeddings=arm == "bpe_tied", vocab_size=None)
    if arm == "byte_token":
        model = dataclasses.replace(model, context_length=BYTE_CONTEXT)
    return model


def arm_data(arm: str, s: ByteStudySettings) -> DataConfig:
    data = study_data(s.data_root, DataConfig().cache_dir, s.bpe_vocab)
    if arm == "byte_token":
        tok = TokenizerConfig(kind="byte")
    elif s.gpt2:
        tok = TokenizerConfig(kind="gpt2", path=str(s.data_root / "gpt2-bpe"))
    else:
        tok = dataclasses.replace(data.tokenizer)
    if arm == "byte_pooled":
        tok = dataclasses.replace(tok, max_chunk_bytes=CHUNK_BYTES)
    return dataclasses.replace(data, tokenizer=tok)


def bytes_per_token(data: DataConfig, progress: bool) -> float:
    """Mean UTF-8 bytes per token of the prepared train split (prepares it once; cached)."""
    from stlm.data import prepare_data

    split = prepare_data(data, progress).meta["splits"]["train"]
    return split["bytes"] / split["tokens"]


def run_config(arm: str, plan: BytePlan, s: ByteStudySettings) -> tuple[RunConfig, float]:
    """The arm's run configuration, and its tokenizer's bytes per token on the train split."""
    model, data = arm_model(arm), arm_data(arm, s)
    bpt = bytes_per_token(data, s.progress)
    context = model.context_length if arm == "byte_token" else CONTEXT
    steps = max(1, math.ceil(plan.train_bytes / bpt / (plan.batch_size * context)))
    train = TrainConfig(batch_size=plan.batch_size, context_length=context, max_steps=steps,
                        max_minutes=plan.max_minutes, lr=LR, min_lr=MIN_LR,
                        warmup_steps=max(1, steps // 10), weight_decay=0.0, beta1=0.9, beta2=0.95,
                        grad_clip=1.0, device=s.device, threads=s.threads, eval_every=steps,
                        eval_batches=1, log_every=max(1, steps // 50), checkpoint_every=steps,
                        keep_last=1, progress=s.progress)
    cfg = RunConfig(model=model, data=data, train=train, eval=EvalConfig(minimal_pairs=False),
                    run_name=arm, runs_dir=str(s.out / "runs"), seed=SEED)
    validate(cfg)
    return cfg, bpt


def peak_memory_probe(run_dir: str, batch_size: int, context: int, device: str, queue) -> None:
    """In a fresh process: two training steps of the run's model; put (peak MB, MB before)."""
    from stlm.runs import load_run

    run = load_run(run_dir, "last", device)
    model = run.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, run.tokenizer.vocab_size, (batch_size, context + 1), device=device,
                        generator=torch.Generator(device).manual_seed(0))
    before = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        model(ids[:, :-1], ids[:, 1:]).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        queue.put((torch.cuda.max_memory_allocated() / 2**20, 0.0))
    else:
        queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, before))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_peak_memory(run_dir: Path, batch_size: int, context: int, device: str) -> dict:
    """Peak memory of training steps of a run, measured in a fresh process (CPU: peak resident
    set of the whole process, and its growth over the loaded model; GPU: peak allocated)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=peak_memory_probe, args=(str(run_dir), batch_size, context, device, queue))
    proc.start()
    peak, before = queue.get(timeout=600)
    proc.join()
    if device.startswith("cuda"):
        return {"peak_mb": peak, "kind": "GPU peak allocated"}
    return {"peak_mb": peak, "step_mb": peak - before, "kind": "CPU peak RSS"}


def evaluate_arm(run_dir: Path, plan: BytePlan, s: ByteStudySettings, bpt: float, context: int,
                 device: str) -> dict:
    """WikiText-2 test bpb, BLiMP and peak memory; cached per run."""
    from stlm.eval.bpb import bits_per_byte
    from stlm.eval.runner import run_task
    from stlm.runs import load_run
    from stlm.study.sllama import _read_once, _task_numbers

    settings = {"blimp_limit": plan.blimp_limit, "test_bytes": plan.test_bytes}
    cache = run_dir / EVAL_FILE
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("settings") == settings:
            return saved
    run = load_run(run_dir, "last", device)
    ids = test_text_ids(s.data_root, run.tokenizer, max(2 * context, round(plan.test_bytes / bpt)))
    test = bits_per_byte(run.model, window_batches(ids, context, plan.batch_size), run.tokenizer.byte_lengths())
    blimp = _task_numbers(run_task(_read_once("blimp", s.data_root), run.model, run.tokenizer,
                                   s.data_root, limit=plan.blimp_limit).summary)
    result = {"settings": settings, "test_bpb": test["bpb"], "test_bytes": test["bytes"], "blimp": blimp,
              "memory": measure_peak_memory(run_dir, plan.batch_size, context, device)}
    tmp = cache.with_name(f".tmp-{cache.name}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, cache)
    return result


def gpt2_reference(d_model: int) -> dict:
    """GPT-2's 50,257-id embedding and head at this width: tied and untied."""
    from stlm.tokenizers import GPT2_VOCAB_SIZE

    return {"tied": GPT2_VOCAB_SIZE * d_model, "untied": 2 * GPT2_VOCAB_SIZE * d_model}


def run_byte_study(s: ByteStudySettings, echo: Callable[[str], None] = print) -> dict:
    """Train and evaluate every arm; write results.{json,md,png}."""
    from stlm.models.params import count_parameters
    from stlm.runs import load_run
    from stlm.study.byte_report import write_report
    from stlm.study.sllama import train_model

    unknown = [a for a in s.arms if a not in ARMS]
    if unknown:
        raise UserError(f"unknown study arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    plan = plan_for(s.budget)
    device = resolve_device(s.device)
    echo(f"byte study, {plan.describe()}; output in {s.out}")
    rows = []
    for i, arm in enumerate(s.arms, 1):
        echo(f"[{i}/{len(s.arms)}] {arm} ({ROLES[arm]})")
        cfg, bpt = run_config(arm, plan, s)
        summary = train_model(cfg, echo)
        run_dir = Path(summary["run_dir"])
        context = cfg.train.context_length
        ev = evaluate_arm(run_dir, plan, s, bpt, context, device)
        run = load_run(run_dir, "last", "cpu")
        params = count_parameters(run.model, flops=False).by_component
        trained_bytes = summary["tokens"] * bpt
        rows.append({"arm": arm, "role": ROLES[arm], "tied": cfg.model.tie_embeddings,
                     "tokenizer": cfg.data.tokenizer.kind, "vocab": run.tokenizer.vocab_size,
                     "context": context, "bytes_per_token": bpt,
                     "embedding_head_parameters": params["embedding"] + params["positions"] + params["head"],
                     "parameters": summary["parameters"], "gpt2_reference": gpt2_reference(cfg.model.d_model),
                     "tokens": summary["tokens"], "steps": summary["steps"], "train_bytes": round(trained_bytes),
                     "planned_bytes": plan.train_bytes, "train_seconds": summary["train_seconds"],
                     "bytes_per_second": trained_bytes / max(summary["train_seconds"], 1e-9),
                     "device": summary["device"], "val_bpb": summary["val_bpb"], "test_bpb": ev["test_bpb"],
                     "blimp": ev["blimp"], "memory": ev["memory"], "run_dir": str(run_dir),
                     "capped": summary["steps"] < cfg.train.max_steps})
        if rows[-1]["capped"]:
            echo(f"warning: {arm} hit the {plan.max_minutes:g}-minute cap after {summary['steps']} of "
                 f"{cfg.train.max_steps} steps; compare it with care (or lower --budget / use a GPU)")
    results = {"study": "byte", "plan": dataclasses.asdict(plan), "seed": SEED, "bpe_vocab": s.bpe_vocab,
               "gpt2": s.gpt2, "chunk_bytes": CHUNK_BYTES, "data_root": str(s.data_root),
               "threads": s.threads, "torch": torch.__version__, "rows": rows}
    table = write_report(results, s.out)
    echo(table)
    return results

