"""The 2D teacher: Segmenter (Strudel et al., ICCV 2021), a ViT encoder + mask-transformer decoder.

The teacher segments equirectangular panoramas into the 30 training classes; its temperature-softened
class distributions are distilled into the 3D student (see docs/teacher.md).

Architecture (facts read from the public Segmenter code, ``rstrudel/segmenter``; written here from scratch):

- Encoder (ViT): ``patch_embed.proj`` Conv2d(3 -> d, kernel = stride = patch size), a ``cls_token`` (and a
  ``dist_token`` for DeiT backbones), a learned ``pos_embed`` for the training grid that is resized to the
  input grid by **bilinear** interpolation (``F.interpolate(mode="bilinear")``, as the official
  ``resize_pos_embed`` does; ``pos_embed_mode`` selects bicubic instead), pre-LayerNorm blocks
  (``norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2``; LayerNorm eps 1e-5; MLP ratio 4; GELU) and a final
  ``norm``. The official checkpoint also holds the ImageNet ``encoder.head`` (Linear(d, 1000)); it is unused for
  segmentation and dropped when loading.
- Decoder (mask transformer): ``proj_dec`` Linear(d_encoder -> d_model), ``n_cls`` learned class embeddings
  ``cls_emb`` (1, n_cls, d_model) appended to the patch tokens, ``n_layers`` (2) pre-norm blocks with
  ``d_model // 64`` heads and d_ff = 4 d_model, ``decoder_norm``, then ``patches @ proj_patch`` and
  ``classes @ proj_classes`` (each L2-normalised), masks = patches @ classes^T, ``mask_norm`` LayerNorm(n_cls),
  reshaped to the patch grid and bilinearly upsampled to the (padded) input size, then cropped.
- Inputs of any size are zero-padded on the bottom/right to multiples of the patch size, outputs unpadded.

Sizes (``variant``): tiny = ViT-Ti (192, 12 layers, 3 heads), small = ViT-S (384, 12, 6), base = ViT-B (768, 12, 12),
large = ViT-L (1024, 24, 16). The paper's teachers are Seg-B-Mask/16 and Seg-L-Mask/16.

Input normalisation is not part of ``forward``: the official ViT backbones expect ``(rgb - 0.5) / 0.5`` ("vit"),
DeiT backbones the ImageNet mean/std ("deit"); use :meth:`Segmenter2D.normalize` on RGB in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from panorooms3d.nn.layers import DropPath, Mlp, init_linear_layernorm
from panorooms3d.run.checkpoint import load_checkpoint

__all__ = [
    "VARIANTS",
    "NORMALIZATIONS",
    "Segmenter2D",
    "load_official_segmenter",
    "official_state_dict",
]

#: ViT sizes: d_model, n_layers, n_heads (MLP ratio 4).
VARIANTS: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 192, "n_layers": 12, "n_heads": 3},
    "small": {"d_model": 384, "n_layers": 12, "n_heads": 6},
    "base": {"d_model": 768, "n_layers": 12, "n_heads": 12},
    "large": {"d_model": 1024, "n_layers": 24, "n_heads": 16},
}

#: Per-channel (mean, std) for RGB in [0, 1], by the official ``normalization`` name.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "deit": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _linspace(stop: float, n: int) -> list[float]:
    """n evenly spaced floats from 0 to stop (torch.linspace(0, stop, n) in plain Python; meta-device safe)."""
    return [stop * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` Linear(d, 3d) and an output ``proj`` Linear(d, d)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, d) -> (B, N, d)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x)) (with stochastic depth)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, d) -> (B, N, d)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: Conv2d(channels -> d, kernel = stride = patch_size)."""

    def __init__(self, patch_size: int, dim: int, channels: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, C, H, W) with H, W multiples of the patch size -> (B, H/p * W/p, d), row-major."""
        return self.proj(images).flatten(2).transpose(1, 2)


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_extra: int, mode: str
) -> torch.Tensor:
    """Resize a ViT position embedding to a new patch grid.

    Args:
        pos_embed: (1, num_extra + gh*gw, d) float; extra (cls/dist) tokens first, then the grid row-major.
        old_grid: (gh, gw) the grid the embedding was learned for.
        new_grid: (nh, nw) target grid.
        num_extra: number of leading non-grid tokens (1, or 2 with a distillation token).
        mode: "bilinear" (official Segmenter) or "bicubic"; align_corners=False.

    Returns:
        (1, num_extra + nh*nw, d) float.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    extra, grid = pos_embed[:, :num_extra], pos_embed[0, num_extra:]
    d = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d)
    return torch.cat([extra, grid], dim=1)


