"""panorama stage of panorooms3d."""
