"""The ``replicate-home`` command line (the ``replicate-home`` console script, which
enters through the guard ``_replicate_home_cli`` outside the package, and ``python -m
replicate_home``). A program on top of the library: the library never imports it."""

from ._main import main

__all__ = ["main"]
