"""The ``replicate-home`` command line (the ``replicate-home`` console script and
``python -m replicate_home``). A program on top of the library: the library never
imports it."""

from ._main import main

__all__ = ["main"]
