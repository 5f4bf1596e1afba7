"""nn stage of panorooms3d."""
