# -*- test-case-name: tests.runtime.test_messaging -*-
"""
The handler side of module-to-module messaging (L{RoutedHandlers}): a
C{routed_module_message} runs its endpoint's handler within the handler limits
(concurrency, a queue bounded in calls and bytes, a timeout, the request's deadline)
and is answered on the link it came on. The package-level picture is in
L{pywatt_twisted._runtime.messaging}.
"""

from __future__ import annotations

import inspect
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted import tracing
from pywatt_twisted._inflight import InFlight
from pywatt_twisted._runtime.routed_envelopes import RoutedHandler, error_payload, unwrap_request
from pywatt_twisted.errors import MessageTooLarge, RemoteError
from pywatt_twisted.wire._json import dumps
from pywatt_twisted.wire._value import unfrozen
from pywatt_twisted.wire.envelope import (
    encode_channel_frame,
    json_payload_of,
    routed_request_parts,
    routed_request_properties,
)
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
from pywatt_twisted.wire.messages import EncodedPayload, RoutedModuleMessage, RoutedModuleReply

__all__ = [
    "DEFAULT_HANDLER_MAX_CONCURRENT",
    "DEFAULT_HANDLER_QUEUE_BYTES",
    "DEFAULT_HANDLER_QUEUE_SIZE",
    "DEFAULT_HANDLER_TIMEOUT",
    "RoutedHandlers",
]

#: handler calls running at once (C{--handler-max-concurrent})
DEFAULT_HANDLER_MAX_CONCURRENT = 64
#: handler calls waiting for a slot (C{--handler-queue-size})
DEFAULT_HANDLER_QUEUE_SIZE = 1000
#: payload bytes of the calls waiting for a slot (C{--handler-queue-bytes})
DEFAULT_HANDLER_QUEUE_BYTES = 64 * 1024 * 1024
#: seconds a handler call may take unless its handler says otherwise (C{--handler-timeout})
DEFAULT_HANDLER_TIMEOUT = 30.0

#: seconds between two log lines about overload (the first one is logged at once)
OVERLOAD_LOG_INTERVAL = 1.0


async def _await(value: Any) -> Any:
    return await value


# A reply is built as an unfrozen twin (wire._value.unfrozen): the same value as
# RoutedModuleReply(...), which has nothing to validate; once per reply (issue 17).
_UnfrozenReply: Final = unfrozen(RoutedModuleReply)

#: the types of the plain values a handler returns most (JSON's): not awaitable, answered
#: without L{_as_deferred}'s three checks (a tenth of answering a request, issue 17)
_PLAIN_TYPES: frozenset[type] = frozenset({dict, list, str, int, float, bool, type(None)})

#: link class -> the phase in which its connections take spliced reply frames
#: (C{ConnectionPhase.READY}) when it is a channel connection that sends as
#: L{ChannelProtocol<pywatt_twisted._transport.channel.ChannelProtocol>} does, else
#: C{None} (L{_frame_link})
_FRAME_LINKS: dict[type, object] = {}
_UNSEEN: Final = object()

#: L{routed_reply_frame<pywatt_twisted.wire._forward.routed_reply_frame>}, imported
#: with the first channel link seen (a module that answers no channel never loads it)
_reply_frame: Any = None


def _frame_link(kind: Any) -> object:
    """
    The C{_FRAME_LINKS} entry of links of class C{kind}: a channel connection whose
    C{send}, C{write_message} and C{write_frame} are L{ChannelProtocol
    <pywatt_twisted._transport.channel.ChannelProtocol>}'s sends a message while
    C{READY} as C{write_frame(encode_channel_frame(message, settings.max_frame_length))},
    so a spliced reply frame can be written so. Other links are sent replies.
    """
    # (The channel code is loaded on first use: until it is, no link is a channel's.)
    global _reply_frame
    channel: Any = sys.modules.get("pywatt_twisted._transport.channel")
    ready = None
    if channel is not None and issubclass(kind, channel.ChannelProtocol):
        from pywatt_twisted.wire._forward import routed_reply_frame

        _reply_frame = routed_reply_frame
        base = channel.ChannelProtocol
        if (
            kind.send is base.send
            and kind.write_message is base.write_message
            and kind.write_frame is base.write_frame
        ):
            ready = channel.ConnectionPhase.READY
    if len(_FRAME_LINKS) >= 64:
        _FRAME_LINKS.clear()
    _FRAME_LINKS[kind] = ready
    return ready


