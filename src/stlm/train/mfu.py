"""Model FLOPs utilisation (MFU; Chowdhery et al., 2022, PaLM, appendix B): the training FLOPs a
run achieves per second over the peak its hardware could deliver.

    MFU = tokens/s * training FLOPs per token / (peak dense bf16 FLOP/s * devices)

FLOPs per token come from the model's accounting (`stlm.models.params.count_parameters`: 6 per
matmul parameter use plus the attention scores), at the context the run trains with. Peaks are
the vendors' dense (no structured sparsity) bf16 tensor-core figures with float32 accumulation,
as PyTorch's bf16 matmuls use. A device not in the table (a CPU, an unlisted or partitioned
(MIG) GPU, a GPU without bf16 tensor cores) has no MFU: `None`, never a guessed number.
"""

from __future__ import annotations

import re

import torch
from torch import nn

TFLOPS = 1e12

# (pattern matched against torch.cuda.get_device_name, model, peak dense bf16 FLOP/s).
# Ordered: the first match wins, so variants come before the family name.
PEAK_BF16: tuple[tuple[str, str, float], ...] = (
    (r"\bH200 NVL\b", "H200 NVL", 835.5 * TFLOPS),
    (r"\bH200\b", "H200 SXM", 989.4 * TFLOPS),
    (r"\bGH200\b", "GH200", 989.4 * TFLOPS),
    (r"\bH100 NVL\b", "H100 NVL", 835.5 * TFLOPS),
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe", 756.5 * TFLOPS),
    (r"\bH100\b.*\bHBM3\b|\bH100 SXM", "H100 SXM", 989.4 * TFLOPS),
    (r"\bH800\b.*\bPCIe\b", "H800 PCIe", 756.5 * TFLOPS),
    (r"\bH800\b", "H800 SXM", 989.4 * TFLOPS),
    (r"\bB200\b", "B200", 2250.0 * TFLOPS),
    (r"\bA100\b", "A100", 312.0 * TFLOPS),  # SXM and PCIe, 40 and 80 GB alike
    (r"\bA800\b", "A800", 312.0 * TFLOPS),
    (r"\bA30\b", "A30", 165.0 * TFLOPS),
    (r"\bA40\b", "A40", 149.7 * TFLOPS),
    (r"\bA10\b", "A10", 125.0 * TFLOPS),  # not the A10G, whose clocks differ
    (r"\bL40S\b", "L40S", 362.1 * TFLOPS),
    (r"\bL40\b", "L40", 181.0 * TFLOPS),
    (r"\bL4\b", "L4", 121.0 * TFLOPS),
    (r"\bRTX 6000 Ada\b", "RTX 6000 Ada", 364.2 * TFLOPS),
    (r"\bRTX A6000\b", "RTX A6000", 154.8 * TFLOPS),
    (r"\bRTX 4090\b", "RTX 4090", 165.2 * TFLOPS),  # GeForce: half rate with fp32 accumulation
    (r"\bRTX 3090\b", "RTX 3090", 71.0 * TFLOPS),
    (r"\bMI300X\b", "MI300X", 1307.4 * TFLOPS),
)


def peak_bf16_flops(device_name: str) -> tuple[str, float] | None:
    """(model, peak dense bf16 FLOP/s) for a CUDA device name, or None when it is not known.
    An H100 whose name says neither PCIe, NVL, SXM nor HBM3 is not guessed."""
    if "MIG" in device_name:  # a slice of a GPU: its share of the peak is not known here
        return None
    for pattern, model, peak in PEAK_BF16:
        if re.search(pattern, device_name):
            return model, peak
    return None


def device_peak_flops(device: torch.device) -> float | None:
    """Peak dense bf16 FLOP/s of one `device`, None on CPU or an unknown GPU."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    found = peak_bf16_flops(torch.cuda.get_device_name(device))
    return found[1] if found else None


def training_flops_per_token(model: nn.Module, context: int) -> float:
    """Training FLOPs per token (forward + backward) at sequence length `context`, from the
    model's own accounting (its attention-score term grows with the context)."""
    from stlm.models.params import count_flops

    return float(count_flops(model, context=context)[1])


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float | None,
        devices: int = 1) -> float | None:
    """Model FLOPs utilisation in [0, 1] (None when the peak is not known)."""
    if peak_flops is None or peak_flops <= 0:
        return None
    return tokens_per_s * flops_per_token / (peak_flops * devices)
