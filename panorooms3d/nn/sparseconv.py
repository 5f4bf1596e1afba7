"""SparseConvNet-style U-Net (Graham et al., CVPR 2018) with submanifold convolutions, trainable on a CPU.

Layout: the ScanNet U-Net of SparseConvNet (``scn.UNet``): a stem submanifold conv (in -> m, 3^3), then a
recursive U-Net with planes m, 2m, ..., L*m; at each level ``reps`` VGG blocks (BatchNorm-ReLU, then a 3^3
submanifold conv, no bias), a BatchNorm-ReLU + 2^3 stride-2 convolution down, the next level, BatchNorm-ReLU +
2^3 stride-2 transposed convolution up, concatenation with the level's features and a block (2a -> a); after the
U-Net, BatchNorm-ReLU and a per-voxel Linear(m -> K). The paper reports 0.64M parameters for its SparseConv
baseline without its width and depth; m = 10 with L = 6 levels and reps = 1 gives 0.658M (4 input channels,
30 classes), within 3% (the common ScanNet setting m = 16, L = 7 would be 2.69M; m = 8, L = 7 gives 0.674M).

**Masked submanifold convolutions** (pure PyTorch). The active set is a boolean mask over voxels. A submanifold
convolution is a dense ``conv3d`` of the masked input, multiplied by the mask: outputs exist only at active sites
and read only active neighbours (inactive features are zero). The stride-2 convolution's output mask is the
2x2x2 max-pool of the input mask (a coarse site is active when any of its children is); the transposed
convolution writes at the finer level's active sites. BatchNorm uses the mean and variance over active sites
only (:class:`MaskedBatchNorm3d`). This computes exactly what a sparse implementation computes, at dense cost.

**Active set from the input** (:func:`active_mask_from_input`): with the official encoding (channel 0 = -3 * tsdf,
free or unobserved space = -3; colours in [-1, 1], -1 where unobserved), a voxel is active when channel 0 is not
free space (|channel 0| < 3 - eps) or any colour channel is > -1 + eps, i.e. the voxels within the truncation band
of a surface, plus any coloured voxel. An explicit ``mask`` may be passed to ``forward`` instead.

**Inactive voxels** get fixed logits: ``inactive_logit`` (20) for class 0 (void) and 0 for every other class, so
they are predicted void with probability ~1 - 6e-8 and carry no gradient.

**spconv path**: when ``spconv`` (2.x) is importable, the input is on a CUDA device and ``use_spconv`` is not
False, the same parameters run through ``spconv.pytorch`` SubMConv3d / SparseConv3d / SparseInverseConv3d on the
active sites (weights are re-laid out from the dense tensors on each call, so checkpoints are shared). It cannot
be tested on this project's CPU machines; the masked path is the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from panorooms3d.nn.layers import Conv3d, conv3d

__all__ = [
    "SparseConvUNet",
    "SubmanifoldConv3d",
    "MaskedBatchNorm3d",
    "active_mask_from_input",
    "spconv_available",
]

try:  # optional GPU backend; never required
    import spconv.pytorch as _spconv  # type: ignore[import-not-found]
except Exception:  # pragma: no cover - spconv is not installed on CPU machines
    _spconv = None


def spconv_available() -> bool:
    """True when spconv.pytorch is importable and a CUDA device is present."""
    return _spconv is not None and torch.cuda.is_available()


def active_mask_from_input(x: torch.Tensor, free_value: float = -3.0, eps: float = 1e-3) -> torch.Tensor:
    """Active voxels of an encoded block.

    Args:
        x: (B, C, X, Y, Z) float; channel 0 = -3 * tsdf (free/unobserved = -3), channels 1.. colours in [-1, 1]
            (-1 where unobserved).
        free_value: the channel-0 value of free space (-3).
        eps: tolerance.

    Returns:
        (B, 1, X, Y, Z) bool: |channel 0| < |free_value| - eps, or any colour channel > -1 + eps.
    """
    active = x[:, :1].abs() < abs(free_value) - eps
    if x.shape[1] > 1:
        active = active | (x[:, 1:] > -1.0 + eps).any(dim=1, keepdim=True)
    return active


class SubmanifoldConv3d(nn.Module):
    """Masked submanifold convolution: out = conv3d(x * mask, W, padding k//2) * mask (no bias).

    Weight (out_channels, in_channels, k, k, k), the layout of ``nn.Conv3d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("submanifold convolutions need an odd kernel size")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, Cin, X, Y, Z) float; mask: (B, 1, X, Y, Z) float {0, 1} -> (B, Cout, X, Y, Z), zero off-mask."""
        return conv3d(x * mask, self.weight, padding=self.kernel_size // 2) * mask  # oneDNN on the CPU


class MaskedBatchNorm3d(nn.Module):
    """BatchNorm over active voxels only (+ optional ReLU); outputs are zero at inactive voxels.

    Training: mean and (biased) variance over all active voxels of the batch, running statistics updated with
    ``momentum`` (unbiased variance, as ``nn.BatchNorm``); eval: running statistics. Parameters ``weight``, ``bias``
    (C,), buffers ``running_mean``, ``running_var`` (C,), ``num_batches_tracked``.
    """

    def __init__(self, channels: int, eps: float = 1e-4, momentum: float = 0.1, relu: bool = True) -> None:
        super().__init__()
        self.eps, self.momentum, self.relu = eps, momentum, relu
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, X, Y, Z) float; mask: (B, 1, X, Y, Z) float {0, 1} -> (B, C, X, Y, Z), zero off-mask."""
        view = (1, -1, 1, 1, 1)
        if self.training:
            n = mask.sum()
            if n.item() == 0:
                return x * 0.0
            mean = (x * mask).sum(dim=(0, 2, 3, 4)) / n
            var = (((x - mean.view(view)) * mask) ** 2).sum(dim=(0, 2, 3, 4)) / n
            with torch.no_grad():
                unbiased = var * n / (n - 1) if n.item() > 1 else var
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased.detach())
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.view(view)) * torch.rsqrt(var.view(view) + self.eps) * self.weight.view(view)
        y = y + self.bias.view(view)
        if self.relu:
            y = F.relu(y)
        return y * mask

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The same normalisation on (N, C) features of active sites (spconv path)."""
        y = F.batch_norm(
            feats, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
        )
        return F.relu(y) if self.relu else y


class _Block(nn.Module):
    """BatchNorm-ReLU then a 3^3 submanifold conv (a -> b)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.bn = MaskedBatchNorm3d(a)
        self.conv = SubmanifoldConv3d(a, b, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x, mask), mask)


