"""`compress_run`: a trained run in, a new ordinary run directory out.

load the run -> measure it -> apply the method (calibrating on the run's training text where it
needs to) -> optionally fine-tune -> write config.yaml (with `model.compression`), tokenizer/ and
checkpoints/step-N/ into a temporary folder -> load that folder back with `load_run`, check that
it computes what the compressed model in memory computed, and measure it -> write eval/*.json and
summary.json -> rename the folder to `--out`. A failure anywhere leaves no output behind.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from stlm.compress.finetune import FINETUNE_SEED_OFFSET, finetune
from stlm.compress.measure import format_numbers, measure, weight_counts
from stlm.compress.methods import get_method
from stlm.compress.registry import Context, method_options
from stlm.config.schema import CompressionStep
from stlm.errors import UserError
from stlm.runs import CHECKPOINTS_DIR, SUMMARY_FILE, TOKENIZER_DIR, load_run, write_config
from stlm.train.checkpoint import read_meta

CALIBRATION_SEED_OFFSET = 104_729


@dataclass
class CompressRequest:
    run: Path
    method: str
    out: Path
    options: dict[str, Any] = field(default_factory=dict)  # the method's options (None: default)
    checkpoint: str = "best"
    finetune_steps: int = 0
    finetune_lr: float | None = None  # None: the run's train.min_lr
    calib_batches: int = 8
    pairs: int | None = None  # minimal pairs per paradigm (None: the run's eval.pairs_per_paradigm)
    batch_size: int | None = None  # evaluation batch size (None: the run's eval.batch_size)
    device: str = "cpu"
    before: dict | None = None  # the source run's numbers, when already measured (studies)


def check_request(req: CompressRequest):
    """Everything that can be refused before loading anything; returns (method, its options)."""
    method = get_method(req.method)
    options = method_options(method, req.options)
    if req.finetune_steps < 0:
        raise UserError(f"--finetune-steps must be >= 0, got {req.finetune_steps}")
    if req.finetune_steps and not method.trainable:
        raise UserError(f"--finetune-steps does not apply to --method {method.name}: fine-tune first "
                        "(with another method, or none), then quantise that run")
    if req.calib_batches < 1:
        raise UserError(f"--calib-batches must be >= 1, got {req.calib_batches}")
    if not Path(req.run).is_dir():
        raise UserError(f"run directory {req.run} does not exist")
    out = Path(req.out)
    if out.exists():
        raise UserError(f"output {out} already exists; pick another --out or delete it")
    if out.resolve() == Path(req.run).resolve():
        raise UserError("--out must be a new folder, not the run being compressed")
    return method, options


def compress_run(req: CompressRequest, echo: Callable[[str], None] = print) -> dict:
    """Compress `req.run` into the new run `req.out`; returns the new run's summary."""
    from stlm.data import TokenBatches
    from stlm.eval.run_tasks import run_data

    method, options = check_request(req)
    src = load_run(req.run, req.checkpoint, req.device)
    if src.cfg.model.compression.quantized:
        raise UserError(f"{req.run} is already quantised; quantisation must be the last compression step")
    cfg = copy.deepcopy(src.cfg)
    _, data = run_data(src)
    batch_size = req.batch_size or cfg.eval.batch_size
    context = src.context
    original = copy.deepcopy(src.model) if req.before is None else None
    calib = TokenBatches(data, "train", cfg.train.batch_size, context,
                         seed=cfg.seed + CALIBRATION_SEED_OFFSET)

    def calibration():
        return (calib.batch(i).ids for i in range(req.calib_batches))

    started = time.perf_counter()
    model = src.model
    ctx = Context(model, cfg, src.tokenizer, options, calibration, echo)
    settings = method.apply(ctx)
    seconds = time.perf_counter() - started
    before = req.before
    if before is None:  # measured after the method accepted its options and the model
        before, _, _ = measure(dataclasses.replace(src, model=original), req.pairs, batch_size)
        del original
    recorded = {**settings}
    if method.calibrates:
        recorded["calibration_batches"] = req.calib_batches
    if req.finetune_steps:
        lr = req.finetune_lr if req.finetune_lr is not None else cfg.train.min_lr
        batches = TokenBatches(data, "train", cfg.train.batch_size, context,
                               seed=cfg.seed + FINETUNE_SEED_OFFSET)
        losses = finetune(model, batches, req.finetune_steps, lr, method.keeps_zeros, echo)
        seconds += losses.pop("seconds")
        recorded.update(finetune_steps=req.finetune_steps, finetune_lr=lr, **losses)
    cfg.model.compression.steps.append(CompressionStep(method.name, f"{src.run_dir}:{src.checkpoint.name}",
                                                       recorded))
    out = Path(req.out)
    cfg.run_name, cfg.runs_dir, cfg.resume = out.name, str(out.parent), None
    model.cfg = cfg.model

    tmp = out.parent / f".tmp-{out.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        step = src.step + req.finetune_steps
        checkpoint = _write_run(tmp, cfg, src, model, step)
        loaded = load_run(tmp, checkpoint.name, req.device)
        _check_round_trip(model, loaded.model, next(iter(calibration())))
        after, bpb, grammar = measure(loaded, req.pairs, batch_size)
        _write_results(tmp, checkpoint, after, bpb, grammar)
        tokens = read_meta(checkpoint)["tokens"]
        summary = _summary(out, cfg, src, step, tokens, method.name, recorded, before, after, seconds)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    echo(f"compressed {src.run_dir} ({src.checkpoint.name}) with {method.name} "
         f"({', '.join(f'{k}={v}' for k, v in settings.items() if not isinstance(v, list))}) "
         f"in {seconds:.1f} s -> {out}")
    echo(format_numbers(before, after))
    return summary


