# -*- test-case-name: tests.runtime.test_channels -*-
"""
L{LinkChannel}: one configured channel: its spec, its connection settings, its
state machine, its current connection and its counters, and what C{/health} shows
of it. It is the L{IChannelListener} of its connections and the observer of its
endpoint's attempts, so every event of the channel lands here and becomes one
L{ChannelEvent} for its state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.internet import ClientService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted._transport.channel import (
    ChannelCounters,
    ChannelFactory,
    ChannelProtocol,
    ChannelSettings,
    IChannelListener,
)
from pywatt_twisted._transport.tls import is_tls_failure
from pywatt_twisted.link._endpoints import describe_failure, failure_value
from pywatt_twisted.link._latency import LatencyTracker
from pywatt_twisted.link._options import ChannelSpec
from pywatt_twisted.link._state import ChannelEvent, ChannelState, ChannelStateMachine

__all__ = ["LinkChannel"]


class LinkOwner(Protocol):
    """
    What a L{LinkChannel} needs from the manager that owns it.
    """

    clock: IReactorTime
    stopping: bool
    #: called as C{receiver(message, protocol)} for each decoded message
    receiver: Callable[[object, ChannelProtocol], object]

    @property
    def log(self) -> Logger: ...

    def channel_state(self, name: str, state: ChannelState) -> None:
        """A channel changed state (for the metrics)."""

    def usable(self, changed: LinkChannel) -> None:
        """C{changed} may take sends now (or is gone): flush the queue."""

    def came_up(self, changed: LinkChannel) -> None:
        """C{changed} is ready (for the required channels)."""

    def send(self, message: object, prefer: str | None = None) -> Any:
        """Send C{message} on any channel, C{prefer} first."""


@implementer(IChannelListener)
class LinkChannel:
    """
    One configured channel (see the module docstring).

    @ivar machine: its L{ChannelStateMachine}, the one record of its state.
    @ivar protocol: its current ready connection, if any (set it through
        L{_set_protocol}, which keeps L{writable}).
    @ivar writable: sends may go to the channel's connection now: it has one and its
        state machine says writable. A plain attribute, kept by L{fire} and
        L{_set_protocol}, since the send path reads it for every message (issue 20).
    @ivar failures_in_a_row: failures since the last healthy connection: the backoff
        step. Unlike ClientService's own count, a connection that opened but never
        became healthy does not reset it.
    """

    def __init__(self, owner: LinkOwner, spec: ChannelSpec, settings: ChannelSettings) -> None:
        self.owner = owner
        self.spec = spec
        self.settings = settings
        self.name = spec.name
        self.clock = owner.clock
        self.counters = ChannelCounters()
        self.machine = ChannelStateMachine(
            spec.name, lambda state: owner.channel_state(spec.name, state)
        )
        self.protocol: ChannelProtocol | None = None
        self.writable = False
        self.service: ClientService | None = None
        self.factory: ChannelFactory | None = None
        self.connects = 0
        self.disconnects = 0
        self.connect_failures = 0
        self.last_error: str | None = None
        self.last_error_kind: str | None = None
        self.last_error_at: float | None = None
        self.connected_since: float | None = None
        self.next_retry: float | None = None
        self.failures_in_a_row = 0
        #: round trips of the requests sent on it (reply RTT)
        self.latency = LatencyTracker(self.clock)
        #: requests sent on it that wait for their reply
        self.in_flight = 0
        #: requests sent on it that failed without an answer (timeout, write failure)
        self.request_errors = 0

    @property
    def state(self) -> ChannelState:
        """
        The current state (of L{machine}).
        """
        return self.machine.state

    @property
    def ready_once(self) -> bool:
        """
        The channel was connected at least once.
        """
        return self.machine.ready_once

    def fire(self, event: ChannelEvent) -> ChannelState:
        """
        Feed C{event} to the state machine.
        """
        state = self.machine.fire(event)
        self.writable = self.protocol is not None and self.machine.writable
        return state

    def _set_protocol(self, protocol: ChannelProtocol | None) -> None:
        self.protocol = protocol
        self.writable = protocol is not None and self.machine.writable

    def error(self, text: str, kind: str) -> None:
        self.last_error = text
        self.last_error_kind = kind
        self.last_error_at = self.clock.seconds()

    # -- ObservedEndpoint's observer ------------------------------------------------------

    def attempting(self) -> None:
        if self.owner.stopping:
            return
        self.next_retry = None
        self.fire(ChannelEvent.ATTEMPT)

    def attempt_failed(self, failure: Failure) -> None:
        self.connect_failures += 1
        text = describe_failure(failure)
        self.error(f"cannot connect to {self.spec.address}: {text}", type(failure.value).__name__)
        if self.owner.stopping:
            return
        self.fire(ChannelEvent.ATTEMPT_FAILED)
        log = self.owner.log
        (log.error if is_tls_failure(failure) else log.warn)(
            "{channel} channel: cannot connect to {address}: {error}; retrying with backoff",
            channel=self.name,
            address=self.spec.address,
            error=text,
        )

    def retry_delay(self, policy: Callable[[int], float]) -> float:
        """
        The delay before the next attempt (ClientService's retry policy). Its own
        attempt count restarts whenever a connection opens; ours restarts only after a
        healthy one.
        """
        self.failures_in_a_row += 1
        delay = policy(self.failures_in_a_row)
        self.next_retry = self.clock.seconds() + delay
        if not self.owner.stopping:
            self.fire(ChannelEvent.RETRY_SCHEDULED)
        return delay

    # -- IChannelListener --------------------------------------------------------------

    def channel_ready(self, protocol: ChannelProtocol) -> None:
        self._set_protocol(protocol)
        self.connects += 1
        self.connected_since = self.clock.seconds()
        self.fire(ChannelEvent.READY_BLOCKED if protocol.paused else ChannelEvent.READY)
        self.owner.log.info(
            "{channel} channel connected to {address}{again}",
            channel=self.name,
            address=self.spec.address,
            again=" (reconnected)" if self.connects > 1 else "",
        )
        self.owner.usable(self)
        self.owner.came_up(self)

    def channel_writable(self, protocol: ChannelProtocol, writable: bool) -> None:
        if self.protocol is not protocol:
            return
        self.fire(ChannelEvent.UNBLOCKED if writable else ChannelEvent.BLOCKED)
        if writable:
            self.owner.usable(self)

    def channel_message(self, protocol: ChannelProtocol, message: object) -> None:
        # Straight to the owner's receiver: once per message received (issue 20).
        self.owner.receiver(message, protocol)

    def channel_problem(self, protocol: ChannelProtocol, error: Exception) -> None:
        self.error(f"skipped a frame: {error}", type(error).__name__)

    def channel_lost(self, protocol: ChannelProtocol, reason: Failure) -> None:
        was_current = self.protocol is protocol
        stopping = self.owner.stopping
        if was_current:
            self._set_protocol(None)
            self.connected_since = None
            self.disconnects += 1
        elif not stopping:
            # Connected at the socket level but never became ready (TLS failed).
            self.connect_failures += 1
        if protocol.healthy:
            self.failures_in_a_row = 0
        if stopping:
            return
        cause: Failure | BaseException = (
            protocol.abort_reason if protocol.abort_reason is not None else reason
        )
        text = describe_failure(cause)
        self.error(f"connection lost: {text}", type(failure_value(cause)).__name__)
        log = self.owner.log
        (log.error if is_tls_failure(cause) else log.warn)(
            "{channel} channel ({address}) lost: {error}; reconnecting with backoff",
            channel=self.name,
            address=self.spec.address,
            error=text,
        )
        if was_current:
            self.fire(ChannelEvent.LOST)
        self.owner.usable(self)

    def channel_undeliverable(self, protocol: ChannelProtocol, message: object) -> None:
        op = getattr(message, "op", type(message).__name__)
        d = self.owner.send(message, prefer=protocol.name)
        d.addErrback(
            lambda f: self.owner.log.error(
                "{op} (a reply on the {channel} channel, whose connection is gone) could not "
                "be delivered: {error}",
                op=op,
                channel=protocol.name,
                error=str(f.value),
            )
        )

    # -- health -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        c = self.counters
        now = self.clock.seconds()
        out: dict[str, Any] = {
            "state": self.state.value,
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
            "reconnects": max(0, self.connects - 1),
            "in_flight": self.in_flight,
            "request_errors": self.request_errors,
            "latency": dict(self.latency.snapshot()),
            "last_error": self.last_error,
            "last_error_age_seconds": (
                round(now - self.last_error_at, 3) if self.last_error_at is not None else None
            ),
        }
        if self.next_retry is not None and self.state is ChannelState.BACKOFF:
            out["retry_in_seconds"] = round(max(0.0, self.next_retry - now), 3)
        return out
