"""Registry of named models: one TOML file per model in the top-level ``models/`` folder.

A model file looks like::

    name = "3dseg-t"
    family = "segmenter3d"          # segmenter3d | unet3d | vtunet | sparseconv | segmenter2d
    paper_params = 0.375            # millions, as the paper reports (optional)
    description = "3D Segmenter tiny"

    [config]                        # keyword arguments of the family's constructor
    embed_dim = 48
    depths = [2, 2]
    num_heads = [3, 3]

The folder is ``Path(panorooms3d.__file__).parents[1] / "models"``, or the folder named by the
environment variable ``PANOROOMS3D_MODELS``. Family classes are imported lazily, so a family whose
module is missing only fails when one of its models is built.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

import panorooms3d

__all__ = [
    "FAMILIES",
    "THREE_D_FAMILIES",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "get_spec",
    "list_models",
    "models_dir",
]

FAMILIES: dict[str, str] = {
    "segmenter3d": "panorooms3d.nn.segmenter3d:Segmenter3D",
    "unet3d": "panorooms3d.nn.unet3d:UNet3D",
    "vtunet": "panorooms3d.nn.vtunet:VTUNet",
    "sparseconv": "panorooms3d.nn.sparseconv:SparseConvUNet",
    "segmenter2d": "panorooms3d.nn.segmenter2d:Segmenter2D",
}
"""Family name -> ``module:Class`` that builds it."""

THREE_D_FAMILIES = frozenset({"segmenter3d", "unet3d", "vtunet", "sparseconv"})
"""Families whose forward maps (B, in_channels, X, Y, Z) -> (B, num_classes, X, Y, Z)."""

ENV_VAR = "PANOROOMS3D_MODELS"


@dataclass(frozen=True)
class ModelSpec:
    """One named model as read from its TOML file.

    Attributes:
        name: registry name (e.g. ``"3dseg-t"``).
        family: one of :data:`FAMILIES`.
        description: one line for humans.
        paper_params: parameter count the paper reports, in millions (None when it gives none).
        config: constructor keyword arguments (without ``num_classes`` / ``in_channels`` unless fixed).
        path: the TOML file it came from.
    """

    name: str
    family: str
    description: str = ""
    paper_params: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def is_3d(self) -> bool:
        """True for volumetric families (input (B, C, X, Y, Z))."""
        return self.family in THREE_D_FAMILIES


def models_dir() -> Path:
    """The folder of model TOML files: ``$PANOROOMS3D_MODELS`` or ``<repo>/models``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(panorooms3d.__file__).resolve().parents[1] / "models"


def _load_spec(path: Path) -> ModelSpec:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"model file {path} is not valid TOML: {e}") from e
    family = data.get("family")
    if family not in FAMILIES:
        raise ValueError(f"model file {path}: family {family!r} is not one of {sorted(FAMILIES)}")
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"model file {path}: [config] must be a table of constructor arguments")
    paper = data.get("paper_params")
    if paper is not None and not isinstance(paper, int | float):
        raise ValueError(f"model file {path}: paper_params must be a number (millions), got {paper!r}")
    return ModelSpec(
        name=str(data.get("name", path.stem)),
        family=family,
        description=str(data.get("description", "")),
        paper_params=None if paper is None else float(paper),
        config=dict(config),
        path=path,
    )


def list_models(directory: str | Path | None = None) -> list[ModelSpec]:
    """All named models, sorted by family, then the paper's parameter count, then name.

    Args:
        directory: folder of ``*.toml`` files; default :func:`models_dir`.

    Raises:
        FileNotFoundError: the folder does not exist (names the folder and ``PANOROOMS3D_MODELS``).
        ValueError: a file is malformed or two files share a name.
    """
    folder = Path(directory) if directory is not None else models_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist (set {ENV_VAR} to the folder of model TOMLs)")
    specs: dict[str, ModelSpec] = {}
    for path in sorted(folder.glob("*.toml")):
        spec = _load_spec(path)
        if spec.name in specs:
            raise ValueError(f"model name {spec.name!r} is defined twice: {specs[spec.name].path} and {path}")
        specs[spec.name] = spec
    order = list(FAMILIES)
    inf = float("inf")
    return sorted(
        specs.values(),
        key=lambda s: (order.index(s.family), s.paper_params if s.paper_params is not None else inf, s.name),
    )


def get_spec(name: str, directory: str | Path | None = None) -> ModelSpec:
    """The spec of a named model, or of a TOML file given by path.

    Raises:
        KeyError: unknown name; the message lists the known names.
    """
    if name.endswith(".toml") and Path(name).is_file():
        return _load_spec(Path(name))
    specs = list_models(directory)
    for s in specs:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in specs) or "(none)"
    raise KeyError(f"unknown model {name!r}; known models: {known}")


def _family_class(family: str) -> type[nn.Module]:
    target = FAMILIES[family]
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise RuntimeError(f"model family {family!r} is not available: module {module_name} is missing") from e
        raise RuntimeError(
            f"model family {family!r} is not available: {module_name} needs {e.name!r}, which is not installed"
        ) from e
    try:
        return getattr(module, cls_name)
    except AttributeError as e:
        raise RuntimeError(f"model family {family!r} is not available: {module_name} has no {cls_name}") from e


def build_model(
    name: str | ModelSpec, num_classes: int = 30, in_channels: int = 4, directory: str | Path | None = None,
    **overrides: Any,
) -> nn.Module:
    """Instantiate a named model.

    Args:
        name: registry name, TOML path, or a :class:`ModelSpec`.
        num_classes: output classes K (30 = the paper's class set).
        in_channels: input channels of volumetric models (4 = [tsdf-channel, r, g, b]); not passed to the
            2D teacher (family ``segmenter2d``), which takes RGB images.
        directory: model folder (default :func:`models_dir`).
        **overrides: constructor keyword arguments that replace the TOML's ``[config]`` values.

    Returns:
        the model; for 3D families its forward maps (B, in_channels, X, Y, Z) -> (B, num_classes, X, Y, Z).

    Raises:
        KeyError: unknown name. RuntimeError: the family's module is missing. TypeError: bad overrides.
    """
    spec = name if isinstance(name, ModelSpec) else get_spec(name, directory)
    cls = _family_class(spec.family)
    kwargs: dict[str, Any] = dict(spec.config)
    kwargs["num_classes"] = num_classes
    if spec.is_3d:
        kwargs["in_channels"] = in_channels
    kwargs.update(overrides)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f"cannot build model {spec.name!r} ({cls.__name__}) with {sorted(kwargs)}: {e}") from e


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
