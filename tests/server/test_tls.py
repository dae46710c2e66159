"""TLS and mTLS through real sockets against a real ``serve`` process: the right client is
accepted, wrong ones refused, and replaced certificate files reach new connections."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from devcluster.pki import KeyPair, TestCA
from extender.server.config import Settings
from extender.server.tls import CertificateReloader, TLSConfigError
from tests._support.polling import eventually
from tests.server.test_serve import POD, Server

HOSTS = ["localhost", "127.0.0.1"]


@dataclass
class Answer:
    status: int
    body: bytes
    serial: int  # of the certificate the server presented


class RefusedError(Exception):
    """The TLS handshake or the request on it failed."""


def call(
    port: int,
    trust: Path,
    client: tuple[Path, Path] | None = None,
    *,
    method: str = "GET",
    path: str = "/healthz",
    body: object = None,
) -> Answer:
    context = ssl.create_default_context(cafile=str(trust))
    if client is not None:
        context.load_cert_chain(*client)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        assert isinstance(connection.sock, ssl.SSLSocket)
        der = connection.sock.getpeercert(binary_form=True)
        assert der is not None
        serial = x509.load_der_x509_certificate(der).serial_number
        return Answer(response.status, payload, serial)
    except (ssl.SSLError, OSError, http.client.HTTPException) as err:
        raise RefusedError(f"{type(err).__name__}: {err}") from err
    finally:
        connection.close()


def replace(path: Path, data: bytes) -> None:
    """Like a Secret update: the new content appears at once (rename), no in-place write."""
    temporary = path.with_suffix(".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass
class PKI:
    dir: Path
    ca: TestCA
    serving: KeyPair
    client_ca: TestCA
    client: tuple[Path, Path]

    @property
    def trust(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def key(self) -> Path:
        return self.dir / "tls.key"

    @property
    def client_ca_file(self) -> Path:
        return self.dir / "client-ca.crt"

    def client_of(self, ca: TestCA, name: str) -> tuple[Path, Path]:
        return ca.issue_client_cert(name).write(self.dir / f"{name}.crt", self.dir / f"{name}.key")


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    ca, client_ca = TestCA("extender-ca"), TestCA("scheduler-client-ca")
    ca.write_cert(tmp_path / "ca.crt")
    client_ca.write_cert(tmp_path / "client-ca.crt")
    serving = ca.issue_server_cert(HOSTS)
    serving.write(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = client_ca.issue_client_cert("image-compat-scheduler").write(
        tmp_path / "client.crt", tmp_path / "client.key"
    )
    return PKI(tmp_path, ca, serving, client_ca, client)


def tls_server(pki: PKI, *extra: str) -> Server:
    return Server(
        [
            "--listen=127.0.0.1:0",
            "--feature-source=none",
            "--artifact-source=none",
            f"--tls-cert={pki.cert}",
            f"--tls-key={pki.key}",
            "--tls-reload-interval=50ms",
            *extra,
        ],
        {},
    )


@pytest.fixture
def mtls(pki: PKI) -> Iterator[Server]:
    server = tls_server(pki, f"--client-ca={pki.client_ca_file}")
    yield server
    assert server.stop() == 0
    assert "Traceback" not in server.log


def test_mtls_accepts_the_right_client_and_refuses_others(pki: PKI, mtls: Server) -> None:
    port = mtls.port()
    assert "HTTPS, client certificates required" in mtls.log
    answer = call(port, pki.trust, pki.client)
    assert answer.status == 200 and answer.serial == pki.serving.cert.serial_number
    args = {"Pod": POD, "Nodes": None, "NodeNames": ["a", "b"]}
    answer = call(port, pki.trust, pki.client, method="POST", path="/filter", body=args)
    assert json.loads(answer.body)["NodeNames"] == ["a", "b"]

    with pytest.raises(RefusedError):  # no client certificate
        call(port, pki.trust)
    stranger = pki.client_of(TestCA("someone-else"), "stranger")
    with pytest.raises(RefusedError):  # a client certificate from another CA
        call(port, pki.trust, stranger)
    with pytest.raises(RefusedError):  # the server's own CA does not sign clients here
        call(port, pki.trust, pki.client_of(pki.ca, "server-ca-client"))
    impostor_ca = TestCA("impostor").write_cert(pki.dir / "impostor.crt")
    with pytest.raises(RefusedError):  # and the client verifies the server
        call(port, impostor_ca, pki.client)
    # Plain HTTP on the TLS port gets nowhere, and the server goes on serving.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    with pytest.raises((OSError, http.client.HTTPException)):
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    connection.close()
    assert call(port, pki.trust, pki.client).status == 200


def test_replaced_files_reach_new_connections(pki: PKI, mtls: Server) -> None:
    port = mtls.port()
    first = pki.serving.cert.serial_number
    assert call(port, pki.trust, pki.client).serial == first

    # A renewed serving certificate (same CA): new connections get it.
    renewed = pki.ca.issue_server_cert(HOSTS)
    replace(pki.key, renewed.key_pem)
    replace(pki.cert, renewed.cert_pem)
    eventually(
        lambda: call(port, pki.trust, pki.client).serial == renewed.cert.serial_number,
        "the renewed certificate is served",
        within=60,
    )

    # A new client CA: its clients are accepted, the old CA's are refused.
    new_client_ca = TestCA("rotated-client-ca")
    new_client = pki.client_of(new_client_ca, "rotated-scheduler")
    replace(pki.client_ca_file, new_client_ca.cert_pem)

    def rotated() -> bool:
        try:
            call(port, pki.trust, new_client)
        except RefusedError:
            return False
        return True

    eventually(rotated, "a client of the new CA is accepted", within=60)
    with pytest.raises(RefusedError):
        call(port, pki.trust, pki.client)

    # A half-written renewal (a key that does not match the certificate) is not used: the
    # previous certificate goes on being served, and the problem is logged and counted.
    replace(pki.key, pki.ca.issue_server_cert(HOSTS).key_pem)
    eventually(lambda: "cannot be used" in mtls.log, "the bad files are noticed", within=60)
    answer = call(port, pki.trust, new_client, path="/metrics")
    assert answer.serial == renewed.cert.serial_number
    metrics = answer.body.decode()
    assert 'image_compat_tls_reloads_total{result="error"} 1.0' in metrics
    assert 'image_compat_tls_reloads_total{result="ok"} 2.0' in metrics


def test_tls_without_client_ca_serves_any_client(pki: PKI) -> None:
    server = tls_server(pki)
    try:
        port = server.port()
        assert call(port, pki.trust).status == 200
        assert call(port, pki.trust, pki.client).status == 200
    finally:
        assert server.stop() == 0


def test_unusable_tls_files_stop_serve_with_a_message(pki: PKI) -> None:
    other_key = pki.dir / "other.key"
    other_key.write_bytes(pki.ca.issue_server_cert(HOSTS).key_pem)
    server = Server(
        [
            *("--listen=127.0.0.1:0", "--feature-source=none", "--artifact-source=none"),
            *(f"--tls-cert={pki.cert}", f"--tls-key={other_key}"),
        ],
        {},
    )
    assert server.process.wait(timeout=60) == 1
    server.stop()
    assert f"cannot use certificate {pki.cert} with key {other_key}" in server.log
    assert "Traceback" not in server.log


def test_tls_settings_go_together(pki: PKI) -> None:
    from extender.server.config import ConfigError

    with pytest.raises(ConfigError, match="--tls-cert and --tls-key go together"):
        Settings(tls_cert=pki.cert).check()
    with pytest.raises(ConfigError, match="--client-ca needs --tls-cert"):
        Settings(client_ca=pki.client_ca_file).check()


def test_reloader_reports_unreadable_files_once_and_recovers(pki: PKI) -> None:
    results: list[bool] = []
    reloader = CertificateReloader(pki.cert, pki.key, on_reload=results.append)
    assert reloader.reload_if_changed() is False  # nothing changed
    saved = pki.cert.read_bytes()
    pki.cert.unlink()  # mid-swap
    assert reloader.reload_if_changed() is False
    assert reloader.reload_if_changed() is False
    assert results == [False]
    pki.cert.write_bytes(saved)  # back as it was: nothing to reload
    assert reloader.reload_if_changed() is False
    renewed = pki.ca.issue_server_cert(HOSTS)
    renewed.write(pki.cert, pki.key)
    assert reloader.reload_if_changed() is True
    assert results == [False, True] and reloader.reloads == 1
    with pytest.raises(TLSConfigError, match="cannot read"):
        CertificateReloader(pki.dir / "absent.crt", pki.key)


def test_explain_sits_behind_mtls_like_the_verbs(pki: PKI, mtls: Server) -> None:
    port = mtls.port()
    answer = call(port, pki.trust, pki.client, path="/explain?pod=shop/web")
    # Through the handshake; this server has no cluster to read the pod from.
    assert answer.status == 503
    assert "no Kubernetes API access" in json.loads(answer.body)["error"]
    with pytest.raises(RefusedError):
        call(port, pki.trust, path="/explain?pod=shop/web")

    def explain(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "extender", "explain", "shop/web"),
                *(f"--server=https://127.0.0.1:{port}", f"--cacert={pki.trust}", *flags),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    cert, key = pki.client
    done = explain(f"--cert={cert}", f"--key={key}")
    assert done.returncode == 1
    assert "503: this server has no Kubernetes API access" in done.stderr
    refused = explain()  # no client certificate: the handshake fails, no answer
    assert refused.returncode == 1
    assert "503" not in refused.stderr
    assert "image-compat-extender explain: error: https://127.0.0.1" in refused.stderr
