"""Losses of the 3D Segmenter and its 2D-to-3D panoramic distillation (paper: L = L_CE + L_dist).

- :func:`voxel_cross_entropy`: the per-voxel cross-entropy of the 3D prediction, averaged over the
  voxels that are not ``ignore_index``.
- :func:`distillation_loss`: ``tau^2 * KL(teacher || student)`` between temperature-softened
  class distributions of the 2D teacher and of the student's prediction projected into the
  panorama (:func:`panorooms3d.panorama.projection.render_equirect`), averaged over the pixels
  whose ray hits a surface (``normalisation="project"``) or, as the official code does, summed
  over all pixels and divided by the number of map elements ``B*K*H*W`` (``"official"``).
- :func:`pseudo_label_loss`: beyond the paper, the teacher's argmax as hard labels of the projected
  student prediction (cross-entropy over the counted pixels whose teacher confidence reaches a threshold).
- :func:`standardise_logits`: beyond the paper, each pixel's logits z-scored over the classes (the KD of
  ``kd_loss = "soft-standardised"``: teacher and student compared without their logits' scales).
- :func:`distillation_objective`: their sum, with the parts.
- :func:`soft_dice_loss`: beyond the paper, one minus the mean soft Dice coefficient of the classes present in
  the target (block training's ``dice_weight``).

Reductions are spelled out in each docstring and docs/projection.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss", "pseudo_label_loss", "voxel_cross_entropy", "distillation_objective",
           "soft_dice_loss", "standardise_logits", "KD_NORMALISATIONS"]

#: The paper's distillation temperature.
DEFAULT_TAU = 20.0


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    tau: float = DEFAULT_TAU,
    normalisation: str = "project",
    standardise: bool = False,
) -> torch.Tensor:
    """Pixel-wise knowledge distillation: ``tau^2 * KL(p_teacher || p_student)`` summed, then normalised.

    ``normalisation`` (:data:`KD_NORMALISATIONS`) chooses the denominator of the summed KL:

    - ``"project"`` (default): the number of masked pixels (a mean over pixels of the KL summed
      over classes), as below;
    - ``"official"``: the number of elements of the student map, ``B * K * H * W`` -- the official
      ``F.kl_div(log_softmax(s / T), log_softmax(t / T), reduction="sum", log_target=True) * T**2
      / s.numel()`` (distill.py), which with ``mask=None`` sums over every pixel and divides by the
      K classes as well: K times weaker than ``"project"`` on the same maps and mask.

    With ``p = softmax(z / tau)`` over the class axis and, per pixel,
    ``KL = sum_k p_t[k] * (log p_t[k] - log p_s[k])``, the loss is
    ``tau^2 * (sum of KL over masked pixels of every image) / (number of masked pixels)``: a mean
    over pixels (pooled over the batch, not a mean of per-image means), a sum over classes.
    With an empty mask it is exactly 0 (still connected to ``student_logits`` for backward, with
    zero gradient), never NaN. The teacher gets no gradient (it is detached). Values at unmasked
    pixels are never read, so they may be anything (including inf/NaN).

    Args:
        student_logits: [K, H, W] or [B, K, H, W] float logits of the student (e.g. the projected
            3D prediction, ``ProjectionResult.values``).
        teacher_logits: same shape, logits of the 2D teacher.
        mask: [H, W] or [B, H, W] bool (broadcast over the batch if [H, W]): pixels that count,
            normally ``ProjectionResult.hit``. ``None`` = every pixel.
        tau: temperature (> 0); the paper uses 20.
        normalisation: ``"project"`` or ``"official"`` (see above).
        standardise: beyond the paper, z-score each counted pixel's logits over the classes, the student's and the
            teacher's, before the temperature (:func:`standardise_logits`; unmasked pixels are still never read).

    Returns:
        Scalar tensor (dtype of ``student_logits``).
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if normalisation not in KD_NORMALISATIONS:
        raise ValueError(f"unknown KD normalisation {normalisation!r}; use one of {KD_NORMALISATIONS}")
    s, t, (b, k, h, w) = _masked_pixels(student_logits, teacher_logits, mask)
    t = t.to(s.dtype)
    if s.shape[0] == 0:
        return s.sum() * 0.0  # an empty sum: exactly 0, on the graph, no NaN
    if standardise:
        s, t = _zscore(s, 1), _zscore(t, 1)
    log_ps = F.log_softmax(s / tau, dim=1)
    log_pt = F.log_softmax(t / tau, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(1)  # [P]
    denominator = KD_NORMALISATIONS[normalisation](b, k, h, w, kl.shape[0])
    return (tau * tau) * kl.sum() / denominator


def standardise_logits(logits: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each pixel's logits z-scored over the classes: ``(z - mean_k z) / sqrt(var_k z + eps)``.

    Beyond the paper: logit standardisation before KD (Sun et al., "Logit Standardization in Knowledge
    Distillation", CVPR 2024), so that a student whose logits spread wider or narrower than the teacher's is
    pulled toward the teacher's ranking of the classes, not toward its scale (``distillation_loss(...,
    standardise=True)`` does this to the pixels it counts). The variance is the population variance over the K
    classes; ``eps`` keeps the gradient finite where every class has the same logit (such a pixel becomes all zeros).

    Args:
        logits: [K, H, W] or [B, K, H, W] (the class axis third from the end).
        eps: added to the variance.

    Returns:
        The same shape and dtype: mean 0 and variance ``var / (var + eps)`` over the classes at each pixel.
    """
    if logits.dim() not in (3, 4):
        raise ValueError(f"logits must be [K, H, W] or [B, K, H, W], got {tuple(logits.shape)}")
    return _zscore(logits, -3, eps)


def _zscore(z: torch.Tensor, dim: int, eps: float = 1e-6) -> torch.Tensor:
    """``z`` centred and scaled to unit (population) variance along ``dim``, ``eps`` added to the variance."""
    centred = z - z.mean(dim=dim, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(dim=dim, keepdim=True) + eps)


def _masked_pixels(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor | None):
    """[P, K] rows of the student's and the (detached) teacher's logits at the P masked pixels, and (B, K, H, W).

    Logits are [K, H, W] or [B, K, H, W] of the same shape; ``mask`` [H, W] or [B, H, W] bool (broadcast over the
    batch if [H, W]) or None (every pixel).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} differ")
    if student_logits.dim() == 3:
        student_logits, teacher_logits = student_logits[None], teacher_logits[None]
        if mask is not None and mask.dim() == 2:
            mask = mask[None]
    if student_logits.dim() != 4:
        raise ValueError(f"logits must be [K, H, W] or [B, K, H, W], got {tuple(student_logits.shape)}")
    b, k, h, w = student_logits.shape
    if mask is None:
        mask = torch.ones((b, h, w), dtype=torch.bool, device=student_logits.device)
    mask = mask.to(device=student_logits.device, dtype=torch.bool).expand(b, h, w)
    student_rows = student_logits.permute(0, 2, 3, 1)[mask]
    return student_rows, teacher_logits.detach().permute(0, 2, 3, 1)[mask], (b, k, h, w)


