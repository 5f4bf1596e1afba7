"""Small building blocks shared by the models (3D Segmenter, VT-UNet, 2D teacher; the 3D convolutions of
SparseConv and the 3D U-Net).

Module and parameter names (``fc1``, ``fc2``) follow timm / the official codes, so checkpoints
written in those layouts load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p`` (training only).

    Input and output: any shape (B, ...); surviving samples are scaled by 1 / (1 - p).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply stochastic depth to ``x`` (B, ...)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Token MLP: Linear(C -> hidden) -> GELU -> Dropout -> Linear(hidden -> C) -> Dropout. (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def _three(v) -> list[int]:
    return [int(i) for i in v] if isinstance(v, (tuple, list)) else [int(v)] * 3


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0) -> torch.Tensor:
    """``F.conv3d`` (no dilation, one group), computed by oneDNN on the CPU whenever it can be.

    torch picks oneDNN (``mkldnn_convolution``) or its own im2col kernel (``slow_conv3d``) for a float32 CPU
    convolution by a heuristic written for 2D images: with batch 1 it counts channels x the first two spatial
    sizes, so a 3D convolution with few channels on a 32^3 or 16^3 grid gets the im2col kernel, 1.2-1.7x slower
    forward and backward on 2 cores (docs/performance.md). Here every float32 CPU convolution outside autocast
    goes to oneDNN; anything else (CUDA, other dtypes, autocast, no oneDNN) to ``F.conv3d``. Both compute the
    same convolution (equal to float rounding; values and gradients are tested).

    **Under bf16 autocast on the CPU**, a convolution whose kernel is larger than its input along some axis (a
    3^3 kernel over a 2 x 2 x 2 grid: SparseConv's deepest level on 64^3 blocks) runs in float32 instead. There
    oneDNN's bf16 weight gradient was wrong on an AMD EPYC with AVX512-BF16 (torch 2.13): off by about its own
    size every time and now and then 1e16-1e38, which stopped SparseConv's training with a NaN
    (``benchmark/diagnosis/conv3d_bf16_grad.py`` scans the shapes; docs/performance.md). Such inputs are tiny,
    so float32 costs little; the output is then float32 and the next bf16 operation promotes as usual.

    Args:
        x: (B, Cin, X, Y, Z). weight: (Cout, Cin, k0, k1, k2). bias: (Cout,) or None.
        stride, padding: an int or three ints, as ``F.conv3d``.
    """
    if (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and any(k > s for k, s in zip(weight.shape[2:], x.shape[2:]))):
        with torch.autocast("cpu", enabled=False):
            return conv3d(x.float(), weight.float(), None if bias is None else bias.float(), stride, padding)
    if (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu")):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, _three(padding), _three(stride), [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride=stride, padding=padding)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state-dict names) computed by :func:`conv3d`; no dilation, groups
    or padding modes other than zeros."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.dilation != (1, 1, 1) or self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("layers.Conv3d supports neither dilation, groups, string padding nor padding modes")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3d(x, self.weight, self.bias, self.stride, self.padding)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the spatial dims of ``x`` (B, C, *S) at their ends up to multiples of ``multiple``.

    Unpad with ``y[..., :S0, :S1, ...]`` using the original sizes ``x.shape[2:]``.
    """
    pads = [(-n) % multiple for n in x.shape[2:]]
    if not any(pads):
        return x
    flat = []
    for p in reversed(pads):  # F.pad takes the last dimension first
        flat += [0, p]
    return F.pad(x, flat)


def init_linear_layernorm(m: nn.Module) -> None:
    """Truncated-normal (std 0.02) Linear weights, zero biases, unit LayerNorms (the Swin/ViT init).

    Use as ``model.apply(init_linear_layernorm)``.
    """
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
