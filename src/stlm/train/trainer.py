"""The training loop: registered optimizers (`stlm.train.optim`) with warmup and decay, gradient
accumulation and clipping, periodic evaluation in bits per byte, atomic checkpoints, and exact resumption.

Batches are a pure function of (seed, step, rank) and the checkpoint holds weights, optimizer
state, RNG states and the step, so a resumed run computes the same losses as one that was never
interrupted (bit for bit on CPU).

The hot loop never waits for the device: each step's losses and gradient norm stay on it and are
read back together (one all-reduce across ranks, one copy) at the next log, evaluation or
checkpoint step. Each step of that window is then checked in order: a non-finite loss or gradient
norm, or a finite blow-up (a training or validation loss above `train.diverge_factor` times the
run's first training loss), stops the run naming the first bad step, before any later checkpoint
is written, so the last checkpoint is the last good one (and a blown-up one is never marked best).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stlm.config.schema import RunConfig, trained_context
from stlm.errors import UserError
from stlm.eval.bpb import bits_per_byte
from stlm.models import build_model, set_dropout
from stlm.runs import CHECKPOINTS_DIR, METRICS_FILE, TOKENIZER_DIR, load_run
from stlm.train import checkpoint as ckpt
from stlm.train.babylm import BabyLMCheckpoints
from stlm.train.budget import continue_plan, plan_budget
from stlm.train.losses import build_loss_module
from stlm.train.metrics import MetricsLog, ProgressBar
from stlm.train.mfu import device_peak_flops, mfu, training_flops_per_token
from stlm.train.optim import build_optimizer
from stlm.train.setup import (DeviceBatches, Runtime, full_value, gathered, init_runtime, seed_everything, shard_model,
                              should_compile, sync_context, wrap_for_training)
from stlm.train.tracking import start_tracking


class TrainingDiverged(UserError):
    """The loss or gradient norm became NaN or infinite, or the loss blew up."""


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    tokens: int = 0  # training tokens consumed, all ranks together
    elapsed_s: float = 0.0  # wall-clock training time, resumed runs included
    best_val_loss: float = math.inf
    initial_loss: float | None = None  # the run's first training loss (the blow-up reference)


class Trainer:
    """Builds the model and optimizer for `cfg` (seeded first) and trains it on `data`.

    `data` is a `stlm.data.PreparedData`; `run_dir` receives the tokenizer, metrics and checkpoints
    (rank 0). With `resume=True` the latest checkpoint in `run_dir` is restored before training.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, data, rt: Runtime | None = None,
                 resume: bool = False):
        from stlm.data import TokenBatches
        from stlm.data.transforms import with_transforms

        t = cfg.train
        self.cfg, self.run_dir, self.data = cfg, Path(run_dir), data
        self.rt = rt or init_runtime(t)
        self.sharded = self.rt.distributed and t.parallel == "fsdp"
        self.ckpt_dir = self.run_dir / CHECKPOINTS_DIR
        self.context = trained_context(cfg)
        if self.context > cfg.model.context_length:
            raise UserError(f"train.context_length ({self.context}) exceeds model.context_length "
                            f"({cfg.model.context_length})")
        seed_everything(cfg.seed)
        try:
            self.model = build_model(cfg.model, data.tokenizer).to(self.rt.device)
        except ValueError as exc:
            raise UserError(f"cannot build the model: {exc}") from exc
        latest = ckpt.latest_checkpoint(self.ckpt_dir) if resume else None
        if resume and latest is None:
            raise UserError(f"nothing to resume: {self.ckpt_dir} holds no checkpoint (step-N folder)")
        if latest is not None:  # whole weights into the whole model, before any sharding
            ckpt.load_weights(self.model, latest, self.rt.device)
        elif cfg.init_from:  # fine-tuning: start from another run's best weights
            from stlm.runs import find_checkpoint

            ckpt.load_weights(self.model, find_checkpoint(Path(cfg.init_from)), self.rt.device)
        tokens_per_step = t.batch_size * t.grad_accum * self.context * self.rt.world_size
        self.budget = plan_budget(t, tokens_per_step)
        planned = self.budget.total_steps * tokens_per_step if self.budget.total_steps is not None else None
        # FLOPs per token, counted once on the whole model, when the compile decision or MFU (a GPU
        # with a known peak only) needs them
        flops = functools.cache(lambda: training_flops_per_token(self.model, self.context))
        compile_now = should_compile(t, self.rt.device, planned, flops)
        self.peak_flops = device_peak_flops(self.rt.device)
        self.flops_per_token = flops() if self.peak_flops else 0.0
        if self.sharded:
            if t.babylm_checkpoints:
                raise UserError("train.babylm_checkpoints is not supported with train.parallel=fsdp; "
                                "use train.parallel=ddp for a BabyLM submission run")
            shard_model(self.model, self.rt, compiled=compile_now)
        self.optimizer = build_optimizer(self.model, t, self.rt.device)  # after sharding: its parameters
        self.loss_module = build_loss_module(self.model, cfg, self.rt.device, data.tokenizer, load_run=load_run)
        self.step_module = wrap_for_training(self.model, t, self.rt, compiled=compile_now, loss_module=self.loss_module)
        source = TokenBatches(data, "train", t.batch_size, self.context, seed=cfg.seed, mode=cfg.data.sampling,
                              rank=self.rt.rank, world_size=self.rt.world_size)
        if hasattr(self.loss_module, "batch_source"):  # e.g. cached distillation targets
            n_batches = self.budget.total_steps * t.grad_accum if self.budget.total_steps is not None else None
            source = self.loss_module.batch_source(source, cfg, data, n_batches, self.rt)
        self.batches = DeviceBatches(with_transforms(source, cfg, self.rt.rank), self.rt.device)
        self.babylm = (BabyLMCheckpoints(self.run_dir, data, t.babylm_words_per_m)
                       if t.babylm_checkpoints and self.rt.is_main else None)
        self.state = TrainState()
        self.resumed = resume
        self.notes: list[str] = []  # warnings for the user (e.g. a changed schedule on resume)
        if latest is not None:
            self._restore(latest)
        elif self.rt.is_main:
            data.tokenizer.save(self.run_dir / TOKENIZER_DIR)
        self.resumed_elapsed_s = self.state.elapsed_s  # training time of earlier sessions

    # -----------------------------------------------------------------------------------------

    def _restore(self, latest: Path) -> None:
        """Optimizer, RNG and progress from `latest` (its weights are loaded already)."""
        meta = ckpt.load_training_state(latest, self.optimizer)
        if meta.get("tokenizer") != self.data.tokenizer.fingerprint():
            raise UserError(f"the prepared data's tokenizer differs from the one {latest} was trained "
                            "with; resume with the run's own data settings")
        saved = meta.get("tokens_per_step") or (meta["tokens"] // meta["step"] if meta["step"] else None)
        if saved is not None and saved != self.budget.tokens_per_step:
            self._refuse_other_batch(latest, saved)
        best = ckpt.best_val_loss(self.ckpt_dir)
        self.state = TrainState(meta["step"], meta["tokens"], meta["elapsed_s"],
                                best if best is not None else math.inf, meta.get("initial_loss"))
        saved_plan = meta.get("schedule_steps", meta.get("total_steps"))
        self.budget, note = continue_plan(self.budget, saved_plan, self.state.step, self.state.elapsed_s)
        if note:
            self.notes.append(note)
        if self.budget.total_steps is not None and self.state.step >= self.budget.total_steps:
            self.notes.append(f"{latest.name} is already at train.max_steps/max_tokens "
                              f"({self.budget.total_steps:,} steps): nothing to train; raise the budget to "
                              "continue")

    def _refuse_other_batch(self, latest: Path, saved: int) -> None:
        """A resume must keep the global batch (batch_size x grad_accum x world size sequences), so
        the learning rate, tokens and batches go on as saved; say which grad_accum keeps it."""
        t, world = self.cfg.train, self.rt.world_size
        sequences = saved // self.context
        hint = (f"train.grad_accum={sequences // (t.batch_size * world)}"
                if sequences % (t.batch_size * world) == 0 else
                f"train.batch_size and train.grad_accum with batch_size x grad_accum = {sequences / world:g}")
        raise UserError(f"{latest} was trained with {sequences} sequences per optimizer step; this run has "
                        f"{t.batch_size * t.grad_accum * world} (train.batch_size={t.batch_size} x "
                        f"train.grad_accum={t.grad_accum} x {world} rank(s)); to resume with {world} rank(s), "
                        f"set {hint}")

    def train_step(self) -> dict[str, torch.Tensor | float]:
        """One optimizer step (grad_accum micro-batches). Returns this rank's next-token loss, the
        gradient norm and, when the model has auxiliary losses, the objective and each of them, as
        0-dim tensors left on the device (`_read_back` checks and reduces them), and the lr."""
        t, rt = self.cfg.train, self.rt
        lr = self.budget.lr(self.state.step, self.state.elapsed_s)
        self.optimizer.set_lr(lr)
        objective = torch.zeros((), device=rt.device)
        lm_loss = torch.zeros((), device=rt.device)
        aux: dict[str, torch.Tensor] = {}
        for micro in range(t.grad_accum):
            batch = self.batches.batch(self.state.step * t.grad_accum + micro)  # on the device already
            with sync_context(self.step_module, micro == t.grad_accum - 1, self.model):
                with rt.autocast():
                    loss, lm, parts = self.step_module(**batch.model_inputs())
                (loss / t.grad_accum).backward()
            objective += loss.detach() / t.grad_accum
            lm_loss += lm / t.grad_accum
            for name, value in parts.items():
                aux[name] = aux.get(name, 0.0) + value / t.grad_accum
        max_norm = t.grad_clip if t.grad_clip > 0 else math.inf
        grad_norm = full_value(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.tokens += self.budget.tokens_per_step
        # without auxiliary terms the objective is the next-token loss: no second reduction
        out: dict[str, torch.Tensor | float] = {"loss": lm_loss if aux else objective, "lr": lr,
                                                "grad_norm": grad_norm.detach()}
        if aux:
            out["objective"] = objective
            out.update({f"aux.{name}": value for name, value in aux.items()})
        return out

    def _read_back(self, window: list[tuple[int, dict[str, torch.Tensor | float]]]) -> dict[str, float]:
        """The steps of `window` (step, `train_step` output) on the host: losses averaged over
        ranks in one all-reduce, each step checked in order (non-finite, then blow-up); returns the
        last step's numbers. Every rank calls it at the same steps."""
        rt = self.rt
        # steps may report different terms (an exit curriculum trains some exits only): the union,
        # with a zero where a step lacks a term (never read back into that step's numbers)
        keys = list(dict.fromkeys(k for _, out in window for k, v in out.items() if isinstance(v, torch.Tensor)))
        zero = torch.zeros((), device=rt.device)
        stacked = torch.stack([torch.stack([out[k].float() if k in out else zero for k in keys])
                               for _, out in window])
        rows = rt.mean(stacked).tolist()
        values: dict[str, float] = {}
        for (step, out), row in zip(window, rows):
            read = dict(zip(keys, row))
            values = {k: read.get(k, v) for k, v in out.items()}
            objective = values.get("objective", values["loss"])
            if not math.isfinite(objective):
                self._diverged(f"the training loss is {objective} at step {step}")
            if not math.isfinite(values["grad_norm"]):
                self._diverged(f"the gradient norm is {values['grad_norm']} at step {step}")
            if self.state.initial_loss is None:
                self.state.initial_loss = values["loss"]
            self._check_blowup("training", values["loss"], step)
        return values

    def _diverged(self, what: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        last = ckpt.latest_checkpoint(self.ckpt_dir)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise TrainingDiverged(f"training stopped: {what}; {kept}. Lower train.lr or raise "
                               "train.warmup_steps and train again")

    def validate(self, max_batches: int | None) -> dict[str, float]:
        """Validation loss and bits per byte over up to `max_batches` batches (None: all)."""
        from stlm.data import eval_batches

        batches = eval_batches(self.data, "val", self.cfg.train.batch_size, self.context, max_batches)
        with gathered(self.model):  # under FSDP every rank evaluates, each with the whole root unit
            return bits_per_byte(self.model, batches, self.data.tokenizer.byte_lengths(),
                                 autocast_dtype=self.rt.autocast_dtype)

    def save(self, val_loss: float | None) -> Path | None:
        """Write a checkpoint of the current step (rank 0; under FSDP every rank first gathers its
        shards); update `best` and prune old ones."""
        weights = ckpt.gather_weights(self.model)
        # gathered by every rank under FSDP; otherwise rank 0 alone reads its own copy
        optimizer_state = self.optimizer.state_tensors() if self.sharded or self.rt.is_main else None
        path = None
        if self.rt.is_main:
            meta = {"tokens": self.state.tokens, "elapsed_s": self.state.elapsed_s, "val_loss": val_loss,
                    "total_steps": self.budget.total_steps,
                    "schedule_steps": self.budget.schedule_steps or self.budget.total_steps,
                    "tokens_per_step": self.budget.tokens_per_step, "world_size": self.rt.world_size,
                    "parallel": ("fsdp" if self.sharded else "ddp") if self.rt.distributed else None,
                    "initial_loss": self.state.initial_loss, "tokenizer": self.data.tokenizer.fingerprint()}
            path = ckpt.save_checkpoint(self.ckpt_dir, self.state.step, weights, optimizer_state, meta)
            if val_loss is not None and val_loss < self.state.best_val_loss and not self._blown_up(val_loss):
                self.state.best_val_loss = val_loss
                ckpt.mark_best(self.ckpt_dir, path, val_loss)
            ckpt.prune(self.ckpt_dir, self.cfg.train.keep_last)
        self.rt.barrier()
        return path

    def unshard(self) -> None:
        """After training under FSDP: the model becomes one plain module on rank 0, built from the
        config and given the gathered weights, for the final evaluation (every rank calls; a
        model that is not sharded is left as it is)."""
        if not self.sharded:
            return
        weights = ckpt.gather_weights(self.model)
        self.sharded = False
        if not self.rt.is_main:
            return
        whole = build_model(self.cfg.model, self.data.tokenizer)
        whole.load_state_dict(weights, strict=False)  # tied aliases are not in `weights`
        absent = {n for n, _ in whole.named_parameters()} - set(weights)
        if absent:
            raise RuntimeError(f"the gathered weights lack {', '.join(sorted(absent)[:3])}")
        self.model = whole.to(self.rt.device).train(self.model.training)

    # -----------------------------------------------------------------------------------------

    def fit(self) -> TrainState:
        """Train until the budget is spent; log, evaluate and checkpoint on the configured cadence."""
        t, rt, st = self.cfg.train, self.rt, self.state
        main = rt.is_main
        log = MetricsLog(self.run_dir / METRICS_FILE, st.step if self.resumed else None,
                         start_tracking(self.cfg, self.run_dir, st.step)) if main else None
        timed = self.budget.total_steps is None
        total = self.budget.max_seconds if timed else self.budget.total_steps
        bar = ProgressBar(t.progress and main, total, st.elapsed_s if timed else st.step,
                          "train (s)" if timed else "train")
        base_elapsed = st.elapsed_s  # a resumed run continues its saved time
        peak, flops_per_token = self.peak_flops, self.flops_per_token  # None on CPU or an unknown GPU: no MFU
        started = window_start = time.perf_counter()
        window_tokens = 0
        window: list[tuple[int, dict]] = []  # steps not yet read back from the device
        model_was_training = self.model.training
        self.model.train()
        try:
            while not self.budget.done(st.step, st.elapsed_s):
                set_dropout(self.model, self.budget.dropout(st.step, st.elapsed_s, self.cfg.model.dropout))
                progress = self.budget.progress(st.step, st.elapsed_s)
                self.model.set_training_progress(st.step, progress)  # step-dependent components
                if hasattr(self.loss_module, "set_progress"):  # a scheduled loss term
                    self.loss_module.set_progress(progress)
                window.append((st.step + 1, self.train_step()))
                if self.babylm is not None:
                    self.babylm.after_step(self.model, st.step, st.tokens)
                window_tokens += self.budget.tokens_per_step
                st.elapsed_s = self._sync_elapsed(base_elapsed + time.perf_counter() - started)
                final = self.budget.done(st.step, st.elapsed_s)
                logging = st.step % t.log_every == 0 or final
                evaluating = st.step % t.eval_every == 0 or final
                saving = st.step % t.checkpoint_every == 0 or final
                if not (logging or evaluating or saving):
                    continue  # the device runs ahead: nothing read back
                out, window = self._read_back(window), []
                record: dict[str, Any] | None = None
                if logging:
                    now = time.perf_counter()
                    speed = window_tokens / max(now - window_start, 1e-9)
                    record = {"step": st.step, "tokens": st.tokens, **out, "tok_per_s": speed,
                              "elapsed_s": st.elapsed_s}
                    if peak:
                        record["mfu"] = mfu(speed, flops_per_token, peak, rt.world_size)
                    bar.update(st.elapsed_s if timed else st.step, out["loss"], speed)
                    window_start, window_tokens = now, 0
                val = None
                if evaluating:
                    val = self.validate(t.eval_batches)
                    self._check_blowup("validation", val["loss"], st.step)
                    record = {"step": st.step, "tokens": st.tokens, **(record or {}),
                              "val_loss": val["loss"], "val_bpb": val["bpb"]}
                    if main:
                        bar.print(f"step {st.step}: train loss {out['loss']:.4f}, val loss {val['loss']:.4f}, "
                                  f"val bpb {val['bpb']:.4f} (first {val['tokens']:,} val tokens)")
                if record is not None and log is not None:
                    log.write(record)
                if saving:
                    self.save(val["loss"] if val else None)
                if val is not None or st.step % t.checkpoint_every == 0:
                    window_start, window_tokens = time.perf_counter(), 0  # not training speed
        finally:
            bar.close()
            if log is not None:
                log.close()
            self.model.train(model_was_training)
        return st

    def _blown_up(self, loss: float) -> bool:
        """Non-finite, or above `train.diverge_factor` times the run's first training loss."""
        factor, first = self.cfg.train.diverge_factor, self.state.initial_loss
        if not math.isfinite(loss):
            return True
        return factor is not None and first is not None and loss > factor * first

    def _check_blowup(self, which: str, loss: float, step: int) -> None:
        if self._blown_up(loss):
            self._diverged(f"the {which} loss is {loss:.4g} at step {step}, more than "
                           f"train.diverge_factor={self.cfg.train.diverge_factor:g} times the first "
                           f"training loss {self.state.initial_loss:.4g}")

    def _sync_elapsed(self, elapsed: float) -> float:
        """Under DDP with a time budget, rank 0's clock, so every rank agrees on lr and stopping."""
        if not self.rt.distributed or self.budget.max_seconds is None:
            return elapsed
        import torch.distributed as dist

        value = torch.tensor([elapsed], dtype=torch.float64, device=self.rt.device)
        dist.broadcast(value, src=0)
        return float(value)
