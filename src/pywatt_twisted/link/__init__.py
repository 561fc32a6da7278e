# -*- test-case-name: tests.link -*-
"""
The link layer: the module's framed channels to the orchestrator as one service.

Below it, L{pywatt_twisted.transport} turns bytes into messages on one connection;
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
    from pywatt_twisted.link.channel import LinkChannel
    from pywatt_twisted.link.choice import FailoverChoice
    from pywatt_twisted.link.endpoints import EndpointFactory, default_endpoint_factory
    from pywatt_twisted.link.latency import LatencyTracker
    from pywatt_twisted.link.manager import ChannelManager
    from pywatt_twisted.link.options import ChannelOptions, ChannelSpec, backoff_policy
    from pywatt_twisted.link.queue import ChannelQueueFull, ChannelUnavailable, OutboundQueue
    from pywatt_twisted.link.required import RequiredChannelFailed, RequiredChannels
    from pywatt_twisted.link.slo import Alert, SloMonitor, SloThresholds
    from pywatt_twisted.link.state import ChannelEvent, ChannelState, ChannelStateMachine

# name -> the module that defines it, imported on first use: a module without channels
# (the init blob offers none) never loads the channel, endpoint and TLS code
_LAZY = {
    "LinkChannel": "pywatt_twisted.link.channel",
    "FailoverChoice": "pywatt_twisted.link.choice",
    "EndpointFactory": "pywatt_twisted.link.endpoints",
    "default_endpoint_factory": "pywatt_twisted.link.endpoints",
    "LatencyTracker": "pywatt_twisted.link.latency",
    "ChannelManager": "pywatt_twisted.link.manager",
    "ChannelOptions": "pywatt_twisted.link.options",
    "ChannelSpec": "pywatt_twisted.link.options",
    "backoff_policy": "pywatt_twisted.link.options",
    "ChannelQueueFull": "pywatt_twisted.link.queue",
    "ChannelUnavailable": "pywatt_twisted.link.queue",
    "OutboundQueue": "pywatt_twisted.link.queue",
    "RequiredChannelFailed": "pywatt_twisted.link.required",
    "RequiredChannels": "pywatt_twisted.link.required",
    "Alert": "pywatt_twisted.link.slo",
    "SloMonitor": "pywatt_twisted.link.slo",
    "SloThresholds": "pywatt_twisted.link.slo",
    "ChannelEvent": "pywatt_twisted.link.state",
    "ChannelState": "pywatt_twisted.link.state",
    "ChannelStateMachine": "pywatt_twisted.link.state",
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
