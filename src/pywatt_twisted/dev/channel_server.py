# -*- test-case-name: tests.transport.test_channel_server -*-
"""
Moved to L{pywatt_twisted.orchestrator} (the channel server in
L{pywatt_twisted.orchestrator.channel_server}, the test PKI in
L{pywatt_twisted.orchestrator.pki}); this module re-exports its public names so
existing imports keep working.
"""

from pywatt_twisted.orchestrator.channel_server import ChannelServer, ModuleConnection
from pywatt_twisted.orchestrator.pki import EphemeralPKI, server_tls_options

__all__ = ["ChannelServer", "EphemeralPKI", "ModuleConnection", "server_tls_options"]
