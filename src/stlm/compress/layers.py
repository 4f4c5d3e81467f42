"""The two linear layers compression puts in place of an `nn.Linear`.

- `LowRankLinear`: W (out x in) as B (out x r) A (r x in), two smaller matmuls (truncated SVD,
  Eckart & Young, 1936; as applied to transformers by e.g. Hsu et al., 2022, arXiv 2207.00112).
- `QuantLinear`: weight-only quantisation. The weight lives as int8 per output channel (one
  scale per row, as LLM.int8's vector-wise scheme without outliers, Dettmers et al., 2022,
  arXiv 2208.07339) or as int4 in groups of input columns (one scale per group, as GPTQ/AWQ's
  group-wise format, Frantar et al., 2022, arXiv 2210.17323), two int4 values packed per byte.
  Both are symmetric (no zero point), so a zero weight stays exactly zero. The integer buffers
  and scales are what the checkpoint stores; the float weight is rebuilt on each forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

QMAX = {8: 127, 4: 7}


class LowRankLinear(nn.Module):
    """x -> B (A x) + bias, with A: in -> rank and B: rank -> out."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.a = nn.Linear(in_features, rank, bias=False)
        self.b = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class QuantLinear(nn.Module):
    """A linear layer whose weight is stored as int8 or packed int4 codes plus float16/32 scales."""

    def __init__(self, in_features: int, out_features: int, bits: int, group: int, bias: bool):
        super().__init__()
        if bits not in QMAX:
            raise ValueError(f"bits must be 8 or 4, got {bits}")
        if bits == 4 and (group < 2 or group % 2 or in_features % group):
            raise ValueError(f"int4 group size {group} must be even and divide the input width "
                             f"{in_features}")
        self.in_features, self.out_features, self.bits, self.group = in_features, out_features, bits, group
        if bits == 8:
            self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
            self.register_buffer("scale", torch.zeros(out_features, 1, dtype=torch.float32))
        else:
            self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
            self.register_buffer("scale", torch.zeros(out_features, in_features // group,
                                                      dtype=torch.float16))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group: int = 0) -> QuantLinear:
        q = cls(linear.in_features, linear.out_features, bits, group, linear.bias is not None)
        codes, scale = quantize(linear.weight.detach().float(), bits, group)
        q.qweight.copy_(pack_int4(codes) if bits == 4 else codes)
        q.scale.copy_(scale)
        if linear.bias is not None:
            q.bias.data.copy_(linear.bias.detach())
        return q.to(linear.weight.device)

    def codes(self) -> torch.Tensor:
        """The signed integer codes, (out, in), int8."""
        return unpack_int4(self.qweight) if self.bits == 4 else self.qweight

    def dequantized(self) -> torch.Tensor:
        return dequantize(self.codes(), self.scale, self.bits, self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        group = f", group={self.group}" if self.bits == 4 else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, int{self.bits}{group}"


def quantize(w: torch.Tensor, bits: int, group: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest codes (int8, in [-qmax, qmax]) and scales: one per row for
    int8, one per `group` input columns for int4 (scales float16, rounded before coding)."""
    qmax = QMAX[bits]
    out, inp = w.shape
    g = inp if bits == 8 else group
    blocks = w.reshape(out, inp // g, g)
    scale = blocks.abs().amax(dim=2, keepdim=True) / qmax
    scale = scale.to(torch.float32 if bits == 8 else torch.float16).float()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(blocks / safe), -qmax, qmax).to(torch.int8)
    stored = scale.squeeze(2)
    return codes.reshape(out, inp), stored.to(torch.float32 if bits == 8 else torch.float16)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, bits: int, group: int = 0) -> torch.Tensor:
    out, inp = codes.shape
    g = inp if bits == 8 else group
    w = codes.float().reshape(out, inp // g, g) * scale.float().unsqueeze(2)
    return w.reshape(out, inp)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Signed codes in [-8, 7] (out, in) -> uint8 (out, in / 2): low nibble even column, high odd."""
    u = (codes.to(torch.int16) + 8).to(torch.uint8)
    return u[:, 0::2] | (u[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)
