"""Model registry, 3D U-Net and the ``models`` command, against the paper's parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from panorooms3d.nn import registry
from panorooms3d.nn.commands import models, parse_size
from panorooms3d.nn.registry import FAMILIES, build_model, count_parameters, get_spec, list_models
from panorooms3d.nn.segmenter3d import Segmenter3D
from panorooms3d.nn.unet3d import UNet3D

torch.set_num_threads(2)

# Table 1 / paper.md: name -> (family, paper params in M, relative tolerance)
PAPER = {
    "3dseg-t": ("segmenter3d", 0.375, 0.01),
    "3dseg-b": ("segmenter3d", 0.619, 0.01),
    "3dseg-m": ("segmenter3d", 1.5495, 0.01),
    "3dseg-l": ("segmenter3d", 4.4305, 0.01),
    "unet3d": ("unet3d", 16.32, 0.02),
}


class Recorder(nn.Module):
    """Stand-in family class that records its constructor arguments."""

    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs
        self.lin = nn.Linear(2, 3)


def write(path, text):
    path.write_text(text)
    return path


def test_registry_lists_our_models_with_the_papers_counts():
    specs = {s.name: s for s in list_models()}
    for name, (family, paper, _) in PAPER.items():
        assert specs[name].family == family
        assert specs[name].paper_params == pytest.approx(paper)
        assert specs[name].is_3d
    assert all(s.family in FAMILIES for s in specs.values())
    toml_names = {p.stem for p in registry.models_dir().glob("*.toml")}
    assert toml_names <= set(specs) | {s.path.stem for s in specs.values()}


@pytest.mark.parametrize("name", list(PAPER))
def test_named_model_parameter_counts_match_the_paper(name):
    _, paper, tol = PAPER[name]
    n = count_parameters(build_model(name, num_classes=30, in_channels=4))
    assert abs(n / 1e6 - paper) / paper <= tol


def test_unet_count_is_the_pytorch_3dunet_formula():
    # GN(C_in) + conv3 (no bias) per single conv; encoder first conv to max(out/2, in); 1x1 head with bias.
    def sc(i, o):
        return 2 * i + 27 * i * o

    enc = sc(4, 32) + sc(32, 64) + sc(64, 64) + sc(64, 128) + sc(128, 128) + sc(128, 256) + sc(256, 256) + sc(256, 512)
    dec = sc(768, 256) + sc(256, 256) + sc(384, 128) + sc(128, 128) + sc(192, 64) + sc(64, 64)
    assert count_parameters(UNet3D(num_classes=30, in_channels=4)) == enc + dec + 64 * 30 + 30


def test_unet_forward_backward_odd_size():
    torch.manual_seed(0)
    m = build_model("unet3d", num_classes=7, in_channels=4, f_maps=8)
    x = torch.randn(1, 4, 13, 22, 9, requires_grad=True)
    y = m(x)
    assert y.shape == (1, 7, 13, 22, 9)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_overrides_and_classes_reach_the_constructor():
    m = build_model("3dseg-t", num_classes=5, in_channels=4, embed_dim=8, num_heads=[2, 2])
    assert m.num_classes == 5 and m.embed_dim == 8
    with torch.no_grad():
        assert m(torch.randn(1, 4, 8, 8, 8)).shape == (1, 5, 8, 8, 8)
    with pytest.raises(TypeError, match="3dseg-t"):
        build_model("3dseg-t", not_an_argument=1)


def test_unknown_name_lists_known_models():
    with pytest.raises(KeyError) as e:
        get_spec("3dseg-xxl")
    for name in PAPER:
        assert name in str(e.value)


def test_env_folder_malformed_files_and_missing_family(tmp_path, monkeypatch):
    monkeypatch.setenv("PANOROOMS3D_MODELS", str(tmp_path))
    write(tmp_path / "a.toml", 'name = "tiny"\nfamily = "segmenter3d"\n[config]\nembed_dim = 8\nnum_heads = [2, 2]\n')
    assert [s.name for s in list_models()] == ["tiny"]
    expected = Segmenter3D(num_classes=30, in_channels=4, embed_dim=8, num_heads=[2, 2])
    assert count_parameters(build_model("tiny")) == count_parameters(expected)
    write(tmp_path / "b.toml", 'name = "gone"\nfamily = "vtunet"\n')
    monkeypatch.setitem(FAMILIES, "vtunet", "panorooms3d.nn.no_such_module:VTUNet")
    with pytest.raises(RuntimeError, match="vtunet.*not available"):
        build_model("gone")
    write(tmp_path / "c.toml", 'name = "tiny"\nfamily = "unet3d"\n')
    with pytest.raises(ValueError, match="defined twice"):
        list_models()
    (tmp_path / "c.toml").unlink()
    write(tmp_path / "d.toml", 'name = "x"\nfamily = "resnet"\n')
    with pytest.raises(ValueError, match="d.toml.*family 'resnet'"):
        list_models()
    write(tmp_path / "d.toml", 'name = "x\nfamily = ')
    with pytest.raises(ValueError, match="d.toml.*not valid TOML"):
        list_models()
    monkeypatch.setenv("PANOROOMS3D_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="PANOROOMS3D_MODELS"):
        list_models()


def test_2d_family_gets_no_in_channels(tmp_path, monkeypatch):
    monkeypatch.setenv("PANOROOMS3D_MODELS", str(tmp_path))
    write(tmp_path / "t.toml", 'name = "teacher-x"\nfamily = "segmenter2d"\n[config]\ndepth = 2\n')
    monkeypatch.setitem(FAMILIES, "segmenter2d", f"{__name__}:Recorder")
    m = build_model("teacher-x", num_classes=30)
    assert m.kwargs == {"depth": 2, "num_classes": 30}
    assert count_parameters(m) == 2 * 3 + 3
    m.lin.weight.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == 3


def test_parse_size():
    assert parse_size("64") == (64, 64, 64)
    assert parse_size("256x256x96") == (256, 256, 96)
    for bad in ("0", "1x2", "axb", "1x2x3x4"):
        with pytest.raises(ValueError):
            parse_size(bad)


# ---------------------------------------------------------------- CLI


def test_cli_lists_models_with_paper_counts():
    r = CliRunner().invoke(models, [])
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0]: ln.split() for ln in r.output.splitlines()[1:] if ln.strip() and not ln.startswith(" ")}
    assert lines["3dseg-t"][1:4] == ["segmenter3d", "0.3750", "0.3750"]
    assert lines["unet3d"][2] == "16.3232"
    r = CliRunner().invoke(models, ["--json"])
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["3dseg-m"]["params"] == count_parameters(build_model("3dseg-m"))
    assert abs(rows["3dseg-l"]["diff_pct"]) < 0.01


def test_cli_profile_json_tiny():
    r = CliRunner().invoke(models, ["profile", "3dseg-t", "--size", "16x16x8", "--json", "--threads", "1",
                                    "--repeats", "1"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["params"] == 375_036
    assert out["output_shape"] == [1, 30, 16, 16, 8]
    assert out["input_shape"] == [1, 4, 16, 16, 8]
    assert out["latency_s"] > 0 and out["threads"] == 1
    assert out["peak_rss_mb"] > 50  # torch alone is larger than this
    r = CliRunner().invoke(models, ["profile", "3dseg-t", "--size", "8", "--repeats", "1"])
    assert r.exit_code == 0 and "output         1x30x8x8x8" in r.output and "latency" in r.output


def test_cli_errors_are_clear(tmp_path):
    r = CliRunner().invoke(models, ["profile", "nope", "--size", "8"])
    assert r.exit_code == 1 and "unknown model 'nope'" in r.output and "3dseg-t" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    r = CliRunner().invoke(models, ["profile", "3dseg-t", "--size", "8x8"])
    assert r.exit_code == 2 and "--size" in r.output
    write(tmp_path / "t.toml", 'name = "teacher-y"\nfamily = "segmenter2d"\n')
    r = CliRunner().invoke(models, ["profile", "teacher-y"], env={"PANOROOMS3D_MODELS": str(tmp_path)})
    assert r.exit_code == 1 and "2D" in r.output
    r = CliRunner().invoke(models, [], env={"PANOROOMS3D_MODELS": str(tmp_path / "none")})
    assert r.exit_code == 1 and "does not exist" in r.output
