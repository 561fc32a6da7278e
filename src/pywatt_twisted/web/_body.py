# -*- test-case-name: tests.runtime.test_streaming_stdio -*-
"""
Streamed bodies through the HTTP-over-IPC bridge (EXTENSIONS.md X1).

  - L{SpooledBody}: the sink of a request body streamed in: it spools the bytes
    (memory up to L{SPOOL_THRESHOLD}, then a temporary file, as twisted.web does for a
    large body) so C{request.content} works for any size within the streamed body
    limit. Each chunk is acknowledged once it is written to the spool.
  - L{IncrementalSink}: the sink of a request body streamed in to a route marked with
    L{incremental_body}: it feeds the route's L{BodyStream}, so each chunk is
    acknowledged only as the route reads it; L{reads_incrementally} tells, from the
    request's head, whether the route it reaches is such a route.
  - L{ResponseStream}: sends a bridged response as chunks once its body outgrows one
    chunk (when the orchestrator enabled streaming), and tells the route's producer
    to pause while the window is full.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO, Any, Final
from urllib.parse import unquote_to_bytes

from pywatt_twisted.streaming import (
    BodyStream,
    StreamFailed,
    StreamLink,
    StreamSender,
    StreamState,
)
from pywatt_twisted.streaming._reader import is_incremental
from pywatt_twisted.web._bridge_request import copy_headers
from pywatt_twisted.web._cors import _klein_app
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse

__all__ = [
    "SPOOL_THRESHOLD",
    "IncrementalSink",
    "ResponseStream",
    "SpooledBody",
    "reads_incrementally",
]

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


class IncrementalSink:
    """
    Feeds a streamed request body to the route's L{BodyStream} (which pauses the
    receiver between reads, so chunks are acknowledged as the route takes them).
    The bridge hears of the end first: C{on_failed} answers the request (400 or
    413), then the route's read fails with the L{StreamFailed}.
    """

    def __init__(
        self,
        body: BodyStream,
        on_done: Callable[[], object],
        on_failed: Callable[[StreamFailed], object],
    ) -> None:
        self.body = body
        self._on_done = on_done
        self._on_failed = on_failed

    def body_data(self, data: bytes) -> None:
        self.body.body_data(data)

    def body_done(self) -> None:
        self._on_done()
        self.body.body_done()

    def body_failed(self, error: StreamFailed) -> None:
        self._on_failed(error)
        self.body.body_failed(error)


def reads_incrementally(site: Any, channel: Any, message: HttpRequest) -> bool:
    """
    Whether C{message} (a request whose body is streamed in) reaches a Klein route
    marked with L{incremental_body}: found as the site will find it, by traversing
    its resource tree with a throwaway request of the same method, target and
    headers (copied as the bridge copies them, L{copy_headers}), then matching the
    Klein app's URL map as Klein does. Anything else (not a Klein route, no match, an
    error) is C{False}: the body is spooled.
    """
    try:
        probe: Any = site.requestFactory(channel)
        probe.method = message.method.encode("ascii")
        probe.uri = message.uri.encode("ascii")
        probe.path = probe.uri.split(b"?", 1)[0]
        copy_headers(probe, message.headers)
        probe.prepath = []
        probe.postpath = [unquote_to_bytes(s) for s in probe.path[1:].split(b"/")]
        resource = site.getResourceFor(probe)
        app = _klein_app(resource)
        if app is None:
            return False
        path_info = b"/".join(probe.postpath)
        if not path_info.startswith(b"/"):
            path_info = b"/" + path_info
        adapter = app.url_map.bind("localhost", path_info=path_info.decode("utf-8"))
        rule, _ = adapter.match(method=message.method, return_rule=True)
        return is_incremental(app.endpoints.get(rule.endpoint))
    except Exception:
        return False


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
        # (after a cancel the route may still write before it hears of it: dropped)
        if self.sender.state is StreamState.OPEN:
            self.sender.write(data)

    def finish(self) -> None:
        self.sender.finish()

    def cancel(self, reason: str) -> None:
        self.sender.cancel(reason)

    def when_done(self, callback: Callable[[Any], object]) -> None:
        self.sender.done.addBoth(callback)
