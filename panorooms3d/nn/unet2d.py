"""A small convolutional 2D teacher for panoramas (the CPU track's alternative to a ViT from scratch).

The paper's teacher is a Segmenter (ViT) pretrained on ImageNet-21k. Nothing can be downloaded
here, and a ViT trained from random weights on a few hundred panoramas stays weak (measured in
docs/benchmark.md, "The CPU track"). ``UNet2D`` is a plain U-Net (Ronneberger et al. 2015) with
the equirect panorama's horizontal wrap built in:

- every 3x3 convolution pads the width **circularly** (column -1 is column W-1: longitude wraps)
  and the height with zeros (the poles do not wrap);
- ``levels`` resolutions, two conv-BN-ReLU per level, max-pooling down, bilinear upsampling
  (align_corners=False, also wrapping in width) and concatenation of the skip features up, a 1x1
  convolution to K classes;
- inputs are padded at the bottom/right to multiples of 2^(levels-1) and the logits cropped back.

So a yaw of the panorama by a multiple of 2^(levels-1) columns (a roll) rolls the logits by the same
columns exactly, in eval mode (tested); widths that are not such a multiple are zero-padded at the
right, where the wrap is then approximate.

It has the teacher interface of :class:`panorooms3d.nn.segmenter2d.Segmenter2D`: ``config``,
``normalize`` (RGB in [0, 1] -> (rgb - 0.5) / 0.5), ``forward`` -> (B, K, H, W) logits,
``save_checkpoint`` / ``from_checkpoint`` (``config`` carries ``arch = "unet2d"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from panorooms3d.run.checkpoint import load_checkpoint

ARCH = "unet2d"

#: Named sizes (base channels, levels) for ``TeacherConfig.variant``.
UNET2D_VARIANTS: dict[str, dict[str, int]] = {
    "unet2d-s": {"channels": 16, "levels": 4},
    "unet2d-m": {"channels": 32, "levels": 4},
}


class WrapConv(nn.Module):
    """3x3 convolution padded circularly in width (longitude) and with zeros in height."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 0, 0), mode="circular")
        return self.conv(F.pad(x, (0, 0, 1, 1)))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(WrapConv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         WrapConv(cout, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet2D(nn.Module):
    """U-Net for equirect panoramas: (B, 3, H, W) float (normalised) -> (B, num_classes, H, W) logits.

    Args:
        num_classes: K.
        channels: channels of the first level (doubled at each level down).
        levels: resolutions (levels - 1 poolings).
        in_channels: image channels (3).
    """

    def __init__(self, num_classes: int = 30, channels: int = 16, levels: int = 4, in_channels: int = 3,
                 arch: str = ARCH) -> None:
        super().__init__()
        if arch != ARCH:
            raise ValueError(f"UNet2D config names arch {arch!r}, not {ARCH!r}")
        if levels < 2:
            raise ValueError(f"UNet2D needs at least 2 levels, got {levels}")
        self.config: dict[str, Any] = {"arch": ARCH, "num_classes": num_classes, "channels": channels,
                                       "levels": levels, "in_channels": in_channels}
        widths = [channels * 2**i for i in range(levels)]
        self.down = nn.ModuleList([_block(in_channels, widths[0])] +
                                  [_block(widths[i - 1], widths[i]) for i in range(1, levels)])
        self.up = nn.ModuleList([_block(widths[i + 1] + widths[i], widths[i]) for i in range(levels - 1)])
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.num_classes = num_classes

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb: (B, 3, H, W) float in [0, 1] -> (rgb - 0.5) / 0.5."""
        return (rgb - 0.5) / 0.5

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h0, w0 = images.shape[-2:]
        m = 2 ** (len(self.down) - 1)
        x = F.pad(images, (0, (-w0) % m, 0, (-h0) % m))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            # x2 bilinear upsampling that wraps in width: one wrapped column each side, then crop two
            h, w = skips[i].shape[-2:]
            x = F.interpolate(F.pad(x, (1, 1, 0, 0), mode="circular"), size=(h, w + 4), mode="bilinear",
                              align_corners=False)[..., 2:-2]
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        return self.head(x)[..., :h0, :w0]

    def save_checkpoint(self, path: str | Path) -> None:
        """torch.save({"config": constructor kwargs (with arch), "state_dict": ...}, path)."""
        torch.save({"config": dict(self.config), "state_dict": self.state_dict()}, Path(path))

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> UNet2D:
        """Load a checkpoint written by :meth:`save_checkpoint`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"UNet2D checkpoint not found: {path}")
        data = load_checkpoint(path, map_location)
        model = cls(**dict(data["config"]))
        model.load_state_dict(data["state_dict"])
        return model
