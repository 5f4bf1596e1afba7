"""Load checkpoints of the official 3D Segmenter code into :class:`~panorooms3d.nn.segmenter3d.Segmenter3D`.

The official code (``network.py`` + ``swin_transformer.py``, a copy of Video Swin Transformer's
``SwinTransformer3D``) saves ``{"epoch", "state_dict", "optimizer"}`` where ``state_dict`` has keys

==============================================================  =====================================
official key                                                    ours
==============================================================  =====================================
``encoder.patch_embed.patch_embed.proj.{weight,bias}``          ``patch_embed.{weight,bias}``
``encoder.patch_embed.layers.{i}.blocks.{j}.<rest>``            ``stages.{i}.blocks.{j}.<rest>``
  (<rest> = norm1, attn.qkv, attn.proj,                           (same <rest>; the official
  attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2)     ``attn.relative_position_index``
                                                                  buffer is checked and dropped)
``encoder.patch_embed.layers.{i}.downsample.norm.*``            ``stages.{i}.downsample.norm.*`` (permuted)
``encoder.patch_embed.layers.{i}.downsample.reduction.weight``  ``stages.{i}.downsample.reduction.weight``
                                                                  (input columns permuted)
``encoder.patch_embed.norm.*``                                  ``norm.*``
``encoder.norm.*``                                              ``post_norm.*``
``decoder.head.*``                                              ``head.*``
``output.*``                                                    ``skip.*``
==============================================================  =====================================

Prefixes ``module.`` (DataParallel) are stripped. A bare Video-Swin backbone (keys ``patch_embed.proj.*``,
``layers.*``, ``norm.*``, optionally under ``backbone.``) maps the same way without the ``encoder.patch_embed.``
prefix.

Patch-merge order: the official ``PatchMerging`` concatenates the 2x2x2 neighbours as
``x0..x7 = x[0::2,0::2,0::2], x[1::2,0::2,0::2], x[0::2,1::2,0::2], x[1::2,1::2,0::2], x[0::2,0::2,1::2], ...``
over the (X, Y, Z) axes, i.e. neighbour (dx, dy, dz) sits in slot ``dx + 2 dy + 4 dz``; ours puts it in slot
``4 dx + 2 dy + dz``. The LayerNorm(8C) weight/bias and the reduction's input columns are permuted in C-sized
chunks accordingly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from panorooms3d.nn.segmenter3d import Segmenter3D, relative_position_index

__all__ = [
    "LoadReport",
    "build_from_official",
    "convert_official_state_dict",
    "load_official_segmenter3d",
    "merge_slot_permutation",
    "official_config",
]


@dataclass(frozen=True)
class LoadReport:
    """Outcome of loading an official checkpoint.

    Attributes:
        missing: our keys that the checkpoint did not provide.
        unexpected: checkpoint keys (official naming) that have no place in our model.
    """

    missing: list[str]
    unexpected: list[str]


def merge_slot_permutation() -> list[int]:
    """``perm[our_slot] = official_slot`` for the 8 neighbours of a 2x2x2 patch merge.

    Our slot of neighbour (dx, dy, dz) is ``4 dx + 2 dy + dz``; the official slot is ``dx + 2 dy + 4 dz``.
    """
    perm = []
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                perm.append(dx + 2 * dy + 4 * dz)
    return perm


def _permute_chunks(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Reorder the 8 C-sized chunks of ``t`` along ``dim`` from official to our slot order."""
    n = t.shape[dim]
    if n % 8:
        raise ValueError(f"patch-merge tensor has {n} entries along dim {dim}, not a multiple of 8")
    chunks = torch.chunk(t, 8, dim=dim)
    return torch.cat([chunks[o] for o in merge_slot_permutation()], dim=dim)


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return _unwrap(obj[key])
        return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    raise TypeError(f"expected a state dict or a checkpoint dict, got {type(obj).__name__}")


def _read(path_or_state_dict: str | Path | Mapping[str, object]) -> dict[str, torch.Tensor]:
    if isinstance(path_or_state_dict, str | Path):
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - report any unpickling problem with the path
            raise ValueError(f"cannot read checkpoint {path}: {e}") from e
        return _unwrap(obj)
    return _unwrap(path_or_state_dict)


_BACKBONE_PREFIXES = ("encoder.patch_embed.", "backbone.", "")


def _map_backbone(rest: str) -> str | None:
    if rest.startswith("patch_embed.proj."):
        return "patch_embed." + rest[len("patch_embed.proj."):]
    m = re.fullmatch(r"layers\.(\d+)\.(blocks\.\d+\..+|downsample\.(?:norm|reduction)\..+)", rest)
    if m:
        return f"stages.{m.group(1)}.{m.group(2)}"
    if rest.startswith("norm."):
        return rest
    return None


