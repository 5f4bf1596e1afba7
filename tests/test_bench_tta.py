"""Test-time augmentation: the room turned, predicted, turned back, the probabilities averaged (bench/evaluate.py).

Checked against truth, not against the code's own transforms: a pointwise model commutes with every mirror and
turn, so its averaged probabilities are its single pass's; a model whose logit is the voxel's index along its
first axis gives, averaged over the square's symmetries, a mean derived by hand (each transform sends voxel
(i, j) to first-axis index i or X-1-i, or under a quarter turn j or Y-1-j).
"""

from __future__ import annotations

import pytest
import torch

from panorooms3d.bench.evaluate import TTA, predict_logits


class Ramp(torch.nn.Module):
    """Two classes: logit 0 for class 0, the voxel's index along the first spatial axis for class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[2], dtype=torch.float32).view(1, -1, 1, 1).expand(x.shape[0], *x.shape[2:])
        return torch.stack([torch.zeros_like(ramp), ramp], 1)


@pytest.mark.parametrize("tta", ["flips", "d4"])
def test_a_pointwise_model_gives_its_single_pass(tta: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv3d(4, 5, 1)
    x = torch.randn(4, 7, 5, 3)  # x and y differ: a quarter turn not undone would not fit, or would misplace voxels
    single = torch.log_softmax(predict_logits(model, x), 0)
    assert torch.allclose(predict_logits(model, x, tta=tta), single, atol=1e-5)
    # the sliding window of a turned room: windows given per axis are turned with it
    tiled = predict_logits(model, x, tta=tta, max_voxels=50, window=(6, 4, 4), overlap=(1, 1, 0))
    assert torch.allclose(tiled, single, atol=1e-5)


def test_the_probabilities_of_the_turned_rooms_are_averaged() -> None:
    X, Y, Z = 4, 3, 2
    x = torch.zeros(4, X, Y, Z)
    i = torch.arange(X, dtype=torch.float32).view(X, 1, 1).expand(X, Y, Z)
    j = torch.arange(Y, dtype=torch.float32).view(1, Y, 1).expand(X, Y, Z)
    p = torch.sigmoid  # two classes with logits 0 and r: p(class 1) = sigmoid(r)
    assert torch.allclose(predict_logits(Ramp(), x, pad_to=1)[1], i)
    flips = predict_logits(Ramp(), x, pad_to=1, tta="flips").exp()[1]
    assert torch.allclose(flips, (p(i) + p(X - 1 - i)) / 2, atol=1e-6)
    d4 = predict_logits(Ramp(), x, pad_to=1, tta="d4").exp()[1]
    assert torch.allclose(d4, (p(i) + p(X - 1 - i) + p(j) + p(Y - 1 - j)) / 4, atol=1e-6)
    assert [len(TTA[name]) for name in ("none", "flips", "d4")] == [1, 4, 8]


def test_an_unknown_name_is_a_clear_error() -> None:
    from panorooms3d.bench.commands import TTA_NAMES

    assert TTA_NAMES == tuple(TTA), "benchmark eval --tta offers the names evaluate knows"
    with pytest.raises(ValueError, match="unknown test-time augmentation 'spin': choose one of none, flips, d4"):
        predict_logits(Ramp(), torch.zeros(4, 2, 2, 2), tta="spin")