def _surely_fits(size: int, max_frame_length: int) -> bool:
    """
    A reply with a C{size}-byte payload surely fits in C{max_frame_length} (a byte takes
    at most 4 in its array, the rest less than 4096): most replies need no check.
    """
    return 4 * size + 4096 <= max_frame_length


def _as_deferred(value: Any) -> Deferred[Any] | None:
    """
    C{value} as a Deferred when it is one, a coroutine or another awaitable (cancelling
    the Deferred of a coroutine cancels what it awaits); C{None} for a plain value.
    """
    if type(value) in _PLAIN_TYPES:
        return None
    if isinstance(value, Deferred):
        return value
    if inspect.iscoroutine(value):
        return Deferred.fromCoroutine(value)
    if inspect.isawaitable(value):
        return Deferred.fromCoroutine(_await(value))
    return None


class _HandlerTimedOut(Exception):
    """
    A handler call outlived its timeout (internal: becomes a C{deadline_exceeded} reply).
    """


class _OverloadLog:
    """
    The log lines about overload of a L{RoutedHandlers}: the first overload is logged at
    once, later ones at most once per L{OVERLOAD_LOG_INTERVAL} with a count, naming the
    limit reached and the option that raises it.
    """

    def __init__(self, owner: RoutedHandlers, queue_size: int) -> None:
        self._owner = owner
        self.unlogged = 0
        self.logged_at: float | None = None
        #: the timer of the next report, while overloads wait to be logged
        self.timer: IDelayedCall | None = None
        #: the limit of the last overload: C{(setting, value, unit)}
        self.limit: tuple[str, int, str] = ("handler_queue_size", queue_size, "calls")

    def note(self, limit: str, value: int, unit: str) -> None:
        """
        One more overload, at C{limit} (C{value} C{unit}).
        """
        self.unlogged += 1
        self.limit = (limit, value, unit)
        clock = self._owner.clock
        now = clock.seconds()
        last = self.logged_at
        if last is not None and now - last < OVERLOAD_LOG_INTERVAL:
            if self.timer is None:
                self.timer = clock.callLater(last + OVERLOAD_LOG_INTERVAL - now, self.flush)
            return
        self.flush()

    def stop(self) -> None:
        """
        Report the overloads not logged yet now rather than never.
        """
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
            self.flush()

    def flush(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        count, self.unlogged = self.unlogged, 0
        if not count:
            return
        owner = self._owner
        self.logged_at = owner.clock.seconds()
        limit, value, unit = self.limit
        owner.log.warn(
            "routed handlers overloaded: {count} request(s) answered 'overloaded' (or "
            "notifications dropped) since the last report, {total} in all; "
            "{running} running (handler_max_concurrent {max_concurrent}), {queued} queued; "
            "the {limit} limit of {value} {unit} was reached: raise it with --{option} / "
            "PYWATT_{variable} (or --handler-max-concurrent / "
            "PYWATT_HANDLER_MAX_CONCURRENT) if the module can take more",
            count=count,
            total=owner.overloaded,
            running=owner.running,
            max_concurrent=owner.max_concurrent,
            queued=owner.queued,
            limit=limit,
            value=value,
            unit=unit,
            option=limit.replace("_", "-"),
            variable=limit.upper(),
        )


class _Answers:
    """
    How the handler side answers a request: the reply, the error replies (their text
    redacted, counted), a reply too large for one frame turned into C{bad_reply}, and
    the log lines of handlers that failed or timed out.
    """

    def __init__(self, owner: RoutedHandlers) -> None:
        self._owner = owner

    def reply(
        self, link: Any, message: RoutedModuleMessage, payload: EncodedPayload, error: bool = False
    ) -> None:
        owner = self._owner
        if error:
            owner.error_replies_sent += 1
        if tracing.switch.on:
            if error:
                tracing.error_reply(payload)
            payload = tracing.reply_payload(payload)  # X3: the handler span's context
        if not owner.replies:
            owner.log.info(
                "not replying to {source} (request {request_id}): reply extension is off",
                source=message.source_module_id,
                request_id=str(message.original_request_id),
            )
            return
        json = type(payload) is EncodedPayload and payload.format == "Json"
        if json and self._spliced(link, message, payload.data):
            return
        reply = _UnfrozenReply()
        reply.source_module_id = owner.module_id
        reply.request_id = message.original_request_id
        reply.target_module_id = message.source_module_id
        reply.payload = payload
        reply.__class__ = RoutedModuleReply
        if not _surely_fits(len(payload.data), owner.max_frame_length):
            reply = self._fitting(reply, message)
        link.send(reply)

    def _spliced(self, link: Any, message: RoutedModuleMessage, data: bytes) -> bool:
        """
        Write the reply to C{message} with the C{"Json"} payload text C{data} as its
        spliced frame (issue 17: no reply value, encoder, C{send} or C{write_message})
        if C{link} is a channel connection that is up and writes replies so
        (L{_frame_link}) and it surely fits: C{True}; else C{False}, nothing written.
        """
        ready = _FRAME_LINKS.get(type(link), _UNSEEN)
        if ready is _UNSEEN:
            ready = _frame_link(type(link))
        owner = self._owner
        if ready is None or link.phase is not ready:
            return False
        if not _surely_fits(len(data), owner.max_frame_length):
            return False
        source, request_id = message.source_module_id, message.original_request_id
        cap = link.settings.max_frame_length
        frame = _reply_frame(owner.module_id, request_id, source, data, cap)
        if frame is None:
            return False
        link.write_frame(frame)
        return True

    def refuse(self, message: RoutedModuleMessage, link: Any, kind: str, text: str) -> None:
        """
        Answer C{message} with an error reply without running a handler.
        """
        self.reply(link, message, error_payload(kind, text), error=True)

    def error(
        self, message: RoutedModuleMessage, link: Any, no_reply: bool, kind: str, text: str
    ) -> None:
        if no_reply:
            self._owner.log.warn(
                "message from {source} not handled ({kind}): {text}",
                source=message.source_module_id,
                kind=kind,
                text=text,
            )
            return
        self.refuse(message, link, kind, text)

    def result(
        self, message: RoutedModuleMessage, link: Any, no_reply: bool, endpoint: str, result: Any
    ) -> None:
        if no_reply:
            return
        try:
            data = dumps(result)  # json_payload's text
        except (TypeError, ValueError) as e:
            self.refuse(
                message,
                link,
                "bad_reply",
                f"the handler for {endpoint!r} returned a {type(result).__name__}, which is "
                f"not JSON-serialisable ({e})",
            )
            return
        # Spliced from the value's text, no payload value or reply call (callgrind:
        # 117.9 k -> 115.3 k instructions per reply), unless reply would change or stop
        # it (tracing wraps the payload; replies off): then reply, as json_payload makes.
        owner = self._owner
        if tracing.switch.on or not owner.replies or not self._spliced(link, message, data):
            self.reply(link, message, json_payload_of(data))

    def failed(
        self,
        message: RoutedModuleMessage,
        link: Any,
        no_reply: bool,
        endpoint: str,
        error: Exception,
        failure: Failure,
    ) -> None:
        source = message.source_module_id
        if isinstance(error, RemoteError):
            # A deliberate error answer (out of stock, not found...): no traceback.
            self._owner.log.info(
                "handler for {endpoint!r} answered {source} with an error ({kind}): {text}",
                endpoint=endpoint,
                source=source,
                kind=error.kind,
                text=str(error),
            )
            self.error(message, link, no_reply, error.kind, self._owner._redact(str(error)))
            return
        self._owner.log.failure(
            "handler for {endpoint!r} failed on a request from {source}",
            failure,
            endpoint=endpoint,
            source=source,
        )
        text = f"{type(error).__name__}: {error}"
        self.error(message, link, no_reply, "handler_error", self._owner._redact(text))

    def timed_out(
        self,
        message: RoutedModuleMessage,
        link: Any,
        no_reply: bool,
        endpoint: str,
        timeout: float,
        by_deadline: bool,
    ) -> None:
        self._owner.handler_timeouts_hit += 1
        if by_deadline:
            text = (
                f"the handler for {endpoint!r} of module {self._owner.module_id!r} did not "
                "finish by the request's deadline and was cancelled"
            )
        else:
            text = (
                f"the handler for {endpoint!r} of module {self._owner.module_id!r} did not "
                f"finish within its timeout of {timeout:g} s and was cancelled"
            )
        self._owner.log.warn(
            "{text} (request {request_id} from {source}); raise it with "
            "state.handler({endpoint!r}, timeout=...) or, for every handler, "
            "--handler-timeout / PYWATT_HANDLER_TIMEOUT",
            text=text,
            request_id=str(message.original_request_id),
            source=message.source_module_id,
            endpoint=endpoint,
        )
        self.error(message, link, no_reply, "deadline_exceeded", text)

    def _fitting(self, reply: RoutedModuleReply, message: RoutedModuleMessage) -> RoutedModuleReply:
        """
        C{reply} (which may be too large for a frame), or, when it cannot fit in one, a
        C{bad_reply} error reply naming the limit (module-to-module bodies are limited to
        one frame: docs/streaming.md): the requester is answered, not left to time out.
        """
        try:
            encode_channel_frame(reply, self._owner.max_frame_length)
        except MessageTooLarge as e:
            text = (
                f"the reply of {self._owner.module_id!r} is {e.length} bytes encoded, above the "
                f"{e.limit}-byte frame limit (module-to-module bodies must fit one frame)"
            )
            self._owner.log.error(
                "reply to {source} (request {request_id}) too large: {text}; sending a "
                "bad_reply error instead",
                source=message.source_module_id,
                request_id=str(message.original_request_id),
                text=text,
            )
            self._owner.error_replies_sent += 1
            return attrs.evolve(reply, payload=error_payload("bad_reply", text))
        return reply


class RoutedHandlers:
    """
    The handler side of module-to-module messaging for one module.

    @param module_id: this module's id (C{source_module_id} of its replies).
    @param clock: the clock handler timeouts run on.
    @param handlers: endpoint -> C{handler(source_module_id, payload)}; read at dispatch
        time, so handlers registered after start are found.
    @param max_frame_length: the channel frame cap (a reply above it becomes a
        C{bad_reply} error).
    @param redact: applied to the text of error replies (handler exceptions may quote
        secrets).
    @param replies: send the A3 reply extension (on by default); when off, handlers run
        and their results are only logged.
    @param max_concurrent: handler calls running at once (at least 1).
    @param queue_size: handler calls that may wait for a slot; one more is answered
        C{overloaded} (at least 1).
    @param queue_bytes: payload bytes the waiting calls may hold; a call that would
        exceed it is answered C{overloaded}, except that an empty queue always takes one.
    @param handler_timeout: seconds a handler call may take when its handler has no
        timeout of its own.
    @param handler_timeouts: endpoint -> seconds, the per-handler timeouts
        (C{state.handler(endpoint, timeout=...)}); read at dispatch time.
    """

    log = Logger()

    def __init__(
        self,
        *,
        module_id: str,
        clock: IReactorTime,
        handlers: dict[str, RoutedHandler] | None = None,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
        redact: Callable[[str], str] = lambda text: text,
        replies: bool = True,
        max_concurrent: int = DEFAULT_HANDLER_MAX_CONCURRENT,
        queue_size: int = DEFAULT_HANDLER_QUEUE_SIZE,
        queue_bytes: int = DEFAULT_HANDLER_QUEUE_BYTES,
        handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
        handler_timeouts: dict[str, float] | None = None,
    ) -> None:
        for name, value in (
            ("max_concurrent", max_concurrent),
            ("queue_size", queue_size),
            ("queue_bytes", queue_bytes),
            ("handler_timeout", handler_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.module_id = module_id
        self.clock = clock
        self.handlers: dict[str, RoutedHandler] = handlers if handlers is not None else {}
        self.max_frame_length = max_frame_length
        self._redact = redact
        self.replies = replies
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.handler_timeout = handler_timeout
        self.handler_timeouts: dict[str, float] = (
            handler_timeouts if handler_timeouts is not None else {}
        )
        #: requests refused at once because their deadline had passed on arrival
        self.expired_on_arrival = 0
        #: running handler calls; drained once none runs and none is queued
        self._in_flight: InFlight[Deferred[None]] = InFlight(idle=lambda: not self._queue)
        #: handler calls waiting for a slot, oldest first, with their payload sizes
        self._queue: deque[tuple[RoutedModuleMessage, Any, int]] = deque()
        #: payload bytes held by C{_queue}
        self.queued_bytes = 0
        self._overload_log = _OverloadLog(self, queue_size)
        #: replies and error replies
        self.answers = _Answers(self)
        #: counters, for /health
        self.requests_handled = 0
        self.error_replies_sent = 0
        #: requests answered C{overloaded} (and notifications dropped) at the queue bound
        self.overloaded = 0
        #: handler calls cancelled at their timeout
        self.handler_timeouts_hit = 0

    @property
    def running(self) -> int:
        """
        Handler calls running now (at most C{max_concurrent}).
        """
        return len(self._in_flight)

    @property
    def queued(self) -> int:
        """
        Handler calls waiting for a slot (at most C{queue_size}).
        """
        return len(self._queue)

    def message_received(self, message: RoutedModuleMessage, link: Any) -> None:
        """
        A C{routed_module_message} arrived on C{link}: run its handler (or queue it while
        C{max_concurrent} calls run, or answer C{overloaded} when the queue is full too)
        and reply on the same link.
        """
        if len(self._in_flight) < self.max_concurrent and not self._queue:
            self._start(message, link)
            return
        size = len(message.payload.data)
        if len(self._queue) >= self.queue_size:
            self._overload(message, link, "handler_queue_size", self.queue_size, "calls")
            return
        if self._queue and self.queued_bytes + size > self.queue_bytes:
            self._overload(message, link, "handler_queue_bytes", self.queue_bytes, "bytes")
            return
        self._queue.append((message, link, size))
        self.queued_bytes += size

    def _start(self, message: RoutedModuleMessage, link: Any) -> None:
        if tracing.switch.on:
            d = Deferred.fromCoroutine(self._handle(message, link))
        else:
            # Without tracing, a handler that returns a plain value is run and answered
            # here: no coroutine, no Deferred (the common case, and the cheap one).
            started = self._begin(message, link)
            if started is None:
                return
            d = Deferred.fromCoroutine(self._complete(message, link, *started))
        if d.called:
            # Answered synchronously: the slot was never taken (a caller draining the
            # queue goes on with the next one; no recursion).
            return
        self._in_flight.track(d).addBoth(self._next)

    def _next(self, result: object = None) -> object:
        """
        A slot is free: start queued calls while there are slots; wake drain waiters once
        nothing runs or waits. Passes C{result} through (a callback of a finished call).
        """
        while self._queue and len(self._in_flight) < self.max_concurrent:
            message, link, size = self._queue.popleft()
            self.queued_bytes -= size
            self._start(message, link)
        self._in_flight.check()
        return result

    def _overload(
        self, message: RoutedModuleMessage, link: Any, limit: str, value: int, unit: str
    ) -> None:
        self.overloaded += 1
        self._overload_log.note(limit, value, unit)
        try:
            _, endpoint, no_reply = unwrap_request(message.payload, message.target_endpoint)
        except ValueError:
            endpoint, no_reply = message.target_endpoint, False
        if no_reply:
            return
        self.answers.refuse(
            message,
            link,
            "overloaded",
            f"module {self.module_id!r} is overloaded: {len(self._in_flight)} routed handler "
            f"calls running (limit {self.max_concurrent}) and {len(self._queue)} queued "
            f"({self.queued_bytes} payload bytes; {limit} limit {value} {unit}); the request "
            f"to {endpoint!r} was not run, retry later",
        )

    async def _handle(self, message: RoutedModuleMessage, link: Any) -> None:
        # With tracing on: the handler's SERVER span, a child of the caller's context in the
        # envelope (X3), current for the whole call (this coroutine has its own context).
        properties = routed_request_properties(message.payload)
        named = properties.get("target_endpoint") if properties else None
        span = tracing.rpc_server_span(
            properties,
            self.module_id,
            named if type(named) is str else message.target_endpoint,
            message.source_module_id,
        )
        token = tracing.attach(span)
        try:
            started = self._begin(message, link)
            if started is not None:
                await self._complete(message, link, *started)
        except BaseException as e:
            tracing.fail_span(span, e)
            raise
        finally:
            tracing.detach(token)
            span.end()

    def _begin(
        self, message: RoutedModuleMessage, link: Any
    ) -> tuple[Deferred[Any], str, bool, float, bool] | None:
        """
        Resolve C{message} and call its handler. A handler that returns a plain value
        (or raises) is answered here and C{None} is returned; one that returns a
        Deferred or a coroutine gives C{(work, endpoint, no_reply, timeout,
        by_deadline)} for L{_complete} to wait on.
        """
        call = self._resolve(message, link)
        if call is None:
            return None  # answered already
        endpoint, handler, content, no_reply, timeout, by_deadline = call
        self.requests_handled += 1
        try:
            result = handler(message.source_module_id, content)
            # (a plain JSON value, the common answer, without the call)
            work = None if type(result) in _PLAIN_TYPES else _as_deferred(result)
        except Exception as e:
            self.answers.failed(message, link, no_reply, endpoint, e, Failure())
            return None
        if work is None:
            self.answers.result(message, link, no_reply, endpoint, result)
            return None
        return work, endpoint, no_reply, timeout, by_deadline

    async def _complete(
        self,
        message: RoutedModuleMessage,
        link: Any,
        work: Deferred[Any],
        endpoint: str,
        no_reply: bool,
        timeout: float,
        by_deadline: bool,
    ) -> None:
        try:
            result = await self._within(work, endpoint, timeout)
        except _HandlerTimedOut:
            self.answers.timed_out(message, link, no_reply, endpoint, timeout, by_deadline)
            return
        except Exception as e:
            self.answers.failed(message, link, no_reply, endpoint, e, Failure())
            return
        self.answers.result(message, link, no_reply, endpoint, result)

    def _resolve(
        self, message: RoutedModuleMessage, link: Any
    ) -> tuple[str, RoutedHandler, Any, bool, float, bool] | None:
        """
        What C{message} asks to run: C{(endpoint, handler, content, no_reply, timeout,
        by_deadline)}, the timeout being the handler's or the time left to the request's
        deadline, whichever is shorter (C{by_deadline} then). C{None} once C{message} has
        been answered with an error instead (unreadable, no such endpoint, expired).
        """
        try:
            content, endpoint, no_reply, deadline_ms = routed_request_parts(
                message.payload, message.target_endpoint
            )
        except ValueError as e:
            self.answers.refuse(
                message,
                link,
                "bad_request",
                f"the request payload is not JSON ({e}); expected an envelope "
                '{"id", "content", "metadata"} or a bare JSON value',
            )
            return None
        handlers = self.handlers
        if endpoint is None:
            if len(handlers) != 1:
                self.answers.error(
                    message,
                    link,
                    no_reply,
                    "no_endpoint",
                    f"the request names no endpoint and module {self.module_id!r} has "
                    f"{len(handlers)} handlers; put it in the payload envelope's "
                    "metadata.properties.target_endpoint",
                )
                return None
            endpoint = next(iter(handlers))
        handler = handlers.get(endpoint)
        if handler is None:
            known = ", ".join(sorted(handlers)) or "none"
            self.answers.error(
                message,
                link,
                no_reply,
                "unknown_endpoint",
                f"module {self.module_id!r} has no handler for endpoint {endpoint!r} "
                f"(handlers: {known})",
            )
            return None
        timeout = self.handler_timeouts.get(endpoint, self.handler_timeout)
        by_deadline = False
        if deadline_ms is not None:
            left = deadline_ms / 1000 - self.clock.seconds()
            if left <= 0:
                self.expired_on_arrival += 1
                self.answers.error(
                    message,
                    link,
                    no_reply,
                    "deadline_exceeded",
                    f"the request to {endpoint!r} of module {self.module_id!r} arrived "
                    f"{-left * 1000:.0f} ms after its deadline and was not run",
                )
                return None
            if left < timeout:
                timeout, by_deadline = left, True
        return endpoint, handler, content, no_reply, timeout, by_deadline

    def _within(self, work: Deferred[Any], endpoint: str, timeout: float) -> Deferred[Any]:
        """
        A Deferred that fires as C{work} does, or fails with L{_HandlerTimedOut} after
        C{timeout} seconds; then C{work} is cancelled and whatever it fires with later is
        ignored (a failure other than the cancellation is logged).
        """
        outcome: Deferred[Any] = Deferred()

        def expire() -> None:
            # Answer first (the slot is freed and the next call starts), then cancel.
            outcome.errback(_HandlerTimedOut())
            work.cancel()

        timer = self.clock.callLater(timeout, expire)

        def finished(result: object) -> None:
            if timer.active():
                timer.cancel()
            if not outcome.called:
                if isinstance(result, Failure):
                    outcome.errback(result)
                else:
                    outcome.callback(result)
            elif isinstance(result, Failure) and not result.check(CancelledError):
                self.log.failure(
                    "the handler for {endpoint!r} failed after its timeout",
                    result,
                    endpoint=endpoint,
                )

        work.addBoth(finished)
        return outcome

    # -- life -----------------------------------------------------------------------------

    def drain(self) -> Deferred[None]:
        """
        Fires once no handler is running or queued (at once when none is).
        """
        return self._in_flight.drained()

    def stop(self) -> None:
        """
        Log the overloads not reported yet (now rather than never).
        """
        self._overload_log.stop()

    def health(self) -> dict[str, Any]:
        """
        The handler side's part of what C{/health} shows under C{messaging}.
        """
        return {
            "handlers": sorted(self.handlers),
            "requests_handled": self.requests_handled,
            "error_replies_sent": self.error_replies_sent,
            "handlers_running": len(self._in_flight),
            "handlers_queued": len(self._queue),
            "handler_queue_bytes": self.queued_bytes,
            "overloaded": self.overloaded,
            "handler_timeouts": self.handler_timeouts_hit,
            "expired_on_arrival": self.expired_on_arrival,
        }

    def collect(self) -> list[Any]:
        """
        The handler-side metric families, for L{ModuleMetrics.add_collector
        <pywatt_twisted.web.metrics.ModuleMetrics.add_collector>}.
        """
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        running = GaugeMetricFamily(
            "pywatt_routed_handlers_running", "Routed handler calls running now."
        )
        running.add_metric([], len(self._in_flight))
        queued = GaugeMetricFamily(
            "pywatt_routed_handlers_queued", "Routed handler calls waiting for a slot."
        )
        queued.add_metric([], len(self._queue))
        queued_bytes = GaugeMetricFamily(
            "pywatt_routed_handler_queue_bytes",
            "Payload bytes of the routed handler calls waiting for a slot.",
        )
        queued_bytes.add_metric([], self.queued_bytes)
        overloaded = CounterMetricFamily(
            "pywatt_routed_handler_overloaded",
            "Routed requests answered 'overloaded' (and notifications dropped) at the queue bound.",
        )
        overloaded.add_metric([], self.overloaded)
        timeouts = CounterMetricFamily(
            "pywatt_routed_handler_timeouts",
            "Routed handler calls cancelled at their timeout ('deadline_exceeded' replies).",
        )
        timeouts.add_metric([], self.handler_timeouts_hit)
        return [running, queued, queued_bytes, overloaded, timeouts]
