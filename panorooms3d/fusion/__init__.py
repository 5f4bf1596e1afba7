"""fusion stage of panorooms3d."""
