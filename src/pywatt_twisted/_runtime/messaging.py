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

B{Handler limits} (EXTENSIONS.md X4): at most C{max_concurrent} handler calls run at
once; more wait in a FIFO queue bounded by count (C{queue_size}) and by the payload bytes
it holds (C{queue_bytes}); beyond it a request is answered C{overloaded} at once (a
notification is dropped), and the overload is logged (the first one, then at most once a
second with a count) naming the limit and the option that raises it. Each handler call
that returns a Deferred or a coroutine has a timeout (the handler's own, else the
module's default): when it passes, the call's Deferred is cancelled, the requester gets a
C{deadline_exceeded} error reply naming the handler and its timeout (X4 has no separate
timeout kind), and the slot goes to the next queued call. A handler that returns a plain
value runs to completion synchronously and cannot be timed out.

B{Notifications} (L{RoutedMessaging.send_message}): the same request with
C{metadata.properties.no_reply = true}; the handler runs and no reply is sent.
"""

from __future__ import annotations

import inspect
import random as _random
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted import tracing
from pywatt_twisted._inflight import InFlight
from pywatt_twisted._runtime.correlation import CorrelationTable
from pywatt_twisted._runtime.resilience import Breakers, BreakerState, RetryPolicy
from pywatt_twisted.errors import (
    ChannelError,
    CircuitOpen,
    MessageTooLarge,
    NotAvailable,
    PayloadError,
    ProtocolError,
    RemoteError,
    Timeout,
)
from pywatt_twisted.link._choice import Route
from pywatt_twisted.wire.envelope import (
    encode_channel_frame,
    error_object,
    routed_reply_content,
    routed_request_parts,
    routed_request_payload,
    routed_request_properties,
    unwrap_routed_request,
)
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)

__all__ = [
    "DEFAULT_HANDLER_MAX_CONCURRENT",
    "DEFAULT_HANDLER_QUEUE_BYTES",
    "DEFAULT_HANDLER_QUEUE_SIZE",
    "DEFAULT_HANDLER_TIMEOUT",
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

RoutedHandler = Callable[[str, Any], Any]


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


#: The payload of a routed request (see L{routed_request_payload}; tests use it to play a
#: requester).
request_payload = routed_request_payload


#: The content of a C{routed_module_response} payload (see L{routed_reply_content}).
decode_reply = routed_reply_content

#: The C{(content, endpoint, no_reply)} of a routed request (see L{unwrap_routed_request}).
unwrap_request = unwrap_routed_request


async def _await(value: Any) -> Any:
    return await value


def _as_deferred(value: Any) -> Deferred[Any] | None:
    """
    C{value} as a Deferred when it is one, a coroutine or another awaitable (cancelling
    the Deferred of a coroutine cancels what it awaits); C{None} for a plain value.
    """
    if isinstance(value, Deferred):
        return value
    if inspect.iscoroutine(value):
        return Deferred.fromCoroutine(value)
    if inspect.isawaitable(value):
        return Deferred.fromCoroutine(_await(value))
    return None


def _abandoned_request(key: uuid.UUID, context: tuple[str, str, Any], reason: str) -> NotAvailable:
    return NotAvailable(f"the request to {context[0]}/{context[1]} ({key}) was abandoned: {reason}")


class _HandlerTimedOut(Exception):
    """
    A handler call outlived its timeout (internal: becomes a C{deadline_exceeded} reply).
    """


class _Call:
    """
    One C{send_request}: its attempts (one, or more under a retry policy), each asking
    the target's breaker first, each waiting on the correlation table until the time
    left to the deadline (or its share of it) runs out.
    """

    __slots__ = (
        "_attempt_d",
        "_breaker",
        "_timer",
        "attempts",
        "deadline",
        "endpoint",
        "messaging",
        "payload",
        "result",
        "retry",
        "route",
        "span",
        "target",
    )

    def __init__(
        self,
        messaging: RoutedMessaging,
        target: str,
        endpoint: str,
        payload: Any,
        deadline: float,
        route: str | Route | None,
        retry: RetryPolicy | None,
        span: Any = None,
    ) -> None:
        self.span = span
        self.messaging = messaging
        self.target = target
        self.endpoint = endpoint
        self.payload = payload
        self.deadline = deadline
        self.route = route
        self.retry = retry
        self.attempts = 0
        self.result: Deferred[Any] = Deferred(self._cancel)
        self._attempt_d: Deferred[Any] | None = None
        self._timer: IDelayedCall | None = None
        self._breaker = messaging.breakers.get(target)

    def _cancel(self, result: Deferred[Any]) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        attempt, self._attempt_d = self._attempt_d, None
        if attempt is not None:
            attempt.cancel()  # leaves the correlation table; the breaker permit is released

    def _finish(self, outcome: object) -> None:
        if not self.result.called:
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)

    def attempt(self) -> None:
        self._timer = None
        m = self.messaging
        clock = m.clock
        now = clock.seconds()
        remaining = self.deadline - now
        if remaining <= 0:
            self._finish(
                Failure(
                    Timeout(
                        f"no reply from module {self.target!r} to {self.endpoint!r} before "
                        f"the deadline ({self.attempts} attempt(s))"
                    )
                )
            )
            return
        breaker = self._breaker
        try:
            permit = breaker.acquire()
        except CircuitOpen as e:
            self._finish(Failure(e))
            return
        self.attempts += 1
        retry = self.retry
        wait = (
            retry.timeout_for(remaining, retry.attempts - self.attempts + 1)
            if retry is not None
            else remaining
        )
        request_id = uuid.uuid4()
        try:
            frame, op = m._request_frame(
                self.target, self.endpoint, self.payload, request_id, False, now + wait, self.span
            )
        except (PayloadError, ChannelError) as e:
            breaker.released(permit)
            self._finish(Failure(e))
            return
        d = m.pending.add(
            request_id,
            wait,
            f"no reply from module {self.target!r} to {self.endpoint!r} (request "
            f"{request_id}) within {wait:g} s; the module may be slow, busy or gone: "
            "retry, or pass a longer timeout",
            context=(self.target, self.endpoint, self.span),
        )
        self._attempt_d = d
        m.requests_sent += 1
        written: list[Any] = []
        route = self.route
        if isinstance(route, Route):
            route = Route(route.prefer, route.only, written.append)
        else:
            route = Route(route, None, written.append)
        sent = m.channels.send_frame(frame, op, route)
        if not sent.called:
            # Queued until a channel comes up: forget the queued frame once nobody waits.
            d.addBoth(lambda result: (sent.called or sent.cancel(), result)[1])
        sent.addErrback(m._send_failed, request_id)
        channel = m.channels.channel(written[0]) if written else None
        if channel is not None:
            channel.in_flight += 1
        d.addBoth(self._ended, permit, now, written, channel)

    def _ended(
        self,
        outcome: object,
        permit: tuple[int, bool],
        started: float,
        written: list[str],
        channel: Any,
    ) -> None:
        m = self.messaging
        self._attempt_d = None
        if channel is None and written:
            channel = m.channels.channel(written[0])
            channel_counted = False
        else:
            channel_counted = channel is not None
        if channel_counted:
            channel.in_flight -= 1
        breaker = self._breaker
        if not isinstance(outcome, Failure):
            breaker.succeeded(permit)
            if channel is not None:
                channel.latency.record(m.clock.seconds() - started)
            self._finish(outcome)
            return
        error = outcome.value
        if outcome.check(CancelledError):
            breaker.released(permit)
            return  # the caller cancelled: its Deferred fails with CancelledError
        breaker.record(permit, error)
        if isinstance(error, RemoteError):
            if channel is not None and not isinstance(error, Timeout):
                # an answer (even an error one) measures the round trip
                channel.latency.record(m.clock.seconds() - started)
        if channel is not None and (
            isinstance(error, Timeout) or not isinstance(error, RemoteError)
        ):
            channel.request_errors += 1
        retry = self.retry
        if (
            retry is not None
            and self.attempts < retry.attempts
            and retry.retries(error)
            and breaker.state is BreakerState.CLOSED
        ):
            delay = retry.delay(self.attempts, m.random)
            if m.clock.seconds() + delay < self.deadline:
                m.retries += 1
                self._timer = m.clock.callLater(delay, self.attempt)
                return
        self._finish(outcome)


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
        channels: Any = None,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
        redact: Callable[[str], str] = lambda text: text,
        replies: bool = True,
        max_concurrent: int = DEFAULT_HANDLER_MAX_CONCURRENT,
        queue_size: int = DEFAULT_HANDLER_QUEUE_SIZE,
        queue_bytes: int = DEFAULT_HANDLER_QUEUE_BYTES,
        handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
        handler_timeouts: dict[str, float] | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        breakers: Breakers | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        for name, value in (
            ("max_concurrent", max_concurrent),
            ("queue_size", queue_size),
            ("queue_bytes", queue_bytes),
            ("handler_timeout", handler_timeout),
            ("request_timeout", request_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.module_id = module_id
        self.clock = clock
        self.handlers: dict[str, RoutedHandler] = handlers if handlers is not None else {}
        self.channels = channels
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
        self.request_timeout = request_timeout
        #: one circuit breaker per target module
        self.breakers = breakers if breakers is not None else Breakers(clock)
        #: per-target default timeouts and retry policies (L{configure_target})
        self.target_timeouts: dict[str, float] = {}
        self.target_retries: dict[str, RetryPolicy] = {}
        self.random = random
        #: attempts sent again under a retry policy
        self.retries = 0
        #: requests refused at once because their deadline had passed on arrival
        self.expired_on_arrival = 0
        self.pending: CorrelationTable[uuid.UUID] = CorrelationTable(
            clock, abandoned=_abandoned_request, timeout_error=Timeout
        )
        #: running handler calls; drained once none runs and none is queued
        self._in_flight: InFlight[Deferred[None]] = InFlight(idle=lambda: not self._queue)
        #: handler calls waiting for a slot, oldest first, with their payload sizes
        self._queue: deque[tuple[RoutedModuleMessage, Any, int]] = deque()
        #: payload bytes held by C{_queue}
        self.queued_bytes = 0
        self.stopping = False
        self._overload_unlogged = 0
        self._overload_logged_at: float | None = None
        self._overload_flush: IDelayedCall | None = None
        #: the limit of the last overload: C{(setting, value, unit)}
        self._overload_limit: tuple[str, int, str] = ("handler_queue_size", queue_size, "calls")
        #: counters, for /health
        self.requests_sent = 0
        self.replies_received = 0
        self.replies_ignored = 0
        self.requests_handled = 0
        self.error_replies_sent = 0
        #: requests answered C{overloaded} (and notifications dropped) at the queue bound
        self.overloaded = 0
        #: handler calls cancelled at their timeout
        self.handler_timeouts_hit = 0

    # -- requester ------------------------------------------------------------------------

    def _request_frame(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        request_id: uuid.UUID,
        no_reply: bool,
        deadline: float | None = None,
        span: Any = None,
    ) -> tuple[bytes, str]:
        encoded = request_payload(
            payload,
            endpoint,
            self.module_id,
            no_reply,
            int(self.clock.seconds()),
            None if deadline is None else int(deadline * 1000),
            extra_properties=None if span is None else tracing.properties_to_send(span),
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

    def _route(self, prefer: str | None, channel: str | None) -> str | Route | None:
        """
        The L{Route} of a send with C{prefer=}/C{channel=}.

        @raise ValueError: both given, or a name that is not a channel of this module.
        """
        if prefer is not None and channel is not None:
            raise ValueError("pass prefer= (try it first) or channel= (only it), not both")
        name = channel if channel is not None else prefer
        if name is None:
            return None
        known = getattr(self.channels, "channels", {})
        if name not in known:
            raise ValueError(
                f"{name!r} is not a channel of this module (channels: "
                f"{', '.join(sorted(known)) or 'none'}); use 'tcp' or 'ipc'"
            )
        return Route(only=channel) if channel is not None else Route(prefer=prefer)

    def configure_target(
        self,
        target: str,
        *,
        timeout: float | None = None,
        breaker: Any = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """
        Per-target settings: the default C{timeout} of requests to C{target}, its
        breaker policy (a L{BreakerPolicy<pywatt_twisted._runtime.resilience.BreakerPolicy>};
        its breaker starts over, closed) and the retry policy of its idempotent requests.
        """
        if timeout is not None:
            if timeout <= 0:
                raise ValueError(f"timeout must be positive, got {timeout!r}")
            self.target_timeouts[target] = timeout
        if breaker is not None:
            self.breakers.set_policy(target, breaker)
        if retry is not None:
            self.target_retries[target] = retry

    def send_request(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        timeout: float | None = None,
        *,
        prefer: str | None = None,
        channel: str | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> Deferred[Any]:
        """
        Send C{payload} to C{endpoint} of module C{target_module_id}; fires with the reply.

        @param timeout: seconds until the request's deadline (the target's own default,
            else the module's C{routed_timeout}); sent as X4 C{deadline_ms}.
        @param prefer: a channel (C{"tcp"}, C{"ipc"}) to try first.
        @param channel: the only channel to send on (waits for it).
        @param retry: how to retry (only with C{idempotent=True}); by default the
            target's policy for idempotent requests, else no retry.
        @param idempotent: the request may safely run more than once.
        @return: a Deferred that fires with the decoded reply, or fails with a
            L{RemoteError} subclass (the peer or the orchestrator answered with an error;
            L{Timeout} when no reply came by the deadline; L{CircuitOpen} at once while
            the target's breaker is open), L{ChannelError} (the request could not be
            written), L{PayloadError}, L{NotAvailable} or L{ValueError}. Cancelling it
            forgets the request and frees its place (and a breaker probe).
        """
        what = f"a request to {target_module_id}/{endpoint}"
        problem = self._unavailable(what)
        if problem is not None:
            return fail(problem)
        if timeout is None:
            timeout = self.target_timeouts.get(target_module_id, self.request_timeout)
        if timeout <= 0:
            return fail(ValueError(f"timeout must be positive, got {timeout!r}"))
        if retry is not None and not idempotent:
            return fail(
                ValueError(
                    f"retry= for {what} needs idempotent=True: a request that may have "
                    "reached the target is only sent again when running it twice is safe"
                )
            )
        if retry is None and idempotent:
            retry = self.target_retries.get(target_module_id)
        try:
            route = self._route(prefer, channel)
        except ValueError as e:
            return fail(e)
        span = tracing.rpc_client_span(target_module_id, endpoint) if tracing.switch.on else None
        call = _Call(
            self,
            target_module_id,
            endpoint,
            payload,
            self.clock.seconds() + timeout,
            route,
            retry,
            span,
        )
        call.attempt()
        return tracing.traced(span, call.result)

    def _send_failed(self, failure: Failure, request_id: uuid.UUID) -> None:
        if failure.check(CancelledError):
            return
        self.pending.fail(request_id, failure.value)

    def send_message(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        *,
        prefer: str | None = None,
        channel: str | None = None,
    ) -> Deferred[None]:
        """
        Send C{payload} to C{endpoint} of module C{target_module_id} without waiting for
        a reply (the handler runs; no reply is sent). It carries a deadline like a
        request (the module's C{routed_timeout} from now).

        @return: a Deferred that fires once the message was written to a channel, or
            fails as L{send_request} does when it could not be.
        """
        problem = self._unavailable(f"a message to {target_module_id}/{endpoint}")
        if problem is not None:
            return fail(problem)
        span = (
            tracing.rpc_client_span(target_module_id, endpoint, notify=True)
            if tracing.switch.on
            else None
        )
        try:
            route = self._route(prefer, channel)
            timeout = self.target_timeouts.get(target_module_id, self.request_timeout)
            frame, op = self._request_frame(
                target_module_id,
                endpoint,
                payload,
                uuid.uuid4(),
                True,
                self.clock.seconds() + timeout,
                span,
            )
        except (PayloadError, ChannelError, ValueError) as e:
            return tracing.traced(span, fail(e))
        self.requests_sent += 1
        sent: Deferred[None] = self.channels.send_frame(frame, op, route)
        return tracing.traced(span, sent)

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
        target, endpoint, span = entry.context
        if span is not None:
            tracing.reply_received(span, message.payload)  # X3: the callee's context
        try:
            value = decode_reply(message.payload)
        except ValueError as e:
            entry.errback(
                ProtocolError(
                    f"the reply of module {message.source_module_id!r} to {endpoint!r} is not "
                    f"JSON ({e}); expected the bare reply JSON or an envelope"
                )
            )
            return
        error = error_object(value)
        if error is not None:
            kind, text = error
            entry.errback(
                RemoteError.from_kind(kind, f"{target}/{endpoint} failed ({kind}): {text}")
            )
            return
        entry.callback(value)

    # -- handler side ---------------------------------------------------------------------

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
        d = Deferred.fromCoroutine(self._handle(message, link))
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
        self._overload_unlogged += 1
        self._log_overload(limit, value, unit)
        try:
            _, endpoint, no_reply = unwrap_request(message.payload, message.target_endpoint)
        except ValueError:
            endpoint, no_reply = message.target_endpoint, False
        if no_reply:
            return
        self.refuse(
            message,
            link,
            "overloaded",
            f"module {self.module_id!r} is overloaded: {len(self._in_flight)} routed handler "
            f"calls running (limit {self.max_concurrent}) and {len(self._queue)} queued "
            f"({self.queued_bytes} payload bytes; {limit} limit {value} {unit}); the request "
            f"to {endpoint!r} was not run, retry later",
        )

    def _log_overload(self, limit: str, value: int, unit: str) -> None:
        self._overload_limit = (limit, value, unit)
        now = self.clock.seconds()
        last = self._overload_logged_at
        if last is not None and now - last < OVERLOAD_LOG_INTERVAL:
            if self._overload_flush is None:
                self._overload_flush = self.clock.callLater(
                    last + OVERLOAD_LOG_INTERVAL - now,
                    lambda: self._flush_overload(*self._overload_limit),
                )
            return
        self._flush_overload(limit, value, unit)

    def _flush_overload(self, limit: str, value: int, unit: str) -> None:
        if self._overload_flush is not None and self._overload_flush.active():
            self._overload_flush.cancel()
        self._overload_flush = None
        count, self._overload_unlogged = self._overload_unlogged, 0
        if not count:
            return
        self._overload_logged_at = self.clock.seconds()
        option = limit.replace("_", "-")
        self.log.warn(
            "routed handlers overloaded: {count} request(s) answered 'overloaded' (or "
            "notifications dropped) since the last report, {total} in all; "
            "{running} running (handler_max_concurrent {max_concurrent}), {queued} queued; "
            "the {limit} limit of {value} {unit} was reached: raise it with --{option} / "
            "PYWATT_{variable} (or --handler-max-concurrent / "
            "PYWATT_HANDLER_MAX_CONCURRENT) if the module can take more",
            count=count,
            total=self.overloaded,
            running=len(self._in_flight),
            max_concurrent=self.max_concurrent,
            queued=len(self._queue),
            limit=limit,
            value=value,
            unit=unit,
            option=option,
            variable=limit.upper(),
        )

    def refuse(self, message: RoutedModuleMessage, link: Any, kind: str, text: str) -> None:
        """
        Answer C{message} with an error reply without running a handler.
        """
        self._reply(link, message, error_payload(kind, text), error=True)

    async def _handle(self, message: RoutedModuleMessage, link: Any) -> None:
        if not tracing.switch.on:
            await self._handle_call(message, link)
            return
        # tracing: the handler's SERVER span, a child of the caller's context in the
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
            await self._handle_call(message, link)
        except BaseException as e:
            tracing.fail_span(span, e)
            raise
        finally:
            tracing.detach(token)
            span.end()

    async def _handle_call(self, message: RoutedModuleMessage, link: Any) -> None:
        source = message.source_module_id
        try:
            content, endpoint, no_reply, deadline_ms = routed_request_parts(
                message.payload, message.target_endpoint
            )
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
        timeout = self.handler_timeouts.get(endpoint, self.handler_timeout)
        by_deadline = False
        if deadline_ms is not None:
            left = deadline_ms / 1000 - self.clock.seconds()
            if left <= 0:
                self.expired_on_arrival += 1
                self._answer_error(
                    message,
                    link,
                    no_reply,
                    "deadline_exceeded",
                    f"the request to {endpoint!r} of module {self.module_id!r} arrived "
                    f"{-left * 1000:.0f} ms after its deadline and was not run",
                )
                return
            if left < timeout:
                timeout, by_deadline = left, True
        self.requests_handled += 1
        try:
            result = handler(source, content)
            work = _as_deferred(result)
            if work is not None:
                result = await self._within(work, endpoint, timeout)
        except _HandlerTimedOut:
            self.handler_timeouts_hit += 1
            if by_deadline:
                text = (
                    f"the handler for {endpoint!r} of module {self.module_id!r} did not "
                    "finish by the request's deadline and was cancelled"
                )
            else:
                text = (
                    f"the handler for {endpoint!r} of module {self.module_id!r} did not "
                    f"finish within its timeout of {timeout:g} s and was cancelled"
                )
            self.log.warn(
                "{text} (request {request_id} from {source}); raise it with "
                "state.handler({endpoint!r}, timeout=...) or, for every handler, "
                "--handler-timeout / PYWATT_HANDLER_TIMEOUT",
                text=text,
                request_id=str(message.original_request_id),
                source=source,
                endpoint=endpoint,
            )
            self._answer_error(message, link, no_reply, "deadline_exceeded", text)
            return
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
            if tracing.switch.on:
                tracing.error_reply(payload)
        if tracing.switch.on:
            payload = tracing.reply_payload(payload)  # X3: the handler span's context
        if not self.replies:
            self.log.info(
                "not replying to {source} (request {request_id}): reply extension is off",
                source=message.source_module_id,
                request_id=str(message.original_request_id),
            )
            return
        reply = RoutedModuleReply(
            source_module_id=self.module_id,
            request_id=message.original_request_id,
            target_module_id=message.source_module_id,
            payload=payload,
        )
        link.send(self._fitting(reply, message))

    def _fitting(self, reply: RoutedModuleReply, message: RoutedModuleMessage) -> RoutedModuleReply:
        """
        C{reply}, or, when it cannot fit in one frame, a C{bad_reply} error reply naming
        the limit (module-to-module bodies are limited to one frame: docs/streaming.md),
        so the requester is answered instead of waiting for its timeout.
        """
        # (an array-encoded byte takes at most 4 bytes: most replies need no check)
        if 4 * len(reply.payload.data) + 4096 <= self.max_frame_length:
            return reply
        try:
            encode_channel_frame(reply, self.max_frame_length)
        except MessageTooLarge as e:
            text = (
                f"the reply of {self.module_id!r} is {e.length} bytes encoded, above the "
                f"{e.limit}-byte frame limit (module-to-module bodies must fit one frame)"
            )
            self.log.error(
                "reply to {source} (request {request_id}) too large: {text}; sending a "
                "bad_reply error instead",
                source=message.source_module_id,
                request_id=str(message.original_request_id),
                text=text,
            )
            self.error_replies_sent += 1
            return attrs.evolve(reply, payload=error_payload("bad_reply", text))
        return reply

    # -- life -----------------------------------------------------------------------------

    def drain(self) -> Deferred[None]:
        """
        Fires once no handler is running or queued (at once when none is).
        """
        return self._in_flight.drained()

    def stop(self, reason: str = "the module is stopping") -> None:
        """
        Fail every waiting request: nothing will answer them any more.
        """
        self.stopping = True
        flush, self._overload_flush = self._overload_flush, None
        if flush is not None and flush.active():
            # Report the overloads not logged yet now rather than never.
            flush.cancel()
            self._flush_overload(*self._overload_limit)
        self.pending.stop(reason)

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
            "handlers_running": len(self._in_flight),
            "handlers_queued": len(self._queue),
            "handler_queue_bytes": self.queued_bytes,
            "overloaded": self.overloaded,
            "handler_timeouts": self.handler_timeouts_hit,
            "expired_on_arrival": self.expired_on_arrival,
            "retries": self.retries,
            "breakers": self.breakers.snapshot(),
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
        return [running, queued, queued_bytes, overloaded, timeouts, *self.breakers.collect()]
