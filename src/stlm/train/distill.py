"""Knowledge distillation (Hinton et al., 2015, arXiv 1503.02531): the student also matches a
teacher's softened next-token distribution.

loss = (1 - weight) * cross_entropy(student, labels) + weight * T^2 * KL_T, where KL_T compares the
teacher's and the student's distributions at temperature T (softmax(logits / T)); the T^2 keeps
the gradient scale of the soft term independent of T (Hinton et al.). `forward` is
KL(teacher || student), the usual mass-covering choice (DistilBERT, Sanh et al., 2019; BabyLlama,
Timiryasov & Tastet, 2023); `reverse` is KL(student || teacher), mode-seeking (MiniLLM, Gu et al.,
2023, arXiv 2306.08543).

Top-k teacher targets (sparse distillation: a teacher's top-k log-probs are small enough to cache
on disk and reuse): the teacher gives only its k most likely ids and their log-probabilities at temperature 1 (`teacher_topk`). At
temperature T the teacher's distribution is renormalised over those k ids, softmax(l_i / T) over
the k entries, which equals softmax(z_i / T) over them for the raw logits z (l_i = z_i - log Z
differ from z_i by one constant), so a store of top-k log-probs serves every T. The student keeps
its full-vocabulary log_softmax(s / T), gathered at the k ids. `forward`: sum_k p_i (log p_i -
log q_i), >= 0 and pulling the student's mass into the teacher's top k; with k = vocabulary it is
the full KL. `reverse`: KL(q~ || p) with the student q~ renormalised over the same k ids (a
student probability outside them has no teacher value to compare with). The same definition
serves teacher logits computed on the fly (`top_k=K`) and a disk cache (stlm.train.distill_cache),
so the two give the same loss.
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


def teacher_topk(teacher_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's k most likely ids per position and their log-probabilities at temperature 1
    (float32, descending): the temperature-free targets that `topk_distillation_kl` takes."""
    return torch.topk(F.log_softmax(teacher_logits.float(), dim=-1), k, dim=-1)


def topk_distillation_kl(student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, teacher_ids: torch.Tensor,
                         temperature: float = 1.0, direction: str = "forward",
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 times the mean per-token KL against the teacher's top-k targets (module docstring).

    `student_logits` (..., vocab); `teacher_logprobs` and `teacher_ids` (..., k) from `teacher_topk`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown distillation direction '{direction}'; valid choices: {', '.join(DIRECTIONS)}")
    if teacher_ids.shape[:-1] != student_logits.shape[:-1] or teacher_ids.shape != teacher_logprobs.shape:
        raise ValueError(f"teacher top-k targets {tuple(teacher_ids.shape)} do not fit the student logits "
                         f"{tuple(student_logits.shape)}")
    log_t = F.log_softmax(teacher_logprobs.float() / temperature, dim=-1)
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, teacher_ids.long())
    if direction == "forward":
        per_token = (log_t.exp() * (log_t - log_s)).sum(-1)
    else:
        log_s = F.log_softmax(log_s, dim=-1)  # the student renormalised over the teacher's k ids
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
