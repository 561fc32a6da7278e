# -*- test-case-name: tests.transport.test_tls -*-
"""
A throw-away PKI for TLS set-ups on loopback: L{EphemeralPKI} makes a CA, a server
certificate and client certificates on the fly; L{server_tls_options} turns PEM material
into the orchestrator listener's TLS options. Used by C{pywatt dev}, the integration
tests, the examples and the benchmarks; never for production certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from attrs import frozen

__all__ = ["EphemeralPKI", "server_tls_options"]


def server_tls_options(cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None = None) -> Any:
    """
    TLS options for the orchestrator's listener. With C{client_ca_pem}, clients must
    present a certificate signed by that CA (mutual TLS).
    """
    from twisted.internet.ssl import Certificate, PrivateCertificate

    private = PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    if client_ca_pem is None:
        return private.options()
    return private.options(Certificate.loadPEM(client_ca_pem))


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _subject_alt_names(names: Sequence[str]) -> list[Any]:
    """
    The C{subjectAltName} entries for C{names}: IP addresses as such, the rest as DNS
    names.
    """
    from cryptography import x509

    sans: list[x509.GeneralName] = []
    for entry in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            sans.append(x509.DNSName(entry))
    return sans


class _ThrowAwayCA:
    """
    A fresh EC P-256 certificate authority valid for a day (from five minutes ago, for
    clock skew), and the leaf certificates it signs.
    """

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        now = datetime.datetime.now(datetime.UTC)
        self.start, self.end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = self._name(f"pywatt test CA {uuid.uuid4().hex[:8]}")
        self.certificate = (
            self._builder(self.name, self.key.public_key(), ca=True)
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
            .sign(self.key, hashes.SHA256())
        )

    @staticmethod
    def _name(common: str) -> Any:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def _builder(self, subject: Any, public_key: Any, ca: bool) -> Any:
        from cryptography import x509

        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.start)
            .not_valid_after(self.end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.certificate.public_bytes(serialization.Encoding.PEM)  # type: ignore[no-any-return]

    def leaf(self, common: str, sans: Iterable[Any], usage: Any) -> tuple[bytes, bytes]:
        """
        A certificate for C{common} with C{sans} and the extended key C{usage}, and its
        key: both PEM.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(self._name(common), key.public_key(), ca=False).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        sans = list(sans)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@frozen
class EphemeralPKI:
    """
    A throw-away CA with one server and one client certificate, for tests, benchmarks
    and local development. Never use these for anything real.
    """

    ca_cert: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes

    @classmethod
    def generate(
        cls,
        server_names: Sequence[str] = ("127.0.0.1", "localhost"),
        client_name: str = "pywatt-module",
    ) -> EphemeralPKI:
        """
        Make a CA, a server certificate for C{server_names} (IP addresses and DNS
        names) and a client certificate, all valid for a day.
        """
        from cryptography.x509.oid import ExtendedKeyUsageOID

        ca = _ThrowAwayCA()
        server_cert, server_key = ca.leaf(
            server_names[0] if server_names else "orchestrator",
            _subject_alt_names(server_names),
            ExtendedKeyUsageOID.SERVER_AUTH,
        )
        client_cert, client_key = ca.leaf(client_name, [], ExtendedKeyUsageOID.CLIENT_AUTH)
        return cls(ca.pem(), server_cert, server_key, client_cert, client_key)

    def server_options(self, require_client_cert: bool = True) -> Any:
        """
        L{server_tls_options} for this PKI's server certificate.
        """
        return server_tls_options(
            self.server_cert, self.server_key, self.ca_cert if require_client_cert else None
        )

    def write(self, directory: str) -> dict[str, str]:
        """
        Write the PEM files into C{directory}; return their paths by name (C{ca},
        C{server_cert}, C{server_key}, C{client_cert}, C{client_key}).
        """
        os.makedirs(directory, exist_ok=True)
        paths = {}
        for key in ("ca_cert", "server_cert", "server_key", "client_cert", "client_key"):
            path = os.path.join(directory, f"{key}.pem")
            with open(path, "wb") as f:
                f.write(getattr(self, key))
            if key.endswith("_key"):
                os.chmod(path, 0o600)
            paths["ca" if key == "ca_cert" else key] = path
        return paths
