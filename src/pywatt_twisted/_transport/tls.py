# -*- test-case-name: tests.transport.test_tls -*-
"""
TLS for the framed TCP channel (PROTOCOL.md section 7, API.md section 3).

When the init blob's C{tcp_channel.tls_enabled} is true the module connects with
C{optionsForClientTLS}: the orchestrator's certificate must chain to the CA in
C{PYWATT_TLS_CA} and name the host (a DNS name or an IP address, checked by
service_identity) given by C{PYWATT_TLS_SERVER_NAME}, else the host of the channel
address. A client certificate (C{PYWATT_TLS_CERT} and C{PYWATT_TLS_KEY}) is presented
when configured, and is required when C{security_level} is C{Mtls}.

There is no fallback: without a CA, or with a certificate that does not verify, the
channel fails loudly and never connects in plaintext or without verification.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from attrs import frozen
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure

from pywatt_twisted.errors import ChannelError, ConfigurationError
from pywatt_twisted.wire.init import SecurityLevel

__all__ = [
    "ChannelTlsError",
    "TlsConfigurationError",
    "TlsHandshakeTimeout",
    "TlsMaterial",
    "client_tls_options",
    "describe_tls_failure",
    "is_tls_failure",
]


class ChannelTlsError(ChannelError):
    """
    A TLS channel could not be set up or did not verify. The channel never falls back
    to plaintext or to an unverified connection.
    """


class TlsConfigurationError(ChannelTlsError, ConfigurationError):
    """
    TLS is required for a channel but its material is missing or unreadable.
    """


class TlsHandshakeTimeout(ChannelTlsError):
    """
    The orchestrator accepted the TCP connection but did not complete the TLS
    handshake within C{tls_handshake_timeout}; the module aborted the connection and
    retries with backoff.
    """


@frozen
class TlsMaterial:
    """
    Where the TLS material of the TCP channel lives (file paths, PEM).

    @ivar ca_path: C{PYWATT_TLS_CA}: the CA certificate(s) to trust.
    @ivar cert_path: C{PYWATT_TLS_CERT}: the client certificate.
    @ivar key_path: C{PYWATT_TLS_KEY}: the client certificate's private key.
    @ivar server_name: C{PYWATT_TLS_SERVER_NAME}: the name to verify; C{None} means the
        host of the channel address.
    """

    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    server_name: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> TlsMaterial:
        """
        Read the C{PYWATT_TLS_*} variables (empty values count as unset).
        """
        env = os.environ if environ is None else environ
        return cls(
            ca_path=env.get("PYWATT_TLS_CA") or None,
            cert_path=env.get("PYWATT_TLS_CERT") or None,
            key_path=env.get("PYWATT_TLS_KEY") or None,
            server_name=env.get("PYWATT_TLS_SERVER_NAME") or None,
        )


def _read(path: str, variable: str) -> bytes:
    # Read once per channel start, before any connection: a few KB from local disk.
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsConfigurationError(
            f"cannot read {variable} ({path}): {e.strerror or e}; point {variable} at a "
            "readable PEM file"
        ) from None


def _certificates(pem: bytes, variable: str, path: str) -> list[Certificate]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        loaded = x509.load_pem_x509_certificates(pem)
    except ValueError:
        loaded = []
    if not loaded:
        raise TlsConfigurationError(
            f"{variable} ({path}) holds no PEM certificate; expected one or more "
            "'-----BEGIN CERTIFICATE-----' blocks"
        )
    return [Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in loaded]


def client_tls_options(
    material: TlsMaterial,
    host: str,
    security_level: SecurityLevel = SecurityLevel.NONE,
    channel: str = "tcp",
) -> IOpenSSLClientConnectionCreator:
    """
    Build the client TLS options of a channel.

    @param host: the host of the channel address (an IP literal); the name verified
        unless C{material.server_name} is set.
    @raise TlsConfigurationError: no CA, an unreadable or invalid file, half a client
        certificate (cert without key or the reverse), or C{Mtls} without one.
    """
    if material.ca_path is None:
        raise TlsConfigurationError(
            f"the {channel} channel has tls_enabled but PYWATT_TLS_CA is not set; set it "
            "to the PEM file of the CA that signed the orchestrator's certificate (the "
            "module never connects without verifying the orchestrator)"
        )
    trust = trustRootFromCertificates(
        _certificates(_read(material.ca_path, "PYWATT_TLS_CA"), "PYWATT_TLS_CA", material.ca_path)
    )
    if (material.cert_path is None) != (material.key_path is None):
        present, missing = (
            ("PYWATT_TLS_CERT", "PYWATT_TLS_KEY")
            if material.cert_path is not None
            else ("PYWATT_TLS_KEY", "PYWATT_TLS_CERT")
        )
        raise TlsConfigurationError(
            f"{present} is set but {missing} is not; a client certificate needs both the "
            "certificate and its private key"
        )
    client: PrivateCertificate | None = None
    if material.cert_path is not None and material.key_path is not None:
        cert_pem = _read(material.cert_path, "PYWATT_TLS_CERT")
        key_pem = _read(material.key_path, "PYWATT_TLS_KEY")
        try:
            client = PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
        except Exception as e:
            raise TlsConfigurationError(
                f"cannot load the client certificate from PYWATT_TLS_CERT "
                f"({material.cert_path}) and PYWATT_TLS_KEY ({material.key_path}): "
                f"{type(e).__name__}; expected a PEM certificate and its unencrypted PEM key"
            ) from None
    elif security_level is SecurityLevel.MTLS:
        raise TlsConfigurationError(
            "security_level is Mtls but no client certificate is configured; set "
            "PYWATT_TLS_CERT and PYWATT_TLS_KEY"
        )
    name = material.server_name or host
    return optionsForClientTLS(name, trustRoot=trust, clientCertificate=client)


def is_tls_failure(reason: Failure | BaseException | None) -> bool:
    """
    Whether a connection was lost because of TLS (handshake, verification, alert).
    """
    from OpenSSL.SSL import Error as SSLError
    from service_identity import CertificateError, VerificationError

    if reason is None:
        return False
    value = reason.value if isinstance(reason, Failure) else reason
    return isinstance(value, SSLError | ChannelTlsError | VerificationError | CertificateError)


def describe_tls_failure(reason: Failure | BaseException) -> str:
    """
    A one-line description of a TLS failure, from OpenSSL's error queue entries.
    """
    from service_identity import VerificationError

    value = reason.value if isinstance(reason, Failure) else reason
    if isinstance(value, VerificationError):
        names = []
        for error in value.errors:
            mismatched = getattr(error, "mismatched_id", None)
            name = getattr(mismatched, "hostname", None) or getattr(mismatched, "ip", None)
            if isinstance(name, bytes):
                name = name.decode("ascii", "replace")
            names.append(str(name) if name is not None else type(error).__name__)
        return (
            "TLS failed: the orchestrator's certificate is not valid for "
            f"{', '.join(names)} (set PYWATT_TLS_SERVER_NAME to a name the certificate holds)"
        )
    args = getattr(value, "args", ())
    parts: list[str] = []
    if args and isinstance(args[0], list):
        for entry in args[0]:
            if isinstance(entry, tuple) and entry:
                parts.append(str(entry[-1]))
    if not parts:
        parts.append(str(value) or type(value).__name__)
    return "TLS failed: " + "; ".join(parts)
