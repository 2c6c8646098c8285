"""The installed distribution's version, for ``__version__`` and the User-Agent."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("replicate-home")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
