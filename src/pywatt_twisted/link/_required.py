# -*- test-case-name: tests.runtime.test_channels -*-
"""
L{RequiredChannels}: waits until every channel the init blob marks C{required} has
been up once, bounded by C{required_timeout}; the module announces only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from pywatt_twisted.errors import BootstrapError, ChannelError
from pywatt_twisted.link._channel import LinkChannel
from pywatt_twisted.link._state import ChannelState

__all__ = ["RequiredChannelFailed", "RequiredChannels"]


class RequiredChannelFailed(BootstrapError, ChannelError):
    """
    A channel marked C{required} in the init blob did not come up in time (or cannot
    be configured), so the module must not announce.
    """


class RequiredChannels:
    """
    The waiters for the required channels.

    @param channels: C{() -> the configured channels}.
    @param started_at: C{() -> when the channels were started}, or C{None}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float,
        channels: Callable[[], Iterable[LinkChannel]],
        started_at: Callable[[], float | None],
    ) -> None:
        self.clock = clock
        self.timeout = timeout
        self._channels = channels
        self._started_at = started_at
        self._waiters: list[Deferred[None]] = []
        self._timer: Any = None

    def wait(self) -> Deferred[None]:
        """
        Fires once every required channel has been up at least once; fails with
        L{RequiredChannelFailed} naming the channel(s) when the timeout (counted from
        the start) passes first, or at once when a required channel cannot be
        configured.
        """
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if self.check():
            return d
        if self._timer is None and self._waiters:
            now = self.clock.seconds()
            started = self._started_at()
            remaining = self.timeout - (now - (started if started is not None else now))
            self._timer = self.clock.callLater(max(0.0, remaining), self._timed_out)
        return d

    def _missing(self) -> list[LinkChannel]:
        return [c for c in self._channels() if c.spec.required and not c.ready_once]

    def check(self) -> bool:
        """
        Settle the waiters if possible; return whether they were settled.
        """
        if not self._waiters:
            return False
        missing = self._missing()
        if not missing:
            self._settle(None)
            return True
        failed = [c for c in missing if c.state is ChannelState.FAILED]
        if failed:
            self.fail(
                RequiredChannelFailed(
                    "; ".join(
                        f"required {c.name} channel ({c.spec.address}) cannot start: {c.last_error}"
                        for c in failed
                    )
                )
            )
            return True
        return False

    def _timed_out(self) -> None:
        self._timer = None
        missing = self._missing()
        if not missing:
            self._settle(None)
            return
        details = "; ".join(
            f"required {c.name} channel ({c.spec.address}) did not connect within "
            f"{self.timeout:g} s (state {c.state.value}, last error: "
            f"{c.last_error or 'none'})"
            for c in missing
        )
        self.fail(
            RequiredChannelFailed(
                f"{details}; check that the orchestrator listens there, or raise "
                "PYWATT_CHANNEL_REQUIRED_TIMEOUT"
            )
        )

    def fail(self, error: Exception) -> None:
        """
        Fail every waiter with C{error}.
        """
        self._settle(Failure(error))

    def _settle(self, result: Failure | None) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if result is None:
                d.callback(None)
            else:
                d.errback(result)
