"""3D U-Net baseline in the style of wolny/pytorch-3dunet's ``UNet3D`` (the paper's 16.32M model).

Structure (pytorch-3dunet defaults, ``layer_order="gcr"``, ``num_groups=8``, ``f_maps=64``,
4 levels -> widths 64, 128, 256, 512):

* every conv is a "single conv" GroupNorm(groups, C_in) -> Conv3d(3x3x3, padding 1, no bias: pytorch-3dunet
  drops it when the order has a norm) -> ReLU; GroupNorm uses 1 group when C_in < groups (the input);
* encoder level i: (max-pool 2 for i > 0) + double conv; in the encoder the first conv goes to
  ``max(out / 2, in)`` channels and the second to ``out``;
* decoder level: nearest-neighbour upsampling to the skip's size, concatenation [skip, up], double
  conv (in -> out, out -> out);
* final 1x1x1 Conv3d(64 -> num_classes) with bias; logits out (no softmax).

With in_channels 4 and 30 classes this has 16,323,174 parameters (paper: 16.32M).
Inputs of any size are padded at the far end with zeros to multiples of 2 ** (levels - 1) and the
output is cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from panorooms3d.nn.layers import Conv3d, pad_to_multiple

__all__ = ["DoubleConv3D", "UNet3D", "gcr_conv"]


def gcr_conv(in_channels: int, out_channels: int, num_groups: int = 8) -> nn.Sequential:
    """GroupNorm -> Conv3d(3, padding 1, no bias) -> ReLU; (B, in, X, Y, Z) -> (B, out, X, Y, Z).

    GroupNorm normalises the conv's input, with 1 group when ``in_channels < num_groups``.
    """
    groups = num_groups if in_channels >= num_groups else 1
    if in_channels % groups:
        raise ValueError(f"{in_channels} channels are not divisible into {groups} groups")
    return nn.Sequential(
        nn.GroupNorm(groups, in_channels),
        Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),  # oneDNN on the CPU (layers.conv3d)
        nn.ReLU(inplace=True),
    )


class DoubleConv3D(nn.Sequential):
    """Two :func:`gcr_conv` blocks; (B, in, X, Y, Z) -> (B, out, X, Y, Z).

    ``encoder=True``: the first conv outputs ``max(out // 2, in)`` channels (pytorch-3dunet);
    otherwise ``out``.
    """

    def __init__(self, in_channels: int, out_channels: int, encoder: bool, num_groups: int = 8) -> None:
        mid = max(out_channels // 2, in_channels) if encoder else out_channels
        super().__init__(gcr_conv(in_channels, mid, num_groups), gcr_conv(mid, out_channels, num_groups))


class UNet3D(nn.Module):
    """Residual-free 3D U-Net (pytorch-3dunet ``UNet3D`` layout).

    Args:
        num_classes: output classes (30).
        in_channels: input channels (4 = [tsdf-channel, r, g, b]).
        f_maps: width of the first level; level i has ``f_maps * 2 ** i`` channels, or an explicit list.
        num_levels: number of resolution levels (4).
        num_groups: GroupNorm groups (8).

    Forward: (B, in_channels, X, Y, Z) float -> (B, num_classes, X, Y, Z) logits, any X, Y, Z >= 1.
    """

    def __init__(
        self, num_classes: int = 30, in_channels: int = 4, f_maps: int | Sequence[int] = 64, num_levels: int = 4,
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        if isinstance(f_maps, int):
            widths = [int(f_maps) * 2**i for i in range(num_levels)]
        else:
            widths = [int(f) for f in f_maps]
        if len(widths) < 2:
            raise ValueError("a U-Net needs at least 2 levels")
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.widths = widths
        self.stride = 2 ** (len(widths) - 1)
        self.encoders = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.encoders.append(DoubleConv3D(prev, w, encoder=True, num_groups=num_groups))
            prev = w
        self.decoders = nn.ModuleList()
        rev = widths[::-1]
        for i in range(len(rev) - 1):
            self.decoders.append(DoubleConv3D(rev[i] + rev[i + 1], rev[i + 1], encoder=False, num_groups=num_groups))
        self.final_conv = nn.Conv3d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, Z) -> (B, num_classes, X, Y, Z) logits."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        x = pad_to_multiple(x, self.stride)
        skips = []
        for i, enc in enumerate(self.encoders):
            if i > 0:
                x = F.max_pool3d(x, kernel_size=2)
            x = enc(x)
            skips.append(x)
        for dec, skip in zip(self.decoders, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = dec(torch.cat([skip, x], dim=1))
        x = self.final_conv(x)
        return x[:, :, : size[0], : size[1], : size[2]]
