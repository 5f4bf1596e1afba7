"""run stage of panorooms3d."""
