"""panorooms3d: make, ship and benchmark PanoRooms3D-style 3D semantic segmentation data."""

__version__ = "0.1.0"
