#!/usr/bin/env bash
# The GPU check: what stlm claims about one CUDA GPU, measured in one call (under 8 minutes on
# an H100-class GPU; budgeted, not yet measured: no GPU has run it so far).
#
#   benchmarks/gpu_check.sh            # a machine with a CUDA GPU; prints everything to stdout
#   benchmarks/gpu_check.sh --dry      # no GPU: the same steps on the CPU at tiny shapes, in
#                                      # seconds, skipping what needs CUDA and saying so (CI runs it)
#
# 1. the GPU-marked tests (tests/test_gpu.py): bf16 autocast and torch.compile equal float32 eager
#    within tolerance, the KV cache, resume on the GPU;
# 2. training throughput of the STLM Table-1 50M baseline at context 512 (bf16, compiled) against
#    transformers' LlamaForCausalLM and litgpt's GPT of the same shape, in the same run: tok/s,
#    MFU, peak memory, and the projected wall-clock of the paper's run (25,000 steps of
#    24 x 20 x 512 tokens) beside the paper's 30 L40 GPU-hours;
#    then our model alone with the vocabulary padded to 50,304 rows (the padding question);
# 3. `stlm train` of the main job (no arguments) on the GPU: its summary, speed and MFU.
#
# Commit the output of a GPU run under benchmarks/results/ (GPU model and date are printed).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
DRY=0
for arg in "$@"; do
  case $arg in
    --dry) DRY=1 ;;
    *) echo "usage: benchmarks/gpu_check.sh [--dry]" >&2; exit 2 ;;
  esac
done
if [ "$DRY" = 0 ] && ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device found: running in dry mode on the CPU (no GPU figures)"
  DRY=1
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=()
section() { echo; echo "== $1  [$(date -u +%H:%M:%S) UTC]"; }
run() {  # run a step; remember its name if it fails, and go on with the others
  local name=$1; shift
  "$@" || { echo "!! $name failed (exit $?)"; FAILED+=("$name"); }
}

section "environment"
echo "date        $(date -u +%Y-%m-%dT%H:%MZ)"
echo "commit      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
$PY - <<'EOF'
import torch
from stlm.train.mfu import peak_bf16_flops
print(f"torch       {torch.__version__}")
if torch.cuda.is_available():
    name = torch.cuda.get_device_name(0)
    found = peak_bf16_flops(name)
    peak = f"{found[1] / 1e12:,.0f} TFLOP/s dense bf16 ({found[0]})" if found else "unknown: no MFU"
    mem = torch.cuda.get_device_properties(0).total_memory / 2**30
    print(f"device      {name}, {mem:.0f} GiB, peak {peak}")
else:
    print("device      cpu (DRY RUN: every figure below is a CPU figure at a tiny shape, not a GPU one)")
EOF

section "1. GPU-marked tests (pytest -m gpu)"
if [ "$DRY" = 1 ]; then
  echo "dry: no CUDA, so every GPU test is collected and skipped (the reasons follow)"
fi
run "gpu tests" $PY -m pytest -q -m gpu -p no:cacheprovider -rs tests/test_gpu.py

section "2. training throughput, STLM Table-1 baseline vs LlamaForCausalLM and litgpt GPT"
if [ "$DRY" = 1 ]; then
  echo "dry: a 2-layer, 64-wide model of the baseline's design at context 32 on the CPU, float32,"
  echo "     eager (bf16 autocast and torch.compile need the GPU here); 25,000-step projection of it"
  run "throughput" $PY benchmarks/train_throughput.py model=baseline model.n_layers=2 model.d_model=64 \
    model.n_heads=4 model.n_kv_heads=2 model.d_ff=128 model.vocab_size=512 model.dropout=0.0 \
    train.context_length=32 --batch-size 2 --steps 2 --rounds 1 --project 25000,245760
else
  # dropout off: the peers have none, so all three do the same work per step
  run "throughput" $PY benchmarks/train_throughput.py model=baseline model.dropout=0.0 \
    train.context_length=512 --batch-size 24 --steps 40 --rounds 5 --device cuda --precision bf16 \
    --compile --project 25000,245760
  echo "vocabulary padded to a multiple of 64 (50,304 rows): is it worth a default? (stlm only)"
  run "throughput, padded vocabulary" $PY benchmarks/train_throughput.py model=baseline model.dropout=0.0 \
    model.vocab_size=50304 train.context_length=512 --batch-size 24 --steps 40 --rounds 3 --device cuda \
    --precision bf16 --compile --peers ""
fi
echo "paper (STLM, Table 1): the 50M baseline run took 30 L40 GPU-hours"

section "3. stlm train: the main job"
RUNS="$WORK/runs"
if [ "$DRY" = 1 ]; then
  echo "dry: 6 steps of the main job's model on a 200-story corpus on the CPU"
  run "stlm train" $PY -m stlm.cli train runs_dir="$RUNS" run_name=main data.cache_dir="$WORK/cache" \
    data.sources.0.max_documents=200 data.tokenizer.train_chars=30000 train.max_steps=6 \
    train.log_every=2 train.eval_every=6 train.checkpoint_every=6 eval.final_val_batches=2 \
    eval.pairs_per_paradigm=5 eval.sample_tokens=8 train.progress=false train.device=cpu
else
  started=$(date +%s)
  run "stlm train" $PY -m stlm.cli train runs_dir="$RUNS" run_name=main data.cache_dir="$WORK/cache" \
    train.progress=false train.device=cuda
  echo "wall-clock  $(( $(date +%s) - started )) s, data preparation included"
fi
if [ -f "$RUNS/main/metrics.jsonl" ]; then
  $PY - "$RUNS/main/metrics.jsonl" <<'EOF'
import statistics, sys
from stlm.train.metrics import read_metrics
rows = [r for r in read_metrics(sys.argv[1]) if "tok_per_s" in r]
rows = rows[1:] or rows  # the first window includes compiling and warm-up
if rows:
    speed = statistics.median(r["tok_per_s"] for r in rows)
    mfus = [r["mfu"] for r in rows if "mfu" in r]
    print(f"training    median {speed:,.0f} tok/s over {len(rows)} logged windows"
          + (f", MFU {statistics.median(mfus):.2%}" if mfus else ", MFU n/a (CPU or unknown GPU)"))
EOF
fi
section "done"
if [ "$DRY" = 1 ]; then
  echo "DRY RUN on the CPU: nothing above is a GPU measurement."
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
echo "all steps passed"
