"""benchmark/diagnosis/decoder_ceiling.py fits exactly the 3D Segmenter's decoder: tokens -> trilinear -> + W_x x + b."""

from __future__ import annotations

import json

import pytest
import torch
from bench_rooms import make_dataset
from script_module import load_script


@pytest.fixture(scope="module")
def ceiling():
    return load_script("benchmark/diagnosis/decoder_ceiling.py")


@pytest.mark.parametrize("skip", [True, False])
def test_room_logits_is_the_models_decoder(ceiling, skip):
    from panorooms3d.nn.segmenter3d import Segmenter3D

    torch.manual_seed(0)
    model = Segmenter3D(num_classes=30, depths=[1, 1], num_heads=[3, 3], skip=skip, drop_path_rate=0.0).eval()
    x = torch.randn(1, 4, 20, 13, 9)  # not a multiple of the stride: the model pads and crops
    with torch.no_grad():
        expected = model(x)[0]
        tokens = model.head(model.encode(torch.nn.functional.pad(x, (0, 7, 0, 3, 0, 4))))  # padded to 24 x 16 x 16
        k = model.num_classes
        if skip:
            tokens = tokens @ model.skip.weight[:, :k].T
            params = (model.skip.weight[:, k:], model.skip.bias)
        else:
            params = None
        got = ceiling.room_logits(x[0], tokens.permute(0, 4, 1, 2, 3), model.stride, params)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_fit_reaches_the_box_rooms_labels_and_writes_its_record(tmp_path, ceiling, monkeypatch, capsys):
    data = make_dataset(tmp_path / "data", n_rooms=3)
    out = tmp_path / "ceiling.json"
    monkeypatch.setattr("sys.argv", ["decoder_ceiling.py", str(data), "--split", "train", "--strides", "8", "1",
                                     "--steps", "60", "--out", str(out)])
    ceiling.main()
    record = json.loads(out.read_text())
    assert record["rooms"] == 2 and record["skip"] is True
    fine, coarse = record["strides"]["1"], record["strides"]["8"]
    assert fine["aAcc"] > 99.0  # one free logit vector per voxel fits any labelling
    assert coarse["mIoU"] <= fine["mIoU"] + 1e-6
