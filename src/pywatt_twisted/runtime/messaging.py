# -*- test-case-name: tests.runtime.test_messaging -*-
"""
Module-to-module messaging through the orchestrator (PROTOCOL.md 6.7, ARCHITECTURE.md
section 2).

B{Requests} (L{RoutedMessaging.send_request}): a C{route_to_module} with a fresh uuid
C{request_id}, sent on the TCP channel (the Unix socket when TCP is down or absent). Its
payload is the JSON envelope C{{"id", "content": <payload>, "metadata": {"source",
"properties": {"target_endpoint"}}}}: the orchestrator passes payload bytes through
untouched, so the endpoint reaches the target inside it. The caller's Deferred fires
with the decoded reply of the C{routed_module_response} carrying the same
C{request_id}, fails with L{RemoteError} when the reply is an error object, and with
L{RequestTimeout} after the timeout. Replies are decoded leniently: an envelope
C{{"id", "content"}} is unwrapped, anything else is taken as is.

B{Handlers} (C{state.handler(endpoint)}): a C{routed_module_message} is dispatched by the
envelope's C{metadata.properties.target_endpoint} (else a top-level C{target_endpoint};
with neither, the only handler if there is exactly one). The handler gets
C{(source_module_id, content)}; its return value (or Deferred, or coroutine) becomes the
reply, sent as the A3 extension C{routed_module_response} on the channel the request
came from. An exception, an unknown endpoint or an unreadable payload gets an error
reply C{{"error": {"kind", "message"}}}; nothing is dropped silently.

B{Notifications} (L{RoutedMessaging.send_message}): the same request with
C{metadata.properties.no_reply = true}; the handler runs and no reply is sent.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted.errors import (
    ChannelError,
    NotAvailable,
    ProtocolError,
    PyWattError,
    RemoteError,
)
from pywatt_twisted.runtime.correlation import CorrelationTable
from pywatt_twisted.transport.channel import encode_channel_frame, envelope_id
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "PayloadError",
    "RoutedMessaging",
    "decode_reply",
    "error_payload",
    "error_reply",
    "request_payload",
    "unwrap_request",
]

#: seconds C{send_request} waits for a reply unless told otherwise (as in the Rust SDK)
DEFAULT_REQUEST_TIMEOUT = 30.0

RoutedHandler = Callable[[str, Any], Any]


class PayloadError(PyWattError, ValueError):
    """
    A payload to send cannot be encoded as JSON (the message was not sent).
    """


def error_payload(kind: str, message: str) -> EncodedPayload:
    """
    The payload of an error reply: C{{"error": {"kind": kind, "message": message}}}.
    """
    return EncodedPayload.from_json({"error": {"kind": kind, "message": message}})


def error_reply(
    module_id: str, message: RoutedModuleMessage, kind: str, text: str
) -> RoutedModuleReply:
    """
    The error reply of module C{module_id} to C{message}.
    """
    return RoutedModuleReply(
        source_module_id=module_id,
        request_id=message.original_request_id,
        target_module_id=message.source_module_id,
        payload=error_payload(kind, text),
    )


def request_payload(
    content: Any,
    endpoint: str,
    source: str | None = None,
    no_reply: bool = False,
    timestamp: int | None = None,
) -> EncodedPayload:
    """
    The payload of a routed request: the JSON envelope C{{"id", "content", "metadata":
    {"timestamp"?, "source"?, "properties": {"target_endpoint", "no_reply"?}}}} that
    carries C{endpoint} through the orchestrator (tests use it to play a requester).

    @raise PayloadError: if C{content} is not JSON-serialisable.
    """
    properties: dict[str, object] = {"target_endpoint": endpoint}
    if no_reply:
        properties["no_reply"] = True
    metadata: dict[str, object] = {}
    if timestamp is not None:
        metadata["timestamp"] = timestamp
    if source is not None:
        metadata["source"] = source
    metadata["properties"] = properties
    try:
        return EncodedPayload.from_json(
            {"id": envelope_id(), "content": content, "metadata": metadata}
        )
    except (TypeError, ValueError) as e:
        raise PayloadError(
            f"the payload for {endpoint!r} must be JSON-serialisable (dicts, lists, strings, "
            f"numbers, booleans, None); got {type(content).__name__}: {e}"
        ) from None


def _error_object(value: Any) -> tuple[str, str] | None:
    """
    C{(kind, message)} when C{value} is an error reply (an object whose only key is
    C{error}, holding an object with a string C{message}); C{None} otherwise.
    """
    if type(value) is not dict or len(value) != 1:
        return None
    error = value.get("error")
    if type(error) is not dict:
        return None
    message = error.get("message")
    if type(message) is not str:
        return None
    kind = error.get("kind")
    return (kind if type(kind) is str and kind else "remote_error"), message


def decode_reply(payload: EncodedPayload) -> Any:
    """
    Decode the payload of a C{routed_module_response} (PROTOCOL.md 6.7, leniently): the
    JSON value, unwrapped when it is an envelope C{{"id", "content", ...}}.

    @raise ValueError: if the payload is not JSON.
    """
    value = payload.json()
    if type(value) is dict and "content" in value and "id" in value:
        return value["content"]
    return value


def unwrap_request(
    payload: EncodedPayload, top_level_endpoint: str | None
) -> tuple[Any, str | None, bool]:
    """
    The C{(content, endpoint, no_reply)} of a C{routed_module_message}'s payload.

    The endpoint comes from the envelope's C{metadata.properties.target_endpoint}, else
    from C{top_level_endpoint}. A payload that is not an envelope is the content itself.

    @raise ValueError: if the payload is not JSON.
    """
    value = payload.json()
    endpoint = top_level_endpoint
    no_reply = False
    if type(value) is dict and "content" in value and "id" in value:
        metadata = value.get("metadata")
        properties = metadata.get("properties") if type(metadata) is dict else None
        if type(properties) is dict:
            named = properties.get("target_endpoint")
            if type(named) is str and named:
                endpoint = named
            no_reply = properties.get("no_reply") is True
        return value["content"], endpoint, no_reply
    return value, endpoint, no_reply


async def _resolve(value: Any) -> Any:
    if isinstance(value, Deferred) or inspect.isawaitable(value):
        return await value
    return value


class RoutedMessaging:
    """
    The requester and handler sides of module-to-module messaging for one module.

    @param module_id: this module's id (C{source} of its requests, C{source_module_id}
        of its replies).
    @param clock: the clock timeouts run on.
    @param handlers: endpoint -> C{handler(source_module_id, payload)}; read at dispatch
        time, so handlers registered after start are found.
    @param channels: the module's L{ChannelManager}, or C{None} without channels (then
        requests fail with L{NotAvailable}).
    @param max_frame_length: the channel frame cap.
    @param redact: applied to the text of error replies (handler exceptions may quote
        secrets).
    @param replies: send the A3 reply extension (on by default); when off, handlers run
        and their results are only logged.
    """

    log = Logger()

    def __init__(
        self,
        *,
        module_id: str,
        clock: IReactorTime,
        handlers: dict[str, RoutedHandler] | None = None,
        channels: Any = None,
        max_frame_length: int = 16 * 1024 * 1024,
        redact: Callable[[str], str] = lambda text: text,
        replies: bool = True,
    ) -> None:
        self.module_id = module_id
        self.clock = clock
        self.handlers: dict[str, RoutedHandler] = handlers if handlers is not None else {}
        self.channels = channels
        self.max_frame_length = max_frame_length
        self._redact = redact
        self.replies = replies
        self.pending: CorrelationTable[uuid.UUID] = CorrelationTable(clock)
        self._in_flight: set[Deferred[None]] = set()
        self._drain_waiters: list[Deferred[None]] = []
        self.stopping = False
        #: counters, for /health
        self.requests_sent = 0
        self.replies_received = 0
        self.replies_ignored = 0
        self.requests_handled = 0
        self.error_replies_sent = 0

    # -- requester ------------------------------------------------------------------------

    def _request_frame(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        request_id: uuid.UUID,
        no_reply: bool,
    ) -> tuple[bytes, str]:
        encoded = request_payload(
            payload, endpoint, self.module_id, no_reply, int(self.clock.seconds())
        )
        message = RouteToModule(
            target_module_id=target_module_id,
            target_endpoint=endpoint,
            request_id=request_id,
            payload=encoded,
        )
        return encode_channel_frame(message, self.max_frame_length), RouteToModule.op

    def _unavailable(self, what: str) -> NotAvailable | None:
        if self.channels is None:
            return NotAvailable(
                f"{what} needs a TCP or Unix-socket channel to the orchestrator, and the init "
                "blob has none (tcp_channel / ipc_channel); run the module under an "
                "orchestrator (or pywatt dev) that offers one"
            )
        if self.stopping:
            return NotAvailable(f"{what} was not sent: the module is stopping")
        return None

    def send_request(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> Deferred[Any]:
        """
        Send C{payload} to C{endpoint} of module C{target_module_id}; fires with the reply.

        @return: a Deferred that fires with the decoded reply, or fails with
            L{RemoteError} (the peer or the orchestrator answered with an error),
            L{RequestTimeout} (no reply within C{timeout} seconds), L{ChannelError} (the
            request could not be written), L{PayloadError} or L{NotAvailable}.
            Cancelling it forgets the request.
        """
        what = f"a request to {target_module_id}/{endpoint}"
        problem = self._unavailable(what)
        if problem is not None:
            return fail(problem)
        if timeout <= 0:
            return fail(ValueError(f"timeout must be positive, got {timeout!r}"))
        request_id = uuid.uuid4()
        try:
            frame, op = self._request_frame(target_module_id, endpoint, payload, request_id, False)
        except (PayloadError, ChannelError) as e:
            return fail(e)
        d = self.pending.add(
            request_id,
            timeout,
            f"no reply from module {target_module_id!r} to {endpoint!r} (request {request_id}) "
            f"within {timeout:g} s; the module may be slow, busy or gone: retry, or pass a "
            "longer timeout",
            context=(target_module_id, endpoint),
        )
        self.requests_sent += 1
        sent = self.channels.send_frame(frame, op, prefer="tcp")
        if not sent.called:
            # Queued until a channel comes up: forget the queued frame once nobody waits.
            d.addBoth(lambda result: (sent.called or sent.cancel(), result)[1])
        sent.addErrback(self._send_failed, request_id)
        return d

    def _send_failed(self, failure: Failure, request_id: uuid.UUID) -> None:
        from twisted.internet.defer import CancelledError

        if failure.check(CancelledError):
            return
        self.pending.fail(request_id, failure.value)

    def send_message(self, target_module_id: str, endpoint: str, payload: Any) -> Deferred[None]:
        """
        Send C{payload} to C{endpoint} of module C{target_module_id} without waiting for
        a reply (the handler runs; no reply is sent).

        @return: a Deferred that fires once the message was written to a channel, or
            fails as L{send_request} does when it could not be.
        """
        problem = self._unavailable(f"a message to {target_module_id}/{endpoint}")
        if problem is not None:
            return fail(problem)
        try:
            frame, op = self._request_frame(target_module_id, endpoint, payload, uuid.uuid4(), True)
        except (PayloadError, ChannelError) as e:
            return fail(e)
        self.requests_sent += 1
        sent: Deferred[None] = self.channels.send_frame(frame, op, prefer="tcp")
        return sent

    def response_received(self, message: RoutedModuleResponse) -> None:
        """
        A C{routed_module_response} arrived: fire the request it answers. Replies to
        unknown, expired or already answered requests are logged and ignored.
        """
        entry = self.pending.pop(message.request_id)
        if entry is None:
            self.replies_ignored += 1
            self.log.warn(
                "ignoring routed_module_response {request_id} from {source}: no request waits "
                "for it (already answered, timed out, or never sent by this module)",
                request_id=str(message.request_id),
                source=message.source_module_id,
            )
            return
        self.replies_received += 1
        target, endpoint = entry.context
        try:
            value = decode_reply(message.payload)
        except ValueError as e:
            entry.deferred.errback(
                ProtocolError(
                    f"the reply of module {message.source_module_id!r} to {endpoint!r} is not "
                    f"JSON ({e}); expected the bare reply JSON or an envelope"
                )
            )
            return
        error = _error_object(value)
        if error is not None:
            kind, text = error
            entry.deferred.errback(
                RemoteError(f"{target}/{endpoint} failed ({kind}): {text}", kind=kind)
            )
            return
        entry.deferred.callback(value)

    # -- handler side ---------------------------------------------------------------------

    def message_received(self, message: RoutedModuleMessage, link: Any) -> None:
        """
        A C{routed_module_message} arrived on C{link}: run its handler and reply on the
        same link.
        """
        d = Deferred.fromCoroutine(self._handle(message, link))
        if d.called:
            return
        self._in_flight.add(d)

        def done(result: object) -> object:
            self._in_flight.discard(d)
            if not self._in_flight:
                waiters, self._drain_waiters = self._drain_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        d.addBoth(done)

    def refuse(self, message: RoutedModuleMessage, link: Any, kind: str, text: str) -> None:
        """
        Answer C{message} with an error reply without running a handler.
        """
        self._reply(link, message, error_payload(kind, text), error=True)

    async def _handle(self, message: RoutedModuleMessage, link: Any) -> None:
        source = message.source_module_id
        try:
            content, endpoint, no_reply = unwrap_request(message.payload, message.target_endpoint)
        except ValueError as e:
            self.refuse(
                message,
                link,
                "bad_request",
                f"the request payload is not JSON ({e}); expected an envelope "
                '{"id", "content", "metadata"} or a bare JSON value',
            )
            return
        handlers = self.handlers
        if endpoint is None:
            if len(handlers) == 1:
                endpoint = next(iter(handlers))
            else:
                self._answer_error(
                    message,
                    link,
                    no_reply,
                    "no_endpoint",
                    f"the request names no endpoint and module {self.module_id!r} has "
                    f"{len(handlers)} handlers; put it in the payload envelope's "
                    "metadata.properties.target_endpoint",
                )
                return
        handler = handlers.get(endpoint)
        if handler is None:
            known = ", ".join(sorted(handlers)) or "none"
            self._answer_error(
                message,
                link,
                no_reply,
                "unknown_endpoint",
                f"module {self.module_id!r} has no handler for endpoint {endpoint!r} "
                f"(handlers: {known})",
            )
            return
        self.requests_handled += 1
        try:
            result = await _resolve(handler(source, content))
        except RemoteError as e:
            # A deliberate error answer (out of stock, not found...): no traceback.
            self.log.info(
                "handler for {endpoint!r} answered {source} with an error ({kind}): {text}",
                endpoint=endpoint,
                source=source,
                kind=e.kind,
                text=str(e),
            )
            self._answer_error(message, link, no_reply, e.kind, self._redact(str(e)))
            return
        except Exception as e:
            self.log.failure(
                "handler for {endpoint!r} failed on a request from {source}",
                Failure(),
                endpoint=endpoint,
                source=source,
            )
            text = f"{type(e).__name__}: {e}"
            self._answer_error(message, link, no_reply, "handler_error", self._redact(text))
            return
        if no_reply:
            return
        try:
            payload = EncodedPayload.from_json(result)
        except (TypeError, ValueError) as e:
            self.refuse(
                message,
                link,
                "bad_reply",
                f"the handler for {endpoint!r} returned a {type(result).__name__}, which is "
                f"not JSON-serialisable ({e})",
            )
            return
        self._reply(link, message, payload)

    def _answer_error(
        self, message: RoutedModuleMessage, link: Any, no_reply: bool, kind: str, text: str
    ) -> None:
        if no_reply:
            self.log.warn(
                "message from {source} not handled ({kind}): {text}",
                source=message.source_module_id,
                kind=kind,
                text=text,
            )
            return
        self.refuse(message, link, kind, text)

    def _reply(
        self, link: Any, message: RoutedModuleMessage, payload: EncodedPayload, error: bool = False
    ) -> None:
        if error:
            self.error_replies_sent += 1
        if not self.replies:
            self.log.info(
                "not replying to {source} (request {request_id}): reply extension is off",
                source=message.source_module_id,
                request_id=str(message.original_request_id),
            )
            return
        link.send(
            RoutedModuleReply(
                source_module_id=self.module_id,
                request_id=message.original_request_id,
                target_module_id=message.source_module_id,
                payload=payload,
            )
        )

    # -- life -----------------------------------------------------------------------------

    def drain(self) -> Deferred[None]:
        """
        Fires once no handler is running (at once when none is).
        """
        d: Deferred[None] = Deferred()
        if not self._in_flight:
            d.callback(None)
        else:
            self._drain_waiters.append(d)
        return d

    def stop(self, reason: str = "the module is stopping") -> None:
        """
        Fail every waiting request: nothing will answer them any more.
        """
        self.stopping = True
        self.pending.fail_all(
            lambda key, entry: NotAvailable(
                f"the request to {entry.context[0]}/{entry.context[1]} ({key}) was abandoned: "
                f"{reason}"
            )
        )

    def health(self) -> Mapping[str, Any]:
        """
        What C{/health} shows under C{messaging}.
        """
        return {
            "handlers": sorted(self.handlers),
            "pending_requests": len(self.pending),
            "requests_sent": self.requests_sent,
            "replies_received": self.replies_received,
            "replies_ignored": self.replies_ignored,
            "timeouts": self.pending.timeouts,
            "requests_handled": self.requests_handled,
            "error_replies_sent": self.error_replies_sent,
        }
