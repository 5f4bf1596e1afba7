"""panorama stage of panorooms3d."""

#: Names re-exported lazily from :mod:`panorooms3d.panorama.projection` (torch is imported only on use).
_PROJECTION_NAMES = (
    "ProjectionResult",
    "render_equirect",
    "render_equirect_faces",
    "render_equirect_emission",
    "render_rays",
    "render_skybox",
    "stitch_equirect",
)


def __getattr__(name: str):
    """Lazy access to the differentiable projection, e.g. ``panorooms3d.panorama.render_equirect``."""
    if name in _PROJECTION_NAMES:
        from panorooms3d.panorama import projection

        return getattr(projection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
