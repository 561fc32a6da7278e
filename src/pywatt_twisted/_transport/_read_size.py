# -*- test-case-name: tests.transport.test_read_size -*-
"""
A transport's read size raised while a large body arrives, and put back after; and
its send limit, raised the same way while a large body goes out (L{SendLimit}).

Twisted's TCP and Unix transports read at most C{bufferSize} bytes (64 KiB) per reactor
turn. A connection that is about to receive hundreds of KiB in one piece (a stream
chunk's frame, an upload through C{pywatt dev}'s front port) takes several turns and
several trips through its parser for each piece; reading more at once while the piece
arrives, then going back to the transport's own size, saves them without changing
what small-message traffic does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReadSize", "SendLimit"]


class ReadSize:
    """
    One transport's read size, raised by L{raise_to} and put back by L{restore}.

    @ivar normal: the transport's own read size while it is raised, else C{None}.
    """

    __slots__ = ("_transport", "normal")

    #: The transport's attribute this raises.
    attribute = "bufferSize"

    def __init__(self) -> None:
        self._transport: Any = None
        self.normal: int | None = None

    def raise_to(self, transport: Any, size: int) -> None:
        """
        Read up to C{size} bytes at a time from C{transport} until L{restore}: nothing
        when it is raised already, when the transport reads as much already, or when
        its read size is not an integer C{bufferSize} (TLS's transport).
        """
        if self.normal is not None or transport is None:
            return
        normal = getattr(transport, self.attribute, None)
        if type(normal) is int and normal < size:
            self._transport = transport
            self.normal = normal
            setattr(transport, self.attribute, size)

    def restore(self) -> None:
        """
        Put the transport's own read size back (nothing when it is not raised).
        """
        if self.normal is not None:
            setattr(self._transport, self.attribute, self.normal)
            self._transport = None
            self.normal = None


class SendLimit(ReadSize):
    """
    One transport's send limit (C{SEND_LIMIT}: the most bytes Twisted's TCP and Unix
    transports hand to one C{send}, 128 KiB), raised and put back like L{ReadSize}.

    Each C{send} is a reactor turn of its own (the transport sends again only when the
    socket is reported writable): a 256 KiB piece takes two or three of them at the
    default limit, one when the limit is above its size and the kernel's send buffer
    takes it all (a loopback TCP connection's grows to megabytes). The limit only
    bounds what is offered to the kernel; what it does not take stays buffered as
    before, and nothing else about the transport changes.
    """

    __slots__ = ()

    attribute = "SEND_LIMIT"
