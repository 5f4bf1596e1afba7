"""Learning guards: the models really learn a tiny room in seconds.

A broken loss, input encoding, augmentation (volume and labels moved apart), optimiser step or
learning-rate schedule makes these fail; they are the fast stand-in for the CPU track
(benchmark/cpu-track.toml), whose recorded run shows learning at full size.

The room is an analytic box room (tests/bench_rooms.py: floor, walls, ceiling and a bed, each
with its own colour) whose labels cover the two voxels nearest each surface on both sides
(|tsdf| <= 2/3): a labelled voxel then differs from void by at least 1/3 in tsdf, so the room can
be learned exactly; with the full truncation band the outermost labelled voxel has tsdf +-0.97
against void's +-1, a distinction no model learns in a few hundred steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_rooms import box_room

from panorooms3d.bench.data import load_room
from panorooms3d.bench.evaluate import predict_logits
from panorooms3d.bench.train import TrainConfig, train
from panorooms3d.store.dataset import Dataset

K = 30


def learnable_dataset(root: Path) -> Path:
    from panorooms3d.store.dataset import pack_dataset, write_room_panorama, write_room_volume

    uids = ["box0/Room-0", "box1/Room-1"]
    for i, uid in enumerate(uids):
        vol, pano = box_room(uid, seed=i)
        far = np.abs(vol.tsdf) > 2 / 3 + 1e-6
        vol.label[far] = 0
        vol.instance[far] = 0
        vol.rgb[far] = 0
        vol.weight[far & (vol.tsdf >= 1)] = 0
        write_room_volume(root, vol)
        write_room_panorama(root, uid, pano)
    pack_dataset(root, rooms_per_shard=2, splits={"train": uids[:1], "val": [], "test": uids[1:]})
    return root


@pytest.fixture(scope="module")
def room_data(tmp_path_factory) -> Path:
    return learnable_dataset(tmp_path_factory.mktemp("learn") / "data")


def accuracy(model, ds: Dataset, uid: str) -> tuple[float, float]:
    """(voxel accuracy, accuracy on non-void voxels) of a model on a whole room."""
    sample = load_room(ds, uid)
    pred = predict_logits(model, sample.x).argmax(0).numpy()
    solid = sample.y > 0
    return float((pred == sample.y).mean()), float((pred[solid] == sample.y[solid]).mean())


@pytest.mark.parametrize("cpu_amp", ["off", "on"])
def test_3dseg_t_learns_a_room(room_data: Path, tmp_path: Path, cpu_amp: str) -> None:
    """In float32, and under bf16 autocast (``cpu_amp = "on"``, which the CPU track's ``auto`` picks on AMX CPUs)."""
    from panorooms3d.bench.suite import load_model

    torch.set_num_threads(2)
    run = train(TrainConfig(data=str(room_data), model="3dseg-t", out=str(tmp_path / "t"), iterations=160,
                            batch_size=1, block=32, lr=3e-3, warmup=20, schedule="cosine",
                            class_weights="sqrt-inverse", decoder_lr_mult=10, workers=0, checkpoint_every=1000,
                            device="cpu", cpu_amp=cpu_amp), progress=False)
    model = load_model(run.checkpoint.parent.parent / "model.pt")
    ds = Dataset(room_data)
    acc, solid = accuracy(model, ds, "box0/Room-0")
    assert acc >= 0.95 and solid >= 0.90, (acc, solid)
    # the held-out room (the same kinds of surfaces, the bed elsewhere) is segmented as well
    acc_t, solid_t = accuracy(model, ds, "box1/Room-1")
    assert acc_t >= 0.95 and solid_t >= 0.90, (acc_t, solid_t)


@pytest.mark.parametrize("kd_loss", ["soft", "hard"])
def test_distillation_alone_moves_the_projected_labels_to_the_teacher(room_data: Path, tmp_path: Path,
                                                                      kd_loss: str) -> None:
    """KD only (no room has 3D labels): the KD term falls and the student's panorama comes to agree with the teacher.

    The teacher is exact: the room's true labels as one-hot logits, projected into the panorama
    by the same projection, so full agreement is reachable; tau 2 (the paper's 20 makes the
    targets nearly uniform and the test slow). ``soft`` is the paper's KD term, ``hard`` the
    teacher's argmax as pseudo-labels (``kd_loss``).
    """
    from panorooms3d.bench.distill import distill, project_logits
    from panorooms3d.bench.suite import load_model
    from panorooms3d.bench.teacher import teacher_cache_path

    torch.set_num_threads(2)
    ds = Dataset(room_data)
    uid = "box0/Room-0"
    pre = train(TrainConfig(data=str(room_data), model="3dseg-t", out=str(tmp_path / "pre"), iterations=20,
                            batch_size=1, block=32, lr=3e-3, workers=0, device="cpu"), progress=False)
    sample = load_room(ds, uid)
    truth = torch.from_numpy(np.moveaxis(np.eye(K, dtype=np.float32)[sample.y], -1, 0) * 10.0)
    teacher = project_logits(sample, truth, 32, 64)
    cache = tmp_path / "teacher"
    cache.mkdir()
    np.save(teacher_cache_path(cache, uid), teacher.values.numpy().astype(np.float16))
    target, hit = teacher.values.argmax(0).numpy(), teacher.hit.numpy()
    assert hit.mean() > 0.99 and len(np.unique(target[hit])) >= 4, "the panorama sees floor, walls, ceiling and bed"

    def agreement(checkpoint: Path) -> float:
        model = load_model(checkpoint)
        with torch.no_grad():
            res = project_logits(sample, predict_logits(model, sample.x), 32, 64)
        return float((res.values.argmax(0).numpy()[hit] == target[hit]).mean())

    before = agreement(pre.checkpoint.parent.parent / "model.pt")
    # labelled_fraction 0: no training room has 3D labels, the teacher is the only signal
    res = distill(room_data, pre.checkpoint.parent.parent / "model.pt", cache, tmp_path / "dist", iterations=40,
                  tau=2.0, lr=3e-3, val_every=1000, checkpoint_every=1000, device="cpu", progress=False,
                  labelled_fraction=0.0, kd_loss=kd_loss)
    log = [json.loads(x) for x in (tmp_path / "dist" / "distill_log.jsonl").read_text().splitlines() if '"kd"' in x]
    assert len(log) == 40 and all(r["ce"] is None for r in log), "an unlabelled room must get no CE term"
    kd = [r["kd"] for r in log]
    assert np.mean(kd[-5:]) < 0.5 * np.mean(kd[:5]), kd
    after = agreement(res.final)
    assert after >= 0.8 and after > before + 0.3, (before, after)
