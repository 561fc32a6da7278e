# -*- test-case-name: tests.runtime.test_channels -*-
"""
L{OutboundQueue}: the messages that wait for a channel to come up, bounded in
messages and in bytes, each with a deadline. Nothing in it is dropped silently: a
message is written to a channel, or its Deferred fails (L{ChannelQueueFull} at once
when the queue is full, L{ChannelUnavailable} when its deadline passes or the module
stops).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted.errors import ChannelError

__all__ = ["ChannelQueueFull", "ChannelUnavailable", "OutboundQueue"]


class ChannelQueueFull(ChannelError):
    """
    No channel was up and the outbound queue was full; the message was not sent.
    """


class ChannelUnavailable(ChannelError):
    """
    A queued message waited for a channel longer than the queue deadline, or the
    module stopped first; it was not sent.
    """


Writer = Callable[[bytes], None]
"""Writes one frame to the connection a message was routed to."""


@define
class _Queued:
    frame: bytes
    op: str
    deferred: Deferred[None] | None
    prefer: Any
    timer: Any = None

    def stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()


class OutboundQueue:
    """
    Frames waiting for a channel (see the module docstring).

    @param pick: C{prefer -> writer or None}: where a frame can go now.
    @param describe: the channels' states, for the error of a message that failed.
    @ivar rejected: messages refused because the queue was full.
    @ivar expired: messages whose deadline passed.
    @ivar sent: messages written from the queue.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        size: int,
        max_bytes: int,
        deadline: float,
        pick: Callable[[Any], Writer | None],
        describe: Callable[[], str],
        log: Logger,
    ) -> None:
        self.clock = clock
        self.size = size
        self.max_bytes = max_bytes
        self.deadline = deadline
        self._pick = pick
        self._describe = describe
        self.log = log
        #: the frames waiting for a channel, oldest first: read it (its truth value says
        #: whether any waits); change it only through the queue's methods
        self.waiting: deque[_Queued] = deque()
        self.bytes = 0
        self._full_logged = False
        self._flushing = False
        self.rejected = 0
        self.expired = 0
        self.sent = 0

    def __len__(self) -> int:
        return len(self.waiting)

    def put(self, frame: bytes, op: str, prefer: Any) -> Deferred[None]:
        """
        Queue C{frame}, then write what can be written.

        @return: fires once the frame was written; fails at once with
            L{ChannelQueueFull}, or later with L{ChannelUnavailable}.
        """
        if len(self.waiting) >= self.size:
            return self._full(
                f"cannot send {op}: no channel is up ({self._describe()}) and "
                f"{len(self.waiting)} messages already wait for one (queue size "
                f"{self.size}); retry later or raise PYWATT_CHANNEL_QUEUE_SIZE "
                "/ --channel-queue-size"
            )
        if self.bytes + len(frame) > self.max_bytes:
            return self._full(
                f"cannot send {op} ({len(frame)} bytes): no channel is up "
                f"({self._describe()}) and {self.bytes} bytes already wait for one (queue "
                f"bytes {self.max_bytes}); retry later or raise PYWATT_CHANNEL_QUEUE_BYTES "
                "/ --channel-queue-bytes"
            )
        item = _Queued(frame, op, None, prefer)
        d: Deferred[None] = Deferred(lambda _: self._cancel(item))
        item.deferred = d
        item.timer = self.clock.callLater(self.deadline, self._expire, item)
        self.waiting.append(item)
        self.bytes += len(frame)
        self.flush()
        return d

    def _full(self, text: str) -> Deferred[None]:
        """
        Fail a send the full queue cannot take; log it once until the queue empties.
        """
        self.rejected += 1
        if not self._full_logged:
            self._full_logged = True
            self.log.error(
                "{error} (further sends refused while the queue is full are not logged; "
                "their Deferreds fail)",
                error=text,
            )
        return fail(ChannelQueueFull(text))

    def _taken(self, item: _Queued) -> None:
        self.bytes -= len(item.frame)
        if not self.waiting:
            self.bytes = 0
            self._full_logged = False

    def flush(self) -> None:
        """
        Write queued frames, oldest first, while a channel takes them.
        """
        if self._flushing:
            return
        self._flushing = True
        try:
            items = self.waiting
            while items:
                item = items[0]
                write = self._pick(item.prefer)
                if write is None:
                    return
                items.popleft()
                self._taken(item)
                item.stop_timer()
                write(item.frame)
                self.sent += 1
                if item.deferred is not None:
                    item.deferred.callback(None)
        finally:
            self._flushing = False

    def _expire(self, item: _Queued) -> None:
        item.timer = None
        try:
            self.waiting.remove(item)
        except ValueError:
            return
        self._taken(item)
        self.expired += 1
        error = ChannelUnavailable(
            f"{item.op} was not sent: no channel came up within "
            f"{self.deadline:g} s ({self._describe()}); raise "
            "PYWATT_CHANNEL_QUEUE_DEADLINE to wait longer"
        )
        if item.deferred is not None:
            item.deferred.errback(error)
        else:
            self.log.error("{error}", error=str(error))

    def _cancel(self, item: _Queued) -> None:
        try:
            self.waiting.remove(item)
        except ValueError:
            return
        self._taken(item)
        item.stop_timer()

    def fail_all(self, make_error: Callable[[str], Exception]) -> None:
        """
        Fail every queued message with C{make_error(op)} (the module is stopping).
        """
        items, self.waiting = self.waiting, deque()
        self.bytes = 0
        self._full_logged = False
        for item in items:
            item.stop_timer()
            error = make_error(item.op)
            if item.deferred is not None:
                item.deferred.errback(error)
            else:
                self.log.error("{error}", error=str(error))

    def health(self) -> dict[str, Any]:
        """
        Depth, limits and how many sends it failed, for C{/health}.
        """
        return {
            "queued": len(self.waiting),
            "limit": self.size,
            "bytes": self.bytes,
            "bytes_limit": self.max_bytes,
            "rejected": self.rejected,
            "expired": self.expired,
        }
