# -*- test-case-name: tests.runtime.test_channels -*-
"""
What the link layer is told: the channels of the init blob (L{ChannelSpec}), how they
behave (L{ChannelOptions}, from the runtime settings), the reconnect delays
(L{backoff_policy}) and the settings of each channel's connections
(L{connection_settings}).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable
from typing import Any

from attrs import frozen

from pywatt_twisted._transport.channel import ChannelSettings, MiB
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
from pywatt_twisted.wire.init import InitBlob, SecurityLevel

__all__ = [
    "CHANNEL_NAMES",
    "IDENTIFY_MODES",
    "SUPPORTED_EXTENSIONS",
    "ChannelOptions",
    "ChannelSpec",
    "backoff_policy",
    "connection_settings",
]

IDENTIFY_MODES = ("tcp", "all", "off")
CHANNEL_NAMES = ("tcp", "ipc")
#: the channel order of sends unless configured otherwise: the Unix socket first
DEFAULT_PREFERENCE = ("ipc", "tcp")


def backoff_policy(
    initial: float = 0.1,
    maximum: float = 30.0,
    factor: float = 2.0,
    jitter: float = 0.5,
    random: Callable[[], float] = _random.random,
) -> Callable[[int], float]:
    """
    The reconnect delay after C{attempt} failures in a row (1 for the first): the
    base C{min(initial * factor ** (attempt - 1), maximum)}, minus up to C{jitter} of
    it at random. Delays stay within C{[base * (1 - jitter), base]}, so they never
    exceed C{maximum}, and modules that lost the same orchestrator spread out.
    """
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be within [0, 1], got {jitter!r}")

    def policy(attempt: int) -> float:
        exponent = max(0, min(attempt - 1, 64))
        try:
            base = min(initial * factor**exponent, maximum)
        except OverflowError:
            base = maximum
        return base * (1.0 - jitter * random())

    return policy


@frozen
class ChannelSpec:
    """
    One channel from the init blob.

    @ivar name: C{"tcp"} or C{"ipc"}.
    @ivar address: C{"ip:port"} or the socket path.
    @ivar host: the IP literal (TCP only).
    @ivar port: the port (TCP only).
    @ivar path: the socket path (Unix only).
    """

    name: str
    address: str
    required: bool = False
    tls: bool = False
    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def from_init(cls, blob: InitBlob) -> list[ChannelSpec]:
        """
        The channels an init blob configures (possibly none).
        """
        specs = []
        tcp = blob.tcp_channel
        if tcp is not None:
            specs.append(
                cls(
                    "tcp",
                    tcp.address,
                    required=tcp.required,
                    tls=tcp.tls_enabled,
                    host=tcp.host,
                    port=tcp.port,
                )
            )
        ipc = blob.ipc_channel
        if ipc is not None:
            specs.append(cls("ipc", ipc.socket_path, required=ipc.required, path=ipc.socket_path))
        return specs


def _preference(value: Iterable[str]) -> tuple[str, ...]:
    names = tuple(value)
    if names[:1] == ("auto",):
        return ("auto", *_preference(names[1:]))
    for name in names:
        if name not in CHANNEL_NAMES:
            raise ConfigurationError(
                f"channel preference: expected names from {', '.join(CHANNEL_NAMES)}, got {name!r}"
            )
    if len(set(names)) != len(names):
        raise ConfigurationError(f"channel preference names a channel twice: {names!r}")
    return names + tuple(n for n in ("ipc", "tcp") if n not in names)


@frozen
class ChannelOptions:
    """
    Channel behaviour (see L{RuntimeConfig} for the matching settings).

    @ivar preference: the order in which healthy channels are chosen for sends, or
        C{("auto", ...)} to route by measured latency (the names after it break ties
        at the start).
    @ivar required_timeout: seconds required channels get to connect before the
        module gives up starting.
    @ivar connect_timeout: seconds per connection attempt.
    @ivar queue_size: messages that may wait for a channel; more fail at once.
    @ivar queue_deadline: seconds a message may wait before its Deferred fails.
    @ivar liveness_deadline: abort a connection silent for this long; C{None}: off.
    @ivar identify: C{"tcp"} (identify on the TCP channel only), C{"all"} or C{"off"}.
    @ivar max_frame_length: the frame cap, both directions.
    @ivar stop_grace: seconds connections get to flush on stop before being aborted.
    @ivar queue_bytes: bytes of frames that may wait for a channel; more fail at once.
    @ivar high_water: unsent bytes held by a connection above which it stops reading
        new work from the orchestrator (resuming at a quarter of it).
    @ivar tls_handshake_timeout: seconds a TLS handshake may take before the
        connection is aborted and retried with backoff.
    @ivar healthy_after: seconds a ready connection must stay up (unless it carried an
        inbound message first) before its loss resets the reconnect backoff.
    """

    preference: tuple[str, ...] = DEFAULT_PREFERENCE
    required_timeout: float = 30.0
    connect_timeout: float = 30.0
    queue_size: int = 1000
    queue_deadline: float = 30.0
    liveness_deadline: float | None = None
    identify: str = "tcp"
    max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH
    initial_delay: float = 0.1
    max_delay: float = 30.0
    jitter: float = 0.5
    tls_settle: float = 0.5
    stop_grace: float = 5.0
    queue_bytes: int = 64 * MiB
    high_water: int = 4 * MiB
    tls_handshake_timeout: float = 10.0
    healthy_after: float = 10.0

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "preference", _preference(self.preference))
        if self.identify not in IDENTIFY_MODES:
            raise ConfigurationError(
                f"identify: expected one of {', '.join(IDENTIFY_MODES)}, got {self.identify!r}"
            )

    @classmethod
    def from_config(cls, config: Any) -> ChannelOptions:
        """
        The channel options of a L{RuntimeConfig}.
        """
        return cls(
            preference=config.channel_preference,
            required_timeout=config.channel_required_timeout,
            connect_timeout=config.channel_connect_timeout,
            queue_size=config.channel_queue_size,
            queue_deadline=config.channel_queue_deadline,
            liveness_deadline=config.channel_liveness_deadline,
            identify=config.identify,
            max_frame_length=config.max_frame_length,
            queue_bytes=config.channel_queue_bytes,
            high_water=config.channel_high_water,
            tls_handshake_timeout=config.tls_handshake_timeout,
            healthy_after=config.channel_healthy_after,
        )


#: What the identify envelope states this module supports (EXTENSIONS.md X0), in
#: C{metadata.properties.extensions}.
SUPPORTED_EXTENSIONS: tuple[str, ...] = ("streaming/1", "gzip")


def connection_settings(
    spec: ChannelSpec,
    options: ChannelOptions,
    module_id: str,
    security_level: SecurityLevel = SecurityLevel.NONE,
    auth_token: str | None = None,
) -> ChannelSettings:
    """
    The L{ChannelSettings} of C{spec}'s connections: identify on it or not (by
    C{options.identify}), stating the extensions this module supports (EXTENSIONS.md
    X0, L{SUPPORTED_EXTENSIONS}), with the auth token at the C{Token} security level.
    """
    mode = options.identify
    identify = mode == "all" or (mode == "tcp" and spec.name == "tcp")
    properties: dict[str, object] = {"extensions": list(SUPPORTED_EXTENSIONS)}
    if security_level is SecurityLevel.TOKEN and auth_token is not None:
        properties["auth_token"] = auth_token
    if options.preference != DEFAULT_PREFERENCE:
        # So an orchestrator that reads it (pywatt dev) delivers on the channel the
        # module prefers; the default order needs no word.
        properties["channel_preference"] = list(options.preference)
    return ChannelSettings(
        name=spec.name,
        address=spec.address,
        module_id=module_id,
        max_frame_length=options.max_frame_length,
        identify=identify,
        identify_properties=properties,
        liveness_deadline=options.liveness_deadline,
        tls=spec.tls,
        tls_settle=options.tls_settle,
        tls_handshake_timeout=options.tls_handshake_timeout,
        high_water=options.high_water,
        healthy_after=options.healthy_after,
    )