def pseudo_label_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    threshold: float = 0.0,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hard pseudo-labels from the teacher: cross-entropy of the student against the teacher's argmax.

    Beyond the paper (its KD term is :func:`distillation_loss`). Per pixel p of the mask, with
    ``q_p = softmax(T_p)`` (the teacher at temperature 1), ``l_p = argmax_k q_p[k]`` and
    ``c_p = max_k q_p[k]``, the pixels that count are ``P = {p in mask : c_p >= threshold and l_p in classes}`` and

        ``loss = sum_{p in P} w[l_p] * (-log softmax(S_p)[l_p]) / sum_{p in P} w[l_p]``

    (``w`` = 1 without ``weight``): ``F.cross_entropy`` with ``reduction="mean"`` over those pixels,
    pooled over the batch. With no pixel left it is exactly 0 (on the graph, zero gradient), never
    NaN. The teacher gets no gradient; values outside the mask are never read.

    Args:
        student_logits: [K, H, W] or [B, K, H, W] float logits of the student (the projected 3D prediction).
        teacher_logits: same shape, logits of the 2D teacher.
        mask: [H, W] or [B, H, W] bool: pixels that may count (normally ``ProjectionResult.hit``); None = all.
        weight: optional [K] class weights (as the voxel cross-entropy's).
        threshold: the smallest teacher probability of its own argmax that counts (0 = every pixel, < 1).
        classes: optional [K] bool: the teacher's classes whose pseudo-labels count (None = every class).

    Returns:
        Scalar tensor (dtype of ``student_logits``).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"the pseudo-label threshold must be in [0, 1), got {threshold}")
    s, t, _ = _masked_pixels(student_logits, teacher_logits, mask)
    confidence, label = F.softmax(t.float(), dim=1).max(1)
    keep = confidence >= threshold
    if classes is not None:
        keep &= classes.to(device=label.device, dtype=torch.bool)[label]
    if not bool(keep.any()):
        return s.sum() * 0.0  # nothing counts: exactly 0, on the graph, no NaN
    class_weight = None if weight is None else weight.to(device=s.device, dtype=s.dtype)
    return F.cross_entropy(s[keep], label[keep], weight=class_weight)


def _per_masked_pixel(b: int, k: int, h: int, w: int, masked: int) -> int:
    return masked


def _per_map_element(b: int, k: int, h: int, w: int, masked: int) -> int:
    return b * k * h * w


#: KD normalisations: name -> denominator of the summed KL, a function of (B, K, H, W, masked pixels).
KD_NORMALISATIONS = {"project": _per_masked_pixel, "official": _per_map_element}


