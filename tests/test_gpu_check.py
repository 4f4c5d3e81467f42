"""benchmarks/gpu_check.sh in dry mode (no GPU): every step runs at a tiny shape on the CPU, the
GPU tests are skipped with their reason, and the output says that nothing is a GPU figure."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_and_says_what_it_skipped():
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", "python3")}
    env.pop("STLM_TEST_DEVICE", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "DRY RUN" in out and "all steps passed" in out
    assert "needs a CUDA device" in out  # the GPU tests were skipped, with the reason
    assert "ratio stlm / hf-llama" in out and "projected wall-clock of 25,000 steps" in out
    assert "30 L40 GPU-hours" in out
    assert "trained        " in out and "training    median" in out  # stlm train ran and was summarised


def test_gpu_check_rejects_unknown_arguments():
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--fast"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: benchmarks/gpu_check.sh [--dry]" in proc.stderr
