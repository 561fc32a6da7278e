# -*- test-case-name: tests.runtime.test_proxied -*-
"""
L{ServiceLink}: one proxied service connection (C{state.service(name)}), the module's
end of C{service_request} / C{service_operation} (PROTOCOL.md 6.9).

Every operation has a timeout and is correlated by its own id (L{ServiceClient}). At
most C{max_in_flight} operations of one service are outstanding; up to C{max_queued}
more wait for a slot, in order, within their own timeout; beyond that a call fails at
once with L{ServiceUnavailable} (C{kind} C{"overloaded"}, logged once per burst) and
nothing is sent. A failure that says nothing about the outcome (no reply in time, the
module stopping, the channel failing) becomes L{ServiceUnavailable} with C{sent} true
when the operation had been written: its outcome is unknown, and the link never sends
it again on its own (the data layer decides what may be retried: only calls marked
idempotent). When the module has a circuit breaker for the service (an object with
C{acquire()} / C{succeeded(permit)} / C{failed(permit)} / C{released(permit)}), every
operation goes through it: while it is open, calls fail at once, unsent.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted.errors import (
    ChannelError,
    NotAvailable,
    PyWattError,
    RemoteError,
    RequestTimeout,
    ServiceError,
    ServiceUnavailable,
)

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "DEFAULT_MAX_QUEUED", "ServiceLink"]

#: operations of one proxied service outstanding at once
DEFAULT_MAX_IN_FLIGHT = 64
#: operations of one proxied service waiting for a slot before calls fail at once
DEFAULT_MAX_QUEUED = 1024


class _Waiting:
    __slots__ = ("args", "deadline", "out", "timer")

    def __init__(self, out: Deferred[Any], args: tuple[Any, ...], deadline: float) -> None:
        self.out = out
        self.args = args
        self.deadline = deadline
        self.timer: Any = None


class ServiceLink:
    """
    One proxied service connection.

    @param client: the module's L{ServiceClient <pywatt_twisted._runtime.discovery.ServiceClient>}.
    @param name: the service's name (as given to C{state.service}).
    @param service_type: its L{ServiceType}, from the orchestrator's C{service_response}.
    @param connection_id: the orchestrator's id for this connection.
    @param breaker: the service's circuit breaker, or None.
    @ivar in_flight: operations outstanding now.
    @ivar overloaded: calls refused because the queue was full.
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        name: str,
        service_type: Any,
        connection_id: str,
        *,
        clock: IReactorTime,
        timeout: float = 30.0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_queued: int = DEFAULT_MAX_QUEUED,
        breaker: Any = None,
    ) -> None:
        if max_in_flight < 1 or max_queued < 0:
            raise ValueError("expected max_in_flight >= 1 and max_queued >= 0")
        self.client = client
        self.name = name
        self.service_type = service_type
        self.connection_id = connection_id
        self.clock = clock
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.breaker = breaker
        self.in_flight = 0
        self.calls = 0
        self.overloaded = 0
        self._warned = False
        self._queue: deque[_Waiting] = deque()
        self.closed = False

    def __repr__(self) -> str:
        return f"<ServiceLink {self.name} {self.service_type} {self.connection_id}>"

    @property
    def queued(self) -> int:
        return len(self._queue)

    def call(
        self, operation: str, params: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        """
        Run C{operation} on the service; fire with its result.

        @param timeout: seconds the call may take in all (waiting for a slot
            included); default: the link's.
        @return: a Deferred failing with L{ServiceError} (the orchestrator answered
            with an error; C{info} names a data-layer error when it was one) or
            L{ServiceUnavailable} (no answer; see C{sent}). Cancelling it stops the
            wait and frees the slot (a reply that comes later is dropped).
        """
        if self.closed:
            return fail(
                ServiceUnavailable(f"the proxied service {self.name!r} was closed", "closed")
            )
        wait = self.timeout if timeout is None else timeout
        if not wait > 0:
            return fail(ValueError(f"expected timeout > 0 seconds, got {timeout!r}"))
        self.calls += 1
        if self.in_flight < self.max_in_flight and not self._queue:
            return self._send(operation, params, wait)
        if len(self._queue) >= self.max_queued:
            self.overloaded += 1
            if not self._warned:
                self._warned = True
                self.log.warn(
                    "proxied service {name}: {n} operations in flight and {q} waiting; "
                    "refusing more until the queue drains",
                    name=self.name,
                    n=self.in_flight,
                    q=len(self._queue),
                )
            return fail(
                ServiceUnavailable(
                    f"the proxied service {self.name!r} has {self.in_flight} operations in "
                    f"flight and {len(self._queue)} waiting (the limits); {operation!r} "
                    "was not sent",
                    "overloaded",
                )
            )
        entry: _Waiting
        out: Deferred[Any] = Deferred(lambda d: self._unqueue(entry))
        entry = _Waiting(out, (operation, params), self.clock.seconds() + wait)
        entry.timer = self.clock.callLater(wait, self._expired, entry)
        self._queue.append(entry)
        return out

    def _unqueue(self, entry: _Waiting) -> None:
        try:
            self._queue.remove(entry)
        except ValueError:
            return
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()

    def _expired(self, entry: _Waiting) -> None:
        entry.timer = None
        try:
            self._queue.remove(entry)
        except ValueError:
            return
        self._refuse_expired(entry)

    def _refuse_expired(self, entry: _Waiting) -> None:
        entry.out.errback(
            ServiceUnavailable(
                f"{entry.args[0]!r} on the proxied service {self.name!r} waited its whole "
                f"timeout for one of {self.max_in_flight} slots; it was not sent",
                "timeout",
            )
        )

    def _send(self, operation: str, params: Any, wait: float) -> Deferred[Any]:
        if getattr(self.client, "stopping", False):
            return fail(
                ServiceUnavailable(
                    f"{operation!r} on the proxied service {self.name!r} was not sent: the "
                    "module is stopping",
                    "unavailable",
                )
            )
        permit = None
        if self.breaker is not None:
            try:
                permit = self.breaker.acquire()
            except PyWattError as e:
                return fail(
                    ServiceUnavailable(
                        f"{operation!r} on the proxied service {self.name!r} was not sent: {e}",
                        getattr(e, "kind", "circuit_open"),
                    )
                )
        self.in_flight += 1
        d = self.client.service_operation(
            self.connection_id, self.service_type, operation, params, timeout=wait
        )
        return d.addBoth(self._done, operation, permit)

    def _done(self, result: object, operation: str, permit: Any) -> object:
        self.in_flight -= 1
        breaker = self.breaker
        if not isinstance(result, Failure):
            if breaker is not None:
                breaker.succeeded(permit)
            self._next()
            return result
        error = result.value
        if isinstance(error, ServiceError):
            # the orchestrator answered: the service works, the operation failed
            if breaker is not None:
                if isinstance(error, ServiceUnavailable):
                    breaker.failed(permit)
                else:
                    breaker.succeeded(permit)
            self._next()
            return result
        if breaker is not None:
            if isinstance(error, RequestTimeout | ChannelError | RemoteError):
                breaker.failed(permit, f"{type(error).__name__}: {error}")
            else:
                breaker.released(permit)
        self._next()
        if isinstance(error, RequestTimeout):
            return Failure(
                ServiceUnavailable(
                    f"no reply to {operation!r} from the proxied service {self.name!r}: "
                    f"{error}; its outcome is unknown",
                    "timeout",
                    sent=True,
                )
            )
        if isinstance(error, NotAvailable | ChannelError):
            return Failure(
                ServiceUnavailable(
                    f"{operation!r} on the proxied service {self.name!r} got no reply: {error}",
                    "unavailable",
                    sent=True,
                )
            )
        return result

    def _next(self) -> None:
        self._warned = self._warned and bool(self._queue)
        while self._queue and self.in_flight < self.max_in_flight:
            entry = self._queue.popleft()
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            remaining = entry.deadline - self.clock.seconds()
            if remaining <= 0:
                self._refuse_expired(entry)
                continue
            operation, params = entry.args
            self._send(operation, params, remaining).chainDeferred(entry.out)

    def close(self) -> Deferred[None]:
        """
        Tell the orchestrator this connection is no longer used (it releases what it
        holds for it, rolling back open transactions) and refuse further calls.
        """
        if self.closed:
            return succeed(None)
        d = self.call("close", {}, timeout=min(self.timeout, 5.0))
        self.closed = True

        def ignore(f: Failure) -> None:
            self.log.info(
                "closing the proxied service {name}: {error}", name=self.name, error=f.value
            )

        return d.addCallbacks(lambda _: None, ignore)

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": str(self.service_type),
            "connection_id": self.connection_id,
            "in_flight": self.in_flight,
            "queued": len(self._queue),
            "calls": self.calls,
            "overloaded": self.overloaded,
            "closed": self.closed,
            **({"breaker": self.breaker.snapshot()} if self.breaker is not None else {}),
        }
