"""The 3D Segmenter against the paper's parameter counts, the Swin definitions and the official forward pass."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from panorooms3d.nn.losses import voxel_cross_entropy
from panorooms3d.nn.official import (
    build_from_official,
    load_official_segmenter3d,
    merge_slot_permutation,
    official_config,
)
from panorooms3d.nn.segmenter3d import (
    MASK_VALUE,
    ConvStem3D,
    Segmenter3D,
    WindowAttention3D,
    effective_window,
    relative_position_index,
    shifted_window_mask,
    trilinear_upsample,
    trilinear_upsample_last,
    window_partition,
    window_reverse,
)

torch.set_num_threads(2)

# (D, depths, heads) and the official code's exact counts for K = 30 (paper.md).
VARIANTS = {
    "t": (48, [2, 2], [3, 3], "0.375"),
    "b": (48, [2, 4], [3, 3], "0.619"),
    "m": (64, [3, 6], [4, 4], "1.5495"),
    "l": (96, [4, 8], [6, 6], "4.4305"),
}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_counts_round_to_the_official_exact_counts(variant):
    d, depths, heads, paper = VARIANTS[variant]
    m = Segmenter3D(num_classes=30, in_channels=4, embed_dim=d, depths=depths, num_heads=heads)
    decimals = len(paper.split(".")[1])
    assert f"{n_params(m) / 1e6:.{decimals}f}" == paper
    assert abs(n_params(m) / 1e6 - float(paper)) / float(paper) < 0.01


def test_parameter_count_formula_tiny():
    # Closed form: patch embed + blocks (12C^2 + 13C + 15^3 h) + merge (8C*2C + 16C) + 2 final LN + head + skip.
    d, k = 48, 30
    block = lambda c, h: 12 * c * c + 13 * c + 15**3 * h  # noqa: E731
    expected = (4 * 64 * d + d) + 2 * block(d, 3) + (16 * d * d + 16 * d) + 2 * block(2 * d, 3) \
        + 2 * (2 * 2 * d) + (2 * d * k + k) + ((k + 4) * k + k)
    assert n_params(Segmenter3D(embed_dim=d, depths=[2, 2], num_heads=[3, 3])) == expected


def test_no_skip_variant_drops_the_skip_linear_and_is_upsampled_head():
    torch.manual_seed(0)
    a = Segmenter3D(embed_dim=8, depths=[1, 1], num_heads=[2, 2], skip=True)
    b = Segmenter3D(embed_dim=8, depths=[1, 1], num_heads=[2, 2], skip=False).eval()
    assert n_params(a) - n_params(b) == (30 + 4) * 30 + 30
    assert b.skip is None
    x = torch.randn(1, 4, 20, 16, 12)
    with torch.no_grad():
        y = b(x)
        xp = F.pad(x, (0, 4, 0, 0, 0, 4))  # to multiples of 8
        ref = F.interpolate(b.head(b.encode(xp)).permute(0, 4, 1, 2, 3), size=(24, 16, 16), mode="trilinear")
    assert y.shape == (1, 30, 20, 16, 12)
    torch.testing.assert_close(y, ref[:, :, :20, :16, :12])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("src,size", [((4, 4, 4), (16, 16, 16)), ((5, 3, 7), (20, 12, 14)), ((6, 2, 3), (9, 7, 3)),
                                       ((8, 6, 4), (5, 3, 4))])
def test_trilinear_upsample_equals_torch_trilinear(src, size, channels_last):
    # The separable matmul forms, channel-first (B, C, X, Y, Z) and channels-last (B, X, Y, Z, C), must give
    # F.interpolate's values and input gradients (up-, odd and down-sampling), contiguous in their own layout.
    torch.manual_seed(0)
    x = torch.randn(2, 3, *src, dtype=torch.float64, requires_grad=True)
    ref = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
    if channels_last:
        out = trilinear_upsample_last(x.permute(0, 2, 3, 4, 1), size)
        assert out.shape == (2, *size, 3) and out.is_contiguous()
        got = out.permute(0, 4, 1, 2, 3)
    else:
        got = trilinear_upsample(x, size)
        assert got.shape == ref.shape and got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    (gx_ref,) = torch.autograd.grad(ref, x, g)
    (gx,) = torch.autograd.grad(got, x, g)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("skip", [True, False])
def test_channels_last_logits_are_the_channel_first_logits(skip, monkeypatch):
    # Segmenter3D.channels_last_logits changes the logits' memory layout, not the function: the same values and the
    # same gradients of the input and of every parameter as the former channel-first upsampling (odd, cropped size).
    torch.manual_seed(0)
    m = Segmenter3D(embed_dim=16, depths=[2, 2], num_heads=[2, 2], skip=skip).double().eval()  # no drop path
    x = torch.randn(1, 4, 37, 21, 29, dtype=torch.float64)
    target = torch.randint(0, 30, (1, 37, 21, 29))
    weight = torch.rand(30, dtype=torch.float64) + 0.5
    results = {}
    for last in (False, True):
        monkeypatch.setattr(Segmenter3D, "channels_last_logits", last)
        m.zero_grad()
        xi = x.clone().requires_grad_()
        logits = m(xi)
        assert logits.shape == (1, 30, 37, 21, 29) and (logits.stride(1) == 1) == last
        loss = voxel_cross_entropy(logits, target, weight=weight)
        loss.backward()
        results[last] = (logits.detach(), loss.item(), xi.grad, {n: p.grad.clone() for n, p in m.named_parameters()})
    (y0, l0, gx0, gp0), (y1, l1, gx1, gp1) = results[False], results[True]
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-12)
    assert l1 == pytest.approx(l0, rel=1e-12)
    torch.testing.assert_close(gx1, gx0, rtol=0, atol=1e-12)
    for name in gp0:
        torch.testing.assert_close(gp1[name], gp0[name], rtol=1e-9, atol=1e-12, msg=name)


def test_bf16_training_softmax_in_bf16_is_close_to_float32(monkeypatch):
    # Under bf16 autocast CPU training adds the bias and the mask and takes the attention softmax in bf16
    # (WindowAttention3D.softmax_in_logits_dtype). Outputs and gradients (input, bias tables) must stay as close to
    # float32 as the former float32 softmax's: no more than 1.5x its error, and a few per cent at most.
    torch.manual_seed(0)
    m = Segmenter3D(embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=4).eval()  # written out: grads on
    x = torch.randn(1, 4, 40, 32, 24)
    x[:, 0] = torch.where(torch.rand(1, 40, 32, 24) < 0.6, -3.0, x[:, 0])
    w = torch.randn(1, 30, 40, 32, 24)

    def run(bf16: bool, in_dtype: bool):
        monkeypatch.setattr(WindowAttention3D, "softmax_in_logits_dtype", in_dtype)
        m.zero_grad()
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = m(xi)
        (y.float() * w).sum().backward()
        tables = torch.cat([p.grad.flatten() for n, p in m.named_parameters()
                            if n.endswith("relative_position_bias_table")])
        return y.detach().float(), xi.grad.clone(), tables

    ref = run(False, True)
    assert ref[2].abs().max() > 0
    errors = {}
    for in_dtype in (False, True):
        got = run(True, in_dtype)
        errors[in_dtype] = [float((g - r).norm() / r.norm()) for g, r in zip(got, ref)]
    for new, old in zip(errors[True], errors[False]):
        assert new < 0.05 and new < 1.5 * old + 1e-3, errors


def test_forward_backward_odd_size_3dseg_t():
    torch.manual_seed(0)
    m = Segmenter3D(embed_dim=48, depths=[2, 2], num_heads=[3, 3])
    x = torch.randn(1, 4, 37, 45, 29, requires_grad=True)
    y = m(x)
    assert y.shape == (1, 30, 37, 45, 29)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_conv_stem_replaces_only_the_patch_embedding():
    # stem="conv": log2(P) stride-2 3x3x3 convolutions (in -> D/2 -> D for P = 4), the rest of the model unchanged.
    a = Segmenter3D(embed_dim=48, depths=[2, 2], num_heads=[3, 3])
    b = Segmenter3D(embed_dim=48, depths=[2, 2], num_heads=[3, 3], stem="conv")
    stem = (27 * 4 * 24 + 24) + (24 + 24) + (27 * 24 * 48 + 48)  # conv, LayerNorm, conv
    assert n_params(b) - n_params(a) == stem - (64 * 4 * 48 + 48)
    assert isinstance(b.patch_embed, ConvStem3D) and len(b.patch_embed.convs) == 2
    x = torch.randn(2, 4, 16, 8, 24)
    t = b.patch_embed(x)
    assert t.shape == (2, 48, 4, 2, 6)
    # a token sees its 4^3 patch and a 3-voxel margin around it: voxels farther away do not move it
    x2 = x.clone()
    x2[:, :, 12:] += 1.0  # token i along x sees voxels 4i - 3 .. 4i + 3: tokens 0-2 end at x = 11
    with torch.no_grad():
        t2 = b.patch_embed(x2)
        torch.testing.assert_close(t2[:, :, :3], t[:, :, :3])
        assert not torch.allclose(t2[:, :, 3], t[:, :, 3])
    y = b(torch.randn(1, 4, 19, 10, 7))
    assert y.shape == (1, 30, 19, 10, 7)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in b.parameters())
    assert Segmenter3D(embed_dim=8, depths=[1, 1], num_heads=[2, 2], patch_size=2, stem="conv")(
        torch.randn(1, 4, 5, 6, 7)).shape == (1, 30, 5, 6, 7)
    with pytest.raises(ValueError, match="power of 2"):
        Segmenter3D(embed_dim=8, depths=[1, 1], num_heads=[2, 2], patch_size=3, stem="conv")
    with pytest.raises(ValueError, match="stem must be"):
        Segmenter3D(embed_dim=8, depths=[1, 1], num_heads=[2, 2], stem="convolutional")


def test_padding_does_not_leak_across_the_crop():
    # Output at voxel v only depends on the padded input; values beyond the input never appear in the output shape.
    m = Segmenter3D(embed_dim=8, depths=[1, 1], num_heads=[2, 2]).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 4, 9, 3, 17)).shape == (2, 30, 9, 3, 17)
        assert m(torch.randn(1, 4, 1, 1, 1)).shape == (1, 30, 1, 1, 1)
    with pytest.raises(ValueError, match="expected input"):
        m(torch.randn(1, 3, 8, 8, 8))


def test_bf16_autocast_forward_is_close_to_fp32():
    torch.manual_seed(0)
    m = Segmenter3D(embed_dim=16, depths=[2, 2], num_heads=[2, 2]).eval()
    x = torch.randn(1, 4, 40, 24, 32)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
    assert y.dtype == torch.bfloat16 and y.shape == ref.shape
    assert torch.isfinite(y).all()
    rel = (y.float() - ref).norm() / ref.norm()
    assert rel < 0.05


# ---------------------------------------------------------------- window machinery vs definitions


def test_relative_position_index_properties():
    w = 8
    idx = relative_position_index((w, w, w))
    n = w**3
    assert idx.shape == (n, n) and idx.dtype == torch.int64
    centre = (w - 1) * (2 * w - 1) ** 2 + (w - 1) * (2 * w - 1) + (w - 1)
    assert torch.all(idx.diagonal() == centre)
    # antisymmetric about the centre: offset(i, j) = -offset(j, i)
    assert torch.equal(idx + idx.T, torch.full_like(idx, 2 * centre))
    # every relative offset in [-(w-1), w-1]^3 occurs, and nothing else
    assert idx.min() == 0 and idx.max() == (2 * w - 1) ** 3 - 1
    assert torch.unique(idx).numel() == (2 * w - 1) ** 3
    # the entry depends only on the coordinate difference (check against the definition)
    coords = torch.tensor(list(itertools.product(range(w), repeat=3)))
    g = torch.Generator().manual_seed(0)
    for i, j in torch.randint(0, n, (200, 2), generator=g).tolist():
        d = coords[i] - coords[j] + (w - 1)
        assert idx[i, j] == d[0] * (2 * w - 1) ** 2 + d[1] * (2 * w - 1) + d[2]


@pytest.mark.parametrize(
    "grid,window,shift", [((16, 16, 16), (8, 8, 8), (4, 4, 4)), ((12, 8, 6), (4, 4, 3), (2, 2, 0))]
)
def test_shifted_window_mask_matches_brute_force_geometry(grid, window, shift):
    mask = shifted_window_mask(grid, window, shift)
    # Original coordinates of the tokens in each shifted window: rolled position q held original (q + s) mod L.
    coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij"), dim=-1)
    orig = torch.stack([(coords[..., a] + shift[a]) % grid[a] for a in range(3)], dim=-1)
    win = window_partition(orig[None].float(), window)[0].long()  # nW, N, 3
    assert mask.shape == (win.shape[0], win.shape[1], win.shape[1])
    for w in range(win.shape[0]):
        c = win[w]
        dist = (c[:, None, :] - c[None, :, :]).abs()
        # Two tokens may attend iff they were neighbours inside one window-sized box before the shift
        # (wrapped-around tokens are at least L - window + 1 apart along some axis).
        allowed = (dist < torch.tensor(window)).all(-1)
        assert torch.equal(mask[w] == 0, allowed), w
        assert torch.all((mask[w] == 0) | (mask[w] == MASK_VALUE))


def test_unshifted_axes_have_no_regions_and_window_shrinks():
    assert effective_window((10, 8, 3), (8, 8, 8), (4, 4, 4)) == ((8, 8, 3), (4, 0, 0))
    mask = shifted_window_mask((16, 8, 8), (8, 8, 8), (4, 0, 0))
    assert mask.shape == (2, 512, 512)
    assert torch.all(mask[0] == 0)  # the first window along x holds no wrapped tokens


def test_window_partition_roundtrip():
    x = torch.randn(2, 8, 12, 4, 5)
    w = window_partition(x, (4, 4, 2))
    assert w.shape == (2, 2 * 3 * 2, 32, 5)
    assert torch.equal(window_reverse(w, (4, 4, 2), (8, 12, 4)), x)
    # the first window is the corner box, in C order
    assert torch.equal(w[0, 0].view(4, 4, 2, 5), x[0, :4, :4, :2])


# ------------------------------------------------- official checkpoint: an independent reference forward


def official_state_dict(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the official code's key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    ln = lambda c: (1 + r(c), r(c))  # noqa: E731
    d, k, cin, p, w = cfg["embed_dim"], cfg["num_classes"], cfg["in_channels"], cfg["patch_size"], cfg["window_size"]
    sd = {"encoder.patch_embed.patch_embed.proj.weight": r(d, cin, p, p, p),
          "encoder.patch_embed.patch_embed.proj.bias": r(d)}
    n = len(cfg["depths"])
    for i, (depth, h) in enumerate(zip(cfg["depths"], cfg["num_heads"])):
        c = d * 2**i
        for j in range(depth):
            pre = f"encoder.patch_embed.layers.{i}.blocks.{j}."
            sd[pre + "norm1.weight"], sd[pre + "norm1.bias"] = ln(c)
            sd[pre + "attn.relative_position_bias_table"] = r((2 * w - 1) ** 3, h)
            sd[pre + "attn.relative_position_index"] = official_index(w)
            sd[pre + "attn.qkv.weight"], sd[pre + "attn.qkv.bias"] = r(3 * c, c), r(3 * c)
            sd[pre + "attn.proj.weight"], sd[pre + "attn.proj.bias"] = r(c, c), r(c)
            sd[pre + "norm2.weight"], sd[pre + "norm2.bias"] = ln(c)
            sd[pre + "mlp.fc1.weight"], sd[pre + "mlp.fc1.bias"] = r(4 * c, c), r(4 * c)
            sd[pre + "mlp.fc2.weight"], sd[pre + "mlp.fc2.bias"] = r(c, 4 * c), r(c)
        if i < n - 1:
            pre = f"encoder.patch_embed.layers.{i}.downsample."
            sd[pre + "norm.weight"], sd[pre + "norm.bias"] = ln(8 * c)
            sd[pre + "reduction.weight"] = r(2 * c, 8 * c)
    cf = d * 2 ** (n - 1)
    sd["encoder.patch_embed.norm.weight"], sd["encoder.patch_embed.norm.bias"] = ln(cf)
    sd["encoder.norm.weight"], sd["encoder.norm.bias"] = ln(cf)
    sd["decoder.head.weight"], sd["decoder.head.bias"] = r(k, cf), r(k)
    sd["output.weight"], sd["output.bias"] = r(k, k + cin), r(k)
    return {"module." + key: v for key, v in sd.items()}  # as saved from DataParallel


def official_index(w: int) -> torch.Tensor:
    rel = []
    pts = list(itertools.product(range(w), repeat=3))
    for a in pts:
        rel.append([(a[0] - b[0] + w - 1) * (2 * w - 1) ** 2 + (a[1] - b[1] + w - 1) * (2 * w - 1) + (a[2] - b[2] + w - 1)
                    for b in pts])
    return torch.tensor(rel)


def official_mask(dp, hp, wp, ws, ss):
    img = torch.zeros(dp, hp, wp)
    cnt = 0
    for d in (slice(-ws[0]), slice(-ws[0], -ss[0]), slice(-ss[0], None)):
        for h in (slice(-ws[1]), slice(-ws[1], -ss[1]), slice(-ss[1], None)):
            for w in (slice(-ws[2]), slice(-ws[2], -ss[2]), slice(-ss[2], None)):
                img[d, h, w] = cnt
                cnt += 1
    win = img.view(dp // ws[0], ws[0], hp // ws[1], ws[1], wp // ws[2], ws[2]).permute(0, 2, 4, 1, 3, 5)
    win = win.reshape(-1, ws[0] * ws[1] * ws[2])
    m = win[:, None, :] - win[:, :, None]
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def reference_forward(sd: dict[str, torch.Tensor], cfg: dict, im: torch.Tensor) -> torch.Tensor:
    """The official algorithm, written out step by step over official names and the official merge order."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    p, wnd, n = cfg["patch_size"], cfg["window_size"], len(cfg["depths"])
    size = im.shape[2:]
    mult = p * 2 ** (n - 1)
    im = F.pad(im, [0, (-size[2]) % mult, 0, (-size[1]) % mult, 0, (-size[0]) % mult])
    x = F.conv3d(im, sd["encoder.patch_embed.patch_embed.proj.weight"], sd["encoder.patch_embed.patch_embed.proj.bias"],
                 stride=p).permute(0, 2, 3, 4, 1)
    full_idx = official_index(wnd)
    for i, (depth, nh) in enumerate(zip(cfg["depths"], cfg["num_heads"])):
        b, dd, hh, ww, c = x.shape
        ws = [min(wnd, s) for s in (dd, hh, ww)]
        ss = [0 if s <= wnd else wnd // 2 for s in (dd, hh, ww)]
        dp, hp, wp = (math.ceil(s / q) * q for s, q in zip((dd, hh, ww), ws))
        mask = official_mask(dp, hp, wp, ws, ss)
        for j in range(depth):
            pre = f"encoder.patch_embed.layers.{i}.blocks.{j}."
            shift = ss if j % 2 == 1 else [0, 0, 0]
            shortcut = x
            t = F.layer_norm(x, (c,), sd[pre + "norm1.weight"], sd[pre + "norm1.bias"])
            t = F.pad(t, (0, 0, 0, wp - ww, 0, hp - hh, 0, dp - dd))
            if any(shift):
                t = torch.roll(t, shifts=[-s for s in shift], dims=(1, 2, 3))
            t = t.view(b, dp // ws[0], ws[0], hp // ws[1], ws[1], wp // ws[2], ws[2], c)
            t = t.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws[0] * ws[1] * ws[2], c)
            bn, nt, _ = t.shape
            qkv = (t @ sd[pre + "attn.qkv.weight"].T + sd[pre + "attn.qkv.bias"]).reshape(bn, nt, 3, nh, c // nh)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            attn = (q * (c // nh) ** -0.5) @ k.transpose(-2, -1)
            bias = sd[pre + "attn.relative_position_bias_table"][full_idx[:nt, :nt].reshape(-1)].reshape(nt, nt, -1)
            attn = attn + bias.permute(2, 0, 1)[None]
            if any(shift):
                nw = mask.shape[0]
                attn = (attn.view(bn // nw, nw, nh, nt, nt) + mask[None, :, None]).view(-1, nh, nt, nt)
            t = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bn, nt, c)
            t = t @ sd[pre + "attn.proj.weight"].T + sd[pre + "attn.proj.bias"]
            t = t.view(b, dp // ws[0], hp // ws[1], wp // ws[2], ws[0], ws[1], ws[2], c)
            t = t.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, c)
            if any(shift):
                t = torch.roll(t, shifts=list(shift), dims=(1, 2, 3))
            x = shortcut + t[:, :dd, :hh, :ww]
            t = F.layer_norm(x, (c,), sd[pre + "norm2.weight"], sd[pre + "norm2.bias"])
            t = F.gelu(t @ sd[pre + "mlp.fc1.weight"].T + sd[pre + "mlp.fc1.bias"])
            x = x + t @ sd[pre + "mlp.fc2.weight"].T + sd[pre + "mlp.fc2.bias"]
        if i < n - 1:
            pre = f"encoder.patch_embed.layers.{i}.downsample."
            parts = [x[:, a::2, e::2, f::2] for f in (0, 1) for e in (0, 1) for a in (0, 1)]  # x0 .. x7
            x = torch.cat(parts, -1)
            x = F.layer_norm(x, (8 * c,), sd[pre + "norm.weight"], sd[pre + "norm.bias"])
            x = x @ sd[pre + "reduction.weight"].T
    c = x.shape[-1]
    x = F.layer_norm(x, (c,), sd["encoder.patch_embed.norm.weight"], sd["encoder.patch_embed.norm.bias"])
    x = F.layer_norm(x, (c,), sd["encoder.norm.weight"], sd["encoder.norm.bias"])
    y = (x @ sd["decoder.head.weight"].T + sd["decoder.head.bias"]).permute(0, 4, 1, 2, 3)
    y = F.interpolate(y, size=im.shape[2:], mode="trilinear")
    y = torch.cat([y, im], 1).permute(0, 2, 3, 4, 1) @ sd["output.weight"].T + sd["output.bias"]
    return y.permute(0, 4, 1, 2, 3)[:, :, : size[0], : size[1], : size[2]]


def test_merge_slot_permutation_definition():
    perm = merge_slot_permutation()
    assert sorted(perm) == list(range(8))
    for dx, dy, dz in itertools.product((0, 1), repeat=3):
        assert perm[4 * dx + 2 * dy + dz] == dx + 2 * dy + 4 * dz


def test_official_checkpoint_gives_the_official_outputs(tmp_path):
    cfg = dict(num_classes=5, in_channels=4, embed_dim=8, depths=[2, 2], num_heads=[2, 2], patch_size=4,
               window_size=4)
    sd = official_state_dict(cfg)
    assert official_config(sd) == {**cfg, "skip": True}
    torch.save({"epoch": 3, "state_dict": sd, "optimizer": {}}, tmp_path / "ckpt.pth")
    model = Segmenter3D(**cfg).eval()
    report = load_official_segmenter3d(tmp_path / "ckpt.pth", model)
    assert report.missing == [] and report.unexpected == []
    torch.manual_seed(1)
    # 44x36x20 -> tokens 11x9x5 -> stage 1 windows 4^3 shifted by 2 with padding; stage 2 grid 6x5x3 -> z window 3.
    x = torch.randn(2, 4, 44, 36, 20)
    with torch.no_grad():
        ref = reference_forward(sd, cfg, x)
        ours = model(x)
        rebuilt = build_from_official(sd).eval()(x)
    assert ours.shape == (2, 5, 44, 36, 20)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rebuilt, ref, rtol=1e-4, atol=1e-4)


def test_cpu_training_attention_gives_the_official_outputs_and_gradients(tmp_path):
    """With gradients on the CPU attention is written out (not the fused kernel): the same function, the same gradients."""
    cfg = dict(num_classes=5, in_channels=4, embed_dim=8, depths=[2, 2], num_heads=[2, 2], patch_size=4,
               window_size=4)
    sd = official_state_dict(cfg)
    model = Segmenter3D(**cfg).eval()
    load_official_segmenter3d(sd, model)
    ref_sd = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in sd.items()}
    torch.manual_seed(2)
    # stage 1: tokens 11x9x5 in 4^3 windows shifted by 2, with padding (the mask); stage 2: 6x5x3, z window 3
    x = torch.randn(2, 4, 44, 36, 20)
    w = torch.randn(2, 5, 44, 36, 20)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = model(x_ours)
    ref = reference_forward(ref_sd, cfg, x_ref)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # the fused kernel, where no gradient is taken
        torch.testing.assert_close(model(x), ours.detach(), rtol=1e-5, atol=1e-5)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    ours_tables = [p.grad for n, p in model.named_parameters() if n.endswith("relative_position_bias_table")]
    ref_tables = [t.grad for k, t in ref_sd.items() if k.endswith("relative_position_bias_table")]
    assert len(ours_tables) == len(ref_tables) == 4
    for g_ours, g_ref in zip(ours_tables, ref_tables):
        assert g_ref.abs().max() > 0
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-4)


def test_official_checkpoint_errors_are_clear(tmp_path):
    cfg = dict(num_classes=5, in_channels=4, embed_dim=8, depths=[1, 1], num_heads=[2, 2], patch_size=4,
               window_size=4)
    sd = official_state_dict(cfg)
    with pytest.raises(ValueError, match="shape"):
        load_official_segmenter3d(sd, Segmenter3D(num_classes=7, embed_dim=8, depths=[1, 1], num_heads=[2, 2],
                                                  window_size=4))
    with pytest.raises(FileNotFoundError):
        load_official_segmenter3d(tmp_path / "missing.pth", Segmenter3D())
    del sd["module.output.weight"]
    with pytest.raises(ValueError, match="missing"):
        load_official_segmenter3d(sd, Segmenter3D(**cfg))
    report = load_official_segmenter3d(sd, Segmenter3D(**cfg), strict=False)
    assert report.missing == ["skip.weight"]
