# -*- test-case-name: tests.runtime.test_streaming_stdio -*-
"""
Streamed bodies through the HTTP-over-IPC bridge (EXTENSIONS.md X1).

  - L{SpooledBody}: the sink of a request body streamed in: it spools the bytes
    (memory up to L{SPOOL_THRESHOLD}, then a temporary file, as twisted.web does for a
    large body) so C{request.content} works for any size within the streamed body
    limit. Each chunk is acknowledged once it is written to the spool.
  - L{ResponseStream}: sends a bridged response as chunks once its body outgrows one
    chunk (when the orchestrator enabled streaming), and tells the route's producer
    to pause while the window is full.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO, Any, Final

from pywatt_twisted.streaming import StreamFailed, StreamLink, StreamSender
from pywatt_twisted.wire.messages import HttpResponse

__all__ = ["SPOOL_THRESHOLD", "ResponseStream", "SpooledBody"]

#: Streamed request bodies larger than this many bytes are spooled to a temporary file.
SPOOL_THRESHOLD: Final = 1024 * 1024


class SpooledBody:
    """
    Collects a streamed request body for C{request.content}.

    @ivar content: the spool (a C{SpooledTemporaryFile}).
    @ivar size: bytes received.
    """

    def __init__(
        self,
        on_done: Callable[[], object],
        on_failed: Callable[[StreamFailed], object],
        threshold: int = SPOOL_THRESHOLD,
    ) -> None:
        self.content: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=threshold)
        self.size = 0
        self._on_done = on_done
        self._on_failed = on_failed

    def body_data(self, data: bytes) -> None:
        self.content.write(data)
        self.size += len(data)

    def body_done(self) -> None:
        self._on_done()

    def body_failed(self, error: StreamFailed) -> None:
        self.content.close()
        self._on_failed(error)


class ResponseStream:
    """
    The streamed form of one bridged response: its head went out as an
    C{http_response} with a C{stream_id} and an empty body; the body goes as chunks.
    """

    def __init__(
        self,
        link: StreamLink,
        request_id: str,
        code: int,
        headers: dict[str, str],
        on_writable: Callable[[bool], object],
    ) -> None:
        self.sender: StreamSender = link.sender(on_writable)
        head = dict(headers)
        head.pop("content-length", None)
        link.link.send_http_response(
            HttpResponse(request_id, code, head, b"", self.sender.stream_id)
        )

    @property
    def writable(self) -> bool:
        return self.sender.writable

    def write(self, data: bytes) -> None:
        self.sender.write(data)

    def finish(self) -> None:
        self.sender.finish()

    def cancel(self, reason: str) -> None:
        self.sender.cancel(reason)

    def when_done(self, callback: Callable[[Any], object]) -> None:
        self.sender.done.addBoth(callback)
