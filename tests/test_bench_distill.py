"""Teacher finetuning and caching, panoramic distillation and its finetune-only control (tiny sizes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from bench_rooms import make_dataset

from panorooms3d.bench.data import load_room
from panorooms3d.bench.distill import distill, room_losses, room_order, visit
from panorooms3d.bench.teacher import (
    cache_teacher_predictions,
    load_teacher,
    roll_flip,
    teacher_cache_path,
    train_teacher,
)
from panorooms3d.bench.train import TrainConfig, train
from panorooms3d.geometry import equirect_directions
from panorooms3d.store.dataset import Dataset

K = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("distill")
    data = make_dataset(root / "data", n_rooms=4,
                        splits={"train": ["box0/Room-0", "box1/Room-1"], "val": ["box2/Room-2"],
                                "test": ["box3/Room-3"]})
    torch.set_num_threads(1)
    run = train(TrainConfig(data=str(data), model="3dseg-t", out=str(root / "pre"), iterations=2, batch_size=1,
                            block=16, workers=0), progress=False)
    # a perfect "teacher": one-hot panorama labels as logits (scale 10)
    ds = Dataset(data)
    cache = root / "perfect"
    cache.mkdir()
    for uid in ds.rooms:
        lab = load_room(ds, uid).panorama_label
        onehot = np.moveaxis(np.eye(K, dtype=np.float32)[lab], -1, 0) * 10.0
        np.save(teacher_cache_path(cache, uid), onehot.astype(np.float16))
    return {"data": data, "root": root, "student": run.checkpoint.parent.parent / "model.pt", "cache": cache}


def test_roll_is_a_yaw_and_flip_mirrors_longitude() -> None:
    h, w = 4, 8
    d = torch.as_tensor(equirect_directions(h, w))  # (H, W, 3)
    img = d.permute(2, 0, 1)
    lab = torch.arange(w).repeat(h, 1)
    rolled, rl = roll_flip(img, lab, 2, False)
    # d(lon) = Rz(-lon) d(0), so column u showing lon(u) - delta (delta = 2 columns) is Rz(+delta) d(lon(u))
    yaw = 2 * 2 * math.pi / w
    rz = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]],
                      dtype=d.dtype)
    # column u now shows what column u - 2 showed: the direction of u rotated about +z
    assert torch.allclose(rolled.permute(1, 2, 0), d @ rz.T, atol=1e-6)
    assert rl[0, 2].item() == 0
    flipped, _ = roll_flip(img, lab, 0, True)
    mirrored = d * torch.tensor([1.0, -1.0, 1.0], dtype=d.dtype)  # lon -> -lon is y -> -y
    assert torch.allclose(flipped.permute(1, 2, 0), mirrored, atol=1e-6)


def test_teacher_trains_resumes_and_caches(setup: dict) -> None:
    out = setup["root"] / "teacher"
    common = dict(variant="tiny", iterations=3, lr=1e-4, batch_size=1, model_overrides={"n_layers": 1},
                  checkpoint_every=1, device="cpu")
    part = train_teacher(setup["data"], out, stop_after=2, progress=False, **common)
    assert part.iterations == 2 and not (out / "teacher.pt").exists()
    rest = train_teacher(setup["data"], out, progress=False, **common)
    assert rest.resumed_from == 2 and rest.iterations == 3 and (out / "teacher.pt").exists()
    teacher = load_teacher(out / "teacher.pt")
    cache = setup["root"] / "cache"
    counts = cache_teacher_predictions(out / "teacher.pt", setup["data"], cache, progress=False, device="cpu")
    assert counts["written"] == 2 and counts["skipped"] == 0
    arr = np.load(teacher_cache_path(cache, "box0/Room-0"))
    assert arr.dtype == np.float16 and arr.shape == (K, 16, 32)
    rgb = Dataset(setup["data"]).load_panorama("box0/Room-0").rgb
    from panorooms3d.bench.teacher import predict_panorama

    assert np.allclose(arr, predict_panorama(teacher, rgb).numpy(), atol=1e-2)
    again = cache_teacher_predictions(teacher, setup["data"], cache, progress=False, device="cpu")
    assert again["written"] == 0 and again["skipped"] == 2


def test_kd_gradients_reach_the_student(setup: dict) -> None:
    from panorooms3d.bench.train import build, load_weights

    model = build(TrainConfig(data=str(setup["data"]), model="3dseg-t"))
    load_weights(setup["student"], model)
    sample = load_room(Dataset(setup["data"]), "box0/Room-0")
    teacher = torch.from_numpy(np.load(teacher_cache_path(setup["cache"], "box0/Room-0")).astype(np.float32))
    losses = room_losses(model, sample, teacher, tau=20.0, kd_weight=1.0)
    assert losses["kd"] is not None and float(losses["kd"].detach()) > 0 and losses["hit"] > 0.9
    model.zero_grad()
    losses["kd"].backward()  # the KD term alone
    grad = model.patch_embed.weight.grad  # the first layer of the 3D Segmenter
    assert grad is not None and float(grad.abs().sum()) > 0, "the KD gradient reaches the encoder"


def test_pseudo_label_terms_are_the_loss_on_the_projection(setup: dict) -> None:
    """``hard``: pseudo_label_loss of the projected student on the hit pixels, with CE's class weights;
    ``hard-unweighted``: the same with none."""
    from panorooms3d.bench.distill import project_logits
    from panorooms3d.bench.evaluate import forward_room
    from panorooms3d.bench.train import build, load_weights
    from panorooms3d.nn.losses import pseudo_label_loss

    model = build(TrainConfig(data=str(setup["data"]), model="3dseg-t"))
    load_weights(setup["student"], model)
    model.eval()  # no stochastic depth: the same logits in every call
    sample = load_room(Dataset(setup["data"]), "box0/Room-0")
    teacher = torch.from_numpy(np.load(teacher_cache_path(setup["cache"], "box0/Room-0")).astype(np.float32))
    w = torch.linspace(0.5, 2.0, K)
    with torch.no_grad():
        res = project_logits(sample, forward_room(model, torch.as_tensor(sample.x)[None])[0].float(), *teacher.shape[1:])
        want_w = pseudo_label_loss(res.values, teacher, res.hit, weight=w)
        want = pseudo_label_loss(res.values, teacher, res.hit)
        got = {k: float(room_losses(model, sample, teacher, kd_loss=k, class_weight=w)["kd"])
               for k in ("hard", "hard-unweighted")}
    assert got["hard"] == pytest.approx(float(want_w), rel=1e-5)
    assert got["hard-unweighted"] == pytest.approx(float(want), rel=1e-5)
    assert abs(float(want_w) - float(want)) > 1e-3, "the weights must matter on this room"


def test_standardised_kd_is_the_kd_of_z_scored_logits(setup: dict) -> None:
    """``soft-standardised``: the paper's KD term on the projected student's and the teacher's logits, each pixel
    z-scored over the classes; the teacher scaled and shifted gives the same term."""
    from panorooms3d.bench.distill import project_logits
    from panorooms3d.bench.evaluate import forward_room
    from panorooms3d.bench.train import build, load_weights
    from panorooms3d.nn.losses import distillation_loss

    model = build(TrainConfig(data=str(setup["data"]), model="3dseg-t"))
    load_weights(setup["student"], model)
    model.eval()
    sample = load_room(Dataset(setup["data"]), "box0/Room-0")
    teacher = torch.from_numpy(np.load(teacher_cache_path(setup["cache"], "box0/Room-0")).astype(np.float32))
    with torch.no_grad():
        res = project_logits(sample, forward_room(model, torch.as_tensor(sample.x)[None])[0].float(), *teacher.shape[1:])
        s, t = res.values.double(), teacher.double()
        zs = (s - s.mean(0)) / s.var(0, unbiased=False).add(1e-6).sqrt()
        zt = (t - t.mean(0)) / t.var(0, unbiased=False).add(1e-6).sqrt()
        want = distillation_loss(zs, zt, res.hit, tau=2.0)
        got = [float(room_losses(model, sample, x, kd_loss="soft-standardised", tau=2.0)["kd"])
               for x in (teacher, 3 * teacher - 1)]
        raw = float(room_losses(model, sample, teacher, kd_loss="soft", tau=2.0)["kd"])
    assert got[0] == pytest.approx(float(want), rel=1e-4)
    assert got[1] == pytest.approx(got[0], rel=1e-4)
    assert abs(raw - got[0]) > 1e-3, "standardising must change the term on this room"


def test_distillation_lowers_kd_and_resumes(setup: dict) -> None:
    base = dict(iterations=6, tau=20.0, lr=1e-3, val_every=3, checkpoint_every=1, device="cpu",
                split="train")
    out = setup["root"] / "dist"
    part = distill(setup["data"], setup["student"], setup["cache"], out, stop_after=3, progress=False, **base)
    assert part.iterations == 3 and not (out / "model.pt").exists()
    res = distill(setup["data"], setup["student"], setup["cache"], out, progress=False, **base)
    assert res.resumed_from == 3 and res.iterations == 6
    log = [json.loads(x) for x in (out / "distill_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "kd" in r]
    assert [r["iteration"] for r in steps] == [1, 2, 3, 4, 5, 6]
    # the order visits both rooms every 2 iterations: compare the same room's KD early and late
    kd = {}
    for r in steps:
        kd.setdefault(r["room"], []).append(r["kd"])
    assert all(v[-1] < v[0] for v in kd.values()), kd
    vals = [r for r in log if "val_mIoU" in r]
    assert [r["iteration"] for r in vals] == [3, 6]
    assert (out / "best.pt").exists() and (out / "model.pt").exists()
    # the uninterrupted run ends with the same weights
    ref = distill(setup["data"], setup["student"], setup["cache"], setup["root"] / "dist-ref", progress=False, **base)
    a = torch.load(res.final, weights_only=False)["model"]
    b = torch.load(ref.final, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_teacher_term_only_on_unlabelled_rooms(setup: dict) -> None:
    """``kd_rooms = "unlabelled"``: CE alone on the labelled room, the teacher alone on the other, for either KD loss."""
    from panorooms3d.bench.data import labelled_subset

    rooms = Dataset(setup["data"]).split("train")
    labelled = set(labelled_subset(rooms, 0.5))
    assert len(labelled) == 1
    for kd_loss in ("soft", "hard"):
        out = setup["root"] / f"unl-{kd_loss}"
        distill(setup["data"], setup["student"], setup["cache"], out, iterations=4, lr=1e-3, device="cpu",
                split="train", val_every=0, labelled_fraction=0.5, kd_rooms="unlabelled", kd_loss=kd_loss,
                progress=False)
        steps = [json.loads(x) for x in (out / "distill_log.jsonl").read_text().splitlines() if '"kd"' in x]
        assert len(steps) == 4 and {r["room"] for r in steps} == set(rooms)
        for r in steps:
            if r["room"] in labelled:
                assert r["kd"] is None and r["ce"] is not None and r["loss"] == r["ce"], r
            else:
                assert r["ce"] is None and r["kd"] is not None and r["loss"] == pytest.approx(r["kd"]), r
        assert json.loads((out / "config.json").read_text())["kd_rooms"] == "unlabelled"
    with pytest.raises(ValueError, match="kd_rooms"):
        distill(setup["data"], setup["student"], setup["cache"], setup["root"] / "bad", iterations=1, device="cpu",
                kd_rooms="labelled", progress=False)
    with pytest.raises(ValueError, match="kd_loss"):
        distill(setup["data"], setup["student"], setup["cache"], setup["root"] / "bad2", iterations=1, device="cpu",
                kd_loss="sharp", progress=False)
    with pytest.raises(ValueError, match=r"pseudo_classes \['sofaa'\] are not classes of 'paper30'"):
        distill(setup["data"], setup["student"], setup["cache"], setup["root"] / "bad3", iterations=1, device="cpu",
                kd_loss="hard", pseudo_classes=["wall", "sofaa"], progress=False)


def test_finetune_only_control_has_no_kd(setup: dict) -> None:
    out = setup["root"] / "ft"
    res = distill(setup["data"], setup["student"], None, out, iterations=2, lr=1e-3, finetune_only=True,
                  device="cpu", progress=False)
    log = [json.loads(x) for x in (out / "distill_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "ce" in r]
    assert len(steps) == 2 and all(r["kd"] is None and r["loss"] == r["ce"] for r in steps)
    assert json.loads((out / "config.json").read_text())["kd_weight"] == 0.0
    assert res.iterations == 2


def test_room_level_adam_beta2_is_a_setting(setup: dict) -> None:
    """``adam_beta2``: the room-level optimizer's second-moment decay (0.999 unless asked), checked like block training's.

    After one step (before bias correction) Adam's first moment is 0.1 g and its second (1 - beta2) g^2, so the
    checkpoint's moments must satisfy v = (1 - beta2) (m / 0.1)^2, whatever the gradient g was."""
    from panorooms3d.run.checkpoint import load_checkpoint

    for beta2 in (0.95, None):
        out = setup["root"] / f"b2-{beta2}"
        extra = {} if beta2 is None else {"adam_beta2": beta2}
        distill(setup["data"], setup["student"], None, out, iterations=1, lr=1e-3, finetune_only=True,
                device="cpu", progress=False, val_every=0, checkpoint_every=1, **extra)
        want = 0.999 if beta2 is None else beta2
        assert json.loads((out / "config.json").read_text())["adam_beta2"] == want
        optim = load_checkpoint(out / "checkpoints" / "last.pt")["optimizer"]
        assert tuple(optim["param_groups"][0]["betas"]) == (0.9, want)
        m, v = optim["state"][0]["exp_avg"], optim["state"][0]["exp_avg_sq"]
        g = m / 0.1
        assert torch.allclose(v, (1 - want) * g * g, rtol=1e-4, atol=1e-12)
    with pytest.raises(ValueError, match=r"adam_beta2 = 1\.0: .*a number in \(0, 1\)"):
        distill(setup["data"], setup["student"], None, setup["root"] / "b2-bad", iterations=1, finetune_only=True,
                adam_beta2=1.0, device="cpu", progress=False)
    assert not (setup["root"] / "b2-bad").exists()


