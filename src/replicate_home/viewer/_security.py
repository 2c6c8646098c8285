"""What keeps the viewer a local tool: no other site can drive it, no output can script it.

- **Content-Security-Policy** on every answer: scripts and styles only from the viewer's
  own ``/static/`` (no inline script, no ``eval``), no frames, no forms elsewhere. Model
  outputs are untrusted text: the page's script puts them in with ``textContent`` only,
  and were one ever to slip into markup, the policy still lets no script of it run.
  Images, audio and video may load from the viewer and, for runs whose files are not in
  an archive, from the output URLs the service gave (``http:``, ``https:``, ``data:``).
- **Host check**: bound to a loopback address, the viewer answers only requests whose
  ``Host`` names a loopback address (a DNS-rebinding page can't read it).
- **Cross-site requests**: every state-changing request (votes, thumbs) must carry the
  viewer's token (a random value made when it starts, given to its own pages in a
  ``<meta>`` tag, which another origin can't read), as a header a cross-site form can't
  set, and its ``Origin`` and ``Sec-Fetch-Site``, when the browser sends them, must say
  it comes from the viewer's own origin.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "TOKEN_HEADER", "SecurityMiddleware", "cross_site_problem", "is_loopback"]

#: The viewer's Content-Security-Policy.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' http: https: data:; media-src 'self' http: https: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: The header a state-changing request carries the viewer's token in.
TOKEN_HEADER = "x-viewer-token"

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def cross_site_problem(request: Request, token: str, origins: Collection[str]) -> str | None:
    """Why a state-changing ``request`` is refused, or ``None`` when it may go on."""
    given = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return "missing or wrong viewer token"
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a {site} request"
    origin = request.headers.get("origin")
    if origin is not None and origin not in origins:
        return "a request from another origin"
    return None


class SecurityMiddleware:
    """Adds the security headers to every answer; refuses a foreign ``Host`` when the
    viewer listens on loopback only, and a state-changing request without the token."""

    def __init__(self, app: ASGIApp, *, token: str, loopback_only: bool) -> None:
        self._app = app
        self._token = token
        self._loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        refusal: Response | None = None
        if self._loopback_only and not is_loopback(_host_name(host)):
            refusal = PlainTextResponse("this viewer answers on loopback only", 421)
        elif scope["method"] not in _SAFE_METHODS:
            request = Request(scope)
            scheme = scope.get("scheme", "http")
            problem = cross_site_problem(request, self._token, (f"{scheme}://{host}",))
            if problem is not None:
                refusal = PlainTextResponse(f"refused: {problem}", 403)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self._app(scope, receive, send_with_headers)
