"""dataengine: a self-hosted data engine for computer-vision teams that learn from video."""

__version__ = "0.1.0"
