"""The frames store: round trip, atomicity, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panorooms3d.store.frames import Frames, read_frames, write_frames


def _frames(n: int = 2, h: int = 6, w: int = 8) -> Frames:
    rng = np.random.default_rng(0)
    face = {"rgb": rng.integers(0, 255, (4, 4, 3), np.uint8), "depth": rng.random((4, 4), np.float32),
            "label": rng.integers(0, 99, (4, 4), np.uint8), "instance": rng.integers(0, 9, (4, 4), np.uint16)}
    return Frames(
        rgb=rng.integers(0, 255, (n, h, w, 3), np.uint8), depth=rng.random((n, h, w), np.float32),
        label=rng.integers(0, 99, (n, h, w), np.uint8), instance=rng.integers(0, 50, (n, h, w), np.uint16),
        K=np.array([[4.0, 0, 3.5], [0, 4.0, 2.5], [0, 0, 1]]), cam_to_world=np.stack([np.eye(4)] * n),
        skybox={"+x": face, "-z": face}, skybox_K=np.eye(3), pano_camera=np.array([1.0, 2.0, 1.4]),
        attrs={"room_uid": "h/r", "settings": {"samples": 4}},
    )


def test_round_trip(tmp_path: Path) -> None:
    f = _frames()
    write_frames(tmp_path / "room.zarr", f)
    g = read_frames(tmp_path / "room.zarr")
    for name in ("rgb", "depth", "label", "instance", "K", "cam_to_world"):
        assert np.array_equal(getattr(f, name), getattr(g, name)) and getattr(f, name).dtype == getattr(g, name).dtype
    assert set(g.skybox) == {"+x", "-z"} and np.array_equal(g.skybox["-z"]["label"], f.skybox["-z"]["label"])
    assert np.allclose(g.pano_camera, [1, 2, 1.4]) and g.attrs["settings"] == {"samples": 4}
    one = read_frames(tmp_path / "room.zarr", skybox=False, frames=slice(1, 2))
    assert one.num_frames == 1 and not one.skybox and np.array_equal(one.rgb[0], f.rgb[1])


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    f = _frames()
    f.label = f.label[:1]  # inconsistent: fails half-way through writing
    with pytest.raises(ValueError, match="label holds 1 frames"):
        write_frames(tmp_path / "room.zarr", f)
    assert list(tmp_path.iterdir()) == [], "no store and no temporary left behind"
    with pytest.raises(FileNotFoundError, match="room.zarr"):
        read_frames(tmp_path / "room.zarr")
