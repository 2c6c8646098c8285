"""Where the official API's requests may go: its root under a base URL, and which URLs
an answer names may be followed (same origin, acceptable stream hosts).

Read as httpx reads a URL, so what is checked is what is sent. No request is made here.
"""

from __future__ import annotations

import httpx


def api_root(base_url: str) -> str:
    """The API's root, where ``/v1/...`` paths go: ``base_url`` without a final ``/v1``,
    which the official clients' ``REPLICATE_BASE_URL`` includes
    (``https://api.replicate.com/v1``) and the paths already have."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def parse_url(url: str) -> httpx.URL | None:
    """``url`` as httpx reads it (the way it will be sent), or ``None`` if it can't be."""
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None


def url_origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port made explicit."""
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


def same_origin(url: str, base_url: str) -> bool:
    a, b = parse_url(url), parse_url(base_url)
    return a is not None and b is not None and url_origin(a) == url_origin(b)


def acceptable_stream_url(url: str, base_url: str) -> bool:
    """Whether a stream URL the service answered may be followed: http(s) with a host,
    no credentials in it, and never plain http when the API itself is https. Read as
    httpx reads it, so that what is checked is what is sent."""
    parsed, base = parse_url(url), parse_url(base_url)
    if parsed is None or base is None:
        return False
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.userinfo:
        return False
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return False
    return not (parsed.scheme == "http" and base.scheme == "https")
