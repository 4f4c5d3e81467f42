"""Training throughput: our model against `transformers.LlamaForCausalLM` of the identical shape.

Both start from the same weights (ours copied into the Llama), see the same batches and use the
same AdamW settings and training step (forward, cross-entropy, backward, clip, step). Rounds
alternate between the two so a busy machine slows both alike; the median round counts.

    python benchmarks/train_throughput.py                      # the default tiny-1m model
    python benchmarks/train_throughput.py model=tiny-3m --steps 20 --batch-size 16
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from stlm.config import compose_config
from stlm.config.schema import trained_context
from stlm.hf.llama import to_hf_llama
from stlm.models import build_model
from stlm.tokenizers import vocab_size_for
from stlm.train.setup import build_optimizer


def hf_loss(model, ids, targets):
    logits = model(input_ids=ids).logits
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def ours_loss(model, ids, targets):
    return model(ids, targets).loss


def train_steps(model, loss_fn, optimizer, batches, grad_clip: float) -> float:
    """Seconds for one optimizer step per batch."""
    start = time.perf_counter()
    for ids, targets in batches:
        loss = loss_fn(model, ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model=tiny-3m")
    parser.add_argument("--batch-size", type=int, default=None, help="default: train.batch_size")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = compose_config(args.overrides)
    batch = args.batch_size or cfg.train.batch_size
    context = trained_context(cfg)
    torch.manual_seed(cfg.seed)
    ours = build_model(cfg.model, cfg.model.vocab_size or vocab_size_for(cfg.data.tokenizer))
    hf = to_hf_llama(ours).train()
    ours.train()
    vocab = ours.vocab_size
    g = torch.Generator().manual_seed(0)
    batches = [(x[:, :-1].contiguous(), x[:, 1:].contiguous())
               for x in (torch.randint(0, vocab, (batch, context + 1), generator=g) for _ in range(args.steps))]
    with torch.no_grad():  # same function before training: the comparison is like for like
        ids, targets = batches[0]
        diff = (ours_loss(ours, ids, targets) - hf_loss(hf, ids, targets)).abs().item()
    contenders = {"stlm": (ours, ours_loss), "hf-llama": (hf, hf_loss)}
    optimizers = {name: build_optimizer(m, cfg.train, torch.device("cpu")) for name, (m, _) in contenders.items()}
    for name, (m, fn) in contenders.items():  # warm-up round (allocator, kernels), not timed
        train_steps(copy.deepcopy(m), fn, build_optimizer(copy.deepcopy(m), cfg.train, torch.device("cpu")),
                    batches[:2], cfg.train.grad_clip)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, (m, fn) in contenders.items():
            times[name].append(train_steps(m, fn, optimizers[name], batches, cfg.train.grad_clip))
    tokens = args.steps * batch * context
    speed = {name: tokens / statistics.median(t) for name, t in times.items()}
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"model {cfg.model.name}: {n_params:,} parameters, batch {batch} x {context} tokens, "
          f"{args.threads} threads, {args.rounds} rounds of {args.steps} steps (initial loss difference "
          f"{diff:.1e})")
    for name, s in speed.items():
        print(f"  {name:<9}{s:12,.0f} tok/s")
    print(f"  ratio stlm / hf-llama: {speed['stlm'] / speed['hf-llama']:.3f}")


if __name__ == "__main__":
    main()
