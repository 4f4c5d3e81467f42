"""Training objectives as registered loss modules (`train.loss`), so the trainer, DDP and
torch.compile see one forward pass per micro-batch whatever the objective is.

A builder (`@register_loss(name)`) takes (model, run config, device, the data's tokenizer) and
returns an `nn.Module` whose forward(ids, targets, **inputs) returns (training objective,
next-token loss detached, named auxiliary losses detached).

- `lm`: the model's own loss (next-token cross-entropy plus its heads' auxiliary losses).
- `distill`: knowledge distillation from a teacher stlm run (`train.distill.*`, stlm.train.distill).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from stlm.batch import IGNORE_INDEX
from stlm.config.schema import RunConfig
from stlm.errors import UserError
from stlm.registry import registrar
from stlm.train.distill import distillation_kl

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
    """(1 - weight) * the student's loss + weight * T^2 KL(teacher || student) (or reverse).

    The teacher is frozen, in eval mode, and kept outside the module tree: it is not trained,
    saved, DDP-synchronised or counted. With a teacher equal to the student the KL is 0."""

    def __init__(self, model: nn.Module, teacher: nn.Module, weight: float, temperature: float, direction: str):
        super().__init__()
        self.model = model
        self._teacher = (teacher,)  # a tuple: not registered as a submodule
        self.weight, self.temperature, self.direction = weight, temperature, direction

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def forward(self, ids: torch.Tensor, targets: torch.Tensor, **inputs):
        out = self.model(ids, targets, **inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(ids, positions=inputs.get("positions")).logits
        mask = targets != IGNORE_INDEX
        if inputs.get("loss_mask") is not None:
            mask = mask & inputs["loss_mask"]
        kl = distillation_kl(out.logits, teacher_logits, self.temperature, self.direction, mask=mask)
        loss = (1.0 - self.weight) * out.loss + self.weight * kl
        aux = {k: v.detach() for k, v in out.aux_losses.items()}
        aux["distill_kl"] = kl.detach()
        return loss, out.lm_loss.detach(), aux


def load_teacher(path: str, device: torch.device, tokenizer, vocab_size: int, load_run: Callable) -> nn.Module:
    """The teacher run's last checkpoint, frozen; its tokenizer must be the student's."""
    try:
        run = load_run(path, which="last", device=device)
    except (FileNotFoundError, OSError) as exc:
        raise UserError(f"cannot load the teacher run train.distill.teacher={path}: {exc}") from exc
    if run.tokenizer.fingerprint() != tokenizer.fingerprint():
        raise UserError(f"the teacher {path} was trained with another tokenizer than this run's data; "
                        "distil from a run prepared with the same data.tokenizer settings")
    if run.model.vocab_size != vocab_size:
        raise UserError(f"the teacher {path} has {run.model.vocab_size} vocabulary rows, the student "
                        f"{vocab_size}; set model.vocab_size (or pad_vocab_to) alike")
    teacher = run.model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@register_loss("distill")
def build_distillation_loss(model: nn.Module, cfg: RunConfig, device: torch.device, tokenizer,
                            load_run: Callable | None = None) -> nn.Module:
    d = cfg.train.distill
    if not d.teacher:
        raise UserError("train.loss=distill needs a teacher: set train.distill.teacher=runs/NAME")
    if load_run is None:
        raise ValueError("build_distillation_loss needs load_run (stlm.runs.load_run) to load the teacher")
    teacher = load_teacher(d.teacher, device, tokenizer, model.vocab_size, load_run)
    return DistillationLoss(model, teacher, d.weight, d.temperature, d.direction)
