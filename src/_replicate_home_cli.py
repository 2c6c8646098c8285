"""The ``replicate-home`` console script: ``replicate_home.cli.main`` behind a guard.

Importing the package takes a noticeable moment (httpx, anyio and the library's core
load first), and a Ctrl-C then would end in a traceback. This module is outside the
package on purpose: importing anything under ``replicate_home`` runs the package's
``__init__`` first, which is where that time goes, so only a module of its own can be
running when the Ctrl-C comes. It then exits with status 130 and the command line's own
one line, as a Ctrl-C at any later moment does. (``python -m replicate_home`` imports
the package before any code of it runs: its first moment is not covered.)
"""

from __future__ import annotations

import sys

__all__ = ["main"]

#: The command line's exit status after Ctrl-C (128 + SIGINT), as ``replicate_home.cli``.
EXIT_INTERRUPTED = 130


def main() -> int:
    """Import the command line and run it; a Ctrl-C at any moment is status 130."""
    try:
        from replicate_home.cli import main as run

        return run()
    except KeyboardInterrupt:
        sys.stderr.write("replicate-home: error: interrupted\n")
        sys.stderr.flush()
        return EXIT_INTERRUPTED
