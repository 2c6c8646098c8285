"""A local certificate authority, so that the emulator can serve https (``tls=True``).

The real service answers file outputs as ``https`` URLs, and the official clients wrap
only ``https`` (and ``data:``) URLs as files: an emulator that serves plain ``http`` makes
an app that stores output URLs see something the real service never sends. With TLS the
emulator's origins (the API, the stream origin, the output files) are ``https``, signed
by a certificate authority made on the spot by ``trustme`` (made for exactly this) and
trusted by nobody until a client is told to: ``SSL_CERT_FILE=<ca_bundle>`` for httpx and
the official Python client, ``NODE_EXTRA_CA_CERTS=<ca_bundle>`` for Node.js, or
:meth:`LocalAuthority.ssl_context` for a client built in the same process.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import tempfile
from pathlib import Path

__all__ = ["LocalAuthority"]

#: The names every emulator certificate is valid for: loopback by name and address.
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class LocalAuthority:
    """A throwaway certificate authority and one server certificate it signed, as PEM
    files in a private temporary directory (removed by :meth:`close`).

    ``hosts`` are extra names or addresses the certificate is valid for, besides
    loopback (``localhost``, ``127.0.0.1``, ``::1``).
    """

    def __init__(self, hosts: tuple[str, ...] = ()) -> None:
        try:
            import trustme
        except ImportError as error:  # pragma: no cover - trustme comes with the extra
            raise ImportError(
                "the emulator's TLS needs trustme: pip install 'replicate-home[emulator]'"
            ) from error
        names = list(dict.fromkeys((*_LOOPBACK, *(_identity(host) for host in hosts))))
        self._ca = trustme.CA(organization_name="replicate-home emulator")
        leaf = self._ca.issue_cert(*names)
        self._directory = Path(tempfile.mkdtemp(prefix="replicate-home-tls-"))
        try:
            self.ca_bundle = self._directory / "ca.pem"
            self.cert_chain = self._directory / "server.pem"
            self.key = self._directory / "server.key"
            self._ca.cert_pem.write_to_path(str(self.ca_bundle))
            with self.cert_chain.open("wb") as chain:
                for blob in leaf.cert_chain_pems:
                    chain.write(blob.bytes())
            leaf.private_key_pem.write_to_path(str(self.key))
        except BaseException:
            self.close()
            raise

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this authority (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def close(self) -> None:
        """Remove the files; connections already open are unaffected."""
        shutil.rmtree(self._directory, ignore_errors=True)


def _identity(host: str) -> str:
    """``host`` as a certificate identity: an address as such, a wildcard bind address
    as loopback (clients connect to loopback), a name as it is."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "::1"
    return str(address)