def convert_official_state_dict(state_dict: Mapping[str, object]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename (and re-order) an official state dict into our :class:`Segmenter3D` naming.

    Args:
        state_dict: official tensors (or a checkpoint dict holding ``state_dict``).

    Returns:
        (ours, unexpected): our-named tensors, and official keys that map to nothing.

    Raises:
        ValueError: a relative position index differs from ours (a different window definition).
    """
    sd = _unwrap(state_dict)
    ours: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in sd.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if k.endswith("attn.relative_position_index"):
            n = value.shape[0]
            w = round(n ** (1 / 3))
            if w**3 == n and not torch.equal(value.long(), relative_position_index((w, w, w))):
                raise ValueError(f"{key}: the relative position index differs from the Video-Swin definition")
            continue
        if k.startswith("encoder.norm."):
            ours["post_norm." + k[len("encoder.norm."):]] = value
            continue
        if k.startswith("decoder.head."):
            ours["head." + k[len("decoder.head."):]] = value
            continue
        if k.startswith("output."):
            ours["skip." + k[len("output."):]] = value
            continue
        new = None
        for prefix in _BACKBONE_PREFIXES:
            if k.startswith(prefix):
                new = _map_backbone(k[len(prefix):])
                if new is not None:
                    break
        if new is None:
            unexpected.append(key)
            continue
        if ".downsample.norm." in new:
            value = _permute_chunks(value, 0)
        elif ".downsample.reduction.weight" in new:
            value = _permute_chunks(value, 1)
        ours[new] = value
    return ours, unexpected


def official_config(state_dict: Mapping[str, object]) -> dict[str, object]:
    """Constructor arguments of :class:`Segmenter3D` inferred from an official state dict.

    Returns:
        dict with ``num_classes``, ``in_channels``, ``embed_dim``, ``depths``, ``num_heads``, ``patch_size``,
        ``window_size`` and ``skip``.
    """
    ours, _ = convert_official_state_dict(state_dict)
    if "patch_embed.weight" not in ours:
        raise ValueError("not a 3D Segmenter checkpoint: no patch embedding (patch_embed.proj.weight) found")
    w = ours["patch_embed.weight"]
    depths: dict[int, int] = {}
    heads: dict[int, int] = {}
    window = 8
    for k, v in ours.items():
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table", k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            depths[i] = max(depths.get(i, 0), j + 1)
            heads[i] = v.shape[1]
            window = (round(v.shape[0] ** (1 / 3)) + 1) // 2
    if "head.weight" not in ours:
        raise ValueError("not a 3D Segmenter checkpoint: no decoder head (decoder.head.weight) found")
    n = len(depths)
    return {
        "num_classes": int(ours["head.weight"].shape[0]),
        "in_channels": int(w.shape[1]),
        "embed_dim": int(w.shape[0]),
        "depths": [depths[i] for i in range(n)],
        "num_heads": [heads[i] for i in range(n)],
        "patch_size": int(w.shape[2]),
        "window_size": int(window),
        "skip": "skip.weight" in ours,
    }


def load_official_segmenter3d(
    path_or_state_dict: str | Path | Mapping[str, object], model: nn.Module, strict: bool = True
) -> LoadReport:
    """Load official 3D Segmenter weights into ``model`` (a :class:`Segmenter3D` of the same config).

    Args:
        path_or_state_dict: a ``.pth`` file (``torch.save``'d dict, optionally ``{"state_dict": ...}``) or a dict.
        model: the target model; its parameters are overwritten in place.
        strict: raise when keys are missing or unexpected (shapes must always match).

    Returns:
        :class:`LoadReport` with missing (ours) and unexpected (official) keys.

    Raises:
        FileNotFoundError, ValueError: unreadable file, mismatched shapes or keys (with ``strict``).
    """
    ours, unexpected = convert_official_state_dict(_read(path_or_state_dict))
    own = model.state_dict()
    for k, v in ours.items():
        if k in own and own[k].shape != v.shape:
            raise ValueError(
                f"checkpoint tensor {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}: "
                "build the model with the checkpoint's config (see official_config)"
            )
    unexpected += [k for k in ours if k not in own]
    for k in list(ours):
        if k not in own:
            del ours[k]
    missing = [k for k in own if k not in ours]
    if strict and (missing or unexpected):
        raise ValueError(f"official checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    model.load_state_dict(ours, strict=False)
    return LoadReport(missing=missing, unexpected=unexpected)


def build_from_official(path_or_state_dict: str | Path | Mapping[str, object]) -> Segmenter3D:
    """Build a :class:`Segmenter3D` with the config of an official checkpoint and load its weights."""
    sd = _read(path_or_state_dict)
    model = Segmenter3D(**official_config(sd))  # type: ignore[arg-type]
    load_official_segmenter3d(sd, model, strict=True)
    return model
