# -*- test-case-name: tests.runtime.test_channels -*-
"""
The module's channels to the orchestrator. Moved to L{pywatt_twisted.link}; this
module re-exports its public names so existing imports keep working.

The state constants are the members of L{ChannelState} (a C{str} enum, so they
still compare equal to the old strings).
"""

import warnings

from pywatt_twisted.link import (
    ChannelManager,
    ChannelOptions,
    ChannelQueueFull,
    ChannelSpec,
    ChannelState,
    ChannelUnavailable,
    EndpointFactory,
    RequiredChannelFailed,
    backoff_policy,
    default_endpoint_factory,
)

__all__ = [
    "BACKOFF",
    "CONNECTED",
    "CONNECTING",
    "FAILED",
    "PAUSED",
    "STOPPED",
    "ChannelManager",
    "ChannelOptions",
    "ChannelQueueFull",
    "ChannelSpec",
    "ChannelUnavailable",
    "EndpointFactory",
    "RequiredChannelFailed",
    "backoff_policy",
    "default_endpoint_factory",
]

STOPPED = ChannelState.STOPPED
CONNECTING = ChannelState.CONNECTING
CONNECTED = ChannelState.CONNECTED
PAUSED = ChannelState.PAUSED
BACKOFF = ChannelState.BACKOFF
FAILED = ChannelState.FAILED

warnings.warn(
    "pywatt_twisted.runtime.channels is deprecated: import from pywatt_twisted.link",
    DeprecationWarning,
    stacklevel=2,
)
