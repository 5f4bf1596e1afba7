"""Small building blocks shared by the transformer models (3D Segmenter, VT-UNet, 2D teacher).

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