class _Level(nn.Module):
    """One U-Net level (recursive), as scn.UNet with VGG blocks."""

    def __init__(self, planes: list[int], reps: int) -> None:
        super().__init__()
        a = planes[0]
        self.pre = nn.ModuleList(_Block(a, a) for _ in range(reps))
        self.inner = None
        if len(planes) > 1:
            b = planes[1]
            self.down_bn = MaskedBatchNorm3d(a)
            self.down = Conv3d(a, b, kernel_size=2, stride=2, bias=False)
            self.inner = _Level(planes[1:], reps)
            self.up_bn = MaskedBatchNorm3d(b)
            self.up = nn.ConvTranspose3d(b, a, kernel_size=2, stride=2, bias=False)
            self.post = nn.ModuleList(_Block(2 * a if i == 0 else a, a) for i in range(reps))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, a, X, Y, Z), mask (B, 1, X, Y, Z) float; sizes divisible by 2^(levels below)."""
        for blk in self.pre:
            x = blk(x, mask)
        if self.inner is None:
            return x
        coarse = F.max_pool3d(mask, 2)
        y = self.down(self.down_bn(x, mask)) * coarse
        y = self.inner(y, coarse)
        y = self.up(self.up_bn(y, coarse)) * mask
        x = torch.cat([x, y], dim=1)
        for blk in self.post:
            x = blk(x, mask)
        return x

    def forward_sparse(self, st, level: int):  # pragma: no cover - needs spconv + CUDA
        for blk in self.pre:
            st = _sp_block(blk, st, f"subm{level}")
        if self.inner is None:
            return st
        y = st.replace_feature(self.down_bn.forward_features(st.features))
        y = _sp_call(_spconv.SparseConv3d, self.down, y, stride=2, indice_key=f"down{level}")
        y = self.inner.forward_sparse(y, level + 1)
        y = y.replace_feature(self.up_bn.forward_features(y.features))
        y = _sp_call(_spconv.SparseInverseConv3d, self.up, y, indice_key=f"down{level}", transposed=True)
        st = st.replace_feature(torch.cat([st.features, y.features], dim=1))
        for blk in self.post:
            st = _sp_block(blk, st, f"subm{level}")
        return st


_SP_CACHE: dict = {}


def _sp_call(  # pragma: no cover - needs spconv + CUDA
    kind, dense: nn.Module, st, stride: int = 1, indice_key: str | None = None, transposed: bool = False
):
    """Run one spconv layer with the weights of a dense layer (re-laid out; gradients reach the dense weight)."""
    w = dense.weight
    if transposed:  # ConvTranspose3d weight (in, out, k, k, k)
        cin, cout, k = w.shape[0], w.shape[1], w.shape[2]
    else:  # Conv3d weight (out, in, k, k, k)
        cout, cin, k = w.shape[0], w.shape[1], w.shape[2]
    key = (kind, cin, cout, k, stride, indice_key)
    mod = _SP_CACHE.get(key)
    if mod is None:
        if kind is _spconv.SparseInverseConv3d:
            mod = kind(cin, cout, k, indice_key=indice_key, bias=False)
        elif kind is _spconv.SubMConv3d:
            mod = kind(cin, cout, k, padding=k // 2, indice_key=indice_key, bias=False)
        else:
            mod = kind(cin, cout, k, stride=stride, indice_key=indice_key, bias=False)
        mod.weight_shape = tuple(mod.weight.shape)
        del mod.weight
        _SP_CACHE[key] = mod
    mod = mod.to(w.device)
    oikkk = w.transpose(0, 1) if transposed else w  # (out, in, k, k, k)
    if mod.weight_shape == (cout, k, k, k, cin):  # spconv >= 2.2: (out, k, k, k, in)
        mod.weight = oikkk.permute(0, 2, 3, 4, 1).contiguous()
    elif _filter_hwio():  # spconv 2.0/2.1 with FILTER_HWIO: (k, k, k, in, out)
        mod.weight = oikkk.permute(2, 3, 4, 1, 0).contiguous()
    else:  # spconv 2.0/2.1 otherwise: (k, k, k, out, in)
        mod.weight = oikkk.permute(2, 3, 4, 0, 1).contiguous()
    return mod(st)


def _filter_hwio() -> bool:  # pragma: no cover - needs spconv
    try:
        from spconv.constants import FILTER_HWIO  # type: ignore[import-not-found]
    except Exception:
        return True
    return bool(FILTER_HWIO)


def _sp_block(blk: _Block, st, key: str):  # pragma: no cover - needs spconv + CUDA
    st = st.replace_feature(blk.bn.forward_features(st.features))
    return _sp_call(_spconv.SubMConv3d, blk.conv, st, indice_key=key)


class SparseConvUNet(nn.Module):
    """SparseConvNet-style U-Net: (B, in_channels, X, Y, Z) float -> (B, num_classes, X, Y, Z) float logits.

    Args:
        num_classes: K (30).
        in_channels: 4 (-3 * tsdf, r, g, b in [-1, 1]).
        m: width of the first level (10).
        levels: number of U-Net levels L (6); level l has m * (l + 1) planes.
        reps: VGG blocks per level and side (1).
        inactive_logit: the class-0 logit written at inactive voxels (others 0).
        use_spconv: None = use spconv when available on CUDA inputs; False = always the masked dense path.

    ``forward(x, mask=None)``: ``mask`` (B, 1, X, Y, Z) or (B, X, Y, Z) bool; default
    :func:`active_mask_from_input`. Inputs are zero-padded (inactive) to multiples of 2^(L-1) and cropped back.
    """

    def __init__(
        self,
        num_classes: int = 30,
        in_channels: int = 4,
        m: int = 10,
        levels: int = 6,
        reps: int = 1,
        inactive_logit: float = 20.0,
        use_spconv: bool | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.levels = levels
        self.inactive_logit = float(inactive_logit)
        self.use_spconv = use_spconv
        planes = [m * (i + 1) for i in range(levels)]
        self.stem = SubmanifoldConv3d(in_channels, m, 3)
        self.unet = _Level(planes, reps)
        self.out_bn = MaskedBatchNorm3d(m)
        self.head = nn.Conv3d(m, num_classes, kernel_size=1, bias=True)

    def _void_logits(self, like: torch.Tensor) -> torch.Tensor:
        v = torch.zeros(self.num_classes, dtype=like.dtype, device=like.device)
        v[0] = self.inactive_logit
        return v.view(1, -1, 1, 1, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, in_channels, X, Y, Z) float; mask: optional active set -> (B, num_classes, X, Y, Z) logits."""
        if mask is None:
            mask = active_mask_from_input(x)
        elif mask.ndim == 4:
            mask = mask[:, None]
        mask = mask.to(torch.bool)
        use_sp = self.use_spconv is not False and spconv_available() and x.is_cuda
        if use_sp:  # pragma: no cover - needs spconv + CUDA
            return self._forward_spconv(x, mask)
        size = x.shape[2:]
        mult = 2 ** (self.levels - 1)
        pads = [(-s) % mult for s in size]
        x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        fmask = F.pad(mask.to(x.dtype), (0, pads[2], 0, pads[1], 0, pads[0]))
        h = self.stem(x, fmask)
        h = self.unet(h, fmask)
        logits = self.head(self.out_bn(h, fmask))
        logits = torch.where(fmask > 0, logits, self._void_logits(logits))
        return logits[:, :, : size[0], : size[1], : size[2]].contiguous()

    def _forward_spconv(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        b, _, nx, ny, nz = x.shape
        idx = mask[:, 0].nonzero()  # (N, 4): batch, x, y, z
        feats = x.permute(0, 2, 3, 4, 1)[mask[:, 0]]
        st = _spconv.SparseConvTensor(feats, idx.int(), [nx, ny, nz], b)
        st = _sp_call(_spconv.SubMConv3d, self.stem, st, indice_key="subm0")
        st = self.unet.forward_sparse(st, 0)
        f = self.out_bn.forward_features(st.features)
        f = f @ self.head.weight.view(self.num_classes, -1).t() + self.head.bias
        out = self._void_logits(x).expand(b, -1, nx, ny, nz).clone()
        out = out.permute(0, 2, 3, 4, 1)
        out[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]] = f
        return out.permute(0, 4, 1, 2, 3).contiguous()
