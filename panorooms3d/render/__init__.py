"""render stage of panorooms3d."""
