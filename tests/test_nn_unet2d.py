"""The convolutional 2D teacher (nn/unet2d.py): shapes, the panorama's wrap, checkpoints, and as a suite teacher."""

from __future__ import annotations

import pytest
import torch

from panorooms3d.nn.unet2d import UNet2D

torch.set_num_threads(2)


def test_shapes_and_any_size():
    m = UNet2D(num_classes=30, channels=4, levels=3).eval()
    for h, w in ((32, 64), (30, 61)):
        assert m(torch.rand(2, 3, h, w)).shape == (2, 30, h, w)


def test_a_yaw_rolls_the_logits_exactly():
    """Longitude wraps: rolling the panorama by a multiple of 2^(levels-1) columns rolls the output the same."""
    torch.manual_seed(0)
    m = UNet2D(num_classes=5, channels=4, levels=3)
    for p in m.parameters():  # break symmetries of the default init
        p.data.add_(0.1 * torch.randn_like(p))
    m.train()
    m(torch.rand(4, 3, 16, 32))  # running statistics that are not the identity
    m.eval()
    x = torch.rand(1, 3, 16, 32)
    ref = m(x)
    for shift in (4, 8, 12, 28):
        torch.testing.assert_close(m(torch.roll(x, shift, dims=-1)), torch.roll(ref, shift, dims=-1),
                                   atol=1e-5, rtol=1e-5)
    # the seam matters: a model padding with zeros in width would not be equivariant at the border
    left, right = ref[..., 0], ref[..., -1]
    assert not torch.allclose(left, right)


def test_checkpoint_round_trip_and_load_teacher(tmp_path):
    from panorooms3d.bench.teacher import load_teacher

    m = UNet2D(num_classes=30, channels=4, levels=3).eval()
    m.save_checkpoint(tmp_path / "teacher.pt")
    loaded = load_teacher(tmp_path / "teacher.pt").eval()
    assert isinstance(loaded, UNet2D) and loaded.config == m.config
    x = torch.rand(1, 3, 16, 32)
    torch.testing.assert_close(loaded(x), m(x))


def test_a_unet2d_teacher_trains_resumes_and_learns(tmp_path):
    """train_teacher with variant unet2d-s: the loss falls on box-room panoramas, and a resumed run equals a straight one."""
    import json

    from bench_rooms import make_dataset

    from panorooms3d.bench.teacher import evaluate_teacher, load_teacher, train_teacher

    uids = [f"box{i}/Room-{i}" for i in range(3)]
    data = make_dataset(tmp_path / "data", n_rooms=3, splits={"train": uids[:2], "val": [], "test": uids[2:]})
    kw = dict(variant="unet2d-s", lr=3e-3, batch_size=2, model_overrides={"channels": 4, "levels": 3},
              progress=False, device="cpu", checkpoint_every=5, log_every=1, class_weights="sqrt-inverse")
    train_teacher(data, tmp_path / "a", iterations=10, **kw)
    train_teacher(data, tmp_path / "b", iterations=10, stop_after=5, **kw)
    train_teacher(data, tmp_path / "b", iterations=10, **kw)
    a, b = load_teacher(tmp_path / "a" / "teacher.pt"), load_teacher(tmp_path / "b" / "teacher.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 10 and log[-1]["loss"] < log[0]["loss"]
    res = evaluate_teacher(tmp_path / "a" / "teacher.pt", data, device="cpu", progress=False)
    assert 0 <= res["metrics"]["mIoU"] <= 100
    with pytest.raises(Exception, match="random weights"):
        train_teacher(data, tmp_path / "c", iterations=2, init=str(tmp_path / "a" / "teacher.pt"), **kw)


def test_train_teacher_command_with_the_convolutional_teacher(tmp_path):
    import json

    from bench_rooms import make_dataset
    from click.testing import CliRunner

    from panorooms3d.cli import cli as main

    uids = [f"box{i}/Room-{i}" for i in range(3)]
    data = make_dataset(tmp_path / "data", n_rooms=3, splits={"train": uids[:1], "val": uids[1:2], "test": uids[2:]})
    out = tmp_path / "teacher"
    res = CliRunner().invoke(main, ["benchmark", "train-teacher", "--data", str(data), "--out", str(out), "--variant",
                                    "unet2d-s", "--iterations", "2", "--batch-size", "1", "--class-weights",
                                    "sqrt-inverse", "--val-every", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["class_weights"] == "sqrt-inverse"
    assert sum("val_mIoU" in line for line in (out / "train_log.jsonl").read_text().splitlines()) == 2
    assert len(list((out / "cache").glob("*.npy"))) == 1
    bad = CliRunner().invoke(main, ["benchmark", "train-teacher", "--data", str(data), "--out", str(tmp_path / "t2"),
                                    "--variant", "unet2d-s", "--layers", "2"])
    assert bad.exit_code != 0 and "--layers and --init apply to the Segmenter variants" in bad.output
