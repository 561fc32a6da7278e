# -*- test-case-name: tests.transport.test_channel_server -*-
"""
Moved to L{pywatt_twisted.orchestrator} (the channel server in
L{pywatt_twisted.orchestrator._channel_server}, the test PKI in
L{pywatt_twisted.orchestrator._pki}); this module re-exports its public names so
existing imports keep working.
"""

import warnings

from pywatt_twisted.orchestrator import (
    ChannelServer,
    EphemeralPKI,
    ModuleConnection,
    server_tls_options,
)

__all__ = ["ChannelServer", "EphemeralPKI", "ModuleConnection", "server_tls_options"]

warnings.warn(
    "pywatt_twisted.dev.channel_server is deprecated: import from pywatt_twisted.orchestrator",
    DeprecationWarning,
    stacklevel=2,
)
