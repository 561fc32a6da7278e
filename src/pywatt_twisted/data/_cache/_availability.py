# -*- test-case-name: tests.data.test_cache_unavailable -*-
"""
Whether a cache server can be reached, shared by the network stores (Redis,
Memcached) and read by L{StoreCache <pywatt_twisted.data._cache._base.StoreCache>}.

It follows the rule of L{Database <pywatt_twisted.data.Database>}: the first failure to
reach the server logs one WARNING naming the cache and its address (password redacted)
and marks it C{"unavailable"} on C{/health}; for the next C{connect_timeout} seconds
calls fail at once with L{CacheUnavailable} instead of each waiting; the first call after
that tries again, and the first success (or, after a failure to connect, the first
usable connection) logs "available again" and clears the status.

The in-process stores (memory, file) have none: there is no server to lose. A file
cache's disk errors are plain L{CacheError}s (a full disk or a permission problem is not
fixed by waiting, and failing other keys at once would hide which file failed).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted.data._cache._errors import CacheUnavailable


class Availability:
    """
    The outage state of one cache server (one store, shared by its namespace views).

    @ivar down: C{None} while the server answers; during an outage, C{(reactor time of
        the first failure, reactor time before which calls fail at once)}.
    @ivar last_error: the message of the last failure (no password), or C{None}.
    @ivar closed: whether the cache was closed.
    """

    log = Logger()

    def __init__(
        self,
        *,
        backend: str,
        url_redacted: str,
        address: str,
        retry_after: float,
        clock: IReactorTime,
        hint: str,
    ) -> None:
        """
        @param backend: the server's name in messages (C{"Redis"}, C{"Memcached"}).
        @param url_redacted: the cache URL without its password.
        @param address: C{host:port}.
        @param retry_after: seconds calls fail at once after a failure (the store's
            C{connect_timeout}).
        @param hint: what to raise when the server is only slow (the URL options).
        """
        self.backend = backend
        self.url_redacted = url_redacted
        self.address = address
        self.retry_after = retry_after
        self.clock = clock
        self.hint = hint
        self.down: tuple[float, float] | None = None
        self.last_error: str | None = None
        self.closed = False
        #: whether the outage began with a failure to connect (a usable connection
        #: ends it) rather than a server that stopped answering (a reply ends it)
        self._connecting = False

    def failed(self, error: BaseException, *, connecting: bool) -> None:
        """
        The server could not be reached (C{connecting}: no connection could be opened)
        or did not answer in time: from now until C{retry_after} seconds later calls
        fail at once. Logs one WARNING at the start of an outage, none after.
        """
        if self.closed:
            return
        now = self.clock.seconds()
        first = self.down is None
        since = now if self.down is None else self.down[0]
        self.down = (since, now + self.retry_after)
        self.last_error = str(error)
        if first:
            self._connecting = connecting
            self.log.warn(
                "Cache {url} ({backend} at {address}) is unavailable: {error}. Calls fail "
                "with CacheUnavailable (HTTP 503 when a route lets it escape) until it "
                "answers again; /health shows it. {hint}",
                url=self.url_redacted,
                backend=self.backend,
                address=self.address,
                error=str(error).rstrip("."),
                hint=self.hint,
            )

    def connected(self) -> None:
        """
        A connection to the server is usable: ends an outage that began with a failure
        to connect.
        """
        if self.down is not None and self._connecting:
            self.succeeded()

    def succeeded(self, result: object = None) -> object:
        """
        A call succeeded: ends the outage (logs "available again"). Returns C{result},
        to be used as a callback.
        """
        down = self.down
        if down is not None:
            self.down = None
            self.log.info(
                "Cache {url} ({backend} at {address}) is available again after {seconds:.1f} s",
                url=self.url_redacted,
                backend=self.backend,
                address=self.address,
                seconds=self.clock.seconds() - down[0],
            )
        return result

    def blocked(self) -> CacheUnavailable | None:
        """
        The error for a call made during an outage before the next attempt is due,
        else C{None} (the call goes ahead, and its success ends the outage).
        """
        down = self.down
        if down is None:
            return None
        now = self.clock.seconds()
        since, retry_at = down
        if now >= retry_at:
            return None
        return CacheUnavailable(
            f"expected the {self.backend} cache {self.url_redacted} to answer, but it has "
            f"been unreachable for {now - since:.1f} s ({self.last_error}); failing at "
            f"once, calls try it again in {retry_at - now:.1f} s"
        )

    def watch(self, d: Deferred[Any]) -> Deferred[Any]:
        """
        Let the outcome of C{d}, a call made while the server is marked down, end the
        outage when it succeeds.
        """
        return d.addCallback(self.succeeded)

    def health(self) -> dict[str, Any]:
        """
        C{status} (C{"ok"}, C{"unavailable"} with C{unavailable_seconds}, C{"closed"})
        and C{last_error}.
        """
        if self.closed:
            return {"status": "closed", "last_error": self.last_error}
        if self.down is None:
            return {"status": "ok", "last_error": self.last_error}
        return {
            "status": "unavailable",
            "unavailable_seconds": round(self.clock.seconds() - self.down[0], 3),
            "last_error": self.last_error,
        }


def report_failure(failure: Failure) -> str:
    """
    C{"ExceptionType: message"} for a failure, for messages.
    """
    error = failure.value
    return f"{type(error).__name__}: {error}"


@implementer(IStreamClientEndpoint)
class ReportingEndpoint:
    """
    An L{IStreamClientEndpoint} wrapper that reports every failed connection attempt
    (refused, timed out; not one cancelled because the client stops) to
    C{on_failure(failure)} and every successful one to C{on_success(protocol)}, then
    passes the result on unchanged.
    """

    def __init__(self, endpoint: Any, on_failure: Any, on_success: Any = None) -> None:
        self._endpoint = endpoint
        self._on_failure = on_failure
        self._on_success = on_success

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = self._endpoint.connect(factory)

        def failed(failure: Failure) -> Failure:
            if not failure.check(CancelledError):
                self._on_failure(failure)
            return failure

        def connected(proto: Any) -> Any:
            if self._on_success is not None:
                self._on_success(proto)
            return proto

        return d.addCallbacks(connected, failed)


__all__ = ["Availability", "ReportingEndpoint", "report_failure"]
