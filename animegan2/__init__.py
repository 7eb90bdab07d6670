"""AnimeGANv2 for PyTorch: exact to the original TensorFlow release, with a verified model zoo.

>>> import animegan2
>>> anime = animegan2.stylize("photo.jpg", style="hayao")   # doctest: +SKIP
"""

from .errors import AnimeGANError
from .model import Generator

__version__ = "0.1.0"

_LAZY = {"stylize": "stylize", "Stylizer": "stylize", "stylize_file": "stylize", "stylize_dir": "stylize"}

__all__ = ["AnimeGANError", "Generator", "Stylizer", "__version__", "stylize", "stylize_dir", "stylize_file"]


def __getattr__(name: str):
    # Imported on first use so that `import animegan2` stays light. `animegan2.stylize` is the
    # module, which is callable as the one-liner.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return module if name == "stylize" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
