"""`stlm params model=NAME`: parameters per component and FLOPs per token."""

from __future__ import annotations

import argparse

TAKES_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=baseline")


BYTE_LEVEL = ("byte_pooled", "byte_decoder")  # components that replace a vocabulary-sized table


def _fmt(n: int) -> str:
    return f"{n:,}".rjust(14) + f"  ({n / 1e6:8.3f}M)"


def run(args: argparse.Namespace) -> int:
    from stlm.config.loader import compose_config
    from stlm.models import build_model
    from stlm.models.params import COMPONENTS, count_parameters
    from stlm.tokenizers import GPT2_VOCAB_SIZE, vocab_size_for

    cfg = compose_config(args.overrides)
    vocab = cfg.model.vocab_size or vocab_size_for(cfg.data.tokenizer)
    model = build_model(cfg.model, vocab)
    r = count_parameters(model)
    m = cfg.model
    print(f"model {m.name}: vocab {model.vocab_size}, d_model {m.d_model}, layers {m.n_layers}, "
          f"heads {m.n_heads} (kv {m.kv_heads}), d_ff {m.d_ff}, "
          f"context {m.context_length}, tied {m.tie_embeddings}")
    for comp in COMPONENTS + tuple(k for k in r.by_component if k not in COMPONENTS):
        n = r.by_component.get(comp, 0)
        share = 100.0 * n / r.total if r.total else 0.0
        tied = "  (tied to the embedding, counted there)" if comp == "head" and m.tie_embeddings else ""
        print(f"  {comp:<11}{_fmt(n)}  {share:5.1f}%{tied}")
    print(f"  {'total':<11}{_fmt(r.total)}")
    print(f"  {'non-embed':<11}{_fmt(r.non_embedding)}")
    byte_level = [part for part, name in (("embedding", m.embedder), ("head", m.head))
                  if name in BYTE_LEVEL]
    if byte_level:
        replaced = r.by_component["embedding"] + r.by_component["head"]
        table = GPT2_VOCAB_SIZE * m.d_model
        print(f"  byte-level {' and '.join(byte_level)}: {replaced / 1e6:.3f}M in place of GPT-2's "
              f"{GPT2_VOCAB_SIZE:,}-id embedding and head at d_model {m.d_model}: "
              f"{table / 1e6:.1f}M tied (-{100 * (1 - replaced / table):.1f}%), "
              f"{2 * table / 1e6:.1f}M untied (-{100 * (1 - replaced / (2 * table)):.1f}%)")
    print(f"FLOPs per token (train, 6N + attention): {r.flops_per_token:,} "
          f"({r.flops_per_token / 1e6:.1f} MFLOP; N = {r.matmul_params_per_token:,} matmul "
          f"parameter uses)")
    return 0
