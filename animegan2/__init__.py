"""AnimeGANv2 for PyTorch: exact to the original TensorFlow release, with a verified model zoo."""

from .errors import AnimeGANError
from .model import Generator

__version__ = "0.1.0"

__all__ = ["AnimeGANError", "Generator", "__version__"]
