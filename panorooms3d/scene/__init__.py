"""scene stage of panorooms3d."""
