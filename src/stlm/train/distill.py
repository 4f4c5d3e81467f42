"""Knowledge distillation (Hinton et al., 2015, arXiv 1503.02531): the student also matches a
teacher's softened next-token distribution.

loss = (1 - weight) * cross_entropy(student, labels) + weight * T^2 * KL_T, where KL_T compares the
teacher's and the student's distributions at temperature T (softmax(logits / T)); the T^2 keeps
the gradient scale of the soft term independent of T (Hinton et al.). `forward` is
KL(teacher || student), the usual mass-covering choice (DistilBERT, Sanh et al., 2019; BabyLlama,
Timiryasov & Tastet, 2023); `reverse` is KL(student || teacher), mode-seeking (MiniLLM, Gu et al.,
2023, arXiv 2306.08543).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DIRECTIONS = ("forward", "reverse")


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
                    direction: str = "forward", mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 times the mean per-token KL divergence between the two distributions at temperature T.

    Logits are (..., vocab); `mask` (...) selects the tokens that count (all when None)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown distillation direction '{direction}'; valid choices: {', '.join(DIRECTIONS)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ; the teacher needs the same vocabulary")
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if direction == "forward":
        per_token = (log_t.exp() * (log_t - log_s)).sum(-1)
    else:
        per_token = (log_s.exp() * (log_s - log_t)).sum(-1)
    if mask is not None:
        per_token = per_token[mask]
    return per_token.mean() * temperature ** 2


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      weight: float, temperature: float = 1.0, direction: str = "forward",
                      ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, label cross-entropy, T^2 KL): the label loss and the soft loss mixed by `weight`."""
    vocab = student_logits.shape[-1]
    ce = F.cross_entropy(student_logits.float().reshape(-1, vocab), targets.reshape(-1), ignore_index=ignore_index)
    kl = distillation_kl(student_logits, teacher_logits, temperature, direction, mask=targets != ignore_index)
    return (1.0 - weight) * ce + weight * kl, ce, kl