def test_visit_mixes_the_two_streams_at_the_share_asked() -> None:
    """``unlabelled_share``: a share s of the iterations, evenly spread, visits the extra rooms, each stream in epochs."""
    # None: one stream over both room lists, exactly the order of room_order
    assert [visit(i, 3, 5, 2, None) for i in range(16)] == [
        (room_order(8, i, 2) >= 3, room_order(8, i, 2) - 3 * (room_order(8, i, 2) >= 3)) for i in range(16)]
    seq = [visit(i, 4, 6, 1, 1 / 3) for i in range(36)]
    assert [e for e, _ in seq] == [False, False, True] * 12  # 1 iteration of 3, evenly spread
    main = [k for e, k in seq if not e]
    more = [k for e, k in seq if e]
    assert all(sorted(main[j:j + 4]) == list(range(4)) for j in range(0, 24, 4))  # epochs of the 4 rooms
    assert sorted(more[:6]) == sorted(more[6:]) == list(range(6))  # epochs of the 6 extra rooms
    assert seq == [visit(i, 4, 6, 1, 1 / 3) for i in range(36)]  # a pure function of (seed, i): resumable
    assert [e for e, _ in (visit(i, 4, 6, 1, 0.5) for i in range(6))] == [False, True] * 3
    assert visit(5, 4, 0, 1, 0.5) == (False, room_order(4, 5, 1))  # no extra rooms: the main stream


