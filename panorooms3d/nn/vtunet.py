"""VT-UNet (Peiris et al., MICCAI 2022): a volumetric Swin encoder-decoder with cross-attending decoder blocks.

The paper's baseline is VT-UNet "base" (embed 96, depths [2, 2, 2, 1], heads [3, 6, 12, 24], window 8^3),
20.89M parameters with 4 input channels and 30 classes. This is our own implementation; the details below are
facts read from the public VT-UNet code (``himashi92/VT-UNet``, ``vtunet_tumor.py``), and with them the parameter
count is 20,886,900 (the paper's 20.89M):

- Patch embedding Conv3d(in -> 96, kernel = stride = 4) followed by LayerNorm (``patch_norm=True``).
- Swin blocks: pre-LayerNorm, window attention with a fused qkv Linear (with bias), a relative position bias
  table of (2w-1)^3 entries per head, shifted windows (shift w/2) on odd blocks with the usual -100 attention
  mask, MLP ratio 4 with GELU, stochastic depth linear in [0, 0.2] over the encoder blocks (decoder stage s
  reuses stage s's rates). A window is shrunk to the token grid along axes where the grid is not larger than
  the window (and that axis is not shifted), otherwise the grid is zero-padded to a multiple of the window.
- **Patch merging and expanding act on two spatial axes only**: the public code merges 2x2 neighbours of the
  last two axes (LayerNorm(4C) -> Linear(4C -> 2C), no bias) and keeps the first axis at patch resolution;
  expanding is Linear(C -> 2C, no bias), a 2x2 pixel shuffle of those axes and LayerNorm(C/2). A full 3D merge
  (8C -> 2C) would give 24.0M parameters, not the paper's 20.89M. ``keep_axis`` chooses the axis that is not
  merged (default 0, the official choice; for [x, y, z] volumes that is x).
- Decoder ("VT-Dec-Blk"): the bottleneck (after LayerNorm(768)) is expanded, concatenated with the encoder
  features that entered the same stage (skip), projected Linear(2C -> C, no bias), and passed through the
  stage's decoder blocks. Decoder block j at stage s self-attends over the decoder tokens and cross-attends
  from its queries to the keys/values of encoder block j of stage s (same windows, same shift, same relative
  position bias, same output projection and MLP weights: the cross branch has no parameters of its own). With
  x = self branch and x2 = cross branch (each with its own residual + MLP), the block returns the convex
  combination (1 - alpha) x + alpha x2 + MLP(LayerNorm(FPE)), where FPE is the sinusoidal 3D Fourier
  positional encoding of the token grid and alpha = 0.3 (the public code's value).
- Final expand x4: LayerNorm(96), Linear(96 -> 64*96, no bias), a 4x4x4 pixel shuffle to full resolution,
  LayerNorm(96), Conv3d(96 -> K, 1x1x1, no bias).

Deviations (documented choices): the cross-attention query is scaled once by head_dim^-0.5 (the public code
scales it twice, which looks accidental); the relative position index of a shrunk window is computed for the
shrunk window (the public code slices the full window's index); inputs of any size are zero-padded to
multiples of (4 on the kept axis, 4 * 2^3 = 32 on the merged axes) and the logits cropped back.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from panorooms3d.nn.layers import DropPath, Mlp, init_linear_layernorm

__all__ = ["VTUNet", "fourier_position_encoding_3d"]


def _linspace(stop: float, n: int) -> list[float]:
    """n evenly spaced floats from 0 to stop (torch.linspace(0, stop, n) in plain Python; meta-device safe)."""
    return [stop * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def fourier_position_encoding_3d(grid: tuple[int, int, int], channels: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal 3D positional encoding of a token grid (VT-UNet's FPE).

    Each axis gets c = 2 * ceil(channels / 6) features [sin(i * f_k), cos(i * f_k)] with f_k = 10000^(-2k / c),
    k = 0 .. c/2 - 1, for integer positions i; the three blocks (axis 0, 1, 2) are concatenated and truncated to
    ``channels``.

    Args:
        grid: (n0, n1, n2) token grid size.
        channels: feature width C.

    Returns:
        (n0, n1, n2, C) tensor.
    """
    c = 2 * ((channels + 5) // 6)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, c, 2, device=device, dtype=torch.float32) / c))
    embs = []
    for axis, n in enumerate(grid):
        ang = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
        e = torch.cat([ang.sin(), ang.cos()], dim=-1)  # (n, c)
        shape = [1, 1, 1, c]
        shape[axis] = n
        embs.append(e.view(shape).expand(*grid, c))
    out = torch.cat(embs, dim=-1)[..., :channels]
    return out.to(dtype) if dtype is not None else out


def _window_and_shift(grid: tuple[int, ...], window: int, shift: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shrink the window to the grid where the grid is not larger (and drop the shift there)."""
    ws = tuple(g if g <= window else window for g in grid)
    ss = tuple(0 if g <= window else shift for g in grid)
    return ws, ss


def _partition(x: torch.Tensor, ws: tuple[int, int, int]) -> torch.Tensor:
    """(B, A, B', C', C) -> (B * nW, wa*wb*wc, C) windows, row-major inside a window."""
    b, n0, n1, n2, c = x.shape
    x = x.view(b, n0 // ws[0], ws[0], n1 // ws[1], ws[1], n2 // ws[2], ws[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws[0] * ws[1] * ws[2], c)


def _reverse(windows: torch.Tensor, ws: tuple[int, int, int], b: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`_partition`: (B * nW, N, C) -> (B, n0, n1, n2, C)."""
    n0, n1, n2 = grid
    x = windows.view(b, n0 // ws[0], n1 // ws[1], n2 // ws[2], ws[0], ws[1], ws[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, n0, n1, n2, -1)


@lru_cache(maxsize=64)
def _shift_mask(grid: tuple[int, int, int], ws: tuple[int, int, int], ss: tuple[int, int, int]) -> torch.Tensor:
    """(nW, N, N) additive attention mask (0 / -100) for shifted windows on a padded grid (CPU tensor)."""
    labels = torch.zeros(1, *grid, 1)
    cnt = 0
    slices = [
        (slice(0, -w), slice(-w, -s), slice(-s, None)) if s > 0 else (slice(None),) for w, s in zip(ws, ss, strict=True)
    ]
    for a in slices[0]:
        for b in slices[1]:
            for c in slices[2]:
                labels[:, a, b, c, :] = cnt
                cnt += 1
    win = _partition(labels, ws).squeeze(-1)  # (nW, N)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


@lru_cache(maxsize=64)
def _relative_index(ws: tuple[int, int, int], full: int) -> torch.Tensor:
    """(N, N) index into a (2*full-1)^3 relative position bias table for a (possibly shrunk) window ws."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in ws], indexing="ij")).flatten(1)  # (3, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (full - 1)  # (N, N, 3) in [0, 2full-2]
    m = 2 * full - 1
    return rel[..., 0] * m * m + rel[..., 1] * m + rel[..., 2]


class _WindowAttention(nn.Module):
    """Window multi-head attention with relative position bias; optional cross branch to given keys/values."""

    def __init__(self, dim: int, heads: int, window: int, qkv_bias: bool = True, drop: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 3, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(drop)

    def _attend(self, q, k, v, bias, mask):
        attn = q @ k.transpose(-2, -1) + bias
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(-1, nw, *attn.shape[1:]) + mask[None, :, None]
            attn = attn.view(-1, *attn.shape[2:])
        return attn.softmax(dim=-1) @ v

    def forward(self, x, ws, mask=None, enc_kv=None):
        """x: (B*nW, N, C) windows; returns (self_out, cross_out or None, (k, v)) with k, v (B*nW, h, N, C/h)."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q = q * self.scale
        idx = _relative_index(ws, self.window).to(x.device)
        bias = self.relative_position_bias_table[idx.reshape(-1)].view(n, n, -1).permute(2, 0, 1)[None]
        out = self._attend(q, k, v, bias, mask).transpose(1, 2).reshape(bw, n, c)
        out = self.drop(self.proj(out))
        cross = None
        if enc_kv is not None:
            ek, ev = enc_kv
            cross = self._attend(q, ek, ev, bias, mask).transpose(1, 2).reshape(bw, n, c)
            cross = self.drop(self.proj(cross))
        return out, cross, (k, v)


class _SwinBlock(nn.Module):
    """Swin block (encoder) / VT-Dec-Blk (decoder, when encoder keys/values are given) on (B, n0, n1, n2, C)."""

    def __init__(self, dim, heads, window, shifted, mlp_ratio=4.0, drop=0.0, drop_path=0.0, alpha=0.3):
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted else 0
        self.alpha = alpha
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _WindowAttention(dim, heads, window, True, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def _windows(self, x: torch.Tensor, fn):
        b, n0, n1, n2, c = x.shape
        ws, ss = _window_and_shift((n0, n1, n2), self.window, self.shift)
        pads = [(-n) % w for n, w in zip((n0, n1, n2), ws, strict=True)]
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        grid = tuple(x.shape[1:4])
        shifted = any(ss)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in ss), dims=(1, 2, 3))
        mask = _shift_mask(grid, ws, ss).to(x.device, x.dtype) if shifted else None
        outs = fn(_partition(x, ws), ws, mask)
        res = []
        for o in outs[:2]:
            if o is None:
                res.append(None)
                continue
            o = _reverse(o, ws, b, grid)
            if shifted:
                o = torch.roll(o, shifts=ss, dims=(1, 2, 3))
            res.append(o[:, :n0, :n1, :n2].contiguous())
        return res[0], res[1], outs[2]

    def forward(self, x: torch.Tensor, enc_kv=None):
        """x: (B, n0, n1, n2, C) -> (out (B, n0, n1, n2, C), (k, v) of this block's windows)."""
        shortcut = x
        a, cross, kv = self._windows(self.norm1(x), lambda w, ws, m: self.attn(w, ws, m, enc_kv))
        x = shortcut + self.drop_path(a)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        if cross is not None:
            x2 = shortcut + self.drop_path(cross)
            x2 = x2 + self.drop_path(self.mlp(self.norm2(x2)))
            fpe = fourier_position_encoding_3d(tuple(x.shape[1:4]), x.shape[-1], x.device, x.dtype)
            x = (1 - self.alpha) * x + self.alpha * x2 + self.mlp(self.norm2(fpe))[None]
        return x, kv


class _PatchMerge2(nn.Module):
    """Merge 2x2 neighbours of the two merged axes: LayerNorm(4C) -> Linear(4C -> 2C, no bias)."""

    def __init__(self, dim: int, axes: tuple[int, int]) -> None:
        super().__init__()
        self.axes = axes
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, n0, n1, n2, C) with even sizes on the merged axes -> halved there, 2C channels."""
        a, b = (ax + 1 for ax in self.axes)

        def take(oa: int, ob: int) -> torch.Tensor:
            idx = [slice(None)] * x.ndim
            idx[a] = slice(oa, None, 2)
            idx[b] = slice(ob, None, 2)
            return x[tuple(idx)]

        # the public code's order: (0, 0), (1, 0), (0, 1), (1, 1) as (offset on axis a, offset on axis b)
        parts = [take(0, 0), take(1, 0), take(0, 1), take(1, 1)]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class _PatchExpand2(nn.Module):
    """Linear(C -> 2C, no bias), 2x2 pixel shuffle of the merged axes (C/2 channels), LayerNorm(C/2)."""

    def __init__(self, dim: int, axes: tuple[int, int]) -> None:
        super().__init__()
        self.axes = axes
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, n0, n1, n2, C) -> doubled on the merged axes, C/2 channels."""
        x = self.expand(x)
        b, n0, n1, n2, c = x.shape
        x = x.view(b, n0, n1, n2, 2, 2, c // 4)  # (p1 p2 c): p1 on the first merged axis, p2 on the second
        a1, a2 = (ax + 1 for ax in self.axes)
        # move p1 next to axis a1 and p2 next to axis a2, then fold
        dims = [0]
        for ax in (1, 2, 3):
            dims.append(ax)
            if ax == a1:
                dims.append(4)
            if ax == a2:
                dims.append(5)
        dims.append(6)
        x = x.permute(*dims)
        sizes = [n0, n1, n2]
        sizes[a1 - 1] *= 2
        sizes[a2 - 1] *= 2
        return self.norm(x.reshape(b, *sizes, c // 4))


class _FinalExpand4(nn.Module):
    """Linear(C -> 64C, no bias), 4x4x4 pixel shuffle to full resolution, LayerNorm(C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 64 * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, n0, n1, n2, C) -> (B, 4n0, 4n1, 4n2, C)."""
        x = self.expand(x)
        b, n0, n1, n2, c = x.shape
        x = x.view(b, n0, n1, n2, 4, 4, 4, c // 64).permute(0, 1, 4, 2, 5, 3, 6, 7)
        return self.norm(x.reshape(b, 4 * n0, 4 * n1, 4 * n2, c // 64))


class VTUNet(nn.Module):
    """VT-UNet for voxel volumes: (B, in_channels, X, Y, Z) float -> (B, num_classes, X, Y, Z) float logits.

    Args:
        num_classes: output classes K (30).
        in_channels: input channels (4: -3*tsdf, r, g, b).
        embed_dim: width C of stage 0 (96); stage s has C * 2^s.
        depths: Swin blocks per encoder stage ([2, 2, 2, 1]); decoder stage s (s < last) has depths[s] blocks.
        num_heads: attention heads per stage ([3, 6, 12, 24]).
        window_size: cubic window edge in tokens (8).
        patch_size: patch embedding edge in voxels (4).
        mlp_ratio: MLP hidden width / C (4).
        drop_rate: dropout (0).
        drop_path_rate: stochastic depth at the last encoder block (0.2, as the VT-UNet base config).
        alpha: weight of the cross-attention branch in the decoder's convex combination (0.3).
        keep_axis: spatial axis (0, 1 or 2) that patch merging does not downsample (0, as the public code).

    Any X, Y, Z work: the input is zero-padded at the high end to multiples of patch_size on ``keep_axis`` and
    patch_size * 2^(stages-1) on the other axes, and the logits are cropped back.
    """

    def __init__(
        self,
        num_classes: int = 30,
        in_channels: int = 4,
        embed_dim: int = 96,
        depths: tuple[int, ...] | list[int] = (2, 2, 2, 1),
        num_heads: tuple[int, ...] | list[int] = (3, 6, 12, 24),
        window_size: int = 8,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        alpha: float = 0.3,
        keep_axis: int = 0,
    ) -> None:
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(depths) != len(num_heads) or len(depths) < 2:
            raise ValueError("depths and num_heads must have the same length (>= 2)")
        if keep_axis not in (0, 1, 2):
            raise ValueError(f"keep_axis must be 0, 1 or 2, got {keep_axis}")
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.keep_axis = keep_axis
        self.merge_axes = tuple(a for a in (0, 1, 2) if a != keep_axis)
        self.num_stages = len(depths)
        dims = [embed_dim * 2**s for s in range(self.num_stages)]
        dpr = _linspace(drop_path_rate, sum(depths))

        self.patch_embed = nn.Conv3d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.patch_norm = nn.LayerNorm(embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)

        def blocks(s: int) -> nn.ModuleList:
            start = sum(depths[:s])
            return nn.ModuleList(
                _SwinBlock(dims[s], num_heads[s], window_size, i % 2 == 1, mlp_ratio, drop_rate, dpr[start + i], alpha)
                for i in range(depths[s])
            )

        self.encoder = nn.ModuleList(blocks(s) for s in range(self.num_stages))
        self.merges = nn.ModuleList(_PatchMerge2(dims[s], self.merge_axes) for s in range(self.num_stages - 1))
        self.norm = nn.LayerNorm(dims[-1])
        # decoder stages s = num_stages-2 .. 0: expand from s+1, concat skip, project, blocks
        self.expands = nn.ModuleList(_PatchExpand2(dims[s + 1], self.merge_axes) for s in range(self.num_stages - 1))
        self.concat_back = nn.ModuleList(nn.Linear(2 * dims[s], dims[s], bias=False) for s in range(self.num_stages - 1))
        self.decoder = nn.ModuleList(blocks(s) for s in range(self.num_stages - 1))
        self.norm_up = nn.LayerNorm(embed_dim)
        if patch_size != 4:
            raise ValueError("the final x4 expansion needs patch_size 4")
        self.final_expand = _FinalExpand4(embed_dim)
        self.head = nn.Conv3d(embed_dim, num_classes, kernel_size=1, bias=False)
        self.apply(init_linear_layernorm)

    def padded_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Spatial shape (X, Y, Z) -> the padded shape the network runs on."""
        out = []
        for axis, n in enumerate(shape):
            m = self.patch_size if axis == self.keep_axis else self.patch_size * 2 ** (self.num_stages - 1)
            out.append(n + (-n) % m)
        return tuple(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, X, Y, Z) float -> (B, num_classes, X, Y, Z) float logits."""
        size = tuple(x.shape[2:])
        px, py, pz = (p - s for p, s in zip(self.padded_shape(size), size, strict=True))
        x = F.pad(x, (0, pz, 0, py, 0, px))
        t = self.patch_embed(x).permute(0, 2, 3, 4, 1)  # (B, n0, n1, n2, C)
        t = self.pos_drop(self.patch_norm(t))
        skips, kvs = [], []
        for s, stage in enumerate(self.encoder):
            skips.append(t)
            stage_kv = []
            for blk in stage:
                t, kv = blk(t)
                stage_kv.append(kv)
            kvs.append(stage_kv)
            if s < self.num_stages - 1:
                t = self.merges[s](t)
        t = self.norm(t)
        for s in range(self.num_stages - 2, -1, -1):
            t = self.expands[s](t)
            t = self.concat_back[s](torch.cat([t, skips[s]], dim=-1))
            for j, blk in enumerate(self.decoder[s]):
                t, _ = blk(t, enc_kv=kvs[s][j])
        t = self.final_expand(self.norm_up(t))
        logits = self.head(t.permute(0, 4, 1, 2, 3))
        return logits[:, :, : size[0], : size[1], : size[2]].contiguous()
