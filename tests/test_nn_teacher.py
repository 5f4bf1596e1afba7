"""The 2D teacher (Segmenter): sizes, shapes, checkpoints; its data (extra panorama folders, held-out rooms refused) and its evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from panorooms3d.nn.segmenter2d import Segmenter2D, load_official_segmenter, official_state_dict

torch.set_num_threads(2)

# Parameter names of the official Segmenter (rstrudel/segmenter: segm/model/vit.py, blocks.py, decoder.py).
OFFICIAL_BLOCK_KEYS = [
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
]  # fmt: skip


def official_keys(n_layers: int, dec_layers: int, distilled: bool = False) -> set[str]:
    keys = {"encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias", "encoder.cls_token",
            "encoder.pos_embed", "encoder.norm.weight", "encoder.norm.bias",
            "decoder.cls_emb", "decoder.proj_dec.weight", "decoder.proj_dec.bias", "decoder.proj_patch",
            "decoder.proj_classes", "decoder.decoder_norm.weight", "decoder.decoder_norm.bias",
            "decoder.mask_norm.weight", "decoder.mask_norm.bias"}  # fmt: skip
    if distilled:
        keys.add("encoder.dist_token")
    keys |= {f"encoder.blocks.{i}.{k}" for i in range(n_layers) for k in OFFICIAL_BLOCK_KEYS}
    keys |= {f"decoder.blocks.{i}.{k}" for i in range(dec_layers) for k in OFFICIAL_BLOCK_KEYS}
    return keys


def test_vit_encoder_sizes_match_published_counts():
    # timm's vit_tiny_patch16_224 has 5,717,416 parameters and vit_base_patch16_224 86,567,656, each including an
    # ImageNet head Linear(d, 1000) (d*1000 + 1000), which the segmentation encoder does not keep.
    with torch.device("meta"):
        tiny = Segmenter2D(num_classes=30, variant="tiny", image_size=(224, 224))
        base = Segmenter2D(num_classes=30, variant="base", image_size=(224, 224))
        small = Segmenter2D(num_classes=30, variant="small", image_size=(224, 224))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tiny.encoder) == 5_717_416 - (192 * 1000 + 1000)
    assert count(base.encoder) == 86_567_656 - (768 * 1000 + 1000)
    assert count(small.encoder) == 22_050_664 - (384 * 1000 + 1000)  # vit_small_patch16_224
    # mask transformer (base, 30 classes): 2 blocks of 12 d^2 + 13 d, proj_dec d^2 + d, proj_patch and
    # proj_classes d^2 each, cls_emb 30 d, decoder_norm 2 d, mask_norm 2 * 30.
    d = 768
    assert count(base.decoder) == 2 * (12 * d * d + 13 * d) + d * d + d + 2 * d * d + 30 * d + 2 * d + 60
    assert [blk.attn.heads for blk in base.decoder.blocks] == [12, 12]  # d_model // 64 heads


def test_teacher_forward_shapes_and_mask_norm():
    torch.manual_seed(0)
    model = Segmenter2D(num_classes=30, variant="tiny", image_size=(64, 128)).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 128))
        z = model(torch.randn(1, 3, 50, 70))  # not multiples of 16: padded then cropped; pos_embed resized
    assert y.shape == (2, 30, 64, 128)
    assert z.shape == (1, 30, 50, 70)
    # masks pass through LayerNorm over classes (weight 1, bias 0 at init), and bilinear upsampling is a convex
    # combination, so every pixel's logits have zero mean over the classes.
    assert torch.allclose(y.mean(dim=1), torch.zeros(2, 64, 128), atol=1e-5)
    assert torch.isfinite(z).all()


def test_teacher_backward():
    torch.manual_seed(1)
    model = Segmenter2D(num_classes=30, variant="tiny", image_size=(32, 64))
    y = model(torch.randn(1, 3, 32, 64))
    torch.nn.functional.cross_entropy(y, torch.randint(0, 30, (1, 32, 64))).backward()
    assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.decoder.cls_emb.grad.abs().sum() > 0


def test_own_checkpoint_round_trip(tmp_path):
    torch.manual_seed(2)
    model = Segmenter2D(num_classes=7, variant="tiny", image_size=(32, 64)).eval()
    path = tmp_path / "teacher.pt"
    model.save_checkpoint(path)
    loaded = Segmenter2D.from_checkpoint(path).eval()
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        Segmenter2D.from_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("distilled", [False, True])
def test_official_layout_round_trip(tmp_path, distilled):
    torch.manual_seed(3)
    model = Segmenter2D(num_classes=30, variant="tiny", image_size=(64, 128), distilled=distilled).eval()
    state = official_state_dict(model)
    assert set(state) == official_keys(12, 2, distilled)
    # the official checkpoint also carries the ImageNet classification head of the encoder
    state = dict(state)
    state["encoder.head.weight"] = torch.randn(1000, 192)
    state["encoder.head.bias"] = torch.randn(1000)
    if distilled:
        state["encoder.head_dist.weight"] = torch.randn(1000, 192)
        state["encoder.head_dist.bias"] = torch.randn(1000)
    run = tmp_path / "seg_tiny_mask"
    run.mkdir()
    torch.save({"model": state, "optimizer": {}, "epoch": 200}, run / "checkpoint.pth")
    variant = {
        "algorithm_kwargs": {"batch_size": 8, "eval_freq": 2, "num_epochs": 200},
        "net_kwargs": {
            "backbone": "deit_tiny_distilled_patch16_224" if distilled else "vit_tiny_patch16_384",
            "d_model": 192, "n_heads": 3, "n_layers": 12, "normalization": "deit" if distilled else "vit",
            "patch_size": 16, "image_size": [64, 128], "n_cls": 30, "dropout": 0.0, "drop_path_rate": 0.1,
            "distilled": distilled,
            "decoder": {"name": "mask_transformer", "drop_path_rate": 0.0, "dropout": 0.1, "n_layers": 2},
        },
    }  # fmt: skip
    with open(run / "variant.yml", "w") as f:
        yaml.safe_dump(variant, f)
    loaded = load_official_segmenter(run / "checkpoint.pth")
    assert loaded.normalization == ("deit" if distilled else "vit")
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_official_loader_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pth"):
        load_official_segmenter(tmp_path / "checkpoint.pth")
    torch.save({"model": {}}, tmp_path / "checkpoint.pth")
    with pytest.raises(FileNotFoundError, match="variant.yml"):
        load_official_segmenter(tmp_path / "checkpoint.pth")


# --------------------------------------------------------------------------------------------------
# the teacher's data: the dataset's training panoramas plus panorama-only folders, never held-out rooms


def _panorama_folder(root, uids, seed: int = 0):
    """A panorama-only dataset (as `panorooms3d panoramas` packs it) of box-room panoramas."""
    from bench_rooms import box_room

    from panorooms3d.store.dataset import pack_dataset, write_room_panorama

    for i, uid in enumerate(uids):
        write_room_panorama(root, uid, box_room(uid, seed=seed + i)[1])
    pack_dataset(root, rooms_per_shard=4, splits=(1.0, 0.0, 0.0), panoramas_only=True)
    return root


def test_teacher_rooms_add_panorama_folders_and_refuse_held_out_rooms(tmp_path):
    from bench_rooms import make_dataset

    from panorooms3d.bench.teacher import TeacherConfig, TeacherDataError, teacher_rooms

    data = make_dataset(tmp_path / "data", n_rooms=4)  # train box0..box2, test box3
    _panorama_folder(tmp_path / "panos", [f"other{i}/Room-{i}" for i in range(5)] + ["box0/Room-0"])
    rooms, summary = teacher_rooms(TeacherConfig(data=str(data), panoramas=["../panos"]))
    main = [u for f, u in rooms if f == str(data)]
    extra = [u for f, u in rooms if f != str(data)]
    assert main == ["box0/Room-0", "box1/Room-1", "box2/Room-2"]
    assert sorted(extra) == [f"other{i}/Room-{i}" for i in range(5)], "box0/Room-0 is a training room: counted once"
    assert summary["main_rooms"] == 3 and summary["extra_rooms"] == 5
    assert summary["extra"][0]["duplicates_of_training_rooms"] == 1
    # an absolute path works the same
    rooms_abs, _ = teacher_rooms(TeacherConfig(data=str(data), panoramas=[str(tmp_path / "panos")]))
    assert len(rooms_abs) == 8
    # a test room of the dataset among the extra panoramas: the teacher would see what the models are scored on
    _panorama_folder(tmp_path / "leak", ["other9/Room-9", "box3/Room-3"])
    with pytest.raises(TeacherDataError, match=r"box3/Room-3.*never see"):
        teacher_rooms(TeacherConfig(data=str(data), panoramas=["../leak"]))
    with pytest.raises(TeacherDataError, match="does not exist"):
        teacher_rooms(TeacherConfig(data=str(data), panoramas=["../missing"]))
    with pytest.raises(TeacherDataError, match="not splits"):
        teacher_rooms(TeacherConfig(data=str(data), panoramas=["../panos"], panorama_splits=["training"]))


def test_panorama_only_folder_cannot_be_read_as_volumes(tmp_path):
    from panorooms3d.store.dataset import Dataset, DatasetError

    ds = Dataset(_panorama_folder(tmp_path / "panos", ["a/Room-1", "b/Room-2"]))
    assert ds.panoramas_only and ds.room_info("a/Room-1").shape is None
    assert ds.load_panorama("b/Room-2").label.shape == (16, 32)
    with pytest.raises(DatasetError, match="no volume"):
        ds.read_crop("a/Room-1", (0, 0, 0), (4, 4, 4))
    assert ds.verify() == []


# --------------------------------------------------------------------------------------------------
# the teacher's evaluation, against an oracle and a constant predictor with known scores


class _ColourOracle(torch.nn.Module):
    """Reads the class from the red channel (red = 8 * class id): a perfect 'teacher' for such panoramas."""

    def __init__(self, constant: int | None = None) -> None:
        super().__init__()
        self.constant = constant
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def normalize(self, x):
        return x

    def forward(self, x):
        cls = torch.round(x[:, 0] * 255 / 8).long()
        if self.constant is not None:
            cls = torch.full_like(cls, self.constant)
        return torch.nn.functional.one_hot(cls, 30).permute(0, 3, 1, 2).float() * 10


def _colour_dataset(root):
    from bench_rooms import box_room

    from panorooms3d.store.dataset import pack_dataset, write_room_panorama, write_room_volume
    from panorooms3d.taxonomy import get_class_set

    cs = get_class_set("paper30")
    uids = [f"box{i}/Room-{i}" for i in range(3)]
    for i, uid in enumerate(uids):
        vol, pano = box_room(uid, seed=i)
        pano.rgb[..., 0] = 8 * cs.map(pano.label)
        write_room_volume(root, vol)
        write_room_panorama(root, uid, pano)
    pack_dataset(root, rooms_per_shard=2, splits={"train": uids[:1], "val": [], "test": uids[1:]})
    return root, cs


def test_evaluate_teacher_scores_an_oracle_and_a_constant(tmp_path):
    from bench_rooms import WALL

    from panorooms3d.bench.teacher import evaluate_teacher, write_teacher_metrics
    from panorooms3d.store.dataset import Dataset

    data, cs = _colour_dataset(tmp_path / "data")
    perfect = evaluate_teacher(_ColourOracle(), data, device="cpu", progress=False)
    assert [r["uid"] for r in perfect["rooms"]] == ["box1/Room-1", "box2/Room-2"], "the test split"
    assert perfect["pooled"]["aAcc"] == 100.0 and perfect["pooled"]["mIoU"] == 100.0
    assert perfect["metrics"]["mIoU"] == 100.0 and perfect["unit"] == "panorama pixels"
    # a teacher that answers 'wall' everywhere: aAcc = wall share, IoU(wall) = wall share, others 0
    wall = int(cs.map([WALL])[0])
    ds = Dataset(data)
    labels = np.stack([cs.map(ds.load_panorama(u).label) for u in ds.split("test")])
    share = float((labels == wall).mean())
    present = np.unique(labels)
    const = evaluate_teacher(_ColourOracle(constant=wall), data, device="cpu", progress=False)
    assert const["pooled"]["aAcc"] == pytest.approx(100 * share)
    assert const["per_class_iou"][cs.class_names[wall]] == pytest.approx(100 * share)
    assert const["pooled"]["mIoU"] == pytest.approx(100 * share / len(present))
    assert const["void_excluded"]["mIoU"] == pytest.approx(100 * share / len(present))  # no void pixel here
    # the suite's file: the same numbers, and what the teacher was (no NaN in the JSON)
    model = Segmenter2D(num_classes=30, variant="tiny", image_size=(16, 32), n_layers=1)
    model.save_checkpoint(tmp_path / "teacher.pt")
    out = tmp_path / "metrics.json"
    res = write_teacher_metrics(tmp_path / "teacher.pt", data, out, device="cpu", progress=False)
    import json

    saved = json.loads(out.read_text())
    assert saved["run"]["model"] == "teacher-tiny" and saved["split"] == "test"
    assert saved["pooled"]["aAcc"] == pytest.approx(res["pooled"]["aAcc"])


# --------------------------------------------------------------------------------------------------
# class weights and the validation curve of the teacher's training


def test_teacher_class_weights_follow_pixel_frequencies(tmp_path):
    from panorooms3d.bench.teacher import TeacherConfig, TeacherDataError, pixel_class_weights
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    folder = _panorama_folder(tmp_path / "panos", ["a/Room-1", "b/Room-2"])
    rooms = [(str(folder), "a/Room-1"), (str(folder), "b/Room-2")]
    cs = get_class_set("paper30")
    ds = Dataset(folder)
    # independent count at the stored size (16 x 32): the frequency of each class over both panoramas
    labels = np.concatenate([cs.map(ds.load_panorama(u).label).ravel() for _, u in rooms])
    present, counts = np.unique(labels, return_counts=True)
    freq = counts / counts.sum()
    for mode, power in (("sqrt-inverse", -0.5), ("inverse", -1.0)):
        w = pixel_class_weights(rooms, TeacherConfig(data=str(folder), class_weights=mode)).numpy()
        expect = freq**power / (freq**power).mean()
        np.testing.assert_allclose(w[present], expect, rtol=1e-5)
        absent = np.setdiff1d(np.arange(30), present)
        assert (w[absent] == 1).all(), "classes that never occur keep weight 1"
        # rarer classes weigh more
        order = np.argsort(freq)
        assert (np.diff(w[present][order]) <= 1e-6).all()
    assert pixel_class_weights(rooms, TeacherConfig(data=str(folder))) is None
    with pytest.raises(TeacherDataError, match="class_weights"):
        pixel_class_weights(rooms, TeacherConfig(data=str(folder), class_weights="median"))


def test_teacher_training_writes_a_validation_curve(tmp_path):
    import json

    from bench_rooms import make_dataset

    from panorooms3d.bench.report import training_curves
    from panorooms3d.bench.teacher import TeacherDataError, train_teacher

    uids = [f"box{i}/Room-{i}" for i in range(4)]
    data = make_dataset(tmp_path / "data", n_rooms=4, splits={"train": uids[:2], "val": uids[2:3], "test": uids[3:]})
    out = tmp_path / "bench" / "teacher"
    overrides = {"n_layers": 1}
    train_teacher(data, out, iterations=4, lr=1e-3, batch_size=1, val_every=2, class_weights="sqrt-inverse",
                  model_overrides=overrides, progress=False, device="cpu")
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    val = [r for r in lines if "val_mIoU" in r]
    assert [r["iteration"] for r in val] == [2, 4]
    assert all(0 <= r["val_mIoU"] <= 100 for r in val)
    curves = training_curves(tmp_path / "bench")
    assert [c["name"] for c in curves] == ["teacher"] and curves[0]["points"] == [(2, val[0]["val_mIoU"]),
                                                                                (4, val[1]["val_mIoU"])]
    with pytest.raises(TeacherDataError, match="trains on"):
        train_teacher(data, tmp_path / "t2", iterations=2, batch_size=1, val_every=1, val_split="train",
                      model_overrides=overrides, progress=False, device="cpu")


def test_teacher_weight_average_is_validated_saved_and_resumed(tmp_path, monkeypatch):
    """ema for the teacher: the checkpoint's average is the moving average of the raw weights the optimiser makes
    (avg_t = d_t avg_(t-1) + (1 - d_t) w_t, d_t = min(ema, (1 + t) / (10 + t))); teacher.pt holds it; a run resumed
    step by step ends with the same average; training itself is unchanged; bad settings are refused."""
    from bench_rooms import make_dataset, moving_average

    from panorooms3d.bench.teacher import CHECKPOINT, TEACHER, load_teacher, train_teacher
    from panorooms3d.run.errors import UserError

    uids = [f"box{i}/Room-{i}" for i in range(3)]
    data = make_dataset(tmp_path / "data", n_rooms=3, splits={"train": uids[:2], "val": uids[2:], "test": []})
    decay = 0.3  # (1 + t) / (10 + t) is below it for t <= 2 and above it from t = 3
    base = dict(iterations=4, lr=1e-3, batch_size=1, val_every=2, model_overrides={"n_layers": 1}, progress=False,
                device="cpu", checkpoint_every=10)
    train_teacher(data, tmp_path / "plain", **base)
    train_teacher(data, tmp_path / "whole", ema=decay, **base)
    steps = tmp_path / "steps"
    train_teacher(data, steps, ema=decay, stop_after=0, **base)  # checkpoint 0: the initial weights

    def state(path, key="model"):
        return torch.load(path, weights_only=False)[key]

    raw = [state(steps / CHECKPOINT)]
    for _ in range(4):
        train_teacher(data, steps, ema=decay, stop_after=1, **base)
        raw.append(state(steps / CHECKPOINT))
    expected = moving_average(raw, decay)
    whole = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=False)
    stepped = state(steps / CHECKPOINT, "ema")
    assert all(torch.equal(stepped[k], whole["ema"][k]) for k in expected), "resumed: the same average"
    assert all(torch.allclose(whole["ema"][k].float(), v.float(), atol=1e-6) for k, v in expected.items())
    assert not all(torch.equal(whole["ema"][k], raw[4][k]) for k in expected), "the average is not the weights"
    plain = state(tmp_path / "plain" / CHECKPOINT)
    assert all(torch.equal(plain[k], whole["model"][k]) for k in plain), "training is unchanged"
    final = load_teacher(tmp_path / "whole" / TEACHER).state_dict()
    assert all(torch.equal(final[k], whole["ema"][k]) for k in final), "teacher.pt holds the average"
    # the curve scores the average: the weights each validation is given, seen through the real scoring
    import panorooms3d.bench.teacher as teacher_module

    scored = []
    real = teacher_module.evaluate_teacher

    def seen(model, *args, **kwargs):
        scored.append({k: v.clone() for k, v in model.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(teacher_module, "evaluate_teacher", seen)
    again = train_teacher(data, tmp_path / "again", ema=decay, **base)
    assert again.iterations == 4 and len(scored) == 2
    assert all(torch.equal(scored[-1][k], whole["ema"][k]) for k in whole["ema"]), "the last validation: the average"
    # refused settings: a decay outside [0, 1) before the folder is written; an average asked of a plain run
    with pytest.raises(ValueError, match=r"ema = 1\.0: the decay of the weight average must be in \(0, 1\)"):
        train_teacher(data, tmp_path / "bad", ema=1.0, **base)
    assert not (tmp_path / "bad").exists()
    begun = tmp_path / "begun-plain"
    train_teacher(data, begun, stop_after=1, **base)
    before = (begun / CHECKPOINT).read_bytes()
    with pytest.raises(UserError, match=r"last\.pt was written without a weight average \(ema\).*ema = 0\.9"):
        train_teacher(data, begun, ema=0.9, **base)
    assert (begun / CHECKPOINT).read_bytes() == before
