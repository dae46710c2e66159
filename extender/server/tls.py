"""TLS and mTLS serving with certificates that follow their files.

Owns the server's ``ssl.SSLContext`` (:class:`CertificateReloader`): built from ``--tls-cert``,
``--tls-key`` and, for mTLS, ``--client-ca`` (clients must then present a certificate that CA
signed); and reloaded when the files' *content* changes. Kubernetes replaces a mounted
Secret by swapping a symlink, which emits no inotify event on the files themselves, so the
files are read and hashed every ``--tls-reload-interval`` instead.

How a reload reaches new connections: the listening socket keeps the context it was created
with; that context's SNI callback (OpenSSL calls it on every handshake, with or without a
server name) switches each new connection to the newest context. Connections already open
keep the certificate they started with. A change that cannot be loaded (a key that does not
match its certificate while a renewal is half written) is logged and the previous
certificates stay in use until the files are consistent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

__all__ = [
    "CertificateReloader",
    "TLSConfigError",
    "serving_tls",
]

log = logging.getLogger(__name__)


class TLSConfigError(Exception):
    """The certificate, key or CA files cannot be used (the message says which and why)."""


class CertificateReloader:
    """The serving context (:attr:`context`), swapped for a new one when the files change."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        *,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self._on_reload = on_reload
        self._digest = self._read_digest()
        self._current = self._build()
        self._failed_digest = ""
        self.reloads = 0
        # The context the listening socket is created with; it hands every new connection
        # to the newest context.
        self.context = self._current
        self.context.sni_callback = self._select

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def _files(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())

    def _read_digest(self) -> str:
        digest = hashlib.sha256()
        for path in self._files():
            try:
                data = path.read_bytes()
            except OSError as err:
                raise TLSConfigError(f"cannot read {path}: {err.strerror or err}") from None
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
        return digest.hexdigest()

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError, ValueError) as err:
            raise TLSConfigError(
                f"cannot use certificate {self.cert} with key {self.key}: {_reason(err)}"
            ) from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError, ValueError) as err:
                raise TLSConfigError(
                    f"cannot use client CA {self.client_ca}: {_reason(err)}"
                ) from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _select(self, connection: ssl.SSLObject, server_name: str | None, _: object) -> None:
        current = self._current
        if connection.context is not current:
            connection.context = current

    def reload_if_changed(self) -> bool:
        """Read and hash the files; on a change, build and switch to a new context.

        Returns True when a new context is in use. Never raises: a failure is logged (once
        per content) and counted, and the previous context stays.
        """
        try:
            digest = self._read_digest()
        except TLSConfigError as err:
            self._failed(f"unreadable: {err}", err)
            return False
        if digest in (self._digest, self._failed_digest):
            return False
        try:
            fresh = self._build()
        except TLSConfigError as err:
            self._failed(digest, err)
            return False
        self._current, self._digest, self._failed_digest = fresh, digest, ""
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert)
        if self._on_reload is not None:
            self._on_reload(True)
        return True

    def _failed(self, key: str, err: TLSConfigError) -> None:
        if key == self._failed_digest:
            return
        self._failed_digest = key
        log.warning("TLS files changed but cannot be used (the previous stay in use): %s", err)
        if self._on_reload is not None:
            self._on_reload(False)

    async def run(self, interval: float) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload_if_changed)


def _reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason.lower().replace("_", " ")
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)


@contextlib.asynccontextmanager
async def serving_tls(
    cert: Path,
    key: Path,
    client_ca: Path | None,
    *,
    interval: float,
    on_reload: Callable[[bool], None] | None = None,
) -> AsyncIterator[CertificateReloader]:
    """A reloader polling its files from entry to exit. Raises :class:`TLSConfigError`."""
    reloader = CertificateReloader(cert, key, client_ca, on_reload=on_reload)
    task = asyncio.create_task(reloader.run(interval), name="tls-reload")
    try:
        yield reloader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
