"""Training objectives as registered loss modules (`train.loss`), so the trainer, DDP and
torch.compile see one forward pass per micro-batch whatever the objective is.

A builder (`@register_loss(name)`) takes (model, run config, device, the data's tokenizer) and
returns an `nn.Module` whose forward(ids, targets, **inputs) returns (training objective,
next-token loss detached, named auxiliary losses detached).

- `lm`: the model's own loss (next-token cross-entropy plus its heads' auxiliary losses).
- `distill`: knowledge distillation from a teacher, an stlm run or a transformers folder
  (`train.distill.*`, stlm.train.distill, stlm.train.teacher, stlm.train.distill_cache).

A loss module may also define `set_progress(progress)` (the trainer calls it before each step with
the fraction of training done, for a scheduled term) and `batch_source(source, cfg, data,
n_batches, rt)` (the batches it trains on, e.g. with extra targets from a cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from stlm.batch import IGNORE_INDEX
from stlm.config.schema import ProgressScheduleConfig, RunConfig
from stlm.errors import UserError
from stlm.registry import registrar
from stlm.train.distill import distillation_kl, teacher_topk, topk_distillation_kl
from stlm.train.dropout import scheduled
from stlm.train.teacher import load_teacher

LOSSES: dict[str, Callable[..., nn.Module]] = {}


register_loss = registrar(LOSSES)


def build_loss_module(model: nn.Module, cfg: RunConfig, device: torch.device, tokenizer,
                      load_run: Callable | None = None) -> nn.Module:
    """The training step's loss module. `load_run` (stlm.runs.load_run, passed in by the trainer so
    that this module does not import the run-directory code, which imports config validation,
    which imports this registry) loads other runs, e.g. a distillation teacher."""
    return LOSSES[cfg.train.loss](model, cfg, device, tokenizer, load_run=load_run)


@register_loss("lm")
def build_lm_loss(model: nn.Module, cfg: RunConfig, device: torch.device, tokenizer, **_) -> nn.Module:
    from stlm.train.setup import LossModule

    return LossModule(model)


class DistillationLoss(nn.Module):
    """(1 - w) * the student's loss + w * T^2 KL(teacher || student) (or reverse), with the weight
    w = `weight` shaped over training by `schedule` (`set_progress`; constant without one).

    The teacher is frozen, in eval mode, and kept outside the module tree: it is not trained,
    saved, DDP-synchronised or counted. With `top_k` the KL is taken against the teacher's top-k
    ids (stlm.train.distill); batches may carry them precomputed (`teacher_logprobs`,
    `teacher_ids`: a disk cache, stlm.train.distill_cache) and then the teacher does not run.
    With a teacher equal to the student (and the full vocabulary) the KL is 0."""

    def __init__(self, model: nn.Module, teacher: nn.Module | None, weight: float, temperature: float,
                 direction: str, top_k: int | None = None, schedule: ProgressScheduleConfig | None = None):
        super().__init__()
        self.model = model
        self._teacher = (teacher,)  # a tuple: not registered as a submodule
        self.peak, self.schedule = weight, schedule or ProgressScheduleConfig()
        self.temperature, self.direction, self.top_k = temperature, direction, top_k
        # a tensor, so a changing weight neither recompiles a compiled step nor leaves the graph
        device = next(model.parameters()).device
        self.register_buffer("weight", torch.tensor(scheduled(0.0, weight, self.schedule), device=device),
                             persistent=False)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0]

    def set_progress(self, progress: float) -> None:
        """Follow training progress in [0, 1] (the trainer calls this before each step)."""
        self.weight.fill_(scheduled(progress, self.peak, self.schedule))

    def forward(self, ids: torch.Tensor, targets: torch.Tensor, teacher_logprobs: torch.Tensor | None = None,
                teacher_ids: torch.Tensor | None = None, **inputs):
        out = self.model(ids, targets, **inputs)
        mask = targets != IGNORE_INDEX
        if inputs.get("loss_mask") is not None:
            mask = mask & inputs["loss_mask"]
        if teacher_logprobs is None and self.teacher is None:
            raise ValueError("no teacher to run and no teacher targets in the batch")
        if teacher_logprobs is None:
            extra = {"positions": inputs["positions"]} if inputs.get("positions") is not None else {}
            with torch.no_grad():
                teacher_logits = self.teacher(ids, **extra).logits
            if self.top_k is not None:
                teacher_logprobs, teacher_ids = teacher_topk(teacher_logits, self.top_k)
        if teacher_logprobs is None:
            kl = distillation_kl(out.logits, teacher_logits, self.temperature, self.direction, mask=mask)
        else:
            kl = topk_distillation_kl(out.logits, teacher_logprobs, teacher_ids, self.temperature,
                                      self.direction, mask=mask)
        loss = (1.0 - self.weight) * out.loss + self.weight * kl
        aux = {k: v.detach() for k, v in out.aux_losses.items()}
        aux["distill_kl"] = kl.detach()
        aux["distill_weight"] = self.weight.detach().clone()
        return loss, out.lm_loss.detach(), aux

    def batch_source(self, source, cfg: RunConfig, data, n_batches: int | None, rt):
        """The trainer's batches: with `train.distill.cache`, `source` plus the cached teacher
        targets (the cache built first when missing); otherwise `source` itself."""
        if not cfg.train.distill.cache:
            return source
        from stlm.train.distill_cache import cached_teacher_batches

        return cached_teacher_batches(source, cfg, data, n_batches, self.teacher, rt)


@register_loss("distill")
def build_distillation_loss(model: nn.Module, cfg: RunConfig, device: torch.device, tokenizer,
                            load_run: Callable | None = None) -> nn.Module:
    d = cfg.train.distill
    if not d.teacher:
        raise UserError("train.loss=distill needs a teacher: set train.distill.teacher=runs/NAME (an stlm run) "
                        "or a transformers model folder")
    if load_run is None:
        raise ValueError("build_distillation_loss needs load_run (stlm.runs.load_run) to load the teacher")
    if not model.logits_in_training:
        raise UserError(f"model.head={model.cfg.head} computes no logits over the vocabulary in training (one "
                        "decoder pass per id and position), which distillation matches; distil into a model "
                        "with a token head")
    if d.top_k is not None and d.top_k > model.vocab_size:
        raise UserError(f"train.distill.top_k={d.top_k} exceeds the vocabulary ({model.vocab_size} ids)")
    if d.cache and Path(d.cache).exists():  # the cache is checked against the teacher's files instead
        teacher = None
    else:
        teacher = load_teacher(d.teacher, device, tokenizer, model.vocab_size, load_run)
    return DistillationLoss(model, teacher, d.weight, d.temperature, d.direction, d.top_k, d.schedule)