def _write_run(run_dir: Path, cfg, src, model, step: int) -> Path:
    """config.yaml, tokenizer/ and checkpoints/step-N/ (model.safetensors, trainer.json with its
    checksum)."""
    from safetensors.torch import save_model

    from stlm.train.checkpoint import FORMAT_VERSION, META_FILE, MODEL_FILE, sha256_file

    ckpt = run_dir / CHECKPOINTS_DIR / f"step-{step}"
    ckpt.mkdir(parents=True)
    write_config(run_dir, cfg)
    shutil.copytree(src.run_dir / TOKENIZER_DIR, run_dir / TOKENIZER_DIR)
    save_model(model, str(ckpt / MODEL_FILE))
    meta = read_meta(src.checkpoint) if (src.checkpoint / META_FILE).exists() else {}
    (ckpt / META_FILE).write_text(json.dumps(
        {"format": FORMAT_VERSION, "step": step, "tokens": meta.get("tokens", 0),
         "elapsed_s": meta.get("elapsed_s", 0.0), "val_loss": None,
         "tokenizer": src.tokenizer.fingerprint(), "compressed_from": str(src.checkpoint),
         "sha256": {MODEL_FILE: sha256_file(ckpt / MODEL_FILE)}}, indent=1))
    return ckpt


@torch.no_grad()
def _check_round_trip(model, loaded, ids: torch.Tensor) -> None:
    """The model rebuilt from the written run computes what the compressed model computed."""
    ids = ids[:2].to(next(model.parameters()).device)
    model.eval()
    a, _ = model.logprobs(ids[:, :-1], ids[:, 1:])  # the scoring call: cheap for every head
    b, _ = loaded.logprobs(ids[:, :-1], ids[:, 1:])
    if a.shape != b.shape or not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
        raise RuntimeError("the compressed run does not reload to the compressed model "
                           f"(max log-probability difference {(a - b).abs().max():.3g}); this is a bug in stlm")


def _write_results(run_dir: Path, checkpoint: Path, after: dict, bpb: dict, grammar: dict) -> None:
    from stlm.eval.output import save_task, write_results_md
    from stlm.train.checkpoint import mark_best

    where = {"run": str(run_dir.parent / run_dir.name.removeprefix(".tmp-")),
             "checkpoint": checkpoint.name, "step": int(checkpoint.name.split("-")[1])}
    for summary in (bpb, grammar):
        save_task(run_dir, {**summary, **where})
    write_results_md(run_dir)
    mark_best(run_dir / CHECKPOINTS_DIR, checkpoint, after["val_loss"])


def _summary(out: Path, cfg, src, step: int, tokens: int, method: str, settings: dict, before: dict,
             after: dict, seconds: float) -> dict:
    return {
        "run_dir": str(out), "model": cfg.model.name, "data": cfg.data.name,
        **{k: after[k] for k in ("parameters", "nonzero_parameters", "model_bytes", "val_loss", "val_bpb")},
        "steps": step, "tokens": tokens, "best_checkpoint": f"step-{step}",
        "minimal_pairs_acc": after["minimal_pairs"],
        "compression": {"method": method, "source": str(src.run_dir), "checkpoint": src.checkpoint.name,
                        "settings": settings, "seconds": seconds, "before": before, "after": after},
    }


__all__ = ["CompressRequest", "compress_run", "check_request", "weight_counts"]
