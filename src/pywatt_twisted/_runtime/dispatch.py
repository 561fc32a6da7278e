# -*- test-case-name: tests.runtime.test_service -*-
"""
L{OpDispatcher}: every message from the orchestrator, by type, to one handler; replies
go back on the link (stdio or a channel) the message came in on.

Requests that arrive before the module is ready (HTTP-over-IPC, routed messages) are
held and served once it is; routed ones are bounded (C{handler_max_concurrent +
handler_queue_size} wait, more are answered C{overloaded}). Once the module stops, they
are refused (HTTP 503, routed C{unavailable}).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pywatt_twisted._runtime.messaging import error_reply
from pywatt_twisted._runtime.rotation import SecretRotation
from pywatt_twisted._runtime.status import ModuleStatus
from pywatt_twisted._runtime.streams import LinkStreams
from pywatt_twisted._transport.interfaces import IOrchestratorLink
from pywatt_twisted.streaming import StreamFailed
from pywatt_twisted.web.bridge import line_too_long_response, send_http_reply
from pywatt_twisted.wire._ops import op_name
from pywatt_twisted.wire.messages import (
    DiscoverServiceProvidersResponse,
    Heartbeat,
    HttpRequest,
    HttpResponse,
    Init,
    OversizedHttpRequest,
    PortResponse,
    RegisterServiceProviderResponse,
    Rotated,
    RoutedModuleMessage,
    RoutedModuleResponse,
    SecretMessage,
    ServiceOperationResult,
    ServiceResponse,
    Shutdown,
    StreamAck,
    StreamCancel,
    StreamChunk,
    UnknownMessage,
)
from pywatt_twisted.wire.stream import StreamOptions

if TYPE_CHECKING:
    from pywatt_twisted._runtime.service import ModuleService

__all__ = ["OpDispatcher"]

_STOPPING_BODY = b'{"error":"the module is stopping"}'
_STARTING_BODY = (
    b'{"error":"overloaded","message":"too many requests wait for the module to start"}'
)


def _link_closed(link: IOrchestratorLink) -> bool:
    """
    Whether C{link} can no longer write: a channel whose connection is lost (C{lost}),
    or stdio whose stdout is closed.
    """
    return bool(getattr(link, "lost", False) or getattr(link, "_write_done", False))


class _EarlyHold:
    """
    The messages of one kind held until the module is ready: how many wait, and how
    many were refused since the last one was released (reported then, in one line).
    """

    def __init__(self, summary: str) -> None:
        self.summary = summary
        self.waiting = 0
        self.refused = 0

    def released(self, log: Any) -> None:
        self.waiting -= 1
        if self.refused:
            log.warn(self.summary, count=self.refused)
            self.refused = 0


class OpDispatcher:
    """
    Dispatches one module service's incoming messages.

    @ivar held: calls held until the module is ready, oldest first.
    """

    def __init__(self, service: ModuleService) -> None:
        self.service = service
        self.parts = service.parts
        self.log = service.log
        self.rotation = SecretRotation(service)
        self.held: list[Callable[[], object]] = []
        config = service.config
        self.streams = LinkStreams(
            service.reactor,
            self._stream_options,
            stall_timeout=config.stream_stall_timeout,
            max_body_size=config.max_stream_body_size,
        )
        self.requests = _RequestHandlers(self)

    def _stream_options(self) -> StreamOptions | None:
        init = self.parts.init
        return StreamOptions.from_extensions(init.extensions) if init is not None else None

    def dispatch(self, message: object, link: IOrchestratorLink) -> None:
        """
        Hand C{message}, which came in on C{link}, to its handler.
        """
        kind = type(message)
        # The op's name from its class (op_name's answer, without the call). An unknown
        # op is counted under one label, not its own string: the peer chooses that, and
        # each distinct label value would be a new time series for good.
        op = _CLASS_OPS.get(kind)
        if op is None:
            op = UNKNOWN_OP_LABEL if kind is UnknownMessage else op_name(message)
        self.parts.metrics.message_in(link.name, op)
        handler = self._handlers.get(kind)
        if handler is None:
            self.log.warn(
                "no handler for {op} from {link}; ignoring it",
                op=op_name(message),
                link=link.name,
            )
            return
        handler(self, message, link)

    def _on_http_request(self, message: HttpRequest, link: IOrchestratorLink) -> None:
        self.requests.http_request(message, link)

    def _on_oversized_http_request(
        self, message: OversizedHttpRequest, link: IOrchestratorLink
    ) -> None:
        self.requests.oversized_http_request(message, link)

    def _on_routed_message(self, message: RoutedModuleMessage, link: IOrchestratorLink) -> None:
        self.requests.routed_message(message, link)

    def release(self) -> None:
        """
        The module is ready: serve what was held.
        """
        pending, self.held = self.held, []
        for call in pending:
            call()

    # -- control ----------------------------------------------------------------------------

    def _on_heartbeat(self, message: Heartbeat, link: IOrchestratorLink) -> None:
        self.parts.metrics.message_out(link.name, "heartbeat_ack")
        link.send_heartbeat_ack()

    def _on_shutdown(self, message: Shutdown, link: IOrchestratorLink) -> None:
        self.log.info("shutdown requested on {link}", link=link.name)
        self.service.request_stop()

    def _on_init(self, message: Init, link: IOrchestratorLink) -> None:
        self.log.debug("ignoring a repeated init on {link}", link=link.name)

    def _on_unknown(self, message: UnknownMessage, link: IOrchestratorLink) -> None:
        self.log.warn("ignoring unknown op {op!r} from {link}", op=message.op, link=link.name)

    # -- replies to the module's own requests -----------------------------------------------

    def _on_routed_response(self, message: RoutedModuleResponse, link: IOrchestratorLink) -> None:
        if self.parts.messaging is None:
            self.log.warn(
                "ignoring routed_module_response {id}: no request was sent yet",
                id=str(message.request_id),
            )
            return
        self.parts.messaging.response_received(message)

    def _on_service_reply(self, message: Any, link: IOrchestratorLink) -> None:
        if self.parts.service_client is None:
            self.log.warn("ignoring {op}: no request was sent yet", op=op_name(message))
            return
        self.parts.service_client.response_received(message)

    def _on_port_response(self, message: PortResponse, link: IOrchestratorLink) -> None:
        assert self.parts.port_negotiator is not None
        self.parts.port_negotiator.response_received(message)

    def _on_secret(self, message: SecretMessage, link: IOrchestratorLink) -> None:
        assert self.parts.secrets is not None
        self.parts.secrets.secret_received(message)

    def _on_rotated(self, message: Rotated, link: IOrchestratorLink) -> None:
        self.rotation.received(message, link)

    def _on_stream(self, message: object, link: IOrchestratorLink) -> None:
        self.streams.received(message, link)

    _handlers: dict[type, Callable[[OpDispatcher, Any, IOrchestratorLink], None]] = {
        Heartbeat: _on_heartbeat,
        Shutdown: _on_shutdown,
        SecretMessage: _on_secret,
        Init: _on_init,
        UnknownMessage: _on_unknown,
        HttpRequest: _on_http_request,
        OversizedHttpRequest: _on_oversized_http_request,
        Rotated: _on_rotated,
        RoutedModuleMessage: _on_routed_message,
        RoutedModuleResponse: _on_routed_response,
        RegisterServiceProviderResponse: _on_service_reply,
        DiscoverServiceProvidersResponse: _on_service_reply,
        ServiceResponse: _on_service_reply,
        ServiceOperationResult: _on_service_reply,
        PortResponse: _on_port_response,
        StreamChunk: _on_stream,
        StreamAck: _on_stream,
        StreamCancel: _on_stream,
    }


class _RequestHandlers:
    """
    The requests the orchestrator makes of the module (HTTP-over-IPC and routed module
    messages), for an L{OpDispatcher}: served once the module is ready, held (bounded)
    while it starts, refused once it stops.
    """

    def __init__(self, dispatcher: OpDispatcher) -> None:
        self.dispatcher = dispatcher
        self.service = dispatcher.service
        self.parts = dispatcher.parts
        self.log = dispatcher.log
        self._early_routed = _EarlyHold(
            "{count} routed request(s) were answered 'overloaded' while the module started"
        )
        self._early_http = _EarlyHold(
            "{count} HTTP-over-IPC request(s) were answered 503 while the module started"
        )

    def _module_id(self) -> str:
        return self.parts.module_id or "?"

    def http_request(self, message: HttpRequest, link: IOrchestratorLink) -> None:
        bridge, status = self.parts.bridge, self.service.status_machine
        if bridge is None or status.current is not ModuleStatus.READY:
            streamed = message.stream_id is not None
            limit = self.service.config.max_concurrent_requests
            if not status.accepting:
                headers = {"content-type": "application/json"}
                if streamed:
                    # Its chunks cannot wait for the module: refuse it, stop the stream.
                    link.send(StreamCancel(str(message.stream_id), "the module is not ready"))
                    headers["retry-after"] = "1"
                self._reply_http(
                    link,
                    HttpResponse(
                        request_id=message.request_id,
                        status_code=503,
                        headers=headers,
                        body=_STOPPING_BODY,
                    ),
                )
                return
            if streamed:
                if self._early_http.waiting < limit:  # (the codec made stream_id a str)
                    self._park_early_stream(message, link)
                    return
                # Its chunks cannot wait for the module (over the bound of early
                # requests: 503, logged by the refusal): stop the stream.
                link.send(StreamCancel(str(message.stream_id), "the module is not ready"))
            # Not announced yet: serve it as soon as the app is up. As many wait as could
            # be in flight then; more are answered 503 now.
            self._hold_until_ready(
                self._early_http, limit, message, link, self.http_request, self._refuse_http_early
            )
            return
        d = bridge.handle(
            message, transport=link.name, streams=self.dispatcher.streams.for_link(link)
        )

        def reply(response: HttpResponse | None) -> None:
            if response is not None:  # (None: it went out streamed)
                self._reply_http(link, response)

        d.addCallback(reply)
        d.addErrback(
            lambda f: self.log.failure(
                "HTTP-over-IPC request {id} failed", f, id=message.request_id
            )
        )

    def _park_early_stream(self, message: HttpRequest, link: IOrchestratorLink) -> None:
        """
        A streamed request before the module is ready: held like any early request
        (counted in the same bound), its stream parked: its first chunks wait here
        unacknowledged (at most the window: the orchestrator stops there) until the
        module is ready and the bridge reads them.
        """
        assert isinstance(message.stream_id, str)
        failed: list[StreamFailed] = []

        def stream_failed(error: StreamFailed) -> None:
            # (cancelled by the orchestrator, or a broken window, while it waited)
            failed.append(error)
            self.log.warn(
                "HTTP-over-IPC request {id}: its streamed body failed while it waited for "
                "the module to start ({error}); answering 400",
                id=message.request_id,
                error=str(error),
            )
            body = json.dumps(
                {
                    "error": {
                        "kind": "bad_request",
                        "message": f"the streamed request body failed: {error.reason}",
                    }
                }
            ).encode()
            self._reply_http(
                link,
                HttpResponse(
                    request_id=message.request_id,
                    status_code=400,
                    headers={"content-type": "application/json"},
                    body=body,
                ),
            )

        self.dispatcher.streams.for_link(link).park(message.stream_id, stream_failed)

        def serve(held: HttpRequest, on: IOrchestratorLink) -> None:
            if not failed:
                self.http_request(held, on)

        self._hold_until_ready(
            self._early_http,
            self.service.config.max_concurrent_requests,
            message,
            link,
            serve,
            self._refuse_http_early,
        )

    def oversized_http_request(
        self, message: OversizedHttpRequest, link: IOrchestratorLink
    ) -> None:
        # The transport discarded the line (and logged it with the request id).
        self._reply_http(link, line_too_long_response(message.request_id, message.length_limit))

    def _reply_http(self, link: IOrchestratorLink, response: HttpResponse) -> None:
        if _link_closed(link):
            # The reply is still handed to the link (a channel offers it to the other
            # channels), but it cannot arrive the way the request came: say which one.
            self.log.warn(
                "the reply to HTTP-over-IPC request {id} (status {status}) cannot go back on "
                "{link}, where the request came from: its connection closed while the "
                "request was being served",
                id=response.request_id,
                status=response.status_code,
                link=link.name,
            )
        self.parts.metrics.message_out(link.name, "http_response")
        send_http_reply(link, response, self.log)

    def routed_message(self, message: RoutedModuleMessage, link: IOrchestratorLink) -> None:
        messaging, status = self.parts.messaging, self.service.status_machine
        if messaging is None or status.current is not ModuleStatus.READY:
            if not status.accepting or self.service.lifecycle.stop_requested:
                module_id = self._module_id()
                self._send_routed_error(
                    link,
                    message,
                    "unavailable",
                    f"module {module_id!r} is stopping and takes no more requests",
                )
                return
            # Handlers are registered by create_app: dispatch once the module is up. As
            # many wait as could run or queue then; more are answered 'overloaded' now.
            config = self.service.config
            self._hold_until_ready(
                self._early_routed,
                config.handler_max_concurrent + config.handler_queue_size,
                message,
                link,
                self.routed_message,
                self._refuse_early,
            )
            return
        messaging.message_received(message, link)

    def _hold_until_ready(
        self,
        hold: _EarlyHold,
        limit: int,
        message: Any,
        link: IOrchestratorLink,
        handle: Callable[[Any, IOrchestratorLink], object],
        refuse: Callable[[Any, IOrchestratorLink, int, bool], object],
    ) -> None:
        """
        Hold C{message} until the module is ready, when C{handle} gets it; with C{limit}
        of its kind already held, C{refuse} answers it now (told whether it is the first
        refusal since the last release, which is the one to log).
        """
        if hold.waiting >= limit:
            refuse(message, link, limit, not hold.refused)
            hold.refused += 1
            return
        hold.waiting += 1

        def later() -> None:
            hold.released(self.log)
            handle(message, link)

        self.dispatcher.held.append(later)

    def _refuse_http_early(
        self, message: HttpRequest, link: IOrchestratorLink, limit: int, first: bool
    ) -> None:
        if first:
            self.log.warn(
                "HTTP-over-IPC request {id} answered 503: {limit} requests already wait for "
                "the module to start (the in-flight limit; raise it with "
                "--max-concurrent-requests / PYWATT_MAX_CONCURRENT_REQUESTS)",
                id=message.request_id,
                limit=limit,
            )
        self._reply_http(
            link,
            HttpResponse(
                request_id=message.request_id,
                status_code=503,
                headers={"content-type": "application/json", "retry-after": "1"},
                body=_STARTING_BODY,
            ),
        )

    def _refuse_early(
        self, message: RoutedModuleMessage, link: IOrchestratorLink, limit: int, first: bool
    ) -> None:
        if first:
            self.log.warn(
                "routed handlers overloaded while starting: {limit} requests already wait "
                "for the module to start (handler_max_concurrent + handler_queue_size); "
                "answering more 'overloaded' (raise --handler-queue-size / "
                "PYWATT_HANDLER_QUEUE_SIZE if the module can take more)",
                limit=limit,
            )
        self._send_routed_error(
            link,
            message,
            "overloaded",
            f"module {self._module_id()!r} is starting and {limit} routed requests already "
            "wait for it (handler_max_concurrent + handler_queue_size); retry later",
        )

    def _send_routed_error(
        self, link: IOrchestratorLink, message: RoutedModuleMessage, kind: str, text: str
    ) -> None:
        self.parts.metrics.message_out(link.name, RoutedModuleMessage.op)
        link.send(error_reply(self._module_id(), message, kind, text))


UNKNOWN_OP_LABEL: Final = "unknown"
"""The C{op} label of every received message whose op this version does not know."""

_CLASS_OPS: dict[type, str] = {
    kind: kind.op  # type: ignore[attr-defined]
    for kind in OpDispatcher._handlers
    if kind is not UnknownMessage and isinstance(getattr(kind, "op", None), str)
}
"""The op name of each message class the dispatcher handles (not L{UnknownMessage})."""
