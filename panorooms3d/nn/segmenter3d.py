"""The 3D Segmenter (Wu et al., ICLR 2023): a volumetric Swin transformer with a linear decoder.

Architecture (paper.md, "Model"), for an input block ``x`` of shape (B, 4, X, Y, Z) =
[tsdf-channel, r, g, b]:

1. pad X, Y, Z at the far end with zeros to multiples of ``patch_size * 2 ** (len(depths) - 1)``
   (8 for the paper's two stages), as the official code does;
2. patch embedding ``Conv3d(in -> D, kernel P, stride P)`` (P = 4, no norm);
3. stage 1: ``depths[0]`` Video-Swin blocks of width D over 8x8x8 windows (odd blocks use windows
   shifted by 4 with the shifted-window attention mask), then a full-3D patch merge
   (2x2x2 neighbours -> 8D -> LayerNorm -> Linear(8D -> 2D, no bias));
4. stage 2: ``depths[1]`` blocks of width 2D;
5. two LayerNorms on the 2D-wide tokens (the backbone's ``norm`` and the encoder's ``post_norm``:
   the official model has both, and only with both do the parameter counts match the paper's
   exact counts 0.375M / 0.619M / 1.5495M / 4.4305M);
6. decoder: ``Linear(2D -> K)`` per token, trilinear interpolation to the padded input size,
   skip connection ``Linear(concat(y_f, x)) (K + 4 -> K)`` per voxel (``skip=False``: no skip,
   the paper's Table 4 ablation), crop to the input size. (Computed as ``interp(h W_h^T) + x W_x^T + b``,
   the same function since trilinear weights sum to 1, so no (K + 4)-channel full-size tensor is built.)

Windows follow the official (Video Swin) rules exactly, so that official checkpoints give the
same outputs: at each block the tokens are padded (after ``norm1``) to multiples of the window;
along an axis whose token count is at most the window size the window shrinks to that count and
the shift along it is 0; the relative position bias of a shrunk window of N tokens uses the first
N rows/columns of the full window's index (Video Swin's ``relative_position_index[:N, :N]``).
Attention adds the relative position bias (plus the shifted-window mask of -100 between regions) to
the scaled query-key products before the softmax. Where no gradient is taken, or on a GPU, it runs
through :func:`torch.nn.functional.scaled_dot_product_attention` with that sum as ``attn_mask``. Training
on the CPU writes it out instead (products, bias and mask added in place, softmax, product with the
values): there torch's fused kernel cannot give the bias its gradient and falls back to a general path
that guards every row against being fully masked, which makes a 3DSeg-T training step 1.18x as long
under bf16 autocast and 1.04x in float32 (docs/performance.md, "Training throughput"). Under bf16 autocast the
written-out attention adds the bias and the mask and takes the softmax in bf16, as a fused kernel would, not in
autocast's float32. The logits are upsampled with the classes last and returned as a channels-last view, which
the loss reads as rows without a copy. Together the two make a 3DSeg-T training step 1.14-1.23x as fast
(2026-12-07; docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from panorooms3d.nn.layers import DropPath, Mlp, init_linear_layernorm, pad_to_multiple

__all__ = [
    "DropPath",
    "PatchMerge3D",
    "Segmenter3D",
    "SwinBlock3D",
    "SwinStage3D",
    "WindowAttention3D",
    "effective_window",
    "relative_position_index",
    "shifted_window_mask",
    "trilinear_upsample",
    "trilinear_upsample_last",
    "window_partition",
    "window_reverse",
]

MASK_VALUE = -100.0
"""Additive attention bias between tokens of different regions of a shifted window (as official)."""

Size3 = tuple[int, int, int]


def _triple(v: int | Sequence[int]) -> Size3:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(int(a) for a in v)
    if len(t) != 3:
        raise ValueError(f"expected an int or 3 ints, got {v!r}")
    return t  # type: ignore[return-value]


def effective_window(grid: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """Window and shift actually used on a token grid (Video Swin's ``get_window_size``).

    Args:
        grid: token grid (X, Y, Z), in tokens.
        window: nominal window size per axis, in tokens.
        shift: nominal shift per axis, in tokens.

    Returns:
        (window, shift): along an axis with ``grid <= window`` the window becomes ``grid`` and the
        shift 0; other axes keep the nominal values.
    """
    w = list(window)
    s = list(shift)
    for i in range(3):
        if grid[i] <= window[i]:
            w[i] = grid[i]
            s[i] = 0
    return (w[0], w[1], w[2]), (s[0], s[1], s[2])


@lru_cache(maxsize=16)
def _relative_position_index_cpu(window: Size3) -> torch.Tensor:
    wx, wy, wz = window
    coords = torch.stack(
        torch.meshgrid(*(torch.arange(n, device="cpu") for n in (wx, wy, wz)), indexing="ij")
    ).flatten(1)  # (3, N), token n = (ix * wy + iy) * wz + iz
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 3): coord_i - coord_j
    rel = rel + torch.tensor([wx - 1, wy - 1, wz - 1], device="cpu")
    return rel[..., 0] * ((2 * wy - 1) * (2 * wz - 1)) + rel[..., 1] * (2 * wz - 1) + rel[..., 2]


def relative_position_index(window: Size3) -> torch.Tensor:
    """Index into the relative position bias table for every pair of tokens in one window.

    Args:
        window: window size (wx, wy, wz) in tokens; tokens are numbered in C order
            ``n = (ix * wy + iy) * wz + iz``.

    Returns:
        int64 tensor (N, N), N = wx * wy * wz: for tokens i, j with coordinate difference
        (dx, dy, dz) = c_i - c_j the entry is
        ``(dx + wx - 1) * (2wy - 1) * (2wz - 1) + (dy + wy - 1) * (2wz - 1) + (dz + wz - 1)``,
        in [0, (2wx - 1)(2wy - 1)(2wz - 1)).
    """
    return _relative_position_index_cpu(tuple(window)).clone()


@lru_cache(maxsize=64)
def _linear_weights_cpu(n: int, m: int) -> torch.Tensor:
    """(m, n) float64 weights of 1-D linear interpolation from n to m samples, ``align_corners=False``.

    Output sample i reads the source at ``s = max((i + 0.5) n / m - 0.5, 0)``: weight ``1 - (s - floor s)`` on
    ``floor s`` and ``s - floor s`` on ``min(floor s + 1, n - 1)`` (torch's ``upsample_linear1d``, derived from
    its documented coordinate transform).
    """
    i = torch.arange(m, dtype=torch.float64)
    src = ((i + 0.5) * (n / m) - 0.5).clamp(min=0.0)
    lo = src.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    frac = src - lo
    w = torch.zeros(m, n, dtype=torch.float64)
    rows = torch.arange(m)
    w[rows, lo] += 1.0 - frac
    w[rows, hi] += frac
    return w


def trilinear_upsample(x: torch.Tensor, size: Size3) -> torch.Tensor:
    """``F.interpolate(x, size, mode="trilinear", align_corners=False)`` as three 1-D matrix products.

    Trilinear interpolation is separable: one (m, n) weight matrix per axis. On the CPU the three matmuls and their
    backward take about a fifth of ``upsample_trilinear3d``'s time for 3DSeg-T's logits (30 x 16^3 -> 64^3: 15 ms
    against 70 ms, forward and backward, 2 cores; ``benchmark/perf/bench_training.py``); results agree to float
    rounding (max difference 7e-7 there; ``tests/test_nn_segmenter3d.py`` checks values and gradients).

    Args:
        x: (B, C, X, Y, Z).
        size: output (X', Y', Z').

    Returns:
        (B, C, X', Y', Z') contiguous.
    """
    b, c, nx, ny, nz = x.shape
    mx, my, mz = size
    wx, wy, wz = (_linear_weights_cpu(n, m).to(device=x.device, dtype=x.dtype)
                  for n, m in ((nx, mx), (ny, my), (nz, mz)))
    out = wx @ x.reshape(b * c, nx, ny * nz)  # the smallest tensors first: X, then Y, then Z (contiguous)
    out = wy @ out.reshape(b * c * mx, ny, nz)
    return (out @ wz.T).view(b, c, mx, my, mz)


def trilinear_upsample_last(t: torch.Tensor, size: Size3) -> torch.Tensor:
    """:func:`trilinear_upsample` of channels-last tokens: (B, X, Y, Z, C) -> (B, X', Y', Z', C) contiguous.

    The same three 1-D matrix products, Z first (the smallest tensors first), with the channels kept last. The
    3D Segmenter upsamples its logits this way, so that the cross-entropy reads each voxel's K logits as one
    contiguous row: on the CPU ``log_softmax`` over a contiguous last dimension and its backward take about 0.6x
    the time of the same over dimension 1 of (B, K, X, Y, Z) (docs/performance.md, "Training throughput"; the
    whole step with and without: ``benchmark/diagnosis/logits_layout_ab.py``).
    """
    b, nx, ny, nz, c = t.shape
    mx, my, mz = size
    wx, wy, wz = (_linear_weights_cpu(n, m).to(device=t.device, dtype=t.dtype)
                  for n, m in ((nx, mx), (ny, my), (nz, mz)))
    out = wz @ t.reshape(b * nx * ny, nz, c)  # B*X*Y, Z', C
    out = wy @ out.view(b * nx, ny, mz * c)  # B*X, Y', Z'*C
    return (wx @ out.view(b, nx, my * mz * c)).view(b, mx, my, mz, c)


def _region_labels(length: int, window: int, shift: int) -> torch.Tensor:
    """Region (0, 1, 2) of each position along one padded axis after a cyclic shift."""
    pos = torch.arange(length, device="cpu")
    if shift == 0:
        return torch.zeros(length, dtype=torch.long, device="cpu")
    return (pos >= length - window).long() + (pos >= length - shift).long()


@lru_cache(maxsize=4)
def _blocked_pairs(padded: Size3, window: Size3, shift: Size3) -> torch.Tensor:
    """bool (nW, N, N): True where two tokens of a shifted window lie in different regions (cached, read-only)."""
    rx = _region_labels(padded[0], window[0], shift[0])
    ry = _region_labels(padded[1], window[1], shift[1])
    rz = _region_labels(padded[2], window[2], shift[2])
    label = (rx[:, None, None] * 9 + ry[None, :, None] * 3 + rz[None, None, :]).to(torch.uint8)
    win = window_partition(label[None, :, :, :, None], window)[0, :, :, 0]  # (nW, N)
    return win[:, :, None] != win[:, None, :]


@lru_cache(maxsize=8)
def _additive_mask_on(padded: Size3, window: Size3, shift: Size3, device: torch.device,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """:func:`shifted_window_mask` as (nW, 1, N, N) ``dtype`` on ``device``, to add to (B, nW, h, N, N) logits
    (cached, read-only; 0 and -100 are exact in bfloat16)."""
    return shifted_window_mask(padded, window, shift).unsqueeze(1).to(device=device, dtype=dtype)


@lru_cache(maxsize=8)
def _window_gather(padded: Size3, window: Size3, shift: Size3, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(gather, scatter) int64 (L,) over the flattened padded grid (L = X * Y * Z, cached, read-only).

    ``flat[:, gather]`` is ``window_partition(roll(x, -shift))`` flattened over (nW, N); ``windows[:, scatter]``
    puts window tokens back at their unshifted grid positions.
    """
    pos = torch.arange(padded[0] * padded[1] * padded[2], device="cpu").view(1, *padded, 1)
    rolled = torch.roll(pos, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    gather = window_partition(rolled, window).reshape(-1)
    scatter = torch.argsort(gather)
    return gather.to(device), scatter.to(device)


def shifted_window_mask(padded: Size3, window: Size3, shift: Size3) -> torch.Tensor:
    """Additive attention mask for shifted windows on a padded token grid.

    After the cyclic shift by ``-shift`` the last window along each axis holds tokens that were
    far apart before the shift; tokens of different regions must not attend to each other.

    Args:
        padded: padded token grid (X, Y, Z), each a multiple of the window.
        window: window size in tokens.
        shift: shift in tokens (0 on an axis = no regions along it).

    Returns:
        float32 tensor (nW, N, N), nW windows in C order over the grid, N tokens per window:
        0 where tokens i and j may attend, -100 where they may not.
    """
    blocked = _blocked_pairs(tuple(padded), tuple(window), tuple(shift))
    return torch.zeros(blocked.shape, device="cpu").masked_fill(blocked, MASK_VALUE)


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """Split a token grid into non-overlapping windows.

    Args:
        x: (B, X, Y, Z, C) with X, Y, Z multiples of ``window``.
        window: (wx, wy, wz) in tokens.

    Returns:
        (B, nW, N, C): nW = X/wx * Y/wy * Z/wz windows in C order, N = wx * wy * wz tokens each
        (C order inside the window).
    """
    b, nx, ny, nz, c = x.shape
    wx, wy, wz = window
    x = x.view(b, nx // wx, wx, ny // wy, wy, nz // wz, wz, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, -1, wx * wy * wz, c)


def window_reverse(windows: torch.Tensor, window: Size3, grid: Size3) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        windows: (B, nW, N, C).
        window: (wx, wy, wz) in tokens.
        grid: padded grid (X, Y, Z) in tokens.

    Returns:
        (B, X, Y, Z, C).
    """
    b, _, _, c = windows.shape
    wx, wy, wz = window
    nx, ny, nz = grid
    x = windows.view(b, nx // wx, ny // wy, nz // wz, wx, wy, wz, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, nx, ny, nz, c)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows with a learned relative position bias.

    Parameters: ``qkv`` Linear(C -> 3C), ``proj`` Linear(C -> C), ``relative_position_bias_table``
    ((2wx-1)(2wy-1)(2wz-1), heads). Input (B, nW, N, C) windows, output the same shape.
    """

    write_out_cpu_training = True
    """False: attention always through the fused kernel (benchmark/diagnosis/attention_ab.py compares the two)."""

    softmax_in_logits_dtype = True
    """Written out: add the bias and the mask to the products and take the softmax in the products' dtype (bfloat16
    under bf16 autocast, as a fused kernel would), not in float32 (autocast's softmax; until 2026-12-07).
    ``benchmark/diagnosis/logits_layout_ab.py`` compares the two."""

    def __init__(
        self, dim: int, window: Size3, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.dim = dim
        self.window = window
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        n_rel = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n_rel, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        index = relative_position_index(window)
        self.register_buffer("relative_position_index", index.to(self.relative_position_bias_table.device),
                             persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self, n: int) -> torch.Tensor:
        """Relative position bias (heads, n, n) for windows of ``n`` tokens (first n of the full window), contiguous."""
        idx = self.relative_position_index[:n, :n].reshape(-1)
        # index_select, not [idx]: its backward (index_add_) is about 1.5x faster on the CPU than index_put_. From
        # the (heads, rows) transpose, so that the gather and its backward run along contiguous rows.
        return self.relative_position_bias_table.t().contiguous().index_select(1, idx).view(-1, n, n)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend inside each window.

        Args:
            x: (B, nW, N, C) window tokens.
            mask: optional float32 (nW, 1, N, N), added to the logits: -100 where tokens of a shifted window
                may not attend (as official), 0 elsewhere.

        Returns:
            (B, nW, N, C).
        """
        b, nw, n, c = x.shape
        h = self.num_heads
        hd = c // h
        qkv = self.qkv(x).view(b, nw, n, 3, h, hd).permute(3, 0, 1, 4, 2, 5)  # 3, B, nW, h, N, hd
        q, k, v = qkv.unbind(0)
        p = self.attn_drop if self.training else 0.0
        bias = self.position_bias(n)  # h, N, N
        if self.write_out_cpu_training and torch.is_grad_enabled() and x.device.type == "cpu":
            out = self._attend_written_out(q, k, v, bias, mask, p)
        elif mask is None:
            # A 4-D attn_mask keeps torch on its fused CPU kernel; a 3-D (h, N, N) one falls back to a slow path.
            out = F.scaled_dot_product_attention(
                q.reshape(b * nw, h, n, hd), k.reshape(b * nw, h, n, hd), v.reshape(b * nw, h, n, hd),
                attn_mask=bias.to(q.dtype).unsqueeze(0), dropout_p=p,
            ).view(b, nw, h, n, hd)
        else:
            full = bias.to(q.dtype) + mask.to(q.dtype)  # nW, h, N, N
            out = torch.stack(
                [F.scaled_dot_product_attention(q[i], k[i], v[i], attn_mask=full, dropout_p=p) for i in range(b)]
            )  # per sample, so the (nW, h, N, N) mask is never repeated over the batch
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))

    def _attend_written_out(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None,
        p: float,
    ) -> torch.Tensor:
        """The fused kernel's attention written out for CPU training (module docstring): (B, nW, h, N, hd).

        The bias and the mask are added in place to the products (whose backward needs neither), so no
        (nW, h, N, N) masked bias is built.
        """
        hd = q.shape[-1]
        logits = torch.matmul(q * hd ** -0.5, k.transpose(-2, -1))  # B, nW, h, N, N
        if not self.softmax_in_logits_dtype:
            logits.add_(bias)
            if mask is not None:
                logits.add_(mask)
            weights = logits.softmax(-1).to(v.dtype)
        else:
            logits.add_(bias.to(logits.dtype))
            if mask is not None:
                logits.add_(mask.to(logits.dtype))  # the cached mask is already in it
            with torch.autocast(logits.device.type, enabled=False):  # autocast would take the softmax in float32
                weights = logits.softmax(-1).to(v.dtype)
        return torch.matmul(F.dropout(weights, p=p, training=p > 0), v)


class SwinBlock3D(nn.Module):
    """One Video-Swin block: x + DropPath(W-MSA(LN(x))), then x + DropPath(MLP(LN(x))).

    Input and output (B, X, Y, Z, C) tokens. ``shifted`` blocks roll the grid by ``-shift`` before
    windowing (and back after) and use the shifted-window mask.
    """

    def __init__(
        self, dim: int, num_heads: int, window: Size3, shifted: bool, mlp_ratio: float = 4.0,
        qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.window = window
        self.shifted = shifted
        self.shift = tuple(w // 2 for w in window) if shifted else (0, 0, 0)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, window, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, nx, ny, nz, c = x.shape
        window, shift = effective_window((nx, ny, nz), self.window, self.shift)
        x = self.norm1(x)
        pads = [(w - n % w) % w for n, w in zip((nx, ny, nz), window)]
        if any(pads):
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        grid = (nx + pads[0], ny + pads[1], nz + pads[2])
        # cyclic shift + window partition as one gather (torch.roll is slow on CPU), and back as one gather
        gather, scatter = _window_gather(grid, window, shift, x.device)
        n = window[0] * window[1] * window[2]
        windows = x.reshape(b, -1, c).index_select(1, gather).view(b, -1, n, c)
        mask = None
        if any(shift):
            dtype = (torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type)
                     and self.attn.softmax_in_logits_dtype else torch.float32)
            mask = _additive_mask_on(grid, window, shift, x.device, dtype)
        out = self.attn(windows, mask).reshape(b, -1, c).index_select(1, scatter).view(b, *grid, c)
        if any(pads):
            out = out[:, :nx, :ny, :nz].contiguous()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, X, Y, Z, C) -> (B, X, Y, Z, C)."""
        x = x + self.drop_path(self._attend(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerge3D(nn.Module):
    """Full-3D patch merge: 2x2x2 neighbours concatenated (8C) -> LayerNorm(8C) -> Linear(8C -> 2C, no bias).

    Concatenation order (ours): neighbour (dx, dy, dz) at slot ``4 dx + 2 dy + dz`` (C order).
    The official code uses slot ``dx + 2 dy + 4 dz``; :mod:`panorooms3d.nn.official` permutes.
    Input (B, X, Y, Z, C) with even X, Y, Z; output (B, X/2, Y/2, Z/2, 2C).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8 * dim)
        self.reduction = nn.Linear(8 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, X, Y, Z, C) -> (B, X/2, Y/2, Z/2, 2C)."""
        b, nx, ny, nz, c = x.shape
        if nx % 2 or ny % 2 or nz % 2:
            x = F.pad(x, (0, 0, 0, nz % 2, 0, ny % 2, 0, nx % 2))
            b, nx, ny, nz, c = x.shape
        x = x.view(b, nx // 2, 2, ny // 2, 2, nz // 2, 2, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
        x = x.reshape(b, nx // 2, ny // 2, nz // 2, 8 * c)
        return self.reduction(self.norm(x))


class SwinStage3D(nn.Module):
    """A stage: ``depth`` Swin blocks (odd ones shifted), then an optional :class:`PatchMerge3D`.

    Input (B, X, Y, Z, C); output (B, X, Y, Z, C), or (B, X/2, Y/2, Z/2, 2C) with ``downsample``.
    """

    def __init__(
        self, dim: int, depth: int, num_heads: int, window: Size3, mlp_ratio: float, qkv_bias: bool,
        drop: float, attn_drop: float, drop_path: Sequence[float], downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, window, i % 2 == 1, mlp_ratio, qkv_bias, drop, attn_drop, drop_path[i])
            for i in range(depth)
        )
        self.downsample = PatchMerge3D(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, X, Y, Z, C) -> (B, X', Y', Z', C')."""
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class ConvStem3D(nn.Module):
    """A convolutional stem in place of the patchify embedding (not in the paper).

    ``log2(P)`` convolutions of kernel 3, stride 2, padding 1; each but the last is followed by a
    per-voxel LayerNorm over channels and a GELU. Widths double up to D: for P = 4 and D = 48,
    in -> 24 -> 48. Maps (B, in, X, Y, Z) -> (B, D, X/P, Y/P, Z/P) like the patch embedding, for X,
    Y, Z multiples of P. "Early convolutions help transformers see better" (Xiao et al., 2021)
    made the same change for 2D ViTs.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        n = int(patch_size).bit_length() - 1
        if patch_size < 2 or 2**n != patch_size:
            raise ValueError(f"a convolutional stem needs a patch size that is a power of 2 (>= 2), got {patch_size}")
        widths = [max(embed_dim // 2 ** (n - 1 - i), 1) for i in range(n)]  # ..., D/4, D/2, D
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            self.convs.append(nn.Conv3d(c, w, kernel_size=3, stride=2, padding=1))
            if i < n - 1:
                self.norms.append(nn.LayerNorm(w))
            c = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.norms):
                x = F.gelu(self.norms[i](x.permute(0, 2, 3, 4, 1))).permute(0, 4, 1, 2, 3)
        return x


class Segmenter3D(nn.Module):
    """The 3D Segmenter: volumetric Swin encoder + linear decoder + input skip connection.

    Args:
        num_classes: K, number of output classes (30 in the paper).
        in_channels: input channels (4 = [tsdf-channel, r, g, b]).
        embed_dim: D, token width of the first stage (the final width is D * 2 ** (stages - 1)).
        depths: Swin blocks per stage ([2, 2] for 3DSeg-T).
        num_heads: attention heads per stage.
        patch_size: P, voxels per patch edge (4).
        window_size: window edge in tokens (8).
        mlp_ratio: MLP hidden width / token width (4).
        qkv_bias: bias on the qkv projection (True in the official code).
        drop_path_rate: stochastic depth, linear from 0 to this over all blocks (0.2 official).
        drop_rate: dropout after attention projection and in the MLP (0 official).
        attn_drop_rate: attention-probability dropout (0 official).
        dropout: dropout between the two final LayerNorms (the official encoder's, 0 in training).
        skip: use the skip connection Linear(concat(y_f, x)) (K + in -> K); False = Table 4 ablation.
        stem: ``"patch"`` (the paper's: ``Conv3d(in -> D, kernel P, stride P)``) or ``"conv"`` (not in
            the paper: :class:`ConvStem3D`, log2(P) stride-2 3x3x3 convolutions, a measured CPU-track
            variant; docs/benchmark.md).

    Forward: (B, in_channels, X, Y, Z) float -> (B, num_classes, X, Y, Z) logits, any X, Y, Z >= 1. The logits
    are a channels-last view (stride 1 along K; :attr:`channels_last_logits`), which
    :func:`panorooms3d.nn.losses.voxel_cross_entropy` reads without a copy.
    """

    channels_last_logits = True
    """False: upsample channel-first and return contiguous (B, K, X, Y, Z) logits (the layout until 2026-12-07;
    ``benchmark/diagnosis/logits_layout_ab.py`` compares the two)."""

    def __init__(
        self, num_classes: int = 30, in_channels: int = 4, embed_dim: int = 48,
        depths: Sequence[int] = (2, 2), num_heads: Sequence[int] = (3, 3), patch_size: int = 4,
        window_size: int | Sequence[int] = 8, mlp_ratio: float = 4.0, qkv_bias: bool = True,
        drop_path_rate: float = 0.2, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
        dropout: float = 0.0, skip: bool = True, stem: str = "patch",
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} must be non-empty and equal length")
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.embed_dim = int(embed_dim)
        self.depths = [int(d) for d in depths]
        self.num_heads = [int(h) for h in num_heads]
        self.patch_size = int(patch_size)
        self.window = _triple(window_size)
        self.use_skip = bool(skip)
        n_stages = len(self.depths)
        self.stride = self.patch_size * 2 ** (n_stages - 1)
        self.num_features = self.embed_dim * 2 ** (n_stages - 1)

        if stem == "patch":
            self.patch_embed: nn.Module = nn.Conv3d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        elif stem == "conv":
            self.patch_embed = ConvStem3D(in_channels, embed_dim, patch_size)
        else:
            raise ValueError(f"stem must be 'patch' or 'conv', got {stem!r}")
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        start = 0
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            self.stages.append(
                SwinStage3D(
                    self.embed_dim * 2**i, depth, heads, self.window, mlp_ratio, qkv_bias, drop_rate,
                    attn_drop_rate, dpr[start:start + depth], downsample=i < n_stages - 1,
                )
            )
            start += depth
        self.norm = nn.LayerNorm(self.num_features)
        self.dropout = nn.Dropout(dropout)
        self.post_norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        self.skip = nn.Linear(num_classes + in_channels, num_classes) if skip else None
        self.apply(init_linear_layernorm)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder on a padded block.

        Args:
            x: (B, in_channels, X, Y, Z), X, Y, Z multiples of :attr:`stride`.

        Returns:
            tokens (B, X/stride, Y/stride, Z/stride, num_features) after both final LayerNorms.
        """
        t = self.patch_embed(x).permute(0, 2, 3, 4, 1)
        for stage in self.stages:
            t = stage(t)
        return self.post_norm(self.dropout(self.norm(t)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, Z) -> (B, num_classes, X, Y, Z) logits."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        x = pad_to_multiple(x, self.stride)
        padded = tuple(x.shape[2:])
        tokens = self.head(self.encode(x))  # B, x', y', z', K
        k = self.num_classes
        if self.skip is not None:
            # skip(concat(interp(h), x)) = interp(h @ W_h^T) + x @ W_x^T + b, because trilinear weights sum to 1:
            # the K x K part is applied at token resolution and the concatenated full-size tensor never exists.
            tokens = tokens @ self.skip.weight[:, :k].T.to(tokens.dtype)
        if not self.channels_last_logits:
            y = trilinear_upsample(tokens.permute(0, 4, 1, 2, 3), padded)
            if self.skip is not None:
                b = y.shape[0]
                w = self.skip.weight[:, k:].to(y.dtype).expand(b, -1, -1)  # B, K, in
                # y + W_x x + b as one batched matmul (several times faster on CPU than a 1x1x1 Conv3d)
                # in place: the interpolation's output is not needed by its backward
                y = y.view(b, k, -1).baddbmm_(w, x.to(y.dtype).reshape(b, x.shape[1], -1))
                y = y.add_(self.skip.bias.to(y.dtype)[:, None]).view(b, k, *padded)
            return y[:, :, : size[0], : size[1], : size[2]]
        if self.skip is not None:
            tokens = tokens + self.skip.bias.to(tokens.dtype)  # interpolation keeps a constant: b added before it
        y = trilinear_upsample_last(tokens, padded)  # B, X, Y, Z, K
        if self.skip is not None:
            b = y.shape[0]
            w = self.skip.weight[:, k:].T.to(y.dtype).expand(b, -1, -1)  # B, in, K
            # y + x W_x^T as one batched matmul, in place (the interpolation's backward does not need y)
            y = y.view(b, -1, k).baddbmm_(x.to(y.dtype).reshape(b, x.shape[1], -1).transpose(1, 2), w)
            y = y.view(b, *padded, k)
        return y.permute(0, 4, 1, 2, 3)[:, :, : size[0], : size[1], : size[2]]
