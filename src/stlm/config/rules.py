"""Value rules for the schema's numbers: one table, checked before any data is prepared.

The type system (OmegaConf over `stlm.config.schema`) rejects a string where an int belongs; these
rules reject an int that cannot work: a 0-wide model, a 0-token context, a cadence of 0 steps, a
dropout of 1. Each rule is one row `(key, test, meaning)` and a failure is one line naming the key,
the rule and the value. Relations between keys (divisibility, min_lr <= lr, ...) follow the table.
"""

from __future__ import annotations

from typing import Any, Callable

from stlm.config.schema import RunConfig

Test = Callable[[Any], bool]


def _at_least(n: float) -> tuple[Test, str]:
    return (lambda v: v >= n), f">= {n}"


def _above(n: float) -> tuple[Test, str]:
    return (lambda v: v > n), f"> {n}"


def _fraction() -> tuple[Test, str]:
    return (lambda v: 0 <= v < 1), "in [0, 1)"


def _capacity() -> tuple[Test, str]:
    return (lambda v: 0 < v <= 1), "in (0, 1]"


# key -> rule; a None value (where the schema allows one) means "not set" and is not tested.
RULES: dict[str, tuple[Test, str]] = {
    "model.vocab_size": _at_least(1),
    "model.pad_vocab_to": _at_least(1),
    "model.context_length": _at_least(1),
    "model.d_model": _at_least(1),
    "model.n_layers": _at_least(1),
    "model.n_heads": _at_least(1),
    "model.n_kv_heads": _at_least(1),
    "model.d_ff": _at_least(1),
    "model.rrhp_factor": _at_least(1),
    "model.rope_theta": _above(0),
    "model.norm_eps": _above(0),
    "model.dropout": _fraction(),
    "model.init_std": _above(0),
    "model.mtp_tokens": _at_least(1),
    "model.mtp_weight": _at_least(0),
    "model.early_exit_rotation": _at_least(1),
    "model.pause_tokens": _at_least(0),
    "model.pause_fraction": _fraction(),
    "model.early_exit_ramp": ((lambda v: 0 < v <= 1), "in (0, 1]"),
    "model.sharing.interior_skip": _at_least(0),
    "model.sharing.groups": _at_least(1),
    "model.sharing.lora_rank": _at_least(0),
    "model.sharing.lora_alpha": _above(0),
    "model.mod.capacity": _capacity(),
    "model.mod.every": _at_least(1),
    "model.mod.aux_weight": _at_least(0),
    "data.tokenizer.vocab_size": _at_least(1),
    "data.tokenizer.train_chars": _at_least(1),
    "data.max_train_tokens": _at_least(1),
    "data.max_val_tokens": _at_least(1),
    "data.num_proc": _at_least(1),
    "data.shard_tokens": _at_least(1),
    "data.val_fraction": _fraction(),
    "data.hub_timeout_s": _above(0),
    "train.batch_size": _at_least(1),
    "train.grad_accum": _at_least(1),
    "train.context_length": _at_least(1),
    "train.max_steps": _at_least(1),
    "train.max_tokens": _at_least(1),
    "train.max_minutes": _above(0),
    "train.lr": _above(0),
    "train.min_lr": _at_least(0),
    "train.warmup_steps": _at_least(0),
    "train.weight_decay": _at_least(0),
    "train.beta1": _fraction(),
    "train.beta2": _fraction(),
    "train.eps": _above(0),
    "train.grad_clip": _at_least(0),
    "train.threads": _at_least(1),
    "train.eval_every": _at_least(1),
    "train.eval_batches": _at_least(1),
    "train.log_every": _at_least(1),
    "train.checkpoint_every": _at_least(1),
    "train.keep_last": _at_least(1),
    "train.diverge_factor": _above(1),
    "train.distill.top_k": _at_least(1),
    "eval.pairs_per_paradigm": _at_least(1),
    "eval.batch_size": _at_least(1),
    "eval.final_val_batches": _at_least(1),
    "eval.sample_tokens": _at_least(0),
    "eval.limit": _at_least(1),
}

SOURCE_RULES: dict[str, tuple[Test, str]] = {
    "weight": _above(0),
    "max_documents": _at_least(1),
}


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _check(where: str, value: Any, rule: tuple[Test, str]) -> str | None:
    test, meaning = rule
    if value is None or isinstance(value, bool):
        return None
    return None if test(value) else f"{where} must be {meaning}, got {value}"


def range_problems(run: RunConfig) -> list[str]:
    """Every broken rule of `run`, each as one line (empty when all hold)."""
    problems = [p for key, rule in RULES.items() if (p := _check(key, _get(run, key), rule))]
    stage_sources = [(f"data.stages.{i}.sources", st.sources) for i, st in enumerate(run.data.stages)]
    for prefix, sources in [("data.sources", run.data.sources), *stage_sources]:
        for i, src in enumerate(sources):
            problems += [p for name, rule in SOURCE_RULES.items()
                         if (p := _check(f"{prefix}.{i}.{name}", getattr(src, name), rule))]
    per_layer = run.model.mod.per_layer
    problems += [p for i, c in enumerate(per_layer)
                 if (p := _check(f"model.mod.per_layer.{i}", c, _capacity()))]
    if per_layer and len(per_layer) != run.model.n_layers:
        problems.append(f"model.mod.per_layer needs one capacity per layer ({run.model.n_layers}), "
                        f"got {len(per_layer)}")
    for i, stage in enumerate(run.data.stages):
        if stage.tokens < 0:
            problems.append(f"data.stages.{i}.tokens must be >= 0, got {stage.tokens}")
    if problems:
        return problems
    m, t = run.model, run.train
    kv = m.n_kv_heads or m.n_heads
    if m.d_model % m.n_heads:
        problems.append(f"model.d_model ({m.d_model}) must be divisible by model.n_heads ({m.n_heads})")
    if m.n_heads % kv:
        problems.append(f"model.n_heads ({m.n_heads}) must be divisible by model.n_kv_heads ({kv})")
    if m.positions == "rope" and (m.d_model // m.n_heads) % 2:
        problems.append(f"positions=rope needs an even head size; model.d_model / model.n_heads = "
                        f"{m.d_model // m.n_heads}")
    if t.min_lr > t.lr:
        problems.append(f"train.min_lr ({t.min_lr}) must be <= train.lr ({t.lr})")
    if t.context_length is not None and t.context_length > m.context_length:
        problems.append(f"train.context_length ({t.context_length}) must be <= model.context_length "
                        f"({m.context_length})")
    return problems
