# -*- test-case-name: tests.link -*-
"""
The link layer: the module's framed channels to the orchestrator as one service.

Below it, L{pywatt_twisted._transport} turns bytes into messages on one connection;
here, L{ChannelManager} keeps the configured channels connected (endpoints, TLS,
backoff), tracks each one's state as one explicit state machine
(L{ChannelStateMachine}), chooses the channel a send goes to (L{FailoverChoice}),
holds what cannot go yet in a bounded L{OutboundQueue}, waits for the required
channels (L{RequiredChannels}), tracks round-trip latency (L{LatencyTracker}) and the
channel and module-to-module SLOs with their alerts (L{SloMonitor}, L{Alert}).

The names are imported when first used (C{from pywatt_twisted.link import
ChannelManager} works as always), so a module whose orchestrator offers no channel does
not load the channel code at start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pywatt_twisted.link._channel import LinkChannel
    from pywatt_twisted.link._choice import FailoverChoice
    from pywatt_twisted.link._endpoints import EndpointFactory, default_endpoint_factory
    from pywatt_twisted.link._latency import LatencyTracker
    from pywatt_twisted.link._manager import ChannelManager
    from pywatt_twisted.link._options import ChannelOptions, ChannelSpec, backoff_policy
    from pywatt_twisted.link._queue import ChannelQueueFull, ChannelUnavailable, OutboundQueue
    from pywatt_twisted.link._required import RequiredChannelFailed, RequiredChannels
    from pywatt_twisted.link._slo import Alert, SloMonitor, SloThresholds
    from pywatt_twisted.link._state import ChannelEvent, ChannelState, ChannelStateMachine

# name -> the module that defines it, imported on first use: a module without channels
# (the init blob offers none) never loads the channel, endpoint and TLS code
_LAZY = {
    "LinkChannel": "pywatt_twisted.link._channel",
    "FailoverChoice": "pywatt_twisted.link._choice",
    "EndpointFactory": "pywatt_twisted.link._endpoints",
    "default_endpoint_factory": "pywatt_twisted.link._endpoints",
    "LatencyTracker": "pywatt_twisted.link._latency",
    "ChannelManager": "pywatt_twisted.link._manager",
    "ChannelOptions": "pywatt_twisted.link._options",
    "ChannelSpec": "pywatt_twisted.link._options",
    "backoff_policy": "pywatt_twisted.link._options",
    "ChannelQueueFull": "pywatt_twisted.link._queue",
    "ChannelUnavailable": "pywatt_twisted.link._queue",
    "OutboundQueue": "pywatt_twisted.link._queue",
    "RequiredChannelFailed": "pywatt_twisted.link._required",
    "RequiredChannels": "pywatt_twisted.link._required",
    "Alert": "pywatt_twisted.link._slo",
    "SloMonitor": "pywatt_twisted.link._slo",
    "SloThresholds": "pywatt_twisted.link._slo",
    "ChannelEvent": "pywatt_twisted.link._state",
    "ChannelState": "pywatt_twisted.link._state",
    "ChannelStateMachine": "pywatt_twisted.link._state",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Alert",
    "ChannelEvent",
    "ChannelManager",
    "ChannelOptions",
    "ChannelQueueFull",
    "ChannelSpec",
    "ChannelState",
    "ChannelStateMachine",
    "ChannelUnavailable",
    "EndpointFactory",
    "FailoverChoice",
    "LatencyTracker",
    "LinkChannel",
    "OutboundQueue",
    "RequiredChannelFailed",
    "RequiredChannels",
    "SloMonitor",
    "SloThresholds",
    "backoff_policy",
    "default_endpoint_factory",
]
