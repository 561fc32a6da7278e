# -*- test-case-name: tests.runtime.test_streaming_stdio -*-
"""
L{LinkStreams}: the streamed bodies (EXTENSIONS.md X1) of each of the module's links
(stdio, each channel connection): one L{StreamTable} per link, with the options the
orchestrator enabled in the init blob (X0) and the runtime's limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IReactorTime

from pywatt_twisted.streaming import StreamLink, StreamTable
from pywatt_twisted.wire.stream import StreamOptions

__all__ = ["LinkStreams"]


class LinkStreams:
    """
    The stream tables of the module's links, made on first use.

    @ivar options: returns the streaming options enabled by the orchestrator (read when
        a link is first used), or C{None} when responses must not be streamed.
    """

    def __init__(
        self,
        clock: IReactorTime,
        options: Callable[[], StreamOptions | None],
        *,
        stall_timeout: float | None,
        max_body_size: int,
    ) -> None:
        self.clock = clock
        self.options = options
        self.stall_timeout = stall_timeout
        self.max_body_size = max_body_size
        self._links: WeakKeyDictionary[Any, StreamLink] = WeakKeyDictionary()

    def for_link(self, link: Any) -> StreamLink:
        """
        The L{StreamLink} of C{link}.
        """
        streams = self._links.get(link)
        if streams is None:
            streams = StreamLink(
                link,
                StreamTable(link.send),
                self.clock,
                self.options(),
                self.stall_timeout,
                self.max_body_size,
            )
            self._links[link] = streams
        return streams

    def received(self, message: object, link: Any) -> None:
        """
        A C{stream_chunk}, C{stream_ack} or C{stream_cancel} arrived on C{link}.
        """
        self.for_link(link).table.received(message)

    def open_streams(self) -> int:
        """
        How many streams are open on all links.
        """
        return sum(len(s.table) for s in list(self._links.values()))