def voxel_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-voxel cross-entropy of a 3D prediction.

    ``CE = sum_{v not ignored} w[y_v] * (-log softmax(z_v)[y_v]) / sum_{v not ignored} w[y_v]`` over
    all voxels of all batch items (``w`` = 1 without ``weight``), i.e. ``F.cross_entropy`` with
    ``reduction="mean"``, except that when every voxel is ignored the result is exactly 0 (not NaN).

    Args:
        logits: [B, K, X, Y, Z] float logits, contiguous or channels-last.
        target: [B, X, Y, Z] long class ids in [0, K) (or ``ignore_index``).
        ignore_index: a target value that does not count (e.g. unobserved voxels); ``None`` = none.
        weight: optional [K] class weights.

    Returns:
        Scalar tensor.
    """
    if (
        logits.dim() != 5
        or target.dim() != 4
        or logits.shape[0] != target.shape[0]
        or logits.shape[2:] != target.shape[1:]
    ):
        raise ValueError(
            f"logits must be [B, K, X, Y, Z] and target [B, X, Y, Z], got {tuple(logits.shape)}, {tuple(target.shape)}"
        )
    target = target.long()
    if logits.shape[1] > 1 and logits.stride(1) == 1:
        # channels-last logits (the 3D Segmenter's): each voxel's K logits as one contiguous row, the same sum.
        # log_softmax over a contiguous last dimension is about 1.7x as fast on the CPU as over dimension 1.
        logits = logits.movedim(1, -1).reshape(-1, logits.shape[1])
        target = target.reshape(-1)
    if ignore_index is None:
        return F.cross_entropy(logits, target, weight=weight)
    valid = target != ignore_index
    total = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="sum")
    if weight is None:
        denom = valid.sum().to(total.dtype)
    else:
        denom = weight.to(total.dtype)[target[valid]].sum()
    return total / denom.clamp(min=1e-12) if bool(valid.any()) else total * 0.0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """One minus the mean soft Dice coefficient over the classes present in ``target`` (beyond the paper).

    With ``p = softmax(logits)`` over the class axis and ``t`` the one-hot target, for each class c that occurs
    in ``target``: ``dice_c = (2 * sum_v p_c(v) t_c(v) + eps) / (sum_v p_c(v) + sum_v t_c(v) + eps)``, the sums over
    every voxel (pixel) of every batch item; the loss is ``1 - mean_c dice_c``. Each present class counts the
    same however few voxels it has, as in mIoU; a class absent from the target does not count (its false
    positives still lower the Dice of the classes they take voxels from).

    Args:
        logits: [B, K, ...] logits (computed in float32).
        target: [B, ...] class ids in [0, K).
        eps: smoothing added to both sides of each ratio.

    Returns:
        Scalar tensor in [0, 1).
    """
    if logits.dim() != target.dim() + 1 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits must be [B, K, ...] and target [B, ...], got {tuple(logits.shape)}, "
                         f"{tuple(target.shape)}")
    k = logits.shape[1]
    p = torch.softmax(logits.float(), dim=1).movedim(1, -1).reshape(-1, k)  # (N, K)
    t = target.reshape(-1).long()
    counts = torch.bincount(t, minlength=k).to(p.dtype)
    inter = torch.zeros(k, dtype=p.dtype, device=p.device).index_add_(0, t, p.gather(1, t[:, None])[:, 0])
    dice = (2 * inter + eps) / (p.sum(0) + counts + eps)
    return 1 - dice[counts > 0].mean()


def distillation_objective(
    voxel_logits: torch.Tensor,
    voxel_target: torch.Tensor,
    student_pano_logits: torch.Tensor,
    teacher_pano_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    tau: float = DEFAULT_TAU,
    ignore_index: int | None = None,
    dist_weight: float = 1.0,
    ce_weight: float = 1.0,
    normalisation: str = "project",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The paper's distillation objective ``L = L_CE + L_dist`` (weights 1 by default).

    ``L_CE`` = :func:`voxel_cross_entropy` (``voxel_logits`` [B, K, X, Y, Z], ``voxel_target``
    [B, X, Y, Z]); ``L_dist`` = :func:`distillation_loss` (``student_pano_logits``, the projected
    student prediction, and ``teacher_pano_logits``, [K, H, W] or [B, K, H, W], over ``mask``, with
    ``normalisation``).

    Returns:
        ``(total, parts)``: ``total = ce_weight * L_CE + dist_weight * L_dist`` (scalar, with grad) and
        ``parts = {"ce": L_CE, "dist": L_dist, "total": total}`` (detached scalars).
    """
    ce = voxel_cross_entropy(voxel_logits, voxel_target, ignore_index=ignore_index)
    dist = distillation_loss(student_pano_logits, teacher_pano_logits, mask, tau=tau, normalisation=normalisation)
    total = ce_weight * ce + dist_weight * dist
    return total, {"ce": ce.detach(), "dist": dist.detach(), "total": total.detach()}
