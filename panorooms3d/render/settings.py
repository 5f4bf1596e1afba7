"""Render settings: one dataclass, stored with every frames store (``attrs["settings"]``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

#: How the hand-held views of a room are chosen (``RenderSettings.view_selection``).
VIEW_SELECTIONS = ("random", "coverage")
#: How ``build`` (and ``plan``) choose views when neither --view-selection nor --views is given:
#: coverage-driven views see more of each room with fewer frames (docs/fusion.md, "Views").
BUILD_VIEW_SELECTION = "coverage"


@dataclass
class RenderSettings:
    """How a room is rendered (defaults = the paper's setup at laptop cost).

    Attributes:
        width, height: perspective frame size in pixels (default 640 x 480).
        hfov_deg: horizontal field of view of the perspective frames, degrees (60-75; default 70,
            close to a hand-held RGB-D camera's ~69 deg).
        views: perspective frames per room. Default 48: in a 3 x 2.5 m box room 6 random
            hand-held views see 28% of the surface, 24 views 74% and 48 views 80% (the stored
            ``coverage``; what stays unseen is mostly the ceiling, which views pitched 0-30 deg down
            rarely see), so 48 is where more views stop paying; the paper used ~424 per room on a
            GPU farm. Raise it for large or cluttered rooms (coverage tells you). Used when
            ``view_selection`` is ``"random"``.
        view_selection: ``"random"`` (``views`` random hand-held views) or ``"coverage"`` (as few
            hand-held views as reach ``coverage_target`` of the room's interior-visible surface,
            picked greedily among ``candidates`` candidate poses, at most ``max_views``; see
            :mod:`panorooms3d.render.coverage`).
        coverage_target: share (0-1) of the interior-visible surface the coverage-driven views must
            see (default 0.99).
        max_views: frame cap of the coverage-driven selection (default 64).
        candidates: candidate poses the coverage-driven selection chooses from (default 400).
        candidate_pitch_range_deg: pitch range of those candidates, degrees (positive = down):
            default -40..30, the hand-held range widened upwards, because views pitched only
            downwards cannot see the middle of the ceiling (a 4 x 3 x 2.8 m box room: at most 87% of
            its surface from 0-30 deg down). Every other hand-held rule holds.
        samples: Cycles samples per pixel (default 4, with denoising).
        denoise: OpenImageDenoise on the RGB (CPU).
        skybox_size: side of the six square 90 deg skybox faces in pixels (default 512 = the
            panorama height, so equirect pixels are never upsampled by more than ~1.6).
        seed: seeds camera sampling, texture re-sampling and Cycles' noise pattern.
        device: ``"CPU"`` (default) or ``"GPU"`` (CUDA/OptiX/HIP... when Blender finds one,
            else it falls back to the CPU and says so in the store's attrs).
        timeout: seconds before a room's Blender subprocess is killed (a hang fails the room).
        threads: Cycles render threads (0 = all cores).
        height_range: camera height above the room's floor, metres.
        pitch_range_deg: downward pitch of the cameras, degrees (0 = level, positive = down).
        clearance: minimum distance of any camera (and the panorama camera) to any surface, metres.
        min_median_depth: reject a view whose median depth is below this (metres): it stares at
            one nearby surface.
        max_instance_share: reject a view in which one instance covers more than this share of
            the pixels.
        resample_textures: re-sample the room's floor and wall textures from the house's pool
            (the paper's per-room texture diversity).
        world_strength: strength of the grey world light (seen through doors and windows).
    """

    width: int = 640
    height: int = 480
    hfov_deg: float = 70.0
    views: int = 48
    view_selection: str = "random"
    coverage_target: float = 0.99
    max_views: int = 64
    candidates: int = 400
    candidate_pitch_range_deg: tuple[float, float] = (-40.0, 30.0)
    samples: int = 4
    denoise: bool = True
    skybox_size: int = 512
    seed: int = 0
    device: str = "CPU"
    timeout: float = 1800.0
    threads: int = 0
    height_range: tuple[float, float] = (1.4, 1.8)
    pitch_range_deg: tuple[float, float] = (0.0, 30.0)
    clearance: float = 0.3
    min_median_depth: float = 0.8
    max_instance_share: float = 0.8
    resample_textures: bool = True
    world_strength: float = 0.3

    def __post_init__(self) -> None:
        self.device = str(self.device).upper()
        self.view_selection = str(self.view_selection).lower()
        self.height_range = tuple(float(x) for x in self.height_range)  # type: ignore[assignment]
        self.pitch_range_deg = tuple(float(x) for x in self.pitch_range_deg)  # type: ignore[assignment]
        self.candidate_pitch_range_deg = tuple(float(x) for x in self.candidate_pitch_range_deg)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a readable message for an impossible setting."""
        problems = []
        if self.width < 8 or self.height < 8:
            problems.append(f"frame size {self.width}x{self.height} is too small (at least 8x8)")
        if not 20.0 <= self.hfov_deg <= 120.0:
            problems.append(f"hfov_deg {self.hfov_deg} is outside 20-120 degrees")
        if self.views < 1:
            problems.append(f"views must be >= 1, got {self.views}")
        if self.view_selection not in VIEW_SELECTIONS:
            problems.append(f"view_selection must be one of {', '.join(VIEW_SELECTIONS)}, got {self.view_selection!r}")
        if not 0.0 < self.coverage_target <= 1.0:
            problems.append(f"coverage_target must be in (0, 1], got {self.coverage_target}")
        if self.max_views < 1:
            problems.append(f"max_views must be >= 1, got {self.max_views}")
        if self.candidates < 1:
            problems.append(f"candidates must be >= 1, got {self.candidates}")
        if self.samples < 1:
            problems.append(f"samples must be >= 1, got {self.samples}")
        if self.skybox_size < 8:
            problems.append(f"skybox_size must be >= 8, got {self.skybox_size}")
        if self.device not in ("CPU", "GPU"):
            problems.append(f"device must be CPU or GPU, got {self.device!r}")
        if self.timeout <= 0:
            problems.append(f"timeout must be > 0 s, got {self.timeout}")
        if not 0 < self.height_range[0] <= self.height_range[1]:
            problems.append(f"height_range {self.height_range} must be increasing and positive")
        if not -89 <= self.pitch_range_deg[0] <= self.pitch_range_deg[1] <= 89:
            problems.append(f"pitch_range_deg {self.pitch_range_deg} must be increasing within -89..89")
        if not -89 <= self.candidate_pitch_range_deg[0] <= self.candidate_pitch_range_deg[1] <= 89:
            problems.append(f"candidate_pitch_range_deg {self.candidate_pitch_range_deg} must be increasing within -89..89")
        if self.clearance < 0:
            problems.append(f"clearance must be >= 0 m, got {self.clearance}")
        if problems:
            raise ValueError("invalid render settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> RenderSettings:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown render settings: {', '.join(sorted(unknown))}")
        return cls(**d)
