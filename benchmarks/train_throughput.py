"""Training throughput: our model against `transformers.LlamaForCausalLM` and litgpt's `GPT` of
the identical shape.

All start from the same weights (ours copied into the peers), see the same batches and use the
same AdamW settings and training step (forward, cross-entropy, backward, clip, step). Rounds
alternate between the contenders so a busy machine slows them alike; the median round counts.
litgpt is a benchmark-only dependency (`pip install -e ".[dev,bench]"`); without it that peer is
skipped and the script says so.

    python benchmarks/train_throughput.py                      # the default tiny-1m model
    python benchmarks/train_throughput.py model=tiny-3m --steps 20 --batch-size 16
    python benchmarks/train_throughput.py model=baseline model.dropout=0 --device cuda --precision bf16 --compile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from stlm.config import compose_config
from stlm.config.schema import trained_context
from stlm.hf.llama import to_hf_llama
from stlm.models import build_model
from stlm.tokenizers import vocab_size_for
from stlm.train.mfu import device_peak_flops, mfu, training_flops_per_token
from stlm.train.optim import build_optimizer
from stlm.train.setup import Runtime


def hf_loss(model, ids, targets):
    logits = model(input_ids=ids).logits
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def litgpt_loss(model, ids, targets):
    logits = model(ids)
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def to_litgpt(model) -> torch.nn.Module:
    """litgpt's `GPT` with our (plain Llama) model's shape and a copy of its weights: fused qkv
    (q, then k, then v rows), rotate-half RoPE on the whole head, SwiGLU as LLaMAMLP."""
    from litgpt.config import Config
    from litgpt.model import GPT

    cfg = model.cfg
    config = Config(name=f"stlm-{cfg.name}", block_size=cfg.context_length, vocab_size=model.vocab_size,
                    padded_vocab_size=model.vocab_size, n_layer=cfg.n_layers, n_embd=cfg.d_model,
                    n_head=cfg.n_heads, n_query_groups=cfg.n_kv_heads or cfg.n_heads,
                    head_size=cfg.d_model // cfg.n_heads, rotary_percentage=1.0, rope_base=int(cfg.rope_theta),
                    parallel_residual=False, bias=False, norm_class_name="RMSNorm", norm_eps=cfg.norm_eps,
                    mlp_class_name="LLaMAMLP", intermediate_size=cfg.d_ff)
    gpt = GPT(config)
    ours = model.state_dict()
    target = {"transformer.wte.weight": ours["embedder.token.weight"],
              "transformer.ln_f.weight": ours["head.norm.weight"], "lm_head.weight": ours["head.linear.weight"]}
    for i in range(cfg.n_layers):
        b, t = f"core.blocks.{i}.", f"transformer.h.{i}."
        target[t + "norm_1.weight"] = ours[b + "attn_norm.weight"]
        target[t + "norm_2.weight"] = ours[b + "ffn_norm.weight"]
        target[t + "attn.qkv.weight"] = torch.cat([ours[b + f"attn.{x}_proj.weight"] for x in "qkv"])
        target[t + "attn.proj.weight"] = ours[b + "attn.o_proj.weight"]
        for theirs, mine in (("fc_1", "gate_proj"), ("fc_2", "up_proj"), ("proj", "down_proj")):
            target[t + f"mlp.{theirs}.weight"] = ours[b + f"ffn.{mine}.weight"]
    missing = set(dict(gpt.named_parameters())) - set(target)
    if missing:
        raise KeyError(f"litgpt parameters without a counterpart: {sorted(missing)}")
    for name, p in gpt.named_parameters():
        p.copy_(target[name])
    if cfg.tie_embeddings:
        gpt.lm_head.weight = gpt.transformer.wte.weight
    return gpt


def ours_loss(model, ids, targets):
    return model(ids, targets).loss


def bind(fn, model):
    """`fn(model, ids, targets)` as a plain function of (ids, targets), for torch.compile."""
    def loss(ids, targets):
        return fn(model, ids, targets)
    return loss


def train_steps(loss_fn, params, optimizer, batches, grad_clip: float, rt) -> float:
    """Seconds for one optimizer step per batch (the device is synchronised before the clock stops)."""
    start = time.perf_counter()
    for ids, targets in batches:
        with rt.autocast():
            loss = loss_fn(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model=tiny-3m")
    parser.add_argument("--batch-size", type=int, default=None, help="default: train.batch_size")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile each contender's loss")
    parser.add_argument("--peers", default="hf-llama,litgpt", help="comma-separated peers to include")
    parser.add_argument("--project", default=None, metavar="STEPS,TOKENS_PER_STEP",
                        help="print the wall-clock of a run of this size at each measured speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    rt = Runtime(device, torch.bfloat16 if args.precision == "bf16" else None)
    cfg = compose_config(args.overrides)
    batch = args.batch_size or cfg.train.batch_size
    context = trained_context(cfg)
    torch.manual_seed(cfg.seed)
    ours = build_model(cfg.model, cfg.model.vocab_size or vocab_size_for(cfg.data.tokenizer)).train()
    vocab = ours.vocab_size
    g = torch.Generator().manual_seed(0)
    batches = [(x[:, :-1].contiguous().to(device), x[:, 1:].contiguous().to(device))
               for x in (torch.randint(0, vocab, (batch, context + 1), generator=g) for _ in range(args.steps))]
    builders = {"hf-llama": (to_hf_llama, hf_loss), "litgpt": (to_litgpt, litgpt_loss)}
    contenders = {"stlm": (ours, ours_loss)}
    for peer in filter(None, args.peers.split(",")):
        build, fn = builders[peer]
        try:
            contenders[peer] = (build(ours).train(), fn)
        except ImportError as exc:
            print(f"{peer} is skipped: {exc} (pip install -e \".[dev,bench]\")")
    for m, _ in contenders.values():
        m.to(device)
    with torch.no_grad():  # same function before training: the comparison is like for like
        ids, targets = batches[0]
        ref = ours_loss(ours, ids, targets)
        diff = max((fn(m, ids, targets) - ref).abs().item() for m, fn in contenders.values())
    steps = {}
    for name, (m, fn) in contenders.items():
        loss_fn = bind(fn, m)
        steps[name] = (torch.compile(loss_fn) if args.compile else loss_fn, list(m.parameters()),
                       build_optimizer(m, cfg.train, device))
    memory: dict[str, float] = {}
    for name, (loss_fn, params, opt) in steps.items():  # warm-up (compile, allocator), not timed
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        warm = time.perf_counter()
        train_steps(loss_fn, params, opt, batches[:2], cfg.train.grad_clip, rt)
        if device.type == "cuda":
            memory[name] = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"  warm-up {name}: {time.perf_counter() - warm:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, (loss_fn, params, opt) in steps.items():
            times[name].append(train_steps(loss_fn, params, opt, batches, cfg.train.grad_clip, rt))
    tokens = args.steps * batch * context
    speed = {name: tokens / statistics.median(t) for name, t in times.items()}
    n_params = sum(p.numel() for p in ours.parameters())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"model {cfg.model.name}: {n_params:,} parameters, batch {batch} x {context} tokens, {where}, "
          f"{args.precision}{', compiled' if args.compile else ', eager'}, {args.rounds} rounds of "
          f"{args.steps} steps (initial loss differences at most {diff:.1e})")
    peak = device_peak_flops(device)
    flops = training_flops_per_token(ours, context)
    for name, s in speed.items():
        use = mfu(s, flops, peak)
        print(f"  {name:<9}{s:12,.0f} tok/s"
              + (f"   MFU {use:.1%}" if use is not None else "   MFU n/a (peak of this device unknown)")
              + (f"   peak memory {memory[name]:.2f} GiB" if name in memory else ""))
    for peer in (name for name in speed if name != "stlm"):
        print(f"  ratio stlm / {peer}: {speed['stlm'] / speed[peer]:.3f}")
    if args.project:
        run_steps, per_step = (int(v) for v in args.project.split(","))
        hours = {name: run_steps * per_step / s / 3600 for name, s in speed.items()}
        print(f"  projected wall-clock of {run_steps:,} steps x {per_step:,} tokens on this device: "
              + ", ".join(f"{name} {h:,.1f} h" for name, h in hours.items()))


if __name__ == "__main__":
    main()
