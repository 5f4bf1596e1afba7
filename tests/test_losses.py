"""Losses of panoramic distillation against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from panorooms3d.nn.losses import (
    distillation_loss,
    distillation_objective,
    pseudo_label_loss,
    standardise_logits,
    voxel_cross_entropy,
)


def _kl_by_hand(zs, zt, tau):
    """KL(p_t || p_s) of two logit vectors with p = softmax(z / tau), in float64 numpy."""
    ps = np.exp(np.asarray(zs, float) / tau)
    ps /= ps.sum()
    pt = np.exp(np.asarray(zt, float) / tau)
    pt /= pt.sum()
    return float((pt * np.log(pt / ps)).sum())


def test_two_classes_one_pixel_by_hand():
    # student (1, -1), teacher (3, 0), tau 2: p_s = softmax(0.5, -0.5), p_t = softmax(1.5, 0)
    s = torch.tensor([1.0, -1.0], dtype=torch.float64).reshape(2, 1, 1)
    t = torch.tensor([3.0, 0.0], dtype=torch.float64).reshape(2, 1, 1)
    ps1 = 1 / (1 + math.exp(-1.0))  # softmax over (0.5, -0.5)
    pt1 = 1 / (1 + math.exp(-1.5))
    kl = pt1 * math.log(pt1 / ps1) + (1 - pt1) * math.log((1 - pt1) / (1 - ps1))
    got = distillation_loss(s, t, torch.ones(1, 1, dtype=torch.bool), tau=2.0)
    assert got.item() == pytest.approx(4.0 * kl, rel=1e-12)
    # by hand: p_s = (0.731059, 0.268941), p_t = (0.817574, 0.182426),
    # KL = 0.817574 ln(0.817574/0.731059) + 0.182426 ln(0.182426/0.268941) = 0.0206356; x tau^2 = 4
    assert got.item() == pytest.approx(0.0825426, abs=1e-6)


def test_equal_distributions_give_zero_and_tau_squared_scaling():
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.normal(size=(5, 3, 4)))
    assert distillation_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-12)
    # tau scaling: loss(tau) = tau^2 * KL at tau, computed by hand per pixel
    s = torch.tensor(rng.normal(size=(3, 2, 2)) * 10)
    t = torch.tensor(rng.normal(size=(3, 2, 2)) * 10)
    for tau in (1.0, 4.0, 20.0):
        want = (
            np.mean([_kl_by_hand(s[:, i, j].numpy(), t[:, i, j].numpy(), tau) for i in range(2) for j in range(2)])
            * tau**2
        )
        assert distillation_loss(s, t, tau=tau).item() == pytest.approx(want, rel=1e-9)
    # the argument is not symmetric: KL(teacher || student), not KL(student || teacher)
    a = distillation_loss(s, t, tau=4.0).item()
    b = distillation_loss(t, s, tau=4.0).item()
    assert a != pytest.approx(b, rel=1e-3)


def test_mask_selects_pixels_and_pools_over_batch():
    rng = np.random.default_rng(1)
    s = torch.tensor(rng.normal(size=(2, 4, 3, 3)) * 5)
    t = torch.tensor(rng.normal(size=(2, 4, 3, 3)) * 5)
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = True
    mask[1, 2, 1] = True
    mask[1, 1, 2] = True
    tau = 3.0
    kls = [_kl_by_hand(s[b, :, i, j].numpy(), t[b, :, i, j].numpy(), tau) for b, i, j in mask.nonzero().tolist()]
    want = tau**2 * sum(kls) / 3  # pooled mean over the 3 masked pixels, not a mean of per-image means
    assert distillation_loss(s, t, mask, tau=tau).item() == pytest.approx(want, rel=1e-9)
    # unmasked pixels are never read: garbage there changes nothing
    s2 = s.clone()
    s2[0, :, 2, 2] = float("nan")
    t2 = t.clone()
    t2[1, :, 0, 0] = float("inf")
    assert distillation_loss(s2, t2, mask, tau=tau).item() == pytest.approx(want, rel=1e-9)
    # an [H, W] mask broadcasts over the batch
    m2 = torch.zeros(3, 3, dtype=torch.bool)
    m2[1, 1] = True
    want2 = tau**2 * np.mean([_kl_by_hand(s[b, :, 1, 1].numpy(), t[b, :, 1, 1].numpy(), tau) for b in range(2)])
    assert distillation_loss(s, t, m2, tau=tau).item() == pytest.approx(want2, rel=1e-9)


def test_empty_mask_is_zero_without_nan_and_backward_works():
    s = torch.randn(4, 3, 5, requires_grad=True)
    t = torch.randn(4, 3, 5)
    with torch.no_grad():
        s[:, 0, 0] = float("nan")  # garbage where nothing is hit
    loss = distillation_loss(s, t, torch.zeros(3, 5, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None and torch.count_nonzero(s.grad).item() == 0


def test_gradient_reaches_student_only_and_matches_closed_form():
    # d/dz_s [tau^2 KL(p_t || softmax(z_s/tau))] = tau * (p_s - p_t) per masked pixel, / n_pixels
    s = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64).reshape(2, 1, 2).requires_grad_()
    t = torch.tensor([[1.0, 1.0], [-1.0, 3.0]], dtype=torch.float64).reshape(2, 1, 2).requires_grad_()
    tau = 5.0
    distillation_loss(s, t, tau=tau).backward()
    ps = torch.softmax(s.detach() / tau, 0)
    pt = torch.softmax(t.detach() / tau, 0)
    assert torch.allclose(s.grad, tau * (ps - pt) / 2, atol=1e-12)
    assert t.grad is None


def test_voxel_cross_entropy_by_hand_and_ignore():
    logits = torch.zeros(1, 3, 2, 1, 1, dtype=torch.float64)
    logits[0, :, 0, 0, 0] = torch.tensor([2.0, 0.0, 0.0])
    logits[0, :, 1, 0, 0] = torch.tensor([0.0, 1.0, 0.0])
    target = torch.tensor([0, 2]).reshape(1, 2, 1, 1)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    ce1 = -math.log(1 / (1 + math.e + 1))
    assert voxel_cross_entropy(logits, target).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-12)
    assert voxel_cross_entropy(logits, target, ignore_index=2).item() == pytest.approx(ce0, rel=1e-12)
    # all ignored: 0, not NaN, and backward works
    lg = logits.clone().requires_grad_()
    out = voxel_cross_entropy(lg, torch.full((1, 2, 1, 1), 255), ignore_index=255)
    assert out.item() == 0.0
    out.backward()
    assert torch.count_nonzero(lg.grad).item() == 0


@pytest.mark.parametrize("ignore_index", [None, 3])
def test_voxel_cross_entropy_reads_channels_last_logits_as_the_same_sum(ignore_index):
    # The 3D Segmenter returns channels-last logits (stride 1 along K); the loss and its gradient must not depend
    # on the layout, with and without class weights and ignored voxels (cropped views included).
    g = torch.Generator().manual_seed(4)
    base = torch.randn(2, 6, 4, 7, 5, generator=g, dtype=torch.float64)  # B, X (one to crop), Y, Z, K
    target = torch.randint(0, 5, (2, 5, 4, 7), generator=g)
    weight = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    for w in (None, weight):
        last = base.clone().requires_grad_()
        view = last.permute(0, 4, 1, 2, 3)[:, :, :5]  # B, K, X, Y, Z, stride 1 along K, cropped in X
        first = view.detach().contiguous().requires_grad_()
        assert view.stride(1) == 1 and first.stride(1) != 1
        a = voxel_cross_entropy(view, target, ignore_index=ignore_index, weight=w)
        b = voxel_cross_entropy(first, target, ignore_index=ignore_index, weight=w)
        assert a.item() == pytest.approx(b.item(), rel=1e-12)
        a.backward()
        b.backward()
        torch.testing.assert_close(last.grad.permute(0, 4, 1, 2, 3)[:, :, :5], first.grad, rtol=0, atol=1e-14)
        assert torch.count_nonzero(last.grad[:, 5:]).item() == 0


def test_objective_is_sum_of_parts():
    rng = np.random.default_rng(3)
    vl = torch.tensor(rng.normal(size=(1, 4, 3, 3, 2)), requires_grad=True)
    vt = torch.tensor(rng.integers(0, 4, size=(1, 3, 3, 2)))
    ps = torch.tensor(rng.normal(size=(4, 2, 3)), requires_grad=True)
    pt = torch.tensor(rng.normal(size=(4, 2, 3)))
    mask = torch.tensor([[True, False, True], [True, True, False]])
    total, parts = distillation_objective(vl, vt, ps, pt, mask, tau=20.0)
    ce = voxel_cross_entropy(vl, vt).item()
    dist = distillation_loss(ps, pt, mask, tau=20.0).item()
    assert parts["ce"].item() == pytest.approx(ce) and parts["dist"].item() == pytest.approx(dist)
    assert total.item() == pytest.approx(ce + dist, rel=1e-12)
    total.backward()
    assert vl.grad.abs().sum() > 0 and ps.grad.abs().sum() > 0
    assert torch.count_nonzero(ps.grad[:, 0, 1]).item() == 0  # an unmasked pixel gets no gradient


def test_pseudo_labels_by_hand_with_threshold_weights_and_mask():
    """The teacher's argmax as labels: -log softmax(S_p)[argmax T_p], weighted, over the pixels kept."""
    # 3 classes, 1 x 3 pixels. Teacher: pixel 0 sure of class 2, pixel 1 unsure (class 0 barely), pixel 2 sure of 1.
    t = torch.tensor([[[0.0, 0.1, -5.0]], [[0.0, 0.0, 5.0]], [[6.0, 0.0, 0.0]]], dtype=torch.float64)
    s = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 2.0, 1.0]], [[0.0, 0.0, -1.0]]], dtype=torch.float64)

    def nll(pixel: int, label: int) -> float:
        z = s[:, 0, pixel].numpy()
        return float(-(z[label] - np.log(np.exp(z).sum())))

    conf = torch.softmax(t[:, 0, 1], 0).max().item()  # pixel 1's confidence, about 0.41
    assert 0.3 < conf < 0.5
    every = pseudo_label_loss(s, t)
    assert every.item() == pytest.approx((nll(0, 2) + nll(1, 0) + nll(2, 1)) / 3, rel=1e-12)
    sure = pseudo_label_loss(s, t, threshold=0.9)  # pixel 1 drops out
    assert sure.item() == pytest.approx((nll(0, 2) + nll(2, 1)) / 2, rel=1e-12)
    w = torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64)  # class weights, as the voxel CE's
    weighted = pseudo_label_loss(s, t, weight=w, threshold=0.9)
    assert weighted.item() == pytest.approx((3 * nll(0, 2) + nll(2, 1)) / 4, rel=1e-12)
    masked = pseudo_label_loss(s, t, torch.tensor([[False, True, True]]))  # pixel 0 not hit
    assert masked.item() == pytest.approx((nll(1, 0) + nll(2, 1)) / 2, rel=1e-12)
    # the same as a batch of one
    assert pseudo_label_loss(s[None], t[None]).item() == pytest.approx(every.item(), rel=1e-12)
    # only the pseudo-labels of the classes asked for: pixel 0 (the teacher says 2) drops out
    some = pseudo_label_loss(s, t, classes=torch.tensor([True, True, False]))
    assert some.item() == pytest.approx((nll(1, 0) + nll(2, 1)) / 2, rel=1e-12)


