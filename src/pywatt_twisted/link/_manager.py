# -*- test-case-name: tests.runtime.test_channels -*-
"""
L{ChannelManager}: the module's framed channels to the orchestrator (the init blob's
C{tcp_channel} and C{ipc_channel}), as a L{MultiService} with one L{ClientService} per
channel.

  - B{Reconnection}: exponential backoff with jitter, 100 ms doubling to 30 s
    (L{backoff_policy}), for ever, for every channel. The delay goes back to 100 ms
    only after a I{healthy} connection (ready and one full inbound message, or
    C{healthy_after} seconds up): one that opens and dies before that (a TLS
    rejection, a handshake that times out after C{tls_handshake_timeout}) keeps the
    delays growing.
  - B{Required channels} must be up before the module announces
    (L{ChannelManager.when_required_ready}, bounded by C{required_timeout}); optional
    ones connect in the background.
  - B{Failover}: L{ChannelManager.send} writes to the first ready, writable channel in
    the preference order (Unix socket first by default). With none, the message waits
    in a queue bounded in messages and in bytes until a channel comes up, or its
    Deferred fails (queue full, deadline passed, module stopping). Nothing is dropped
    silently.
  - B{Backpressure}: a channel whose orchestrator does not read takes no new sends;
    past C{high_water} unsent bytes it stops reading new work (L{ChannelProtocol}).
  - B{On every (re)connect}: identify first (by the protocol), then the queued frames.
  - B{Health}: per-channel state, counters and last error for C{/health}
    (L{ChannelManager.health}) and C{/metrics} (a collector on L{ModuleMetrics}).

The pieces live next to it: L{options<pywatt_twisted.link._options>},
L{endpoints<pywatt_twisted.link._endpoints>}, the per-channel record and its state
machine (L{LinkChannel}, L{ChannelStateMachine}), the L{FailoverChoice}, the
L{OutboundQueue}, the L{RequiredChannels} and the L{ChannelConnections} (starting and
stopping each connection); the manager wires them into a service.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted._transport.channel import (
    ChannelClosed,
    ChannelProtocol,
    MessageTooLarge,
    encode_channel_frame,
)
from pywatt_twisted._transport.tls import TlsMaterial
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.link._channel import LinkChannel
from pywatt_twisted.link._choice import FailoverChoice, Route
from pywatt_twisted.link._connections import ChannelConnections
from pywatt_twisted.link._endpoints import (
    EndpointFactory,
    default_endpoint_factory,
)
from pywatt_twisted.link._metrics import collect_channel_metrics
from pywatt_twisted.link._options import (
    ChannelOptions,
    ChannelSpec,
    connection_settings,
)
from pywatt_twisted.link._queue import ChannelUnavailable, OutboundQueue, Writer
from pywatt_twisted.link._required import RequiredChannels
from pywatt_twisted.link._state import ChannelState
from pywatt_twisted.wire.init import InitBlob, SecurityLevel

__all__ = ["ChannelManager"]


class ChannelManager(MultiService):
    """
    The module's channels. See the module docstring.

    @param specs: the channels to run (L{ChannelSpec.from_init}).
    @param receiver: called as C{receiver(message, link)} for each decoded message; the
        link is the L{ChannelProtocol} it came on (replies go back on it).
    @param clock: the clock for timers and ClientService retries.
    @param endpoint_factory: C{(spec, tls_options) -> endpoint}; real TCP/Unix
        endpoints when C{None} (then C{reactor} is required).
    @param metrics: a L{ModuleMetrics} to report channel states and counters to.
    @param tls_material: where the TLS files are (default: the environment).
    @param random: the jitter source (tests pin it).
    @ivar sent_direct: messages written at once, without queueing.
    """

    _log = Logger()

    def __init__(
        self,
        specs: Iterable[ChannelSpec],
        *,
        module_id: str,
        receiver: Callable[[object, ChannelProtocol], object],
        clock: IReactorTime,
        options: ChannelOptions | None = None,
        reactor: Any = None,
        endpoint_factory: EndpointFactory | None = None,
        metrics: Any = None,
        security_level: SecurityLevel = SecurityLevel.NONE,
        auth_token: str | None = None,
        tls_material: TlsMaterial | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        super().__init__()
        self.options = options = options if options is not None else ChannelOptions()
        self._max_frame_length = options.max_frame_length
        self.module_id = module_id
        self.receiver = receiver
        self.clock = clock
        self.metrics = metrics
        self.security_level = security_level
        if endpoint_factory is None:
            if reactor is None:
                raise TypeError("ChannelManager needs a reactor or an endpoint_factory")
            endpoint_factory = default_endpoint_factory(reactor, options.connect_timeout)
        self.stopping = False
        self._started_at: float | None = None
        self.sent_direct = 0
        self._collector: Any = None
        self._stopped: Deferred[None] | None = None
        self.channels: dict[str, LinkChannel] = {}
        for spec in specs:
            if spec.name in self.channels:
                raise ConfigurationError(f"two channels named {spec.name!r}")
            settings = connection_settings(spec, options, module_id, security_level, auth_token)
            self.channels[spec.name] = LinkChannel(self, spec, settings)
        self.choice = FailoverChoice(self.channels, options.preference, clock)
        self.queue = OutboundQueue(
            clock,
            size=options.queue_size,
            max_bytes=options.queue_bytes,
            deadline=options.queue_deadline,
            pick=self._writer,
            describe=self.choice.describe,
            log=self._log,
        )
        self.required = RequiredChannels(
            clock, options.required_timeout, self.channels.values, lambda: self._started_at
        )
        self.connections = ChannelConnections(
            self,
            self.channels,
            clock=clock,
            options=options,
            endpoint_factory=endpoint_factory,
            security_level=security_level,
            tls_material=tls_material,
            required=self.required,
            random=random,
            log=lambda: self._log,
        )

    @classmethod
    def from_init(cls, blob: InitBlob, **kwargs: Any) -> ChannelManager:
        """
        A manager for the channels of C{blob} (its module id, security level and token).
        """
        return cls(
            ChannelSpec.from_init(blob),
            module_id=blob.module_id,
            security_level=blob.security_level,
            auth_token=blob.auth_token,
            **kwargs,
        )

    @property
    def log(self) -> Logger:
        """
        Where the manager and its queue log (tests replace it).
        """
        return self._log

    @log.setter
    def log(self, value: Logger) -> None:
        self._log = value
        self.queue.log = value

    # -- IService -----------------------------------------------------------------------

    def startService(self) -> None:
        self._started_at = self.clock.seconds()
        for channel in self.channels.values():
            self.connections.start(channel)
        if self.metrics is not None and self._collector is None:
            self._collector = self.metrics.add_collector(
                lambda: collect_channel_metrics(self.channels, self.queue)
            )
        super().startService()

    def stopService(self) -> Deferred[None]:
        if self._stopped is None:
            self._stopped = Deferred.fromCoroutine(self._stop())
        return self._stopped

    async def _stop(self) -> None:
        self.stopping = True
        self.required.fail(ChannelClosed("the module is stopping"))
        self.queue.fail_all(
            lambda op: ChannelUnavailable(
                f"{op} was not sent: the module stopped before a channel came up"
            )
        )
        self.running = False
        await self.connections.stop()
        if self._collector is not None and self.metrics is not None:
            self.metrics.remove_collector(self._collector)
            self._collector = None

    def when_required_ready(self) -> Deferred[None]:
        """
        Fires once every required channel has been up at least once; fails with
        L{RequiredChannelFailed} naming the channel(s) when C{required_timeout}
        (counted from L{startService}) passes first, or at once when a required
        channel cannot be configured (TLS material missing...).
        """
        return self.required.wait()

    # -- sending ------------------------------------------------------------------------

    def send(self, message: object, prefer: str | Route | None = None) -> Deferred[None]:
        """
        Send C{message} (enveloped) on the preferred healthy channel.

        @param prefer: a channel name to try before the configured preference, or a
            L{Route} (a channel to try first, or the only channel to use, and a callback
            told which channel the frame was written to).
        @return: a Deferred that fires once the frame was written to a connection, or
            fails with L{MessageTooLarge} (at once), L{ChannelQueueFull} (at once, no
            channel up and the queue full), L{ChannelUnavailable} (no channel came up
            before the queue deadline, or the module stopped).
        """
        try:
            frame = encode_channel_frame(message, self._max_frame_length)
        except MessageTooLarge as e:
            return fail(e)
        channel = self.write_now(frame, prefer)
        if channel is not None:
            if isinstance(prefer, Route) and prefer.written is not None:
                prefer.written(channel.name)
            return succeed(None)
        # Named only when the frame has to wait or fail (issue 20: not per message).
        return self.send_frame(frame, getattr(message, "op", type(message).__name__), prefer)

    def send_frame(
        self, frame: bytes, op: str, prefer: str | Route | None = None
    ) -> Deferred[None]:
        """
        L{send} for a frame already built with L{encode_channel_frame}.
        """
        if self.stopping:
            return fail(ChannelUnavailable(f"{op} was not sent: the module is stopping"))
        channel = self.write_now(frame, prefer)
        if channel is None:
            return self.queue.put(frame, op, prefer)
        if isinstance(prefer, Route) and prefer.written is not None:
            prefer.written(channel.name)
        return succeed(None)

    def write_now(self, frame: bytes, prefer: str | Route | None = None) -> LinkChannel | None:
        """
        Write C{frame} (built with L{encode_channel_frame}) at once on the channel
        L{send_frame} would pick, and return that channel; C{None} when it would have
        to queue or fail instead (then nothing was written: call L{send_frame}). The
        route's C{written} callback is not called (the caller has the channel).
        """
        # The deque itself, not len(queue): this runs for every message (issue 20).
        if self.stopping or self.queue.waiting:
            return None
        channel = self.choice.pick(prefer)
        if channel is None:
            return None
        assert channel.protocol is not None
        channel.protocol.write_frame(frame)
        self.sent_direct += 1
        return channel

    def _writer(self, prefer: str | Route | None) -> Writer | None:
        channel = self.choice.pick(prefer)
        if channel is None:
            return None
        assert channel.protocol is not None
        write = channel.protocol.write_frame
        if isinstance(prefer, Route) and prefer.written is not None:
            written, name = prefer.written, channel.name

            def write_and_tell(frame: bytes) -> None:
                write(frame)
                written(name)

            return write_and_tell
        return write

    @property
    def queued(self) -> int:
        """
        Messages waiting for a channel.
        """
        return len(self.queue)

    # -- LinkOwner ----------------------------------------------------------------------

    def channel_state(self, name: str, state: ChannelState) -> None:
        if self.metrics is not None:
            self.metrics.channel_state(name, state.value)

    def receive(self, message: object, protocol: ChannelProtocol) -> None:
        """
        Hand C{message} to the receiver (the channels call the receiver directly).
        """
        self.receiver(message, protocol)

    def usable(self, changed: LinkChannel) -> None:
        self.queue.flush()

    def came_up(self, changed: LinkChannel) -> None:
        self.required.check()

    # -- health -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """
        Per-channel state, counters, latency, requests in flight and last error, and
        its place in the channel choice (C{preference}), for C{/health} and
        C{state.channels}.
        """
        out = {}
        for name, channel in self.channels.items():
            h = channel.health()
            h["preference"] = self.choice.rank(name)
            h["queued"] = len(self.queue)
            out[name] = h
        return out

    def channel(self, name: str) -> LinkChannel | None:
        """
        The configured channel called C{name}, or C{None}.
        """
        return self.channels.get(name)

    def queue_health(self) -> dict[str, Any]:
        """
        The outbound queue: depth, limit and how many sends it failed.
        """
        return self.queue.health()
