"""Parity with the official code (github swwzn714/3DSegmenter, commit f064e2e6), piece by piece.

Every expected value here is re-derived independently of the code under test: the official
render() geometry from pytorch3d's documented conventions (look_at_rotation with its branch for
``at`` parallel to ``up``, FoV cameras with NDC +X left and +Y up, the NDC raysampler's pixel grid,
Volumes' local/world mapping with world (x, y, z) <-> array axes (2, 1, 0), grid_sample with zero
padding, the emission-absorption raymarcher) and the official cube2equi written out per pixel in
numpy; the KD term from the official formula; the schedule from torch's own MultiStepLR; the input
encoding from the official loader's steps; the evaluation weights and rounding from eval.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from panorooms3d.panorama.projection import render_equirect, render_equirect_official

# ----------------------------------------------------------------------------------------------
# an independent numpy model of the official render() (pytorch3d conventions)


def _normalize(v: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """torch.nn.functional.normalize: v / max(||v||, eps)."""
    return v / max(float(np.linalg.norm(v)), eps)


def _look_at_rotation(at: np.ndarray, up: np.ndarray) -> np.ndarray:
    """pytorch3d.renderer.look_at_rotation for a camera at the origin (columns: camera x, y, z in world)."""
    z = _normalize(at.astype(np.float64))
    x = _normalize(np.cross(up, z))
    y = _normalize(np.cross(z, x))
    if np.all(np.isclose(x, 0.0, atol=5e-3)):  # the branch for `at` parallel to `up`
        x = _normalize(np.cross(y, z))
    return np.stack([x, y, z], axis=1)


def _trilinear_zeros(vol: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """grid_sample(align_corners=True, padding zeros) of vol [C, N0, N1, N2] at array indices [P, 3] -> [P, C]."""
    c, *n = vol.shape
    out = np.zeros((idx.shape[0], c))
    base = np.floor(idx).astype(np.int64)
    frac = idx - base
    for corner in range(8):
        off = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        ijk = base + off
        w = np.prod(np.where(off == 1, frac, 1 - frac), axis=1)
        ok = np.all((ijk >= 0) & (ijk < np.array(n)), axis=1)
        vals = np.zeros((idx.shape[0], c))
        vals[ok] = vol[:, ijk[ok, 0], ijk[ok, 1], ijk[ok, 2]].T
        out += w[:, None] * vals
    return out


def _official_face_images(density: np.ndarray, feats: np.ndarray, vs: float, fs: int, n_pts: int, near: float,
                          far: float) -> list[np.ndarray]:
    """The six images [F, F, K] of the official render(): cameras at the world origin (= volume centre)."""
    n0, n1, n2 = density.shape
    size_xyz = np.array([n2, n1, n0], np.float64)  # Volumes: world x <-> width (axis 2), y <-> H (1), z <-> D (0)
    ats = np.array([[0, 0, 1], [0, 1, 0], [0, 0, -1], [0, -1, 0], [1, 0, 0], [-1, 0, 0]], np.float64)
    up = np.array([1, 1e-8, 0], np.float64)
    half = 1.0 / fs
    ndc = np.linspace(1.0 - half, -1.0 + half, fs)  # NDCMultinomialRaysampler: column 0 at +X (left), row 0 at +Y
    depths = np.linspace(near, far, n_pts)
    vol = np.concatenate([density[None], feats], 0)
    images = []
    for at in ats:
        r = _look_at_rotation(at, up)
        img = np.zeros((fs, fs, feats.shape[0]))
        for i in range(fs):
            for j in range(fs):
                # FoV 90: a view point at depth z is (x_ndc z, y_ndc z, z); world = R @ view
                # (pytorch3d's row vectors: X_view = X_world R)
                direction = r @ np.array([ndc[j], ndc[i], 1.0])
                pts_world = depths[:, None] * direction[None, :]
                local = pts_world / ((size_xyz - 1) * 0.5 * vs)
                idx_xyz = (local + 1) / 2 * (size_xyz - 1)  # align_corners=True
                idx = idx_xyz[:, ::-1]  # (x, y, z) local -> array axes (2, 1, 0)
                s = _trilinear_zeros(vol, idx)
                sigma, f = s[:, 0], s[:, 1:]
                trans = np.concatenate([[1.0], np.cumprod(1.0 + 1e-10 - sigma)[:-1]])
                img[i, j] = ((sigma * trans)[:, None] * f).sum(0)
        images.append(img)
    return images


def _official_facetype(h: int, w: int) -> np.ndarray:
    """py360convert's equirect_facetype as the official code has it, written per pixel."""
    tp = np.zeros((h, w), np.int64)
    for u in range(w):
        tp[:, u] = ((u - 3 * w // 8) % w) // (w // 4)
    q = w // 4
    lon = np.linspace(-np.pi, np.pi, q).astype(np.float32) / 4
    rows = h // 2 - np.round(np.arctan(np.cos(lon)) * h / np.pi).astype(np.int64)
    for u in range(w):
        col = (u - 3 * w // 8) % w % q
        tp[: rows[col], u] = 4
        tp[h - rows[col]:, u] = 5
    return tp


def _official_cube2equi(faces: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """The official post-processing (U transposed and flipped, D rot90(k=3)) and cube2equi -> [K, H, W]."""
    faces = [f.copy() for f in faces]
    faces[4] = np.flip(faces[4].transpose(1, 0, 2), axis=1)
    faces[5] = np.rot90(faces[5], k=3, axes=(0, 1))
    strip = np.concatenate(faces, axis=1)  # [F, 6F, K]
    fs = strip.shape[0]
    tp = _official_facetype(h, w)
    out = np.zeros((strip.shape[2], h, w))
    for v in range(h):
        phi = (np.pi - 2 * np.pi * v / (h - 1)) / 2
        for u in range(w):
            theta = -np.pi + 2 * np.pi * u / (w - 1)
            i = tp[v, u]
            if i < 4:
                x = 0.5 * np.tan(theta - np.pi * i / 2)
                y = -0.5 * np.tan(phi) / np.cos(theta - np.pi * i / 2)
            elif i == 4:
                c = 0.5 * np.tan(np.pi / 2 - phi)
                x, y = c * np.sin(theta), c * np.cos(theta)
            else:
                c = 0.5 * np.tan(np.pi / 2 - abs(phi))
                x, y = c * np.sin(theta), -c * np.cos(theta)
            px = min(max(min(max(x + 0.5, 0), 1) * fs, 0), fs - 1) + fs * i
            py = min(max(min(max(y + 0.5, 0), 1) * fs, 0), fs - 1)
            x0, y0 = int(np.floor(px)), int(np.floor(py))
            fx, fy = px - x0, py - y0
            acc = 0.0
            for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                    if wy * wx > 0:
                        acc = acc + wy * wx * strip[yy, xx]
            out[:, v, u] = acc
    return out


def _box_room(shape=(20, 16, 12), seed=0) -> np.ndarray:
    """A tsdf with a floor, a wall, part of a ceiling, an object near +a1 and values beyond [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.ones(shape, np.float32)
    t[:, :, :2] = -1.0
    t[:, :, 2] = 0.3
    t[:2] = -1.0
    t[2] = 0.4
    t[:12, :10, -2:] = -1.0  # part of a ceiling
    t[:12, :10, -3] = 0.2
    t[8:12, 12:15, 3:8] = rng.uniform(-1.2, 0.5, (4, 3, 5))
    t[5, 5, 5] = 1.3  # out of range (official files are not clipped)
    return t


@pytest.mark.parametrize("orientation", ["official", "project"])
def test_official_render_equals_pytorch3d_derivation(orientation):
    shape = (20, 16, 12)
    vs = 0.04
    tsdf = _box_room(shape)
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(3, *shape)).astype(np.float32)
    fs, h, w, n_pts, near, far = 6, 12, 24, 24, 0.02, 0.9
    density = ((-3.0 * tsdf.astype(np.float32)) + 3.0) / 6.0  # distill.py: sdf = (inputs[:, :1] + 3) / 6
    expect = _official_cube2equi(_official_face_images(density, feats, vs, fs, n_pts, near, far), h, w)
    if orientation == "project":
        expect = expect[:, :, ::-1]  # docs/formats.md: the stored official panorama is mirrored column-wise
    origin = np.array([0.4, -0.2, 0.0])
    camera = origin + np.array(shape) * vs / 2  # the official camera: the centre of the volume
    got = render_equirect_official(torch.from_numpy(tsdf), torch.from_numpy(feats), origin=origin, voxel_size=vs,
                                   camera=camera, height=h, width=w, face_size=fs, n_samples=n_pts, near=near,
                                   far=far, orientation=orientation)
    np.testing.assert_allclose(got.values.numpy(), expect, atol=2e-4, rtol=1e-4)
    assert np.abs(expect).max() > 0.5  # the room is seen


def test_official_render_is_differentiable_and_linear():
    shape = (20, 16, 12)
    tsdf = torch.from_numpy(_box_room(shape))
    v = torch.randn(2, *shape, requires_grad=True)
    kw = dict(origin=(0, 0, 0), voxel_size=0.04, camera=np.array(shape) * 0.02, height=8, width=16, face_size=4,
              n_samples=16, near=0.02, far=0.9)
    out = render_equirect_official(tsdf, v, **kw).values
    g = torch.randn_like(out)
    (out * g).sum().backward()
    # the render is linear in the values: <g, A v> = <A^T g, v>
    np.testing.assert_allclose(float((out * g).sum().detach()), float((v.grad * v).sum().detach()), rtol=1e-4)
    assert v.grad.abs().sum() > 0


def test_official_orientation_vs_project_convention():
    """A marker on the +a1 wall only: the official panorama sees it a quarter to the right (theta = +90 deg),
    the project orientation a quarter to the left, exactly where this project's own projection sees it."""
    shape = (24, 24, 16)
    vs = 0.04
    tsdf = np.ones(shape, np.float32)
    tsdf[:, -2:, :] = -1.0  # a wall on the +a1 side only
    tsdf[:, -3, :] = 0.0
    ones = torch.ones((1, *shape))
    cam = np.array(shape) * vs / 2
    kw = dict(origin=(0, 0, 0), voxel_size=vs, camera=cam, height=16, width=32, face_size=8, n_samples=40,
              near=0.02, far=1.0)
    off = render_equirect_official(torch.from_numpy(tsdf), ones, orientation="official", **kw).values[0].numpy()
    proj = render_equirect_official(torch.from_numpy(tsdf), ones, orientation="project", **kw).values[0].numpy()
    mid = off[8]
    assert mid[24] > 0.5 and mid[8] < 0.05  # official: theta = +90 deg (column 3W/4) looks at +a1
    assert proj[8][8] > 0.5 and proj[8][24] < 0.05
    surf = render_equirect(torch.from_numpy(tsdf), ones, origin=(0, 0, 0), voxel_size=vs, camera=cam, height=16,
                           width=32)
    assert bool(surf.hit[8, 8]) and not bool(surf.hit[8, 24])  # the project's own convention agrees


# ----------------------------------------------------------------------------------------------
# orientation: an asymmetric room, its official panorama, imported, projected with the project's code


def _asymmetric_room(shape=(32, 32, 20)) -> tuple[np.ndarray, np.ndarray]:
    """Binary tsdf (+1 free, -1 solid) and raw labels: floor, walls, and a bed against the +a1 wall only."""
    tsdf = np.ones(shape, np.float32)
    label = np.zeros(shape, np.uint8)
    n0, n1, n2 = shape
    solid_wall = np.zeros(shape, bool)
    solid_wall[:2], solid_wall[-2:], solid_wall[:, :2], solid_wall[:, -2:], solid_wall[:, :, -2:] = (True,) * 5
    floor = np.zeros(shape, bool)
    floor[:, :, :2] = True
    bed = np.zeros(shape, bool)
    bed[10:22, n1 - 9 : n1 - 2, 2:9] = True  # only on the +a1 side
    for mask, raw in ((solid_wall, 40), (floor, 51), (bed, 17)):  # wall, floor, bed (paper30: 17, 20, 13)
        tsdf[mask] = -1.0
        label[mask] = raw
    return tsdf, label


def test_imported_official_panorama_lands_on_the_projection(tmp_path):
    from PIL import Image

    from panorooms3d.store.dataset import Dataset
    from panorooms3d.store.official import import_official
    from panorooms3d.taxonomy import get_class_set

    paper30 = get_class_set("paper30")
    shape, vs = (32, 32, 20), 0.04
    tsdf, raw = _asymmetric_room(shape)
    cls = paper30.map(raw).astype(np.int64)
    onehot = np.eye(30, dtype=np.float32)[cls].transpose(3, 0, 1, 2)
    onehot[0] = 0.0  # free space carries no class
    # the official panorama, rendered as the official render() would (numpy model above), argmax of classes
    h, w = 32, 64
    density = (1.0 - tsdf) / 2
    present = [13, 17, 20]
    faces = _official_face_images(density, onehot[present], vs, 16, 90, 0.02, 1.4)
    feats = _official_cube2equi(faces, h, w)
    official = np.where(feats.sum(0) > 0.3, np.array(present)[feats.argmax(0)], 0).astype(np.uint8)
    assert (official == 13).any()
    # write the official release: rooms/<name>.npz and an ADE panorama
    name = "0a1b2c3d-0000-4000-8000-000000000000_1"
    (tmp_path / "rooms").mkdir()
    np.savez(tmp_path / "rooms" / f"{name}.npz", sdf128=tsdf, color128=np.zeros(shape), semanticlabel=raw)
    for sub in ("images", "annotations"):
        (tmp_path / "panos" / sub / "training").mkdir(parents=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(tmp_path / "panos" / "images" / "training" / f"{name}.jpg")
    Image.fromarray(np.stack([official] * 3, -1)).save(tmp_path / "panos" / "annotations" / "training" / f"{name}.png")
    import_official(tmp_path / "rooms", tmp_path / "data", tmp_path / "panos")
    ds = Dataset(tmp_path / "data")
    vol, pano = ds.load_volume(name), ds.load_panorama(name)
    np.testing.assert_allclose(pano.camera, np.array(shape) * vs / 2)  # the official camera: the volume's centre
    # the project's own projection (zero-crossing march, this project's equirect convention)
    res = render_equirect(torch.from_numpy(vol.tsdf), torch.from_numpy(onehot), origin=vol.origin,
                          voxel_size=vol.voxel_size, camera=pano.camera, height=h, width=w)
    projected = np.where(res.hit.numpy(), res.values.numpy().argmax(0), 0)
    stored = paper30.map(pano.label)

    def iou(a, b):
        return (a & b).sum() / max((a | b).sum(), 1)

    bed = iou(projected == 13, stored == 13)
    assert bed > 0.7, bed  # edges differ: emission-absorption (official) vs the first zero crossing (project)
    cols_p, cols_s = np.nonzero(projected == 13)[1], np.nonzero(stored == 13)[1]
    assert abs(cols_p.mean() - cols_s.mean()) < 1.0  # the same place, within a pixel
    assert (projected == stored).mean() > 0.9
    assert iou(projected == 13, stored[:, ::-1] == 13) < 0.3  # without the importer's mirror: the bed is elsewhere


# ----------------------------------------------------------------------------------------------
# input encoding of imported rooms, element-wise against the official loader's steps


def _official_loader(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """eval.py's SceneDataset.__getitem__, step by step (numpy; torch.cat promotes float16 to float32)."""
    from panorooms3d.taxonomy import get_class_set

    f = np.load(npz)
    sdf = -3 * f["sdf128"]
    packed = f["color128"]
    b = np.floor(packed / 65536)
    g = np.floor((packed - b * 65536) / 256)
    r = packed - b * 65536 - g * 256
    color = np.zeros((*packed.shape, 3), np.float32)
    color[..., 0], color[..., 1], color[..., 2] = r, g, b
    color = color / 255
    sem = f["semanticlabel"]
    newcolor, newsem = np.zeros_like(color), np.zeros_like(sem)
    locs = np.where(sdf > -3)
    newcolor[locs] = color[locs]
    newsem[locs] = sem[locs]
    color = 2 * newcolor - 1
    x = np.concatenate([sdf[..., None].astype(np.float32), color], -1).transpose(3, 0, 1, 2)
    table = get_class_set("paper30").map(np.arange(99)).astype(np.uint8)  # the official 99-entry table
    return x, table[newsem].astype(np.int64)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_imported_rooms_give_the_official_inputs_and_targets(tmp_path, dtype):
    from panorooms3d.bench.data import encode, load_room
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.store.official import import_official

    rng = np.random.default_rng(3)
    shape = (10, 9, 8)
    sdf = rng.uniform(-1.6, 1.6, shape).astype(dtype)
    sdf[0] = 1.0  # free space ...
    sdf[1, :, :4] = -1.0  # ... exactly -1 ...
    sdf[2] = np.array(0.99951, dtype)  # ... just below 1
    rgb = rng.integers(0, 256, (*shape, 3))
    packed = (rgb[..., 2] * 65536 + rgb[..., 1] * 256 + rgb[..., 0]).astype(np.float64)
    label = rng.choice([0, 17, 40, 51, 98], size=shape)  # labels in free space too
    (tmp_path / "rooms").mkdir()
    npz = tmp_path / "rooms" / "h_1.npz"
    np.savez(npz, sdf128=sdf, color128=packed, semanticlabel=label)
    import_official(tmp_path / "rooms", tmp_path / "data")
    ds = Dataset(tmp_path / "data")
    x_off, y_off = _official_loader(npz)
    sample = load_room(ds, "h_1", encoding="official")  # the evaluation / distillation path
    np.testing.assert_array_equal(sample.x, x_off)
    np.testing.assert_array_equal(sample.y, y_off)
    # the block-training path: a crop encoded with the room's attributes gives the same voxels
    vol = ds.load_volume("h_1")
    crop = ds.read_crop("h_1", (2, 1, 0), (6, 6, 8), arrays=("tsdf", "rgb", "label"))
    xb, yb = encode(crop["tsdf"], crop["rgb"], crop["label"], None, vol.attrs, encoding="official")
    np.testing.assert_array_equal(xb, x_off[:, 2:8, 1:7, 0:8])
    np.testing.assert_array_equal(yb, y_off[2:8, 1:7, 0:8])
    # ... and BlockDataset itself (what block training reads) with the official encoding
    from panorooms3d.bench.data import BlockConfig, BlockDataset

    blocks = BlockDataset(tmp_path / "data", ["h_1"], BlockConfig(block=[10, 9, 8], pad_to=1, augment=False,
                                                                   encoding="official"))
    xt, yt = blocks[0]
    np.testing.assert_array_equal(xt.numpy(), x_off)
    np.testing.assert_array_equal(yt.numpy(), y_off)
    assert (sample.x[0] < -3).any() and (sample.x[0] > 3).any()  # not clipped
    if dtype == np.float16:  # -3 * sdf in float16 differs from float32 somewhere: the dtype matters
        assert not np.array_equal(x_off[0], -3 * sdf.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# the KD term and the schedule


def test_official_kd_by_hand():
    from panorooms3d.nn.losses import distillation_loss

    rng = np.random.default_rng(0)
    k, h, w, tau = 30, 6, 10, 20.0
    s = rng.normal(scale=30, size=(1, k, h, w))
    t = rng.normal(scale=30, size=(1, k, h, w))

    def log_softmax(z):
        z = z / tau
        return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)

    # distill.py: F.kl_div(log_softmax(s/T), log_softmax(t/T), reduction="sum", log_target=True) * T^2 / s.numel()
    ls, lt = log_softmax(s), log_softmax(t)
    official = (np.exp(lt) * (lt - ls)).sum() * tau**2 / s.size
    got = distillation_loss(torch.from_numpy(s), torch.from_numpy(t), None, tau=tau, normalisation="official")
    assert float(got) == pytest.approx(official, rel=1e-9)
    project = distillation_loss(torch.from_numpy(s), torch.from_numpy(t), None, tau=tau)
    assert float(project) == pytest.approx(k * official, rel=1e-9)  # the project's mean over pixels: K x stronger
    mask = torch.from_numpy(rng.random((h, w)) < 0.5)
    per_pixel = (np.exp(lt) * (lt - ls)).sum(1)[0]  # [H, W]
    masked = distillation_loss(torch.from_numpy(s), torch.from_numpy(t), mask, tau=tau, normalisation="official")
    assert float(masked) == pytest.approx(per_pixel[mask.numpy()].sum() * tau**2 / s.size, rel=1e-9)


def test_multistep_schedule_is_torch_multisteplr_per_epoch():
    from types import SimpleNamespace

    from panorooms3d.bench.train import make_scheduler

    net = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    cfg = SimpleNamespace(schedule="multistep", milestones=[0, 2, 4, 6], milestone_step=3, gamma=0.5, iterations=30)
    sched = make_scheduler(opt, cfg)
    ref_opt = torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=1e-3)
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=list(range(0, 8, 2)), gamma=0.5)  # distill.py
    got, expect = [], []
    for _epoch in range(10):  # distill.py: 1,500 iterations an epoch (3 here), scheduler.step() after each
        for _ in range(3):
            got.append(opt.param_groups[0]["lr"])
            expect.append(ref_opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        ref_opt.step()
        ref.step()
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    assert got[0] == pytest.approx(5e-4) and got[-1] == pytest.approx(6.25e-5)  # the milestone at 0 halves at once


def test_protocols_are_data():
    from panorooms3d.bench.distill import DistillConfig
    from panorooms3d.bench.protocol import ProtocolError, available_protocols, load_protocol

    assert {"official", "project"} <= set(available_protocols())
    off = load_protocol("official").section("distill")
    assert off["kd_normalisation"] == "official" and off["kd_mask"] == "none"
    assert off["projection"] == "official-emission" and (off["face_size"], off["n_samples"]) == (256, 100)
    assert (off["near"], off["far"], off["stitch_padding"]) == (0.1, 7.0, "reflection")
    assert off["schedule"] == "multistep" and off["milestones"] == [0, 2, 4, 6] and off["milestone_step"] == 1500
    assert (off["gamma"], off["lr"], off["iterations"]) == (0.5, 1e-3, 15000)
    assert load_protocol("official").section("teacher")["teacher_input"] == "bgr"
    ev = load_protocol("official").section("eval")
    assert ev["weights"] == "official" and ev["round_per_room"] is True and ev["input_encoding"] == "official"
    assert ev["pad_to"] == 1
    # every distill value of either protocol is a DistillConfig field; the project protocol is the defaults
    fields = DistillConfig.__dataclass_fields__
    for name in ("official", "project"):
        assert set(load_protocol(name).section("distill")) <= set(fields)
    default = DistillConfig(data="d", student="s")
    for key, value in load_protocol("project").section("distill").items():
        assert getattr(default, key) == value, key
    with pytest.raises(ProtocolError, match="unknown protocol 'offical'.*official"):
        load_protocol("offical")


def test_bgr_teacher_input_is_what_cv2_imread_gives(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from PIL import Image

    from panorooms3d.bench.teacher import TEACHER_INPUTS

    rgb = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    official = cv2.imread(str(tmp_path / "p.png"))  # distill.py: cv2.imread(image), fed to the teacher as it is
    np.testing.assert_array_equal(TEACHER_INPUTS["bgr"](rgb), official)
    np.testing.assert_array_equal(TEACHER_INPUTS["rgb"](rgb), rgb)


def test_a_suite_selects_its_protocol_by_name(tmp_path):
    from panorooms3d.bench.suite import SuiteError, load_suite

    text = '''name = "t"
protocol = "official"
[distill]
iterations = 30
[[run]]
name = "a"
model = "3dseg-t"
distill = true
'''
    (tmp_path / "s.toml").write_text(text)
    suite = load_suite(tmp_path / "s.toml")
    assert suite.protocol == "official"
    assert suite.distill["iterations"] == 30  # the suite's own key wins
    assert suite.distill["kd_normalisation"] == "official" and suite.distill["projection"] == "official-emission"
    assert suite.teacher["teacher_input"] == "bgr" and suite.eval["weights"] == "official"
    (tmp_path / "p.toml").write_text(text.replace('protocol = "official"\n', ""))
    assert load_suite(tmp_path / "p.toml").distill["kd_normalisation"] == "project"  # no key: the project's
    (tmp_path / "b.toml").write_text(text.replace('"official"', '"offical"'))
    with pytest.raises(SuiteError, match=r"b\.toml.*offical.*available: .*official"):
        load_suite(tmp_path / "b.toml")
    for name in ("table1", "table3", "table4"):  # the paper's suites use the official protocol
        assert load_suite(Path(__file__).resolve().parents[1] / "benchmark" / f"{name}.toml").protocol == "official"


def test_teacher_cache_sees_the_official_image(tmp_path):
    """Imported panorama + bgr: the cached logits are the official teacher's on cv2.imread of the official
    file, mirrored into the stored orientation."""
    cv2 = pytest.importorskip("cv2")
    from PIL import Image

    from panorooms3d.bench.teacher import cache_teacher_predictions, teacher_cache_path
    from panorooms3d.nn.segmenter2d import Segmenter2D
    from panorooms3d.store.official import import_official

    h, w = 16, 32
    rng = np.random.default_rng(0)
    (tmp_path / "rooms").mkdir()
    sdf = np.ones((8, 8, 8), np.float32)
    sdf[:, :, 0] = -1.0  # a floor
    np.savez(tmp_path / "rooms" / "h_1.npz", sdf128=sdf, color128=np.zeros((8, 8, 8)),
             semanticlabel=np.zeros((8, 8, 8), np.int64))
    for sub in ("images", "annotations"):
        (tmp_path / "panos" / sub / "training").mkdir(parents=True)
    image = tmp_path / "panos" / "images" / "training" / "h_1.png"
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "panos" / "annotations" / "training" / "h_1.png")
    import_official(tmp_path / "rooms", tmp_path / "data", tmp_path / "panos")
    torch.manual_seed(0)
    teacher = Segmenter2D(num_classes=30, variant="tiny", image_size=(h, w), n_layers=1).eval()
    cache_teacher_predictions(teacher, tmp_path / "data", tmp_path / "cache", teacher_input="bgr", device="cpu",
                              progress=False)
    cached = np.load(teacher_cache_path(tmp_path / "cache", "h_1")).astype(np.float32)
    # distill.py: im2d = cv2.imread(image) / 255 -> normalize -> teacher
    im = torch.from_numpy(cv2.imread(str(image)).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        official = teacher(teacher.normalize(im))[0].numpy()
    np.testing.assert_allclose(cached, official[:, :, ::-1], atol=2e-2, rtol=1e-2)  # float16 cache
    assert not np.allclose(cached, official, atol=2e-2)  # the mirror matters


def test_distillation_kd_term_under_the_official_protocol():
    """room_losses with the official protocol's settings = the official formula on the official render."""
    from panorooms3d.bench.data import RoomSample, encode_official
    from panorooms3d.bench.distill import room_losses
    from panorooms3d.bench.protocol import load_protocol

    shape = (20, 16, 12)
    tsdf = _box_room(shape)
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    label = rng.choice([0, 40, 51], size=shape).astype(np.uint8)
    x, y = encode_official(tsdf, rgb, label)
    cam = np.array(shape) * 0.04 / 2
    sample = RoomSample(uid="r", x=x, y=y, tsdf=tsdf, origin=np.zeros(3), voxel_size=0.04, camera=cam)
    torch.manual_seed(0)
    model = torch.nn.Conv3d(4, 30, 1)
    teacher = torch.randn(30, 8, 16) * 5
    off = load_protocol("official").section("distill")
    assert off["kd_mask"] == "none" and off["kd_normalisation"] == "official"
    opts = {"face_size": 4, "n_samples": 12, "near": 0.02, "far": 0.9, "stitch_padding": off["stitch_padding"]}
    out = room_losses(model, sample, teacher, tau=off["tau"], projection=off["projection"],
                      kd_normalisation=off["kd_normalisation"], kd_mask=off["kd_mask"], projection_options=opts)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])[0]
        s = render_equirect_official(torch.from_numpy(tsdf), logits, origin=np.zeros(3), voxel_size=0.04, camera=cam,
                                     height=8, width=16, face_size=4, n_samples=12, near=0.02, far=0.9).values
    ls = torch.log_softmax(s / 20, 0).double()
    lt = torch.log_softmax(teacher / 20, 0).double()
    expect = float((lt.exp() * (lt - ls)).sum() * 400 / s.numel())  # distill.py's formula, all pixels
    assert float(out["kd"].detach()) == pytest.approx(expect, rel=1e-4)
    out["loss"].backward()
    assert model.weight.grad.abs().sum() > 0


def test_evaluate_with_official_weights_rounding_and_encoding(tmp_path):
    from panorooms3d.bench.evaluate import evaluate
    from panorooms3d.store.official import import_official

    rng = np.random.default_rng(4)
    (tmp_path / "rooms").mkdir()
    shapes = {"a_1": (20, 16, 12), "b_1": (12, 12, 8)}  # sides not multiples of 128
    for name, shape in shapes.items():
        sdf = rng.uniform(-1.5, 1.5, shape).astype(np.float32)
        rgb = rng.integers(0, 256, (*shape, 3))
        np.savez(tmp_path / "rooms" / f"{name}.npz", sdf128=sdf,
                 color128=(rgb[..., 2] * 65536 + rgb[..., 1] * 256 + rgb[..., 0]).astype(np.float64),
                 semanticlabel=rng.choice([0, 40, 51, 17], size=shape))
    import_official(tmp_path / "rooms", tmp_path / "data")
    torch.manual_seed(0)
    model = torch.nn.Conv3d(4, 30, 1)
    res = evaluate(model, tmp_path / "data", rooms=list(shapes), room_weights="official", round_per_room=True,
                   input_encoding="official", progress=False)
    weights = {r["uid"]: r["weight"] for r in res["rooms"]}
    for name, shape in shapes.items():
        assert weights[name] == pytest.approx(np.prod(np.array(shape) / 128))  # eval.py: prod(shape / 128)
    miou = {r["uid"]: r["mIoU"] for r in res["rooms"]}
    assert all(round(v, 2) == pytest.approx(v, abs=1e-9) for v in miou.values())  # rounded per room
    expect = sum(miou[n] * weights[n] for n in shapes) / sum(weights.values())  # np.dot(IoUs, weight) / sum
    assert res["metrics"]["mIoU"] == pytest.approx(expect)
