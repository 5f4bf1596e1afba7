"""store stage of panorooms3d."""