def test_pseudo_labels_with_nothing_kept_are_zero_and_bad_thresholds_fail():
    s = torch.randn(4, 3, 5, requires_grad=True)
    t = torch.zeros(4, 3, 5)  # a uniform teacher: confidence 0.25 everywhere
    loss = pseudo_label_loss(s, t, threshold=0.5)
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None and torch.count_nonzero(s.grad).item() == 0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            pseudo_label_loss(s, t, threshold=bad)
    with pytest.raises(ValueError, match="differ"):
        pseudo_label_loss(s, t[:3])


def test_soft_dice_loss_by_hand() -> None:
    import torch.nn.functional as F

    from panorooms3d.nn.losses import soft_dice_loss

    # 4 voxels, 3 classes, class 2 absent from the target; logits = log p so that softmax gives p exactly.
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    logits = torch.log(p).T[None]  # (1, 3, 4)
    target = torch.tensor([[0, 0, 1, 1]])
    # class 0: 2 * (0.5 + 1) / (1.75 + 2) = 0.8; class 1: 2 * (1 + 0.25) / (1.75 + 2) = 2/3; class 2 absent
    assert float(soft_dice_loss(logits, target, eps=0.0)) == pytest.approx(1 - (0.8 + 2 / 3) / 2, abs=1e-6)
    # with eps = 1 on both sides of each ratio
    assert float(soft_dice_loss(logits, target)) == pytest.approx(1 - (4 / 4.75 + 3.5 / 4.75) / 2, abs=1e-6)
    # a confident right prediction scores 0, a confident wrong one about 1, on 3D blocks too
    y = torch.randint(0, 5, (2, 3, 4, 5), generator=torch.Generator().manual_seed(0))
    right = F.one_hot(y, 5).movedim(-1, 1).float() * 50
    assert float(soft_dice_loss(right, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice_loss(right.roll(1, dims=1), y)) > 0.95
    # it has a gradient, and a malformed pair is refused
    z = torch.zeros(1, 5, 3, 4, 5, requires_grad=True)
    soft_dice_loss(z, y[:1]).backward()
    assert z.grad is not None and bool(z.grad.abs().sum() > 0)
    with pytest.raises(ValueError, match=r"logits must be \[B, K, ...\]"):
        soft_dice_loss(torch.zeros(1, 5, 3, 4), y[:1])


def test_standardised_logits_by_hand_and_kd_ignores_the_students_scale() -> None:
    # (1, 2, 3): mean 2, population variance 2/3 -> (-1, 0, 1) / sqrt(2/3)
    z = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).reshape(3, 1, 1)
    want = np.array([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3)
    assert np.allclose(standardise_logits(z, eps=0.0).flatten().numpy(), want, atol=1e-12)
    # per pixel, over the class axis (third from the end), with a batch axis too
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64)
    got = standardise_logits(s, eps=0.0)
    assert torch.allclose(got.mean(1), torch.zeros(2, 3, 4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(got.pow(2).mean(1), torch.ones(2, 3, 4, dtype=torch.float64), atol=1e-12)
    # the KD on standardised logits: a student 4x as spread and shifted gives the same term, the raw KD does not
    t = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 3, 4, generator=g) > 0.3
    kd = [distillation_loss(standardise_logits(x), standardise_logits(t), mask, tau=2.0) for x in (s, 4 * s + 7)]
    assert float(kd[0]) == pytest.approx(float(kd[1]), rel=1e-5)  # equal but for eps
    # standardise=True z-scores the counted pixels alone: the same term, and pixels outside the mask are never read
    inside = distillation_loss(s, t, mask, tau=2.0, standardise=True)
    assert float(inside) == pytest.approx(float(kd[0]), rel=1e-12)
    s_bad = s.masked_fill(~mask[:, None], float("nan"))
    assert float(distillation_loss(s_bad, t, mask, tau=2.0, standardise=True)) == pytest.approx(float(inside), rel=1e-12)
    raw = [distillation_loss(x, t, mask, tau=2.0) for x in (s, 4 * s + 7)]
    assert abs(float(raw[0]) - float(raw[1])) > 1e-2
    # a pixel whose classes all have one logit becomes zeros, and its gradient stays finite
    flat = torch.full((5, 1, 1), 0.3, dtype=torch.float64, requires_grad=True)
    out = standardise_logits(flat)
    assert torch.equal(out.detach(), torch.zeros_like(out))
    distillation_loss(out, standardise_logits(t[0, :, :1, :1]), None, tau=2.0).backward()
    assert torch.isfinite(flat.grad).all()
    with pytest.raises(ValueError, match="logits must be"):
        standardise_logits(torch.zeros(5))
