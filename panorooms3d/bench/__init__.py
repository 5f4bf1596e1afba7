"""bench stage of panorooms3d."""
