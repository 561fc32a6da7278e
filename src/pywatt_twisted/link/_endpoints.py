# -*- test-case-name: tests.transport.test_tls -*-
"""
Where the link layer connects: real client endpoints for a L{ChannelSpec} (TCP over
IPv4 or IPv6, Unix sockets), the TLS client context a channel needs
(L{tls_options_for}), and L{ObservedEndpoint}, which tells a channel about each
attempt and its failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted._transport.tls import (
    TlsConfigurationError,
    TlsMaterial,
    client_tls_options,
    describe_tls_failure,
    is_tls_failure,
)
from pywatt_twisted.link._options import ChannelSpec
from pywatt_twisted.wire.init import SecurityLevel

__all__ = [
    "EndpointFactory",
    "ObservedEndpoint",
    "default_endpoint_factory",
    "describe_failure",
    "tls_options_for",
]

EndpointFactory = Callable[[ChannelSpec, Any], IStreamClientEndpoint]
"""C{(spec, tls_options or None) -> endpoint}."""


def default_endpoint_factory(reactor: Any, connect_timeout: float) -> EndpointFactory:
    """
    Real endpoints: TCP (IPv4 or IPv6 literal), optionally wrapped in TLS, or Unix.
    """

    def build(spec: ChannelSpec, tls_options: Any) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint
        if spec.path is not None:
            endpoint = UNIXClientEndpoint(reactor, spec.path, timeout=connect_timeout)
        else:
            assert spec.host is not None and spec.port is not None
            kind = TCP6ClientEndpoint if ":" in spec.host else TCP4ClientEndpoint
            endpoint = kind(reactor, spec.host, spec.port, timeout=connect_timeout)
        if tls_options is not None:
            endpoint = _TlsClientEndpoint(endpoint, tls_options, reactor)
        return endpoint

    return build


@implementer(IStreamClientEndpoint)
class _TlsClientEndpoint:
    """
    Like C{wrapClientTLS}, but the TLS layer schedules its write batching on the
    given reactor instead of the global one.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, options: Any, clock: Any) -> None:
        self._endpoint = endpoint
        self._options = options
        self._clock = clock

    def connect(self, factory: Any) -> Deferred[Any]:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        tls = TLSMemoryBIOFactory(self._options, True, factory, clock=self._clock)
        d: Deferred[Any] = self._endpoint.connect(tls)
        return d.addCallback(lambda p: p.wrappedProtocol)


def tls_options_for(
    spec: ChannelSpec, security_level: SecurityLevel, material: TlsMaterial | None = None
) -> Any:
    """
    The TLS client options of C{spec}, or C{None} for a plaintext channel.

    @param material: where the TLS files are (default: the environment).
    @raise TlsConfigurationError: if TLS material is missing, or the TCP channel is
        plaintext at the C{Mtls} security level (never fall back to plaintext).
    """
    if spec.tls:
        assert spec.host is not None
        return client_tls_options(
            material or TlsMaterial.from_environment(),
            spec.host,
            security_level,
            channel=spec.name,
        )
    if spec.name == "tcp" and security_level is SecurityLevel.MTLS:
        raise TlsConfigurationError(
            "security_level is Mtls but tcp_channel.tls_enabled is false; refusing to "
            "connect the TCP channel in plaintext"
        )
    return None


class AttemptObserver(Protocol):
    """
    What L{ObservedEndpoint} reports to (a channel).
    """

    def attempting(self) -> None: ...

    def attempt_failed(self, failure: Failure) -> None: ...


@implementer(IStreamClientEndpoint)
class ObservedEndpoint:
    """
    Tells its channel about every connection attempt and failure.
    """

    def __init__(
        self, endpoint: IStreamClientEndpoint, observer: AttemptObserver, label: str
    ) -> None:
        self._endpoint = endpoint
        self._observer = observer
        self._label = label

    def connect(self, factory: Any) -> Deferred[Any]:
        self._observer.attempting()
        d = self._endpoint.connect(factory)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Failure) -> Failure:
        if not failure.check(CancelledError):
            self._observer.attempt_failed(failure)
        return failure

    def __repr__(self) -> str:
        return f"<{self._label}>"


def describe_failure(reason: Failure | BaseException) -> str:
    """
    A short text for why a connection failed (TLS failures in plain words).
    """
    if is_tls_failure(reason):
        return describe_tls_failure(reason)
    value = reason.value if isinstance(reason, Failure) else reason
    text = str(value).strip()
    return text or type(value).__name__


def failure_value(cause: Failure | BaseException) -> BaseException:
    """
    The exception of a L{Failure}, or C{cause} itself.
    """
    return cause.value if isinstance(cause, Failure) else cause
