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
"""

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
