"""Baselines: VT-UNet and the masked-submanifold SparseConvUNet, checked against the paper and definitions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from panorooms3d.nn.sparseconv import (
    MaskedBatchNorm3d,
    SparseConvUNet,
    SubmanifoldConv3d,
    active_mask_from_input,
)
from panorooms3d.nn.vtunet import VTUNet, _shift_mask, _SwinBlock, fourier_position_encoding_3d

torch.set_num_threads(2)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- VT-UNet


@pytest.fixture(scope="module")
def vtunet():
    torch.manual_seed(0)
    return VTUNet(num_classes=30, in_channels=4)


def test_vtunet_parameter_count_matches_paper(vtunet):
    # Table 1 of the paper: VT-UNet 20.89M (4 input channels, 30 classes).
    count = n_params(vtunet)
    assert abs(count / 1e6 - 20.89) / 20.89 < 0.02
    # Hand count from the VT-UNet base layout (see the module docstring): 20,886,900 with window 8.
    assert count == 20_886_900


def test_vtunet_keep_axis_does_not_change_parameter_count():
    with torch.device("meta"):
        model = VTUNet(keep_axis=2)
    assert n_params(model) == 20_886_900


def test_vtunet_forward_backward_odd_size(vtunet):
    model = vtunet
    x = torch.randn(1, 4, 40, 36, 33)
    y = model(x)
    assert y.shape == (1, 30, 40, 36, 33)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    # the cross-attention fusion and relative position biases of the decoder receive gradient
    assert model.decoder[0][0].attn.relative_position_bias_table.grad.abs().sum() > 0
    assert model.encoder[0][1].attn.relative_position_bias_table.grad.abs().sum() > 0


def test_vtunet_shift_mask_matches_contiguity_definition():
    # After a cyclic shift by s, two tokens of one window may attend to each other iff they were neighbours
    # before the shift, i.e. along every axis their original coordinates differ by less than the window.
    n, w, s = 8, 4, 2
    grid, ws, ss = (n, n, n), (w, w, w), (s, s, s)
    mask = _shift_mask(grid, ws, ss)  # (nW, N, N)
    windows = list(itertools.product(range(n // w), repeat=3))
    offsets = list(itertools.product(range(w), repeat=3))
    assert mask.shape == (len(windows), w**3, w**3)
    for wi, win in enumerate(windows):
        orig = [tuple((win[a] * w + o[a] + s) % n for a in range(3)) for o in offsets]
        for i, j in itertools.product(range(w**3), repeat=2):
            neighbours = all(abs(orig[i][a] - orig[j][a]) < w for a in range(3))
            assert (mask[wi, i, j].item() == 0.0) == neighbours


def test_fourier_position_encoding_values():
    # channels 12 -> 4 features per axis, frequencies 1 and 10000^-0.5 = 0.01.
    pe = fourier_position_encoding_3d((3, 4, 5), 12)
    assert pe.shape == (3, 4, 5, 12)
    i, j, k = 2, 3, 4
    expect = []
    for p in (i, j, k):
        expect += [math.sin(p), math.sin(0.01 * p), math.cos(p), math.cos(0.01 * p)]
    assert torch.allclose(pe[i, j, k], torch.tensor(expect), atol=1e-6)


def test_vtunet_decoder_block_fusion_definition():
    # VT-Dec-Blk: out = (1 - a) * self_branch + a * cross_branch + MLP(LN(FPE)). Cross-attending to the block's
    # own keys/values must reproduce the self branch, so for any a the output is self_branch + MLP(LN(FPE)).
    torch.manual_seed(7)
    for shifted in (False, True):
        blk = _SwinBlock(dim=12, heads=3, window=4, shifted=shifted, alpha=0.3).eval()
        x = torch.randn(2, 8, 4, 6, 12)  # grid 8 x 4 x 6: shifted and shrunk/padded windows
        plain, own_kv = blk(x)
        fused, _ = blk(x, enc_kv=own_kv)
        fpe = fourier_position_encoding_3d((8, 4, 6), 12)
        expect = plain + blk.mlp(blk.norm2(fpe))[None]
        assert torch.allclose(fused, expect, atol=1e-5)
        # with other encoder keys/values the cross branch changes the output
        _, other_kv = blk(torch.randn(2, 8, 4, 6, 12))
        assert not torch.allclose(blk(x, enc_kv=other_kv)[0], expect, atol=1e-3)


# ---------------------------------------------------------------------------------------------- SparseConv


def test_sparseconv_parameter_count_matches_paper():
    count = n_params(SparseConvUNet(num_classes=30, in_channels=4))
    assert abs(count / 1e6 - 0.64) / 0.64 < 0.05


def brute_force_submanifold(x, mask, weight):
    """out[o, p] = sum over offsets d with p + d active of W[o, :, d + 1] . x[:, p + d]; 0 at inactive p."""
    _, cin, nx, ny, nz = x.shape
    cout = weight.shape[0]
    out = torch.zeros(1, cout, nx, ny, nz, dtype=torch.float64)
    for p in itertools.product(range(nx), range(ny), range(nz)):
        if not mask[0, 0][p]:
            continue
        acc = torch.zeros(cout, dtype=torch.float64)
        for d in itertools.product((-1, 0, 1), repeat=3):
            q = tuple(p[a] + d[a] for a in range(3))
            if not all(0 <= q[a] < (nx, ny, nz)[a] for a in range(3)) or not mask[0, 0][q]:
                continue
            acc += weight[:, :, d[0] + 1, d[1] + 1, d[2] + 1].double() @ x[0, :, q[0], q[1], q[2]].double()
        out[0, :, p[0], p[1], p[2]] = acc
    return out


def test_masked_conv_equals_brute_force_submanifold():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 5, 4, 6, generator=g)
    mask = torch.rand(1, 1, 5, 4, 6, generator=g) < 0.4
    conv = SubmanifoldConv3d(3, 2, 3)
    got = conv(x, mask.float())
    want = brute_force_submanifold(x, mask, conv.weight.detach())
    assert torch.allclose(got.double(), want, atol=1e-5)
    assert (got[~mask.expand_as(got)] == 0).all()


def test_masked_batchnorm_uses_active_statistics_only():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 4, 4, generator=g)
    mask = (torch.rand(2, 1, 4, 4, 4, generator=g) < 0.5).float()
    x_inactive_changed = x + 100.0 * (1 - mask)
    bn = MaskedBatchNorm3d(3, eps=1e-4, relu=False).train()
    y = bn(x_inactive_changed, mask)
    active = mask[:, 0].bool()
    vals = x.permute(0, 2, 3, 4, 1)[active]  # (N, C)
    expect = (vals - vals.mean(0)) / torch.sqrt(vals.var(0, unbiased=False) + 1e-4)
    assert torch.allclose(y.permute(0, 2, 3, 4, 1)[active], expect, atol=1e-5)
    assert (y.permute(0, 2, 3, 4, 1)[~active] == 0).all()
    # running statistics follow nn.BatchNorm's rule with momentum 0.1 and the unbiased variance
    assert torch.allclose(bn.running_mean, 0.1 * vals.mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * vals.var(0, unbiased=True), atol=1e-5)


def test_active_mask_from_input_definition():
    x = torch.full((1, 4, 2, 2, 2), -3.0)
    x[:, 1:] = -1.0
    x[0, 0, 0, 0, 0] = 0.5  # near a surface
    x[0, 0, 1, 0, 0] = 3.0  # |channel 0| = 3: free (inside, truncated) -> inactive unless coloured
    x[0, 2, 1, 1, 1] = 0.2  # coloured voxel
    m = active_mask_from_input(x)[0, 0]
    expect = torch.zeros(2, 2, 2, dtype=torch.bool)
    expect[0, 0, 0] = True
    expect[1, 1, 1] = True
    assert torch.equal(m, expect)


def _sparse_block(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((1, 4, *shape), -3.0)
    x[:, 1:] = -1.0
    band = torch.rand(shape, generator=g) < 0.3
    x[0, 0][band] = torch.rand(int(band.sum()), generator=g) * 4 - 2
    x[0, 1:, band] = torch.rand(3, int(band.sum()), generator=g) * 2 - 1
    return x, band


@pytest.mark.parametrize("train", [False, True])
def test_sparseconv_outputs_at_active_sites_ignore_inactive_inputs(train):
    torch.manual_seed(3)
    model = SparseConvUNet(num_classes=30, in_channels=4).train(train)
    x, band = _sparse_block((19, 23, 17), 4)
    mask = active_mask_from_input(x)
    assert torch.equal(mask[0, 0], band)
    y1 = model(x, mask)
    x2 = x.clone()
    x2[:, :, ~band] = torch.randn(4, int((~band).sum())) * 5
    y2 = model(x2, mask)
    assert torch.allclose(y1[:, :, band], y2[:, :, band], atol=1e-5)
    # derived mask: inactive voxels changed to another inactive value (channel 0 = +3, colours stay -1)
    x3 = x.clone()
    x3[:, 0, ~band] = 3.0
    y3 = model(x3)
    assert torch.allclose(y1[:, :, band], y3[:, :, band], atol=1e-5)
    # inactive voxels are void with a large margin
    assert (y1[:, 0, ~band] == 20.0).all() and (y1[:, 1:, ~band] == 0.0).all()


def test_sparseconv_forward_backward_odd_size():
    torch.manual_seed(5)
    model = SparseConvUNet(num_classes=30, in_channels=4)
    x, band = _sparse_block((19, 23, 17), 6)
    y = model(x)
    assert y.shape == (1, 30, 19, 23, 17)
    target = torch.randint(0, 30, (1, 19, 23, 17))
    loss = torch.nn.functional.cross_entropy(y, target)
    loss.backward()
    assert model.stem.weight.grad is not None and model.stem.weight.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0


def test_sparseconv_receptive_field_is_submanifold():
    # The defining property of a submanifold conv: an isolated active voxel sees only its own input (centre tap)
    # and nothing is written at its inactive neighbours (no dilation of the active set).
    conv = SubmanifoldConv3d(4, 3, 3)
    x = torch.randn(1, 4, 5, 5, 5)
    mask = torch.zeros(1, 1, 5, 5, 5)
    mask[0, 0, 2, 2, 2] = 1
    out = conv(x, mask)
    centre = conv.weight[:, :, 1, 1, 1] @ x[0, :, 2, 2, 2]
    assert torch.allclose(out[0, :, 2, 2, 2], centre, atol=1e-6)
    out[0, :, 2, 2, 2] = 0.0
    assert (out == 0).all()


def test_registry_builds_the_baselines_from_their_tomls():
    from panorooms3d.nn.registry import build_model, get_spec

    for name, cls, paper, tol in (("vtunet", VTUNet, 20.89, 0.02), ("sparseconv", SparseConvUNet, 0.64, 0.05)):
        with torch.device("meta"):
            model = build_model(name)
        assert isinstance(model, cls)
        assert get_spec(name).paper_params == paper
        assert abs(n_params(model) / 1e6 - paper) / paper < tol


# ---------------------------------------------------------------------------------------------- conv3d on the CPU


@pytest.mark.parametrize("cin,cout,size,kernel,stride,padding,bias", [
    (4, 8, (1, 12, 10, 9), 3, 1, 1, False),    # batch 1, few channels: torch itself would take im2col here
    (6, 5, (2, 8, 8, 8), 3, 1, 1, True),
    (5, 7, (1, 10, 8, 6), 2, 2, 0, False),     # SparseConv's stride-2 down convolution
    (3, 4, (1, 9, 7, 8), (3, 1, 3), (1, 2, 1), (1, 0, 2), True),
])
def test_conv3d_equals_torch_conv3d_values_and_gradients(cin, cout, size, kernel, stride, padding, bias):
    from panorooms3d.nn.layers import conv3d

    g = torch.Generator().manual_seed(0)
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    x = torch.randn(size[0], cin, *size[1:], generator=g, requires_grad=True)
    w = torch.randn(cout, cin, *k, generator=g, requires_grad=True)
    b = torch.randn(cout, generator=g, requires_grad=True) if bias else None
    ref = torch.nn.functional.conv3d(x, w, b, stride=stride, padding=padding)
    out = conv3d(x, w, b, stride=stride, padding=padding)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    up = torch.randn(ref.shape, generator=g)
    grads_ref = torch.autograd.grad((ref * up).sum(), [x, w] + ([b] if bias else []))
    grads = torch.autograd.grad((out * up).sum(), [x, w] + ([b] if bias else []))
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size,kernel,padding", [
    ((2, 2, 2), 3, 1),   # SparseConv's deepest level on 64^3 blocks (3^3 submanifold convolution, 60 channels)
    ((2, 4, 5), 3, 1),
    ((1, 1, 6), 2, 1),
    ((3, 6, 4), 5, 2),
])
def test_conv3d_weight_gradient_under_cpu_bf16_autocast_is_right_where_the_kernel_exceeds_the_input(
        size, kernel, padding):
    # oneDNN's bf16 weight gradient for these shapes was wrong on an AMD EPYC with AVX512-BF16 (off by about its
    # own size, now and then 1e38): the truth here is float64, to bf16's precision of the inputs
    from panorooms3d.nn.layers import conv3d

    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # the wrong gradients change from call to call: one draw may look right by chance
        x = torch.randn(1, 32, *size, generator=g)
        w = (torch.randn(48, 32, kernel, kernel, kernel, generator=g) * 0.05).requires_grad_()
        up = torch.randn(1, 48, *(s + 2 * padding - kernel + 1 for s in size), generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv3d(x, w, padding=padding)
        (grad,) = torch.autograd.grad((out.float() * up).sum(), [w])
        w64 = w.detach().double().requires_grad_()
        (ref,) = torch.autograd.grad((torch.nn.functional.conv3d(x.double(), w64, padding=padding) * up.double()).sum(),
                                     [w64])
        assert torch.isfinite(grad).all()
        assert (grad.double() - ref).abs().max() <= 0.02 * ref.abs().max()


def test_conv3d_runs_onednn_on_the_cpu_and_torch_under_autocast():
    from torch.profiler import ProfilerActivity, profile

    from panorooms3d.nn.layers import Conv3d

    conv = Conv3d(4, 8, kernel_size=3, padding=1, bias=False)
    x = torch.randn(1, 4, 16, 16, 16)

    def ops(fn) -> set[str]:
        with profile(activities=[ProfilerActivity.CPU]) as p:
            fn()
        return {e.key for e in p.key_averages()}

    # batch 1, 4 channels: torch's own choice for nn.Conv3d would be its im2col kernel
    assert "aten::slow_conv3d_forward" in ops(lambda: torch.nn.functional.conv3d(x, conv.weight, padding=1))
    assert "aten::mkldnn_convolution" in ops(lambda: conv(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast F.conv3d, whose inputs autocast casts
        assert conv(x).dtype == torch.bfloat16
    assert set(conv.state_dict()) == {"weight"}  # nn.Conv3d's names: checkpoints load as before
    with pytest.raises(ValueError, match="dilation"):
        Conv3d(4, 8, kernel_size=3, dilation=2)
