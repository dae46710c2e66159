"""Test PKI for devcluster: certificate authorities, serving and client certificates,
service-account signing keys and kubeconfigs, written with Python ``cryptography``.

Owns every key and certificate the local control plane uses (envtest's three-CA layout
of controller-runtime: a serving CA, a client CA whose ``system:masters`` admin cert bypasses
RBAC, and a service-account signer; plus kubeadm's front-proxy CA, see ``ClusterPKI``), and
the generic ``TestCA`` that other tests reuse for TLS registries and the extender's own TLS.

Keys are ECDSA P-256: generated in microseconds, accepted by Go's and Python's TLS stacks and
by kube-apiserver for service-account tokens (ES256). Nothing here is meant to be secure.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ClusterPKI",
    "KeyPair",
    "TestCA",
    "kubeconfig_dict",
    "write_kubeconfig",
]

# Long enough for a developer's `python -m devcluster up` left running for days; clocks of a
# single machine agree, the one-hour back-dating only absorbs rounding.
_VALIDITY = dt.timedelta(days=365)
_BACKDATE = dt.timedelta(hours=1)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Private keys are created 0600 from the start, not chmod-ed after the fact.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path) -> tuple[Path, Path]:
        """Write PEM files (key mode 0600) and return their paths."""
        _write_public(cert_path, self.cert_pem)
        _write_private(key_path, self.key_pem)
        return cert_path, key_path


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


class TestCA:
    """A self-signed certificate authority that issues server and client certificates.

    >>> ca = TestCA("registry-ca")
    >>> server = ca.issue_server_cert(["localhost", "127.0.0.1"])
    >>> client = ca.issue_client_cert("admin", ["system:masters"])
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, name: str = "devcluster-ca") -> None:
        self.name = name
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        self.keypair = KeyPair(cert, key)

    @property
    def cert(self) -> x509.Certificate:
        return self.keypair.cert

    @property
    def cert_pem(self) -> bytes:
        return self.keypair.cert_pem

    def write_cert(self, path: Path) -> Path:
        """Write the CA certificate (what clients trust) as PEM."""
        _write_public(path, self.cert_pem)
        return path

    def _issue(
        self,
        subject: x509.Name,
        usages: Sequence[x509.ObjectIdentifier],
        san: x509.SubjectAlternativeName | None,
    ) -> KeyPair:
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return KeyPair(builder.sign(self.keypair.key, hashes.SHA256()), key)

    def issue_server_cert(self, hosts: Sequence[str], cn: str | None = None) -> KeyPair:
        """A TLS serving certificate; ``hosts`` are DNS names or IP addresses (the SANs)."""
        if not hosts:
            raise ValueError("a server certificate needs at least one host name or IP")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or hosts[0])])
        return self._issue(subject, [ExtendedKeyUsageOID.SERVER_AUTH], _san(hosts))

    def issue_client_cert(self, cn: str, orgs: Sequence[str] = ()) -> KeyPair:
        """A TLS client certificate; Kubernetes reads CN as the user and O as the groups."""
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        return self._issue(x509.Name(attrs), [ExtendedKeyUsageOID.CLIENT_AUTH], None)


def kubeconfig_dict(
    server: str,
    ca_pem: bytes,
    client: KeyPair,
    *,
    cluster: str = "devcluster",
    user: str = "admin",
    namespace: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig with everything embedded (no file references to go stale)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    context: dict[str, Any] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": context}],
        "current-context": cluster,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path,
    server: str,
    ca_pem: bytes,
    client: KeyPair,
    *,
    cluster: str = "devcluster",
    user: str = "admin",
) -> Path:
    """Write a kubeconfig (mode 0600: it embeds a private key)."""
    doc = kubeconfig_dict(server, ca_pem, client, cluster=cluster, user=user)
    _write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return path


@dataclass(frozen=True)
class ClusterPKI:
    """Every file kube-apiserver and its clients need, laid out in one directory.

    ``cert_dir`` holds ``apiserver.crt``/``apiserver.key``: the names kube-apiserver looks for
    in ``--cert-dir``, so no --tls-* flags are needed.

    The front-proxy CA and client (kubeadm's layout) are not in envtest's: without
    ``--requestheader-client-ca-file`` every component that delegates authentication to the
    apiserver (kube-scheduler's /readyz, an extender using delegated auth) logs "missing
    content for CA bundle requestheader-client-ca-file" several times a second.
    """

    dir: Path
    serving_ca: TestCA
    client_ca: TestCA
    serving: KeyPair
    admin: KeyPair
    sa_key: ec.EllipticCurvePrivateKey
    front_proxy_ca: TestCA
    front_proxy_client: KeyPair

    @classmethod
    def create(
        cls, directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1")
    ) -> ClusterPKI:
        directory.mkdir(parents=True, exist_ok=True)
        serving_ca = TestCA("devcluster-serving-ca")
        client_ca = TestCA("devcluster-client-ca")
        front_proxy_ca = TestCA("devcluster-front-proxy-ca")
        pki = cls(
            dir=directory,
            serving_ca=serving_ca,
            client_ca=client_ca,
            serving=serving_ca.issue_server_cert(hosts, cn="kube-apiserver"),
            admin=client_ca.issue_client_cert("admin", ["system:masters"]),
            sa_key=_new_key(),
            front_proxy_ca=front_proxy_ca,
            front_proxy_client=front_proxy_ca.issue_client_cert(cls.FRONT_PROXY_CLIENT),
        )
        pki._write()
        return pki

    FRONT_PROXY_CLIENT = "front-proxy-client"

    @property
    def cert_dir(self) -> Path:
        return self.dir / "serving"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def client_ca_file(self) -> Path:
        return self.dir / "client-ca.crt"

    @property
    def sa_key_file(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub_file(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def front_proxy_ca_file(self) -> Path:
        return self.dir / "front-proxy-ca.crt"

    @property
    def front_proxy_client_files(self) -> tuple[Path, Path]:
        return self.dir / "front-proxy-client.crt", self.dir / "front-proxy-client.key"

    @property
    def admin_cert_file(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key_file(self) -> Path:
        return self.dir / "admin.key"

    def _write(self) -> None:
        self.serving_ca.write_cert(self.ca_file)
        self.client_ca.write_cert(self.client_ca_file)
        self.serving.write(self.cert_dir / "apiserver.crt", self.cert_dir / "apiserver.key")
        self.admin.write(self.admin_cert_file, self.admin_key_file)
        self.front_proxy_ca.write_cert(self.front_proxy_ca_file)
        self.front_proxy_client.write(*self.front_proxy_client_files)
        _write_private(
            self.sa_key_file,
            self.sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        _write_public(
            self.sa_pub_file,
            self.sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def write_admin_kubeconfig(self, path: Path, server: str) -> Path:
        return write_kubeconfig(path, server, self.serving_ca.cert_pem, self.admin)
