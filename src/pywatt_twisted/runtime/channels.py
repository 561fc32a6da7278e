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
"""

from __future__ import annotations

import random as _random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import define, frozen
from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted.errors import (
    BootstrapError,
    ChannelError,
    ConfigurationError,
    MessageTooLarge,
)
from pywatt_twisted.transport.channel import (
    ChannelClosed,
    ChannelCounters,
    ChannelFactory,
    ChannelProtocol,
    ChannelSettings,
    IChannelListener,
    MiB,
)
from pywatt_twisted.transport.tls import (
    TlsConfigurationError,
    TlsMaterial,
    client_tls_options,
    describe_tls_failure,
    is_tls_failure,
)
from pywatt_twisted.wire.envelope import encode_channel_frame
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
from pywatt_twisted.wire.init import InitBlob, SecurityLevel

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
    "RequiredChannelFailed",
    "backoff_policy",
]

STOPPED = "stopped"
CONNECTING = "connecting"
CONNECTED = "connected"
PAUSED = "paused"
BACKOFF = "backoff"
FAILED = "failed"

IDENTIFY_MODES = ("tcp", "all", "off")
CHANNEL_NAMES = ("tcp", "ipc")


class RequiredChannelFailed(BootstrapError, ChannelError):
    """
    A channel marked C{required} in the init blob did not come up in time (or cannot
    be configured), so the module must not announce.
    """


class ChannelQueueFull(ChannelError):
    """
    No channel was up and the outbound queue was full; the message was not sent.
    """


class ChannelUnavailable(ChannelError):
    """
    A queued message waited for a channel longer than the queue deadline, or the
    module stopped first; it was not sent.
    """


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

    @ivar preference: the order in which healthy channels are chosen for sends.
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

    preference: tuple[str, ...] = ("ipc", "tcp")
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


EndpointFactory = Callable[[ChannelSpec, Any], IStreamClientEndpoint]
"""C{(spec, tls_options or None) -> endpoint}."""


def default_endpoint_factory(reactor: Any, connect_timeout: float) -> EndpointFactory:
    """
    Real endpoints: TCP (IPv4 or IPv6 literal), optionally wrapped in TLS, or Unix.
    """

    def build(spec: ChannelSpec, tls_options: Any) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint
        if spec.path is not None:
            endpoint = UNIXClientEndpoint(reactor, spec.path, timeout=connect_timeout)
        else:
            assert spec.host is not None and spec.port is not None
            kind = TCP6ClientEndpoint if ":" in spec.host else TCP4ClientEndpoint
            endpoint = kind(reactor, spec.host, spec.port, timeout=connect_timeout)
        if tls_options is not None:
            endpoint = _TlsClientEndpoint(endpoint, tls_options, reactor)
        return endpoint

    return build


@implementer(IStreamClientEndpoint)
class _TlsClientEndpoint:
    """
    Like C{wrapClientTLS}, but the TLS layer schedules its write batching on the
    given reactor instead of the global one.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, options: Any, clock: Any) -> None:
        self._endpoint = endpoint
        self._options = options
        self._clock = clock

    def connect(self, factory: Any) -> Deferred[Any]:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        tls = TLSMemoryBIOFactory(self._options, True, factory, clock=self._clock)
        d: Deferred[Any] = self._endpoint.connect(tls)
        return d.addCallback(lambda p: p.wrappedProtocol)


