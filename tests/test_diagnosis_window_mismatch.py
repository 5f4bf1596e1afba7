"""benchmark/diagnosis/window_mismatch.py: the attention windows of each stage, and tiles stitched from their cores."""

from __future__ import annotations

import json

import pytest
import torch
from bench_rooms import make_dataset
from script_module import load_script


@pytest.fixture(scope="module")
def wm():
    return load_script("benchmark/diagnosis/window_mismatch.py")


def test_stage_windows_follow_video_swins_rule(wm):
    from panorooms3d.nn.registry import build_model

    model = build_model("3dseg-t", num_classes=30, in_channels=4)  # 4-voxel patches, windows of 8 tokens
    # Derived by hand from Video Swin's get_window_size: an axis of at most 8 tokens gets a window of its
    # size and no shift; the others a window of 8 shifted by 4. Stage 2 has half stage 1's tokens.
    assert wm.stage_windows(model, (64, 64, 32)) == [  # the CPU track's training block
        {"stage": 1, "tokens": [16, 16, 8], "window": [8, 8, 8], "shift": [4, 4, 0]},
        {"stage": 2, "tokens": [8, 8, 4], "window": [8, 8, 4], "shift": [0, 0, 0]}]
    assert wm.stage_windows(model, (96, 96, 64)) == [  # a living room padded to multiples of 32
        {"stage": 1, "tokens": [24, 24, 16], "window": [8, 8, 8], "shift": [4, 4, 4]},
        {"stage": 2, "tokens": [12, 12, 8], "window": [8, 8, 8], "shift": [4, 4, 0]}]
    assert wm.stage_windows(model, (64, 64, 64))[1] == {"stage": 2, "tokens": [8, 8, 8], "window": [8, 8, 8],
                                                        "shift": [0, 0, 0]}


def test_tiles_of_three_edges_keep_the_logits_of_their_own_core():
    """The script's tiles are evaluation's sliding window with a window of 3 edges (max_voxels 0)."""
    from panorooms3d.bench.evaluate import forward_room, predict_logits
    from panorooms3d.nn.segmenter3d import Segmenter3D

    torch.manual_seed(0)
    model = Segmenter3D(num_classes=5, in_channels=4, depths=[1, 1], num_heads=[1, 1], embed_dim=12,
                        drop_path_rate=0.0).eval()
    x = torch.randn(4, 20, 13, 9)
    whole = predict_logits(model, x)
    # one tile as large as the room is the whole-room prediction
    torch.testing.assert_close(predict_logits(model, x, max_voxels=0, window=(22, 15, 11), overlap=(1, 1, 1)), whole)
    # tiles of 12 x 9 x 9 with 2 voxels of context: cores of 8 x 5 x 5 starting at 0, 8, 16 / 0, 5, 10 / 0, 5
    got = predict_logits(model, x, max_voxels=0, window=(12, 9, 9), overlap=(2, 2, 2))
    with torch.no_grad():  # the core starting at (8, 5, 5): its tile spans 6..18, 3..12, 3..9 (clipped at 9)
        tile = forward_room(model, x[None, :, 6:18, 3:12, 3:9], 32)[0]
        last = forward_room(model, x[None, :, 14:20, 8:13, 3:9], 32)[0]  # the core at (16, 10, 5), clipped
    torch.testing.assert_close(got[:, 8:16, 5:10, 5:9], tile[:, 2:10, 2:7, 2:6])
    torch.testing.assert_close(got[:, 16:20, 10:13, 5:9], last[:, 2:6, 2:5, 2:6])
    assert not torch.allclose(got, whole)  # less context changes the logits
    with pytest.raises(ValueError, match="must exceed twice the overlap"):
        predict_logits(model, x, max_voxels=0, window=(12, 9, 4), overlap=(2, 2, 2))


def test_main_scores_whole_and_tiled_and_writes_the_windows(tmp_path, wm, monkeypatch):
    from panorooms3d.nn.registry import build_model

    data = make_dataset(tmp_path / "data", n_rooms=2)  # box rooms of 32 x 27 x 22 voxels
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    torch.save({"model": build_model("3dseg-t", num_classes=30, in_channels=4).state_dict(),
                "config": {"model": "3dseg-t", "block": [64, 64, 64]}}, ckpt)
    out = tmp_path / "wm.json"
    monkeypatch.setattr("sys.argv", ["window_mismatch.py", str(data), "--split", "train", "--checkpoint",
                                     f"random={ckpt}", "--overlap", "1", "1", "1", "--out", str(out)])
    wm.main()
    record = json.loads(out.read_text())
    assert record["tile"] == [64, 64, 64] and record["rooms"] == ["box0/Room-0"]
    assert record["windows"]["training block"][1]["tokens"] == [8, 8, 8]
    assert record["windows"]["box0/Room-0"][0]["tokens"] == [8, 8, 8]  # 32 x 27 x 22 padded to 32^3
    entry = record["checkpoints"]["random"]
    # a block larger than the room is one tile: the tiled prediction is the whole-room one
    assert entry["tiled"]["mIoU"] == entry["whole"]["mIoU"]
    assert entry["tiled"]["per_class_iou"] == entry["whole"]["per_class_iou"]
    monkeypatch.setattr("sys.argv", ["window_mismatch.py", str(data), "--checkpoint", f"random={ckpt}",
                                     "--tile", "8", "8", "8", "--overlap", "4", "4", "4"])
    with pytest.raises(ValueError, match="must exceed twice the overlap"):
        wm.main()
