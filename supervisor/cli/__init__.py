"""The ``supervisor`` command, built on the library (the top layer)."""

from ._main import main

__all__ = ["main"]