@implementer(IStreamClientEndpoint)
class _ObservedEndpoint:
    """
    Tells its channel about every connection attempt and failure.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, channel: _Channel) -> None:
        self._endpoint = endpoint
        self._channel = channel

    def connect(self, factory: Any) -> Deferred[Any]:
        self._channel.attempting()
        d = self._endpoint.connect(factory)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Failure) -> Failure:
        if not failure.check(CancelledError):
            self._channel.attempt_failed(failure)
        return failure

    def __repr__(self) -> str:
        return f"<{self._channel.spec.name} channel endpoint {self._channel.spec.address}>"


def _describe(reason: Failure | BaseException) -> str:
    if is_tls_failure(reason):
        return describe_tls_failure(reason)
    value = reason.value if isinstance(reason, Failure) else reason
    text = str(value).strip()
    return text or type(value).__name__


class _Channel:
    """
    One configured channel: its spec, its ClientService, its current connection, its
    state and counters.
    """

    def __init__(self, manager: ChannelManager, spec: ChannelSpec, settings: ChannelSettings):
        self.manager = manager
        self.spec = spec
        self.settings = settings
        self.name = spec.name
        self.counters = ChannelCounters()
        self.state = STOPPED
        self.protocol: ChannelProtocol | None = None
        self.service: ClientService | None = None
        self.factory: ChannelFactory | None = None
        self.ready_once = False
        self.connects = 0
        self.disconnects = 0
        self.connect_failures = 0
        self.last_error: str | None = None
        self.last_error_kind: str | None = None
        self.last_error_at: float | None = None
        self.connected_since: float | None = None
        self.next_retry: float | None = None
        #: Failures since the last healthy connection: the backoff step. Unlike
        #: ClientService's own count, a connection that opened but never became
        #: healthy does not reset it.
        self.failures_in_a_row = 0

    @property
    def writable(self) -> bool:
        p = self.protocol
        return p is not None and p.ready and not p.paused and not p.lost

    def set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        metrics = self.manager.metrics
        if metrics is not None:
            metrics.channel_state(self.name, state)

    def error(self, text: str, kind: str) -> None:
        self.last_error = text
        self.last_error_kind = kind
        self.last_error_at = self.manager.clock.seconds()

    def attempting(self) -> None:
        if self.manager.stopping:
            return
        self.next_retry = None
        self.set_state(CONNECTING)

    def attempt_failed(self, failure: Failure) -> None:
        self.connect_failures += 1
        text = _describe(failure)
        self.error(f"cannot connect to {self.spec.address}: {text}", type(failure.value).__name__)
        if self.manager.stopping:
            return
        self.set_state(BACKOFF)
        log = self.manager.log.error if is_tls_failure(failure) else self.manager.log.warn
        log(
            "{channel} channel: cannot connect to {address}: {error}; retrying with backoff",
            channel=self.name,
            address=self.spec.address,
            error=text,
        )

    def health(self) -> dict[str, Any]:
        c = self.counters
        now = self.manager.clock.seconds()
        out: dict[str, Any] = {
            "state": self.state,
            "address": self.spec.address,
            "required": self.spec.required,
            "tls": self.spec.tls,
            "connected_seconds": (
                round(now - self.connected_since, 3) if self.connected_since is not None else None
            ),
            "connects": self.connects,
            "disconnects": self.disconnects,
            "connect_failures": self.connect_failures,
            "frames_in": c.frames_in,
            "frames_out": c.frames_out,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "bad_frames": c.bad_frames,
            "read_pauses": c.read_pauses,
            "unsent_bytes": self.protocol.buffered if self.protocol is not None else 0,
            "last_error": self.last_error,
            "last_error_age_seconds": (
                round(now - self.last_error_at, 3) if self.last_error_at is not None else None
            ),
        }
        if self.next_retry is not None and self.state == BACKOFF:
            out["retry_in_seconds"] = round(max(0.0, self.next_retry - now), 3)
        return out


@define
class _Queued:
    frame: bytes
    op: str
    deferred: Deferred[None] | None
    prefer: str | None
    timer: Any = None


@implementer(IChannelListener)
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
    """

    log = Logger()

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
        self.options = options if options is not None else ChannelOptions()
        self.module_id = module_id
        self.receiver = receiver
        self.clock = clock
        self.metrics = metrics
        self.security_level = security_level
        self._auth_token = auth_token
        self._tls_material = tls_material
        if endpoint_factory is None:
            if reactor is None:
                raise TypeError("ChannelManager needs a reactor or an endpoint_factory")
            endpoint_factory = default_endpoint_factory(reactor, self.options.connect_timeout)
        self._endpoint_factory = endpoint_factory
        self._random = random
        self.stopping = False
        self._started_at: float | None = None
        self._queue: deque[_Queued] = deque()
        self._queued_bytes = 0
        self._queue_full_logged = False
        self._flushing = False
        self.queue_rejected = 0
        self.queue_expired = 0
        self.sent_direct = 0
        self.sent_queued = 0
        self._required_waiters: list[Deferred[None]] = []
        self._required_timer: Any = None
        self._collector: Any = None
        self._stopped: Deferred[None] | None = None
        self.channels: dict[str, _Channel] = {}
        for spec in specs:
            if spec.name in self.channels:
                raise ConfigurationError(f"two channels named {spec.name!r}")
            self.channels[spec.name] = _Channel(self, spec, self._settings_for(spec))
        self._order = [n for n in self.options.preference if n in self.channels]

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

    def _settings_for(self, spec: ChannelSpec) -> ChannelSettings:
        mode = self.options.identify
        identify = mode == "all" or (mode == "tcp" and spec.name == "tcp")
        properties: Mapping[str, object] | None = None
        if self.security_level is SecurityLevel.TOKEN and self._auth_token is not None:
            properties = {"auth_token": self._auth_token}
        return ChannelSettings(
            name=spec.name,
            address=spec.address,
            module_id=self.module_id,
            max_frame_length=self.options.max_frame_length,
            identify=identify,
            identify_properties=properties,
            liveness_deadline=self.options.liveness_deadline,
            tls=spec.tls,
            tls_settle=self.options.tls_settle,
            tls_handshake_timeout=self.options.tls_handshake_timeout,
            high_water=self.options.high_water,
            healthy_after=self.options.healthy_after,
        )

    # -- IService -----------------------------------------------------------------------

    def startService(self) -> None:
        self._started_at = self.clock.seconds()
        for channel in self.channels.values():
            self._start_channel(channel)
        if self.metrics is not None and self._collector is None:
            self._collector = self.metrics.add_collector(self._collect)
        super().startService()

    def _start_channel(self, channel: _Channel) -> None:
        spec = channel.spec
        tls_options = None
        try:
            if spec.tls:
                material = self._tls_material or TlsMaterial.from_environment()
                assert spec.host is not None
                tls_options = client_tls_options(
                    material, spec.host, self.security_level, channel=spec.name
                )
            elif spec.name == "tcp" and self.security_level is SecurityLevel.MTLS:
                raise TlsConfigurationError(
                    "security_level is Mtls but tcp_channel.tls_enabled is false; refusing to "
                    "connect the TCP channel in plaintext"
                )
            endpoint = self._endpoint_factory(spec, tls_options)
        except (ConfigurationError, ChannelError) as e:
            channel.error(str(e), type(e).__name__)
            channel.set_state(FAILED)
            self.log.critical(
                "{channel} channel ({address}) cannot start: {error}",
                channel=spec.name,
                address=spec.address,
                error=str(e),
            )
            self._check_required()
            return
        factory = ChannelFactory(channel.settings, self, self.clock, channel.counters)
        channel.factory = factory
        policy = backoff_policy(
            self.options.initial_delay,
            self.options.max_delay,
            jitter=self.options.jitter,
            random=self._random,
        )

        def retry(attempt: int) -> float:
            # ClientService's attempt count restarts whenever a connection opens; ours
            # restarts only after a healthy one (see channel_lost).
            channel.failures_in_a_row += 1
            delay = policy(channel.failures_in_a_row)
            channel.next_retry = self.clock.seconds() + delay
            if channel.state != FAILED and not self.stopping:
                channel.set_state(BACKOFF)
            return delay

        service = ClientService(
            _ObservedEndpoint(endpoint, channel), factory, retryPolicy=retry, clock=self.clock
        )
        channel.service = service
        service.setServiceParent(self)

    def stopService(self) -> Deferred[None]:
        if self._stopped is None:
            self._stopped = Deferred.fromCoroutine(self._stop())
        return self._stopped

    async def _stop(self) -> None:
        self.stopping = True
        self._fail_required(ChannelClosed("the module is stopping"))
        self._fail_queue(
            lambda item: ChannelUnavailable(
                f"{item.op} was not sent: the module stopped before a channel came up"
            ),
            "stopping",
        )
        for channel in self.channels.values():
            if channel.factory is not None:
                for protocol in list(channel.factory.live):
                    protocol.close()
        stops = [c.service.stopService() for c in self.channels.values() if c.service is not None]
        self.running = False
        timer = self.clock.callLater(self.options.stop_grace, self._abort_all)
        try:
            await DeferredList(stops, consumeErrors=True)
        finally:
            if timer.active():
                timer.cancel()
        for channel in self.channels.values():
            channel.set_state(STOPPED)
        if self._collector is not None and self.metrics is not None:
            self.metrics.remove_collector(self._collector)
            self._collector = None

    def _abort_all(self) -> None:
        for channel in self.channels.values():
            if channel.factory is None:
                continue
            for p in list(channel.factory.live):
                self.log.warn(
                    "{channel} channel did not close within {grace} s; aborting it",
                    channel=channel.name,
                    grace=self.options.stop_grace,
                )
                p.abort(ChannelClosed("aborted on stop"))

    # -- required channels --------------------------------------------------------------

    def when_required_ready(self) -> Deferred[None]:
        """
        Fires once every required channel has been up at least once; fails with
        L{RequiredChannelFailed} naming the channel(s) when C{required_timeout}
        (counted from L{startService}) passes first, or at once when a required
        channel cannot be configured (TLS material missing...).
        """
        d: Deferred[None] = Deferred()
        self._required_waiters.append(d)
        if self._check_required():
            return d
        if self._required_timer is None and self._required_waiters:
            started = self._started_at if self._started_at is not None else self.clock.seconds()
            remaining = self.options.required_timeout - (self.clock.seconds() - started)
            self._required_timer = self.clock.callLater(
                max(0.0, remaining), self._required_timed_out
            )
        return d

    def _missing_required(self) -> list[_Channel]:
        return [c for c in self.channels.values() if c.spec.required and not c.ready_once]

    def _check_required(self) -> bool:
        """
        Settle the waiters if possible; return whether they were settled.
        """
        if not self._required_waiters:
            return False
        missing = self._missing_required()
        if not missing:
            self._settle_required(None)
            return True
        failed = [c for c in missing if c.state == FAILED]
        if failed:
            self._fail_required(
                RequiredChannelFailed(
                    "; ".join(
                        f"required {c.name} channel ({c.spec.address}) cannot start: {c.last_error}"
                        for c in failed
                    )
                )
            )
            return True
        return False

    def _required_timed_out(self) -> None:
        self._required_timer = None
        missing = self._missing_required()
        if not missing:
            self._settle_required(None)
            return
        details = "; ".join(
            f"required {c.name} channel ({c.spec.address}) did not connect within "
            f"{self.options.required_timeout:g} s (state {c.state}, last error: "
            f"{c.last_error or 'none'})"
            for c in missing
        )
        self._fail_required(
            RequiredChannelFailed(
                f"{details}; check that the orchestrator listens there, or raise "
                "PYWATT_CHANNEL_REQUIRED_TIMEOUT"
            )
        )

    def _fail_required(self, error: Exception) -> None:
        self._settle_required(Failure(error))

    def _settle_required(self, result: Failure | None) -> None:
        if self._required_timer is not None:
            if self._required_timer.active():
                self._required_timer.cancel()
            self._required_timer = None
        waiters, self._required_waiters = self._required_waiters, []
        for d in waiters:
            if result is None:
                d.callback(None)
            else:
                d.errback(result)

    # -- sending ------------------------------------------------------------------------

    def send(self, message: object, prefer: str | None = None) -> Deferred[None]:
        """
        Send C{message} (enveloped) on the preferred healthy channel.

        @param prefer: a channel name to try before the configured preference.
        @return: a Deferred that fires once the frame was written to a connection, or
            fails with L{MessageTooLarge} (at once), L{ChannelQueueFull} (at once, no
            channel up and the queue full), L{ChannelUnavailable} (no channel came up
            before the queue deadline, or the module stopped).
        """
        try:
            frame = encode_channel_frame(message, self.options.max_frame_length)
        except MessageTooLarge as e:
            return fail(e)
        op = getattr(message, "op", type(message).__name__)
        return self.send_frame(frame, op, prefer)

    def send_frame(self, frame: bytes, op: str, prefer: str | None = None) -> Deferred[None]:
        """
        L{send} for a frame already built with L{encode_channel_frame}.
        """
        if self.stopping:
            return fail(ChannelUnavailable(f"{op} was not sent: the module is stopping"))
        if not self._queue:
            channel = self._pick(prefer)
            if channel is not None:
                assert channel.protocol is not None
                channel.protocol.write_frame(frame)
                self.sent_direct += 1
                return succeed(None)
        if len(self._queue) >= self.options.queue_size:
            return self._queue_full(
                f"cannot send {op}: no channel is up ({self._states()}) and "
                f"{len(self._queue)} messages already wait for one (queue size "
                f"{self.options.queue_size}); retry later or raise PYWATT_CHANNEL_QUEUE_SIZE "
                "/ --channel-queue-size"
            )
        if self._queued_bytes + len(frame) > self.options.queue_bytes:
            return self._queue_full(
                f"cannot send {op} ({len(frame)} bytes): no channel is up ({self._states()}) "
                f"and {self._queued_bytes} bytes already wait for one (queue bytes "
                f"{self.options.queue_bytes}); retry later or raise PYWATT_CHANNEL_QUEUE_BYTES "
                "/ --channel-queue-bytes"
            )
        item = _Queued(frame, op, None, prefer)
        d: Deferred[None] = Deferred(lambda _: self._cancel(item))
        item.deferred = d
        self._enqueue(item)
        return d

    def _queue_full(self, text: str) -> Deferred[None]:
        """
        Fail a send the full queue cannot take; log it once until the queue empties.
        """
        self.queue_rejected += 1
        if not self._queue_full_logged:
            self._queue_full_logged = True
            self.log.error(
                "{error} (further sends refused while the queue is full are not logged; "
                "their Deferreds fail)",
                error=text,
            )
        return fail(ChannelQueueFull(text))

    def _enqueue(self, item: _Queued, front: bool = False) -> None:
        item.timer = self.clock.callLater(self.options.queue_deadline, self._expire, item)
        if front:
            self._queue.appendleft(item)
        else:
            self._queue.append(item)
        self._queued_bytes += len(item.frame)
        self._flush()

    def _dequeued(self, item: _Queued) -> None:
        self._queued_bytes -= len(item.frame)
        if not self._queue:
            self._queued_bytes = 0
            self._queue_full_logged = False

    def _states(self) -> str:
        if not self.channels:
            return "no channel is configured"
        return ", ".join(
            f"{c.name} {c.state}" + (f" ({c.last_error})" if c.last_error else "")
            for c in self.channels.values()
        )

    def _pick(self, prefer: str | None) -> _Channel | None:
        if prefer is not None:
            channel = self.channels.get(prefer)
            if channel is not None and channel.writable:
                return channel
        for name in self._order:
            channel = self.channels[name]
            if channel.writable:
                return channel
        return None

    def _flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            queue = self._queue
            while queue:
                item = queue[0]
                channel = self._pick(item.prefer)
                if channel is None:
                    return
                queue.popleft()
                self._dequeued(item)
                if item.timer is not None and item.timer.active():
                    item.timer.cancel()
                assert channel.protocol is not None
                channel.protocol.write_frame(item.frame)
                self.sent_queued += 1
                if item.deferred is not None:
                    item.deferred.callback(None)
        finally:
            self._flushing = False

    def _expire(self, item: _Queued) -> None:
        item.timer = None
        try:
            self._queue.remove(item)
        except ValueError:
            return
        self._dequeued(item)
        self.queue_expired += 1
        error = ChannelUnavailable(
            f"{item.op} was not sent: no channel came up within "
            f"{self.options.queue_deadline:g} s ({self._states()}); raise "
            "PYWATT_CHANNEL_QUEUE_DEADLINE to wait longer"
        )
        if item.deferred is not None:
            item.deferred.errback(error)
        else:
            self.log.error("{error}", error=str(error))

    def _cancel(self, item: _Queued) -> None:
        try:
            self._queue.remove(item)
        except ValueError:
            return
        self._dequeued(item)
        if item.timer is not None and item.timer.active():
            item.timer.cancel()

    def _fail_queue(self, make_error: Callable[[_Queued], Exception], reason: str) -> None:
        queue, self._queue = self._queue, deque()
        self._queued_bytes = 0
        self._queue_full_logged = False
        for item in queue:
            if item.timer is not None and item.timer.active():
                item.timer.cancel()
            error = make_error(item)
            if item.deferred is not None:
                item.deferred.errback(error)
            else:
                self.log.error("{error}", error=str(error))

    @property
    def queued(self) -> int:
        """
        Messages waiting for a channel.
        """
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """
        Bytes of the frames waiting for a channel.
        """
        return self._queued_bytes

    # -- IChannelListener ---------------------------------------------------------------

    def channel_ready(self, protocol: ChannelProtocol) -> None:
        channel = self.channels[protocol.name]
        channel.protocol = protocol
        channel.connects += 1
        channel.connected_since = self.clock.seconds()
        channel.ready_once = True
        channel.set_state(PAUSED if protocol.paused else CONNECTED)
        self.log.info(
            "{channel} channel connected to {address}{again}",
            channel=channel.name,
            address=channel.spec.address,
            again=" (reconnected)" if channel.connects > 1 else "",
        )
        self._flush()
        self._check_required()

    def channel_writable(self, protocol: ChannelProtocol, writable: bool) -> None:
        channel = self.channels[protocol.name]
        if channel.protocol is not protocol:
            return
        channel.set_state(CONNECTED if writable else PAUSED)
        if writable:
            self._flush()

    def channel_message(self, protocol: ChannelProtocol, message: object) -> None:
        self.receiver(message, protocol)

    def channel_problem(self, protocol: ChannelProtocol, error: Exception) -> None:
        self.channels[protocol.name].error(f"skipped a frame: {error}", type(error).__name__)

    def channel_lost(self, protocol: ChannelProtocol, reason: Failure) -> None:
        channel = self.channels[protocol.name]
        was_current = channel.protocol is protocol
        if was_current:
            channel.protocol = None
            channel.connected_since = None
            channel.disconnects += 1
        elif not self.stopping:
            # Connected at the socket level but never became ready (TLS failed).
            channel.connect_failures += 1
        if protocol.healthy:
            channel.failures_in_a_row = 0
        if self.stopping:
            return
        cause: Failure | BaseException = (
            protocol.abort_reason if protocol.abort_reason is not None else reason
        )
        text = _describe(cause)
        channel.error(f"connection lost: {text}", type(_value(cause)).__name__)
        log = self.log.error if is_tls_failure(cause) else self.log.warn
        log(
            "{channel} channel ({address}) lost: {error}; reconnecting with backoff",
            channel=channel.name,
            address=channel.spec.address,
            error=text,
        )
        if was_current or protocol.ready:
            channel.set_state(BACKOFF)
        self._flush()

    def channel_undeliverable(self, protocol: ChannelProtocol, message: object) -> None:
        op = getattr(message, "op", type(message).__name__)
        d = self.send(message, prefer=protocol.name)
        d.addErrback(
            lambda f: self.log.error(
                "{op} (a reply on the {channel} channel, whose connection is gone) could not "
                "be delivered: {error}",
                op=op,
                channel=protocol.name,
                error=str(f.value),
            )
        )

    # -- health and metrics -------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """
        Per-channel state, counters and last error, for C{/health}.
        """
        return {name: channel.health() for name, channel in self.channels.items()}

    def queue_health(self) -> dict[str, Any]:
        """
        The outbound queue: depth, limit and how many sends it failed.
        """
        return {
            "queued": len(self._queue),
            "limit": self.options.queue_size,
            "bytes": self._queued_bytes,
            "bytes_limit": self.options.queue_bytes,
            "rejected": self.queue_rejected,
            "expired": self.queue_expired,
        }

    def _collect(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        connects = CounterMetricFamily(
            "pywatt_channel_connects", "Connections made, per channel.", labels=["channel"]
        )
        disconnects = CounterMetricFamily(
            "pywatt_channel_disconnects", "Connections lost, per channel.", labels=["channel"]
        )
        failures = CounterMetricFamily(
            "pywatt_channel_connect_failures",
            "Connection attempts that failed, per channel.",
            labels=["channel"],
        )
        frames = CounterMetricFamily(
            "pywatt_channel_frames",
            "Frames, per channel and direction.",
            labels=["channel", "direction"],
        )
        octets = CounterMetricFamily(
            "pywatt_channel_bytes",
            "Bytes, per channel and direction.",
            labels=["channel", "direction"],
        )
        bad = CounterMetricFamily(
            "pywatt_channel_bad_frames",
            "Frames skipped or rejected (bad format, undecodable, oversize), per channel.",
            labels=["channel"],
        )
        last_error = GaugeMetricFamily(
            "pywatt_channel_last_error_timestamp_seconds",
            "When the channel last failed (Unix seconds), labelled with the error kind.",
            labels=["channel", "kind"],
        )
        for name, c in self.channels.items():
            connects.add_metric([name], c.connects)
            disconnects.add_metric([name], c.disconnects)
            failures.add_metric([name], c.connect_failures)
            frames.add_metric([name, "in"], c.counters.frames_in)
            frames.add_metric([name, "out"], c.counters.frames_out)
            octets.add_metric([name, "in"], c.counters.bytes_in)
            octets.add_metric([name, "out"], c.counters.bytes_out)
            bad.add_metric([name], c.counters.bad_frames)
            if c.last_error_at is not None:
                last_error.add_metric([name, c.last_error_kind or "error"], c.last_error_at)
        queue = GaugeMetricFamily(
            "pywatt_channel_queue_depth", "Messages waiting for a channel to come up."
        )
        queue.add_metric([], len(self._queue))
        queue_bytes = GaugeMetricFamily(
            "pywatt_channel_queue_bytes", "Bytes of messages waiting for a channel to come up."
        )
        queue_bytes.add_metric([], self._queued_bytes)
        queue_failures = CounterMetricFamily(
            "pywatt_channel_queue_failures",
            "Messages that failed without being sent, by reason (full, expired).",
            labels=["reason"],
        )
        queue_failures.add_metric(["full"], self.queue_rejected)
        queue_failures.add_metric(["expired"], self.queue_expired)
        return [
            connects,
            disconnects,
            failures,
            frames,
            octets,
            bad,
            last_error,
            queue,
            queue_bytes,
            queue_failures,
        ]


def _value(cause: Failure | BaseException) -> BaseException:
    return cause.value if isinstance(cause, Failure) else cause