def test_room_order_is_a_permutation_per_epoch() -> None:
    order = [room_order(5, i, seed=3) for i in range(10)]
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:]) == list(range(5))
    assert order == [room_order(5, i, seed=3) for i in range(10)]


def _perfect_cache(data, cache) -> None:
    """The fixture's perfect teacher (one-hot panorama labels, scale 10) for the rooms of ``data``."""
    ds = Dataset(data)
    cache.mkdir(exist_ok=True)
    for uid in ds.rooms:
        lab = load_room(ds, uid).panorama_label
        np.save(teacher_cache_path(cache, uid), (np.moveaxis(np.eye(K, dtype=np.float32)[lab], -1, 0) * 10).astype(np.float16))


def test_unlabelled_data_rooms_get_kd_only_and_their_labels_are_never_read(setup: dict) -> None:
    root = setup["root"]
    other = ["other0/Room-0", "other1/Room-1"]
    extra = make_dataset(root / "extra", n_rooms=2, splits={"train": other, "val": [], "test": []}, house="other")
    # the same rooms with every label changed: a run that never reads them ends with the same weights
    wrong = make_dataset(root / "extra-wrong", n_rooms=2, splits={"train": other, "val": [], "test": []},
                         house="other", relabel=lambda label: np.full_like(label, 7))
    cache = root / "cache-more"
    _perfect_cache(setup["data"], cache)
    _perfect_cache(extra, cache)
    base = dict(iterations=8, tau=20.0, lr=1e-3, val_every=100, device="cpu", split="train")
    res = distill(setup["data"], setup["student"], cache, root / "more", progress=False,
                  unlabelled_data=["../extra"], **base)  # relative to the dataset folder
    log = [json.loads(x) for x in (root / "more" / "distill_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "kd" in r]
    rooms = [r["room"] for r in steps]
    # two epochs, each a permutation of the 2 labelled and the 2 unlabelled rooms
    assert sorted(rooms[:4]) == sorted(rooms[4:]) == sorted(["box0/Room-0", "box1/Room-1", *other])
    assert all(r["ce"] is None and r["kd"] is not None for r in steps if r["room"] in other)
    assert all(r["ce"] is not None and r["kd"] is not None for r in steps if r["room"] not in other)
    ref = distill(setup["data"], setup["student"], cache, root / "more-wrong", progress=False,
                  unlabelled_data=[str(wrong)], **base)
    a = torch.load(res.final, weights_only=False)["model"]
    b = torch.load(ref.final, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # finetune-only has no teacher: the unlabelled rooms teach nothing and are not visited
    distill(setup["data"], setup["student"], None, root / "more-ft", progress=False, finetune_only=True,
            unlabelled_data=["../extra"], **{**base, "iterations": 4})
    ft = [json.loads(x) for x in (root / "more-ft" / "distill_log.jsonl").read_text().splitlines()]
    assert {r["room"] for r in ft if "ce" in r} == {"box0/Room-0", "box1/Room-1"}
    # unlabelled_share 0.5: every other iteration an extra room, KD only
    distill(setup["data"], setup["student"], cache, root / "more-half", progress=False, unlabelled_data=["../extra"],
            unlabelled_share=0.5, **{**base, "iterations": 6})
    half = [json.loads(x) for x in (root / "more-half" / "distill_log.jsonl").read_text().splitlines()]
    half = [r for r in half if "kd" in r]
    assert [r["room"] in other for r in half] == [False, True] * 3
    assert [r["ce"] is None for r in half] == [False, True] * 3


def test_unlabelled_data_mistakes_are_clear_errors(setup: dict) -> None:
    base = dict(iterations=1, device="cpu", split="train", progress=False)
    with pytest.raises(FileNotFoundError, match=r"unlabelled_data folder not found: .*nosuch"):
        distill(setup["data"], setup["student"], setup["cache"], setup["root"] / "e1", unlabelled_data=["../nosuch"],
                **base)
    with pytest.raises(ValueError, match=r"room box0/Room-0 is in both"):  # the dataset itself
        distill(setup["data"], setup["student"], setup["cache"], setup["root"] / "e2", unlabelled_data=["."], **base)
    with pytest.raises(ValueError, match=r"unlabelled_share must be between 0 and 1 .*not 1.0"):
        distill(setup["data"], setup["student"], setup["cache"], setup["root"] / "e3", unlabelled_share=1.0, **base)


def test_the_distill_command_offers_every_teacher_term_and_room_choice() -> None:
    # the CLI spells its choices out (it imports no torch until a command runs); they must stay the registries' keys
    from panorooms3d.bench.commands import distill_command
    from panorooms3d.bench.distill import KD_LOSSES, KD_ROOMS

    choices = {p.name: list(p.type.choices) for p in distill_command.params if p.name in ("kd_loss", "kd_rooms")}
    assert choices == {"kd_loss": list(KD_LOSSES), "kd_rooms": list(KD_ROOMS)}
