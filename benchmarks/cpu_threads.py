"""CPU threading policies: training speed of the main job's model on an idle and on a busy machine.

PyTorch's CPU kernels run on OpenMP (libgomp) threads, which spin for a while when they run out of
work before they sleep. Spinning is fast on an idle machine and costly on a busy one (a spinning
thread takes the core the working thread of another process, or of this one, needs); sleeping at
once (`OMP_WAIT_POLICY=PASSIVE`) is the reverse. The knobs are read when torch loads, so each
policy trains in its own subprocess with its environment set before `import torch`.

"Busy" means CPU hog processes (pure-Python spin loops, one per `--hogs`) that this script starts
and stops itself. Policies alternate within each round so that background load on a shared machine
slows them alike; the median round counts.

    python benchmarks/cpu_threads.py                       # all policies, idle and busy
    python benchmarks/cpu_threads.py --rounds 5 --seconds 4 --hogs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name -> environment for the subprocess (None: remove the variable). "stlm" is whatever
# `import stlm` chooses by default, so the table shows the shipped policy beside the candidates.
POLICIES: dict[str, dict[str, str | None]] = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
    "gomp-default": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None},
    "active": {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None},
    "spin-1k": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"},
    "spin-10k": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"},
    "spin-100k": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "100000"},
    "one-thread": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None, "OMP_NUM_THREADS": "1"},
    "stlm": "stlm",  # type: ignore[dict-item]
}
DEFAULT_POLICIES = "passive,gomp-default,spin-10k,one-thread,stlm"
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "STLM_OMP_WAIT")


def child(seconds: float, threads: int | None) -> None:
    """Train the main job's model (tiny-1m, 16 x 64 tokens, vocabulary 1,024) for `seconds` after a
    warm-up and print tokens per second as JSON."""
    if os.environ.get("STLM_BENCH_IMPORT_STLM_FIRST"):
        import stlm  # noqa: F401  (sets its own threading policy before torch loads)
    env = {k: os.environ.get(k) for k in OMP_VARS}  # as libgomp sees it when torch loads
    import torch

    from stlm.config import compose_config
    from stlm.models import build_model
    from stlm.train.optim import build_optimizer

    if threads and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(threads)
    cfg = compose_config([])
    batch, context = cfg.train.batch_size, cfg.train.context_length
    torch.manual_seed(0)
    model = build_model(cfg.model, 1024).train()
    optimizer = build_optimizer(model, cfg.train, torch.device("cpu"))
    ids = torch.randint(0, 1024, (batch, context + 1))
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step() -> None:
        model(x, y).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        steps += 1
    print(json.dumps({"tok_per_s": steps * batch * context / elapsed,
                      "threads": torch.get_num_threads(),
                      "env": env}))


def measure(policy: str, seconds: float, threads: int | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.pop("STLM_BENCH_IMPORT_STLM_FIRST", None)
    spec = POLICIES[policy]
    if spec == "stlm":
        env["STLM_BENCH_IMPORT_STLM_FIRST"] = "1"
    else:
        for k, v in spec.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    cmd = [sys.executable, __file__, "--child", "--seconds", str(seconds)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for p in hogs:
        p.terminate()
    for p in hogs:
        p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default=DEFAULT_POLICIES,
                        help=f"comma-separated, from {', '.join(POLICIES)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed training per measurement")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 1,
                        help="CPU hog processes for the busy condition (default: one per core)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--conditions", default="idle,busy")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.seconds, args.threads)
        return
    policies = args.policies.split(",")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {list(POLICIES)}")
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, 1-min load average {load:.2f} before starting "
          f"(a shared machine's other work slows every policy alike); {args.rounds} rounds of "
          f"{args.seconds:.0f} s per policy and condition; busy = {args.hogs} hog process(es)")
    results: dict[str, dict[str, list[float]]] = {}
    choices: dict[str, set[str]] = {}
    for condition in args.conditions.split(","):
        hogs = start_hogs(args.hogs) if condition == "busy" else []
        try:
            speeds: dict[str, list[float]] = {p: [] for p in policies}
            for _ in range(args.rounds):
                for p in policies:
                    out = measure(p, args.seconds, args.threads)
                    speeds[p].append(out["tok_per_s"])
                    if p == "stlm":
                        choices.setdefault(condition, set()).add(out["env"]["STLM_OMP_WAIT"])
        finally:
            stop_hogs(hogs)
        results[condition] = speeds
    base = "passive" if "passive" in policies else policies[0]
    print(f"\n{'policy':<14}" + "".join(f"{c + ' tok/s':>14}{'vs ' + base:>12}" for c in results))
    for p in policies:
        row = f"{p:<14}"
        for c, speeds in results.items():
            med = statistics.median(speeds[p])
            row += f"{med:14,.0f}{med / statistics.median(speeds[base]):12.2f}"
        print(row)
    print("\n(medians of rounds; each round measured every policy once, in turn)")
    for condition, chosen in choices.items():
        print(f"stlm chose, {condition}: {'; '.join(sorted(chosen))}")


if __name__ == "__main__":
    main()
