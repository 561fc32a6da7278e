# -*- test-case-name: tests.runtime.test_streaming_incremental -*-
"""
The HTTP-over-IPC bridge's streamed bodies (L{pywatt_twisted.web.bridge},
EXTENSIONS.md X1, C{docs/streaming.md}): L{BridgeStreams} starts a request whose body
is streamed in (spooled, or read by an C{@incremental_body} route as it arrives), ends
it when its stream fails, and follows a response that went out streamed to its end.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.error import ConnectionAborted
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted.streaming import BodyStream, StreamFailed, StreamLink
from pywatt_twisted.streaming._reader import BODY_ATTRIBUTE
from pywatt_twisted.web._body import (
    IncrementalSink,
    ResponseStream,
    SpooledBody,
    reads_incrementally,
)
from pywatt_twisted.web._bridge_channel import Pending
from pywatt_twisted.web._bridge_reply import error_response
from pywatt_twisted.wire.messages import HttpRequest

__all__ = ["BridgeStreams"]

_log = Logger(namespace="pywatt_twisted.web.bridge")


class BridgeStreams:
    """
    The streamed bodies of one L{HttpBridge}'s requests.

    @param bridge: the bridge: its C{site}, C{_run} (route a request), C{_answer} (end
        one with a response), C{_finish_pending} and C{_abort_request}.
    """

    def __init__(self, bridge: Any) -> None:
        self._bridge = bridge

    def start(self, pending: Pending, message: HttpRequest, streams: StreamLink) -> None:
        """
        Receive the body of C{message} (which has a C{stream_id}) on C{streams}: for a
        route marked C{@incremental_body} the route runs now and reads it as it comes
        (each chunk acknowledged as it takes it); otherwise the body is spooled and the
        route runs once it is complete.
        """
        assert message.stream_id is not None
        bridge = self._bridge
        web_request = pending.request
        if reads_incrementally(bridge.site, pending.channel, message):
            body = BodyStream()
            setattr(web_request, BODY_ATTRIBUTE, body)
            web_request.content = BytesIO()
            receiver = streams.receiver(
                message.stream_id,
                IncrementalSink(
                    body, lambda: self._consumed(pending), lambda e: self._failed(pending, e)
                ),
            )
            pending.receiver = receiver
            body.attach(receiver)
            bridge._run(pending, message)
            return
        sink = SpooledBody(
            lambda: self._arrived(pending, message, sink), lambda e: self._failed(pending, e)
        )
        pending.receiver = streams.receiver(message.stream_id, sink)
        # (a stream parked while the module started holds its first chunks)
        pending.receiver.resumeProducing()

    def _arrived(self, pending: Pending, message: HttpRequest, sink: SpooledBody) -> None:
        """
        The streamed body is complete (and spooled): route the request.
        """
        pending.receiver = None
        if pending.answered:
            sink.content.close()
            return
        request = pending.request
        request.requestHeaders.setRawHeaders(b"Content-Length", [b"%d" % sink.size])
        request.content = sink.content
        self._bridge._run(pending, message)

    def _consumed(self, pending: Pending) -> None:
        """
        The route read the whole of a body streamed in incrementally.
        """
        pending.receiver = None

    def _failed(self, pending: Pending, error: StreamFailed) -> None:
        pending.receiver = None
        if pending.answered:
            # (the route answered before reading all of it: the receiver was cancelled)
            return
        if error.kind == "too_large":
            status, code, outcome = 413, "body_too_large", "too_large"
        else:
            status, code, outcome = 400, "bad_request", "bad_request"
        _log.warn(
            "HTTP-over-IPC request {request_id}: its streamed body failed ({error}); "
            "answering {status}",
            request_id=pending.request_id,
            error=str(error),
            status=status,
        )
        self._bridge._answer(
            pending,
            error_response(
                pending.request_id,
                status,
                code,
                f"the streamed request body failed: {error.reason}",
            ),
            outcome,
        )

    def response_streaming(self, pending: Pending, stream: ResponseStream) -> None:
        """
        C{pending}'s response went streamed: it is answered (with C{None}) when the
        stream ends, acknowledged or not.
        """
        bridge = self._bridge

        def ended(result: object) -> None:
            if pending.answered:
                return
            failed = isinstance(result, Failure)
            if isinstance(result, Failure):
                _log.warn(
                    "HTTP-over-IPC request {request_id}: its streamed response ended early: "
                    "{error}",
                    request_id=pending.request_id,
                    error=str(result.value),
                )
            bridge._finish_pending(pending, "aborted" if failed else "completed")
            if failed:
                bridge._abort_request(pending, ConnectionAborted())
            pending.result.callback(None)

        stream.when_done(ended)