class VisionTransformer(nn.Module):
    """ViT encoder returning normalised tokens (extra tokens first). Names follow the official layout."""

    def __init__(
        self,
        image_size: tuple[int, int],
        patch_size: int,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        drop_path_rate: float = 0.1,
        distilled: bool = False,
        channels: int = 3,
        pos_embed_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        if image_size[0] % patch_size or image_size[1] % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of the patch size {patch_size}")
        self.patch_size = patch_size
        self.grid_size = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.d_model = d_model
        self.distilled = bool(distilled)
        self.num_extra_tokens = 1 + int(self.distilled)
        self.pos_embed_mode = pos_embed_mode
        self.patch_embed = PatchEmbed(patch_size, d_model, channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        if self.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, d_model))
        n_tokens = self.grid_size[0] * self.grid_size[1] + self.num_extra_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, d_model))
        self.dropout = nn.Dropout(dropout)
        dpr = _linspace(drop_path_rate, n_layers)
        d_ff = d_ff or 4 * d_model
        self.blocks = nn.ModuleList([Block(d_model, n_heads, d_ff, dropout, dpr[i]) for i in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.distilled:
            nn.init.trunc_normal_(self.dist_token, std=0.02)
        self.apply(init_linear_layernorm)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, C, H, W) float, H and W multiples of the patch size -> (B, extra + H/p*W/p, d) tokens."""
        b, _, h, w = images.shape
        x = self.patch_embed(images)
        extra = [self.cls_token.expand(b, -1, -1)]
        if self.distilled:
            extra.append(self.dist_token.expand(b, -1, -1))
        x = torch.cat(extra + [x], dim=1)
        grid = (h // self.patch_size, w // self.patch_size)
        x = x + resize_pos_embed(self.pos_embed, self.grid_size, grid, self.num_extra_tokens, self.pos_embed_mode)
        x = self.dropout(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class MaskTransformer(nn.Module):
    """Segmenter's mask-transformer decoder (names follow the official layout)."""

    def __init__(
        self,
        n_cls: int,
        patch_size: int,
        d_encoder: int,
        n_layers: int = 2,
        n_heads: int | None = None,
        d_model: int | None = None,
        d_ff: int | None = None,
        drop_path_rate: float = 0.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        d_model = d_model or d_encoder
        n_heads = n_heads or max(1, d_model // 64)
        d_ff = d_ff or 4 * d_model
        self.n_cls = n_cls
        self.patch_size = patch_size
        scale = d_model**-0.5
        dpr = _linspace(drop_path_rate, n_layers)
        self.blocks = nn.ModuleList([Block(d_model, n_heads, d_ff, dropout, dpr[i]) for i in range(n_layers)])
        self.cls_emb = nn.Parameter(torch.randn(1, n_cls, d_model))
        self.proj_dec = nn.Linear(d_encoder, d_model)
        self.proj_patch = nn.Parameter(scale * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(scale * torch.randn(d_model, d_model))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.mask_norm = nn.LayerNorm(n_cls)
        self.apply(init_linear_layernorm)
        nn.init.trunc_normal_(self.cls_emb, std=0.02)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """tokens: (B, gh*gw, d_encoder) patch tokens (row-major) -> (B, n_cls, gh, gw) mask logits."""
        x = self.proj_dec(tokens)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], -1, -1)], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        patches, classes = x[:, : -self.n_cls] @ self.proj_patch, x[:, -self.n_cls :] @ self.proj_classes
        patches = patches / patches.norm(dim=-1, keepdim=True)
        classes = classes / classes.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))  # (B, N, n_cls)
        return masks.transpose(1, 2).reshape(x.shape[0], self.n_cls, grid[0], grid[1])


