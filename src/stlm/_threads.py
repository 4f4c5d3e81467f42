"""How PyTorch's CPU threads wait, chosen once per process before torch loads.

PyTorch's CPU kernels run on OpenMP (libgomp) threads that spin for a while when they run out of
work, before they sleep. On an idle machine spinning is fast (1.6x the speed of sleeping at once,
`OMP_WAIT_POLICY=PASSIVE`, for the main job's model on 2 cores); on a busy one a spinning thread
takes the core another process's thread, or this one's, needs, and training is up to 10-30x
slower (benchmarks/cpu_threads.py shows both). libgomp reads its settings when torch loads, so
the choice is made at `import stlm` from how many other processes are runnable at that moment:
none -> libgomp's default spinning, any -> PASSIVE. The user's own OMP_WAIT_POLICY or
GOMP_SPINCOUNT always wins. A machine that becomes busy after the start is not seen; set
OMP_WAIT_POLICY=PASSIVE on machines shared with other work.
"""

from __future__ import annotations

import os
import time

CHOICE_VAR = "STLM_OMP_WAIT"  # records what was chosen, and why, for logs and benchmarks


def other_runnable(samples: int = 8, interval_s: float = 0.004) -> float | None:
    """Mean number of runnable tasks other than this process over a few milliseconds (Linux's
    /proc/stat `procs_running`), or None where it cannot be read."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as f:
                line = next(l for l in f if l.startswith("procs_running"))
        except (OSError, StopIteration):
            return None
        counts.append(int(line.split()[1]) - 1)  # this process is running while it reads
        if i + 1 < samples:
            time.sleep(interval_s)
    return sum(counts) / len(counts)


def choose_wait_policy(environ=os.environ) -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless the machine is idle right now; returns the reason."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        choice = "user setting"
    else:
        others = other_runnable()
        if others is not None and others < 0.5:
            choice = "spin (idle at start)"
        else:
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
            choice = ("passive (busy at start: %.1f other runnable)" % others if others is not None
                      else "passive (load unknown)")
    environ.setdefault(CHOICE_VAR, choice)
    return choice
