# -*- test-case-name: tests.orchestrator.test_package -*-
"""
The orchestrator's side of the protocol, shared by C{pywatt dev} (L{pywatt_twisted._dev})
and the test toolkit (L{pywatt_twisted.testing}):

  - L{ChannelServer} and L{ModuleConnection}: the listener for the modules' framed
    channels (TCP and/or Unix socket, TLS optional) and one accepted connection.
  - L{EphemeralPKI} and L{server_tls_options}: throw-away certificates for TLS on
    loopback.
  - The secret providers (L{ISecretProvider}, L{MemorySecretProvider},
    L{EnvironmentSecretProvider}, L{FileSecretProvider}, L{ChainedSecretProvider}):
    where an orchestrator's secrets come from.
  - L{ServiceHost}: databases and caches provided to modules by name (proxied
    services, C{state.service(name)}).

A module never imports this package: it is what plays the other end.
"""

from pywatt_twisted.orchestrator._channel_server import ChannelServer, ModuleConnection
from pywatt_twisted.orchestrator._pki import EphemeralPKI, server_tls_options
from pywatt_twisted.orchestrator._providers import (
    ChainedSecretProvider,
    EnvironmentSecretProvider,
    FileSecretProvider,
    ISecretProvider,
    MemorySecretProvider,
    read_secrets_file,
)
from pywatt_twisted.orchestrator._services import ServiceHost

__all__ = [
    "ChainedSecretProvider",
    "ChannelServer",
    "EnvironmentSecretProvider",
    "EphemeralPKI",
    "FileSecretProvider",
    "ISecretProvider",
    "MemorySecretProvider",
    "ModuleConnection",
    "ServiceHost",
    "read_secrets_file",
    "server_tls_options",
]