class Segmenter2D(nn.Module):
    """Segmenter (ViT + mask transformer) for panoramas: (B, 3, H, W) float -> (B, num_classes, H, W) logits.

    Args:
        num_classes: number of output classes K (30 for the paper's class set).
        variant: "tiny" | "small" | "base" | "large" (ViT size; overridden by explicit d_model/n_layers/n_heads).
        image_size: (H, W) in pixels the position embedding is learned for (a multiple of patch_size);
            other input sizes are handled by resizing the embedding.
        patch_size: ViT patch size in pixels (16 for Seg-*-Mask/16).
        decoder_layers: mask-transformer layers (2 in Segmenter).
        dropout, drop_path_rate: encoder dropout / stochastic depth (official defaults 0.0 / 0.1).
        decoder_dropout, decoder_drop_path_rate: decoder dropout / stochastic depth (official 0.1 / 0.0).
        distilled: DeiT backbone with a distillation token.
        normalization: "vit" or "deit": how RGB in [0, 1] is normalised for this backbone (see :meth:`normalize`).
        pos_embed_mode: "bilinear" (official) or "bicubic" resizing of the position embedding.
        in_channels: image channels (3).

    The state dict uses the official Segmenter names (``encoder.*``, ``decoder.*``), so official checkpoints load
    after dropping the unused ImageNet ``encoder.head``.
    """

    def __init__(
        self,
        num_classes: int = 30,
        variant: str = "base",
        image_size: tuple[int, int] | list[int] = (512, 1024),
        patch_size: int = 16,
        decoder_layers: int = 2,
        dropout: float = 0.0,
        drop_path_rate: float = 0.1,
        decoder_dropout: float = 0.1,
        decoder_drop_path_rate: float = 0.0,
        distilled: bool = False,
        normalization: str = "vit",
        pos_embed_mode: str = "bilinear",
        in_channels: int = 3,
        d_model: int | None = None,
        n_layers: int | None = None,
        n_heads: int | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown Segmenter variant {variant!r}; choose one of {sorted(VARIANTS)}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; choose one of {sorted(NORMALIZATIONS)}")
        size = dict(VARIANTS[variant])
        size.update({k: v for k, v in (("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads)) if v})
        image_size = (int(image_size[0]), int(image_size[1]))
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "variant": variant,
            "image_size": list(image_size),
            "patch_size": patch_size,
            "decoder_layers": decoder_layers,
            "dropout": dropout,
            "drop_path_rate": drop_path_rate,
            "decoder_dropout": decoder_dropout,
            "decoder_drop_path_rate": decoder_drop_path_rate,
            "distilled": distilled,
            "normalization": normalization,
            "pos_embed_mode": pos_embed_mode,
            "in_channels": in_channels,
            **size,
        }
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.normalization = normalization
        self.encoder = VisionTransformer(
            image_size,
            patch_size,
            size["n_layers"],
            size["d_model"],
            size["n_heads"],
            dropout=dropout,
            drop_path_rate=drop_path_rate,
            distilled=distilled,
            channels=in_channels,
            pos_embed_mode=pos_embed_mode,
        )
        self.decoder = MaskTransformer(
            num_classes,
            patch_size,
            size["d_model"],
            n_layers=decoder_layers,
            drop_path_rate=decoder_drop_path_rate,
            dropout=decoder_dropout,
        )

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb: (B, 3, H, W) float in [0, 1] -> the backbone's normalised input (same shape)."""
        mean, std = NORMALIZATIONS[self.normalization]
        m = rgb.new_tensor(mean).view(1, -1, 1, 1)
        s = rgb.new_tensor(std).view(1, -1, 1, 1)
        return (rgb - m) / s

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) float (normalised), any H, W -> (B, num_classes, H, W) float logits.

        The image is zero-padded on the bottom/right to multiples of the patch size; the mask logits are
        bilinearly upsampled to the padded size (align_corners=False) and cropped back to (H, W).
        """
        h0, w0 = images.shape[-2:]
        p = self.patch_size
        ph, pw = (-h0) % p, (-w0) % p
        if ph or pw:
            images = F.pad(images, (0, pw, 0, ph), value=0.0)
        h, w = images.shape[-2:]
        tokens = self.encoder(images)[:, self.encoder.num_extra_tokens :]
        masks = self.decoder(tokens, (h // p, w // p))
        masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
        return masks[:, :, :h0, :w0]

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        """Write our checkpoint format: torch.save({"config": constructor kwargs, "state_dict": ...}, path)."""
        torch.save({"config": dict(self.config), "state_dict": self.state_dict()}, Path(path))

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Segmenter2D:
        """Load a checkpoint of our format (see :meth:`save_checkpoint`) from a local file.

        Raises:
            FileNotFoundError: the file does not exist (nothing is ever downloaded).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Segmenter2D checkpoint not found: {path}")
        data = load_checkpoint(path, map_location)
        if not isinstance(data, dict) or "config" not in data or "state_dict" not in data:
            raise ValueError(f"{path} is not a panorooms3d Segmenter2D checkpoint (needs 'config' and 'state_dict')")
        config = dict(data["config"])
        for key in ("d_model", "n_layers", "n_heads"):
            config.setdefault(key, None)
        model = cls(**config)
        model.load_state_dict(data["state_dict"])
        return model


def official_state_dict(model: Segmenter2D) -> dict[str, torch.Tensor]:
    """Our Segmenter2D state dict in the official Segmenter layout (keys ``encoder.*`` / ``decoder.*``).

    Our module names equal the official ones, so this is the state dict itself; it exists so that code writing
    official-layout checkpoints does not depend on that fact. Returns {name: tensor} (tensors shared, not copied).
    """
    return dict(model.state_dict())


def _read_variant_yml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is installed in the project environment
        raise ImportError("reading Segmenter's variant.yml needs pyyaml (pip install pyyaml)") from exc
    with open(path) as f:
        variant = yaml.safe_load(f)
    if not isinstance(variant, dict) or "net_kwargs" not in variant:
        raise ValueError(f"{path} has no 'net_kwargs' section (expected an official Segmenter variant.yml)")
    return variant


def load_official_segmenter(
    weights_path: str | Path, variant_yml_path: str | Path | None = None, map_location: str | torch.device = "cpu"
) -> Segmenter2D:
    """Load an official Segmenter checkpoint (``rstrudel/segmenter`` layout) from local files.

    Args:
        weights_path: the ``checkpoint.pth`` whose ``"model"`` entry is the state dict (a bare state dict is also
            accepted).
        variant_yml_path: the ``variant.yml`` with ``net_kwargs`` (d_model, n_layers, n_heads, patch_size,
            image_size, n_cls, normalization, distilled, dropout, drop_path_rate and ``decoder`` with name
            "mask_transformer", n_layers, dropout, drop_path_rate); default: ``variant.yml`` beside the weights.
        map_location: torch.load map_location.

    Returns:
        A :class:`Segmenter2D` (eval mode) with ``num_classes = n_cls``. ``encoder.head*`` (ImageNet classifier)
        entries are dropped; every other key must match (strict load).

    Raises:
        FileNotFoundError: a file is missing (the message names the path; nothing is downloaded).
        ValueError: the decoder is not a mask transformer, or the variant file is malformed.
    """
    weights_path = Path(weights_path)
    yml = Path(variant_yml_path) if variant_yml_path is not None else weights_path.parent / "variant.yml"
    if not weights_path.is_file():
        raise FileNotFoundError(f"official Segmenter weights not found: {weights_path}")
    if not yml.is_file():
        raise FileNotFoundError(f"official Segmenter variant.yml not found: {yml}")
    net = _read_variant_yml(yml)["net_kwargs"]
    dec = dict(net.get("decoder") or {})
    if dec.get("name", "mask_transformer") != "mask_transformer":
        raise ValueError(f"only the mask_transformer decoder is supported, got {dec.get('name')!r}")
    image_size = net.get("image_size", 512)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    d_model = int(net["d_model"])
    model = Segmenter2D(
        num_classes=int(net["n_cls"]),
        variant=_closest_variant(d_model),
        image_size=tuple(image_size),
        patch_size=int(net["patch_size"]),
        decoder_layers=int(dec.get("n_layers", 2)),
        dropout=float(net.get("dropout", 0.0)),
        drop_path_rate=float(net.get("drop_path_rate", 0.1)),
        decoder_dropout=float(dec.get("dropout", 0.1)),
        decoder_drop_path_rate=float(dec.get("drop_path_rate", 0.0)),
        distilled=bool(net.get("distilled", False)),
        normalization=str(net.get("normalization", "vit")),
        d_model=d_model,
        n_layers=int(net["n_layers"]),
        n_heads=int(net["n_heads"]),
    )
    data = load_checkpoint(weights_path, map_location)
    state = data["model"] if isinstance(data, dict) and "model" in data else data
    state = {k: v for k, v in state.items() if not k.startswith(("encoder.head.", "encoder.head_dist."))}
    model.load_state_dict(state, strict=True)
    return model.eval()


def _closest_variant(d_model: int) -> str:
    """Name of the VARIANTS entry with this width (else the nearest one; explicit sizes override it anyway)."""
    return min(VARIANTS, key=lambda name: (abs(VARIANTS[name]["d_model"] - d_model), name))
