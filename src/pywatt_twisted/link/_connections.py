# -*- test-case-name: tests.runtime.test_channels -*-
"""
L{ChannelConnections}: starting and stopping the connection of each channel of a
L{ChannelManager<pywatt_twisted.link._manager.ChannelManager>}: one L{ClientService}
per channel (endpoint, TLS options, reconnection backoff), and on stop a graceful close
bounded by C{stop_grace}, then an abort.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet.defer import DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted._transport.channel import ChannelClosed, ChannelFactory
from pywatt_twisted._transport.tls import TlsMaterial
from pywatt_twisted.errors import ChannelError, ConfigurationError
from pywatt_twisted.link._channel import LinkChannel
from pywatt_twisted.link._endpoints import EndpointFactory, ObservedEndpoint, tls_options_for
from pywatt_twisted.link._options import ChannelOptions, backoff_policy
from pywatt_twisted.link._required import RequiredChannels
from pywatt_twisted.link._state import ChannelEvent
from pywatt_twisted.wire.init import SecurityLevel

__all__ = ["ChannelConnections"]


class ChannelConnections:
    """
    The connections of a manager's channels.

    @param parent: the service the per-channel L{ClientService}s are children of.
    @param log: called with no argument, the logger to use (the manager's, which tests
        replace).
    """

    def __init__(
        self,
        parent: MultiService,
        channels: dict[str, LinkChannel],
        *,
        clock: IReactorTime,
        options: ChannelOptions,
        endpoint_factory: EndpointFactory,
        security_level: SecurityLevel,
        tls_material: TlsMaterial | None,
        required: RequiredChannels,
        random: Callable[[], float],
        log: Callable[[], Logger],
    ) -> None:
        self._parent = parent
        self._channels = channels
        self._clock = clock
        self._options = options
        self._endpoint_factory = endpoint_factory
        self._security_level = security_level
        self._tls_material = tls_material
        self._required = required
        self._random = random
        self._log = log

    def start(self, channel: LinkChannel) -> None:
        """
        Start connecting C{channel} (for ever, with backoff); a channel that cannot be
        configured is marked misconfigured and logged, and the required-channel wait
        told.
        """
        spec = channel.spec
        try:
            tls_options = tls_options_for(spec, self._security_level, self._tls_material)
            endpoint = self._endpoint_factory(spec, tls_options)
        except (ConfigurationError, ChannelError) as e:
            channel.error(str(e), type(e).__name__)
            channel.fire(ChannelEvent.MISCONFIGURED)
            self._log().critical(
                "{channel} channel ({address}) cannot start: {error}",
                channel=spec.name,
                address=spec.address,
                error=str(e),
            )
            self._required.check()
            return
        factory = ChannelFactory(channel.settings, channel, self._clock, channel.counters)
        channel.factory = factory
        options = self._options
        policy = backoff_policy(
            options.initial_delay, options.max_delay, jitter=options.jitter, random=self._random
        )
        service = ClientService(
            ObservedEndpoint(endpoint, channel, f"{spec.name} channel endpoint {spec.address}"),
            factory,
            retryPolicy=lambda attempt: channel.retry_delay(policy),
            clock=self._clock,
        )
        channel.service = service
        service.setServiceParent(self._parent)

    async def stop(self) -> None:
        """
        Close every live connection and stop reconnecting; connections still open after
        C{stop_grace} seconds are aborted. Every channel ends C{stopped}.
        """
        channels = self._channels.values()
        for channel in channels:
            if channel.factory is not None:
                for protocol in list(channel.factory.live):
                    protocol.close()
        stops = [c.service.stopService() for c in channels if c.service is not None]
        timer = self._clock.callLater(self._options.stop_grace, self._abort_all)
        try:
            await DeferredList(stops, consumeErrors=True)
        finally:
            if timer.active():
                timer.cancel()
        for channel in channels:
            channel.fire(ChannelEvent.STOPPED)

    def _abort_all(self) -> None:
        for channel in self._channels.values():
            if channel.factory is None:
                continue
            for p in list(channel.factory.live):
                self._log().warn(
                    "{channel} channel did not close within {grace} s; aborting it",
                    channel=channel.name,
                    grace=self._options.stop_grace,
                )
                p.abort(ChannelClosed("aborted on stop"))
