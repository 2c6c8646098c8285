"""A run is bound to the service it was recorded on.

Its predictions live on that service (a resume follows the ones still running by id,
and looks lost creates up in that account's listing), and its results came from it: a
resume on another service, another base URL, or on an emulator in place of a real
service would send cells again elsewhere and mix outputs of two services in one run.
So a run records its service's kind, its base URL (without credentials or a query:
the database is shared and shown) and whether it is an emulator started for the run,
and a resume is checked against them before anything is sent.

An emulator started for a run (``replicate-home compare --emulator``) listens on a new
port each time, so for such runs only the kind is compared: any emulator started for
the resume will do, and never a real service.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from .._exceptions import RunBoundElsewhere
from ._store import RunRecord

__all__ = ["check_binding", "origin_of"]


def origin_of(base_url: str) -> str:
    """``base_url`` as a run records it: scheme, host, port and path (lower-case scheme
    and host, no trailing slash), never credentials, a query or a fragment."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))


def _describe(service: str, origin: str | None, emulator: bool) -> str:
    if emulator:
        return f"the {service} service of an emulator"
    return f"the {service} service at {origin}"


def check_binding(run: RunRecord, service: str, origin: str, emulator: bool) -> bool:
    """Raise :class:`RunBoundElsewhere` if ``run`` was recorded on another service than
    ``service`` at ``origin`` (``emulator``: one started for the run). ``True`` when the
    run was recorded before runs were bound (it should be bound to this one now)."""
    given = _describe(service, origin, emulator)
    recorded_emulator = bool(run.emulator)
    mismatch = run.service != service
    if run.emulator is not None:
        mismatch = mismatch or recorded_emulator != emulator
        mismatch = mismatch or (not emulator and run.origin != origin)
    if mismatch:
        raise RunBoundElsewhere(
            run.id,
            service=run.service,
            origin=run.origin,
            emulator=recorded_emulator,
            given=given,
        )
    return run.emulator is None
