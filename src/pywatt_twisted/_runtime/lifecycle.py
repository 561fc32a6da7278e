# -*- test-case-name: tests.runtime.test_service -*-
"""
L{Lifecycle}: how a module stops, and with which exit status.

A stop (shutdown op, stdin EOF, SIGTERM, a failed start) asks the process to end
(L{Lifecycle.request_stop}); the process then stops the service, which stops gracefully
(L{Lifecycle.stop}): stop accepting, drain in-flight HTTP and routed requests up to the
shutdown deadline, run the C{on_stop} hooks, cancel waiting requests, close the
databases and caches, close the channels, flush stdout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout

from pywatt_twisted._runtime.status import ModuleStatus

if TYPE_CHECKING:
    from pywatt_twisted._runtime.service import ModuleService

__all__ = ["MIN_STOP_STEP", "Lifecycle"]

#: Seconds each stop step (an on_stop hook, closing a database) gets at least, even
#: when the drain used the whole shutdown deadline.
MIN_STOP_STEP = 1.0

#: Seconds stdout gets to drain at the very end.
STDOUT_FLUSH_TIMEOUT = 5


def _describe(resource: object) -> str:
    from pywatt_twisted.data._cache import ICache

    if ICache.providedBy(resource):
        health = getattr(resource, "health", None)
        url = health().get("url") if callable(health) else None
        return f"the cache {url}" if isinstance(url, str) else type(resource).__name__
    url = getattr(resource, "url_redacted", None)
    if isinstance(url, str):
        return f"the database {url}"
    return type(resource).__name__


class Lifecycle:
    """
    The stop of one module service.

    @param stop_process: C{callable(exit_code)} ending the process.
    @ivar exit_code: the process's exit status once decided (0 for a requested stop,
        1 for a failed start).
    @ivar stop_requested: whether a stop was asked for (it is at most once).
    """

    def __init__(self, service: ModuleService, stop_process: Callable[[int], object]) -> None:
        self.service = service
        self.parts = service.parts
        self.log = service.log
        self._stop_process = stop_process
        self.exit_code: int | None = None
        self.stop_requested = False
        self._stopping: Deferred[None] | None = None

    def request_stop(self) -> None:
        """
        Ask for a graceful stop of the whole process (once; with status 0 unless the
        start already failed).
        """
        if self.stop_requested:
            return
        self.stop_requested = True
        if self.exit_code is None:
            self.exit_code = 0
        self._stop_process(self.exit_code)

    def exit_with(self, code: int) -> None:
        """
        End the process with status C{code} (a failed start).
        """
        self.exit_code = code
        self._stop_process(code)

    def stop(self) -> Deferred[None]:
        """
        Stop gracefully (once; every call returns the same stop).
        """
        if self._stopping is None:
            self._stopping = Deferred.fromCoroutine(self._stop())
        return self._stopping

    async def _stop(self) -> None:
        service, parts = self.service, self.parts
        stop_by = service.reactor.seconds() + service.config.shutdown_deadline
        service.status_machine.move_to(ModuleStatus.STOPPING)
        await self._drain()
        if parts.state is not None:
            await self._run_stop_hooks(stop_by)
        if parts.secrets is not None:
            parts.secrets.cancel_all("the module is stopping")
        for client in (parts.messaging, parts.service_client, parts.port_negotiator):
            if client is not None:
                client.stop()
        if parts.slo is not None:
            # No SLO timer outlives the module (channels going down below raise no alert).
            parts.slo.stop()
        await service.stop_children()
        await self._close_resources(stop_by)
        if parts.channels is not None:
            # Last: replies to requests that came in on a channel went out above.
            await parts.channels.stopService()
        await self._flush_stdout()
        service.status_machine.move_to(ModuleStatus.STOPPED)
        self.log.info("stopped")

    async def _drain(self) -> None:
        """
        Stop accepting, then wait (up to the shutdown deadline) for the HTTP requests
        (direct and bridged) and the routed handlers still running.
        """
        parts = self.parts
        if parts.bridge is not None:
            parts.bridge.stop_accepting()
        if parts.port is not None:
            await maybeDeferred(parts.port.stopListening)
        waits: list[Deferred[Any]] = []
        if parts.bridge is not None:
            waits.append(parts.bridge.drain())
        drain_site = getattr(parts.site, "drain", None)
        if drain_site is not None:
            waits.append(drain_site())
        if parts.messaging is not None:
            # Handlers still running get the same deadline as HTTP requests.
            waits.append(parts.messaging.drain())
        if not waits:
            return
        everything: Deferred[Any] = DeferredList(waits, consumeErrors=True)
        deadline = self.service.config.shutdown_deadline
        everything.addTimeout(deadline, self.service.reactor)
        try:
            await everything
        except Exception:
            self.log.warn(
                "requests still in flight after {deadline} s; stopping anyway",
                deadline=deadline,
            )

    async def _flush_stdout(self) -> None:
        if self.parts.stdio is None:
            return
        flushed = self.parts.stdio.flush()
        flushed.addTimeout(STDOUT_FLUSH_TIMEOUT, self.service.reactor)
        try:
            await flushed
        except Exception:
            self.log.warn("stdout did not drain within {seconds} s", seconds=STDOUT_FLUSH_TIMEOUT)

    def _remaining(self, stop_by: float) -> float:
        """
        Seconds left before C{stop_by}, at least L{MIN_STOP_STEP}.
        """
        return max(stop_by - self.service.reactor.seconds(), MIN_STOP_STEP)

    async def _bounded(self, d: Deferred[Any], stop_by: float, what: str) -> None:
        """
        Wait for C{d} at most until C{stop_by} (at least L{MIN_STOP_STEP}); log a
        failure or a timeout (naming C{what} and the setting to raise) and return.
        """
        seconds = self._remaining(stop_by)
        d.addTimeout(seconds, self.service.reactor)
        try:
            await d
        except DeferredTimeout:
            self.log.warn(
                "{what} did not finish within {seconds:.1f} s (what was left of the "
                "shutdown deadline, --shutdown-deadline / PYWATT_SHUTDOWN_DEADLINE, now "
                "{deadline} s); cancelled, the stop goes on",
                what=what,
                seconds=seconds,
                deadline=self.service.config.shutdown_deadline,
            )
        except Exception:
            self.log.failure("{what} failed; the stop goes on", what=what)

    async def _run_stop_hooks(self, stop_by: float) -> None:
        """
        Run the C{state.on_stop} hooks, last registered first, each bounded.
        """
        assert self.parts.state is not None
        for hook in reversed(self.parts.state.stop_hooks):
            name = getattr(hook, "__qualname__", None) or repr(hook)
            await self._bounded(maybeDeferred(hook), stop_by, f"on_stop hook {name}")

    async def _close_resources(self, stop_by: float) -> None:
        """
        Close every database and cache the module opened (last opened first), each
        bounded by what is left of the shutdown deadline.
        """
        for resource in reversed(list(self.parts.resources)):
            await self._bounded(
                maybeDeferred(resource.close), stop_by, f"closing {_describe(resource)}"
            )
