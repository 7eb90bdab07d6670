"""Modules that are also a function: how ``animegan2.stylize`` is both the module and the one-liner.

Importing a submodule binds it to its name on the package (``import animegan2.stylize``,
and any ``from .stylize import ...`` that loads it first, set ``animegan2.stylize`` to the
module), so the package cannot keep the function under that name. Instead the module is
made callable, in the way the Python reference gives for customizing a module: its
``__class__`` becomes a :class:`types.ModuleType` subclass with a ``__call__``.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def make_callable(module_name: str, function_name: str) -> None:
    """Make the module ``module_name`` callable: ``module(...)`` is ``module.function_name(...)``."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, function_name)(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
