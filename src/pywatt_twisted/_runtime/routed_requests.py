# -*- test-case-name: tests.runtime.test_resilient_messaging,tests.runtime.test_messaging -*-
"""
The caller side of module-to-module messaging (L{RoutedRequests}): requests with a
deadline, the target's circuit breaker and an optional retry policy (L{_Call}, one per
C{send_request}), notifications, and the replies matched back by request id. The
package-level picture is in L{pywatt_twisted._runtime.messaging}.
"""

from __future__ import annotations

import random as _random
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted import tracing
from pywatt_twisted._runtime.correlation import CorrelationTable, Waiting
from pywatt_twisted._runtime.resilience import Breakers, BreakerState, RetryPolicy
from pywatt_twisted._runtime.routed_envelopes import decode_reply
from pywatt_twisted.errors import (
    ChannelError,
    CircuitOpen,
    NotAvailable,
    PayloadError,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    Timeout,
)
from pywatt_twisted.link._choice import Route
from pywatt_twisted.wire.envelope import (
    error_object,
    random_uuid4_int,
    route_to_module_frame,
    routed_request_frame,
    routed_request_json,
)
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
from pywatt_twisted.wire.messages import RoutedModuleResponse, RouteToModule

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "RoutedRequests"]

#: seconds C{send_request} waits for a reply unless told otherwise (as in the Rust SDK)
DEFAULT_REQUEST_TIMEOUT = 30.0


# The correlation table's keys are the request ids' numbers (C{uuid.UUID.int}): an
# int hashes and compares in C, a uuid.UUID through its Python __hash__ and __eq__
# (issue 17: three such calls per request). Its context is the request's L{_Call}.


def _abandoned_request(key: int, call: _Call, reason: str) -> NotAvailable:
    return NotAvailable(
        f"the request to {call.target}/{call.endpoint} ({uuid.UUID(int=key)}) was "
        f"abandoned: {reason}"
    )


def _timeout_text(key: int, call: _Call) -> str:
    return (
        f"no reply from module {call.target!r} to {call.endpoint!r} (request "
        f"{uuid.UUID(int=key)}) within {call.wait:g} s; the module may be slow, busy or "
        "gone: retry, or pass a longer timeout"
    )


def _observe(
    slo: Any,
    target: str,
    channel: str | None,
    outcome: object,
    started: float,
    now: float | None = None,
) -> None:
    """
    Count a request's outcome and round trip in the SLO windows of its target and of the
    channel it went on (a request the caller cancelled is not counted: no call here).
    C{now}: the SLO clock's time, when the caller just read it.
    """
    if isinstance(outcome, Failure):
        outcome = "timeout" if isinstance(outcome.value, RequestTimeout) else "error"
    else:
        outcome = "ok"
    if now is None:
        now = slo.clock.seconds()  # one reading for both windows
    seconds = now - started
    slo.observe("target", target, outcome, seconds, now)
    if channel is not None:
        slo.observe("channel", channel, outcome, seconds, now)


class _Call(Waiting):
    """
    One C{send_request}: its attempts (one, or more under a retry policy), each asking
    the target's breaker first, each waiting on the correlation table until the time
    left to the deadline (or its share of it) runs out.

    The call is its attempt's entry in the correlation table (L{CorrelationTable.wait}):
    the table fires L{callback} or L{errback} with the attempt's outcome, with no
    Deferred or entry object of its own in between (issue 17: one Deferred, its
    canceller and its callback chain less per request, then the table's L{Pending}
    too). The attempt's state is kept on the call (one attempt waits at a time); the
    table keeps the attempt's deadline in C{deadline}, the call's own is
    C{call_deadline}.
    """

    __slots__ = (
        "_breaker",
        "_key",
        "_link",
        "_permit",
        "_queued",
        "_sent_at",
        "_timer",
        "_written",
        "attempts",
        "call_deadline",
        "channel",
        "endpoint",
        "messaging",
        "payload",
        "result",
        "retry",
        "route",
        "span",
        "started",
        "target",
        "wait",
    )

    def __init__(
        self,
        messaging: RoutedRequests,
        target: str,
        endpoint: str,
        payload: Any,
        deadline: float,
        route: str | Route | None,
        retry: RetryPolicy | None,
        span: Any = None,
        started: float | None = None,
    ) -> None:
        self.span = span
        self.messaging = messaging
        self.target = target
        self.endpoint = endpoint
        self.payload = payload
        self.call_deadline = deadline
        self.route = route
        self.retry = retry
        self.attempts = 0
        self.started = messaging.clock.seconds() if started is None else started
        #: the seconds the last attempt waits for its reply
        self.wait = 0.0
        #: the channel the last attempt was written to (for the SLO windows)
        self.channel: str | None = None
        self.result: Deferred[Any] = Deferred(self._cancel)
        self._timer: IDelayedCall | None = None
        self._breaker = messaging.breakers.get(target)
        # The attempt waiting for its reply: its key in the correlation table (None:
        # none waits), its breaker permit, when it was sent, the channel it was written
        # to (_link, when written at once) or the list its queued write names the
        # channel in (_written), and its queued send (_queued) while not written.
        self._key: int | None = None
        self._permit: tuple[int, bool] = (0, False)
        self._sent_at = 0.0
        self._link: Any = None
        self._written: Any = ()
        self._queued: Deferred[None] | None = None

    def callback(self, value: object) -> None:
        """
        The attempt's reply (from the correlation table).
        """
        self._ended(value)

    def errback(self, error: BaseException | Failure) -> None:
        """
        The attempt failed (from the correlation table: timed out, not sent, abandoned).
        """
        self._ended(error if isinstance(error, Failure) else Failure(error))

    def _cancel(self, result: Deferred[Any]) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        key = self._key
        if key is not None:
            # It leaves the correlation table; the breaker permit is released.
            self.messaging.pending.forget(key)
            self._ended(Failure(CancelledError()))

    def _finish(self, outcome: object, now: float | None = None) -> None:
        """
        The call's outcome, to its caller (C{now}: the call's clock's time, when just
        read).
        """
        if not self.result.called:
            m = self.messaging
            slo = m.slo
            if slo is not None:
                if slo.clock is not m.clock:
                    now = None  # (read from the SLO windows' own clock)
                _observe(slo, self.target, self.channel, outcome, self.started, now)
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)

    def attempt(self, now: float | None = None) -> None:
        """
        Send one attempt (C{now}: the clock's time, when the caller just read it).
        """
        self._timer = None
        m = self.messaging
        if now is None:
            now = m.clock.seconds()
        remaining = self.call_deadline - now
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
        key = random_uuid4_int()
        span = self.span
        try:
            # (what m._request_frame builds, in one call; send_message, which has no
            # deadline, still builds it the general way)
            frame = routed_request_frame(
                self.target,
                self.endpoint,
                key,
                self.payload,
                m.module_id,
                int(now),
                int((now + wait) * 1000),
                m.max_frame_length,
                None if span is None else tracing.properties_to_send(span),
            )
        except (PayloadError, ChannelError) as e:
            breaker.released(permit)
            self._finish(Failure(e))
            return
        self.wait = wait
        # The call waits for the reply itself (see the class docstring); the timeout's
        # text is written only if it times out (_timeout_text). A stopped table refuses
        # it: the attempt then ends with that error once it was sent, as before.
        refused = m.pending.wait(key, wait, self, now)
        if refused is None:
            self._key = key
        self._permit = permit
        self._sent_at = now
        self._link = None
        self._written = ()
        self._queued = None
        m.requests_sent += 1
        channels = m.channels
        route = self.route
        channel = channels.write_now(frame, route)
        if channel is None:
            # No channel takes it at once: queue it, and learn the channel it goes on.
            # (The state is in place first: a send that fails at once ends the attempt
            # within send_frame.)
            written: list[str] = []
            self._written = written
            if isinstance(route, Route):
                route = Route(route.prefer, route.only, written.append)
            else:
                route = Route(route, None, written.append)
            sent = channels.send_frame(frame, RouteToModule.op, route)
            if not sent.called:
                # Queued until a channel comes up: forget the queued frame once nobody
                # waits (_ended).
                self._queued = sent
            sent.addErrback(m._send_failed, key)
            if refused is None and self._key != key:
                return  # it ended already (the send failed at once)
            channel = channels.channel(written[0]) if written else None
        if channel is not None:
            channel.in_flight += 1
            self.channel = channel.name
            self._link = channel
        if refused is not None:
            self._ended(Failure(refused))

    def _ended(self, outcome: object) -> None:
        """
        The attempt's outcome: count it (breaker, channel, latency), then retry or
        finish the call.
        """
        m = self.messaging
        self._key = None
        queued = self._queued
        if queued is not None:
            self._queued = None
            if not queued.called:
                queued.cancel()
        permit = self._permit
        started = self._sent_at
        channel = self._link
        written = self._written
        if channel is None and written:
            channel = m.channels.channel(written[0])
            self.channel = written[0]
            channel_counted = False
        else:
            channel_counted = channel is not None
        if channel_counted:
            channel.in_flight -= 1
        breaker = self._breaker
        if not isinstance(outcome, Failure):
            # One reading of the clock for the breaker's window, the channel's latency
            # and the SLO windows (issue 17: it was read three times per reply).
            now = m.clock.seconds()
            breaker.succeeded(permit, now if breaker.clock is m.clock else None)
            if channel is not None:
                channel.latency.record(now - started, now)
            self._finish(outcome, now)
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
            if m.clock.seconds() + delay < self.call_deadline:
                m.retries += 1
                self._timer = m.clock.callLater(delay, self.attempt)
                return
        self._finish(outcome)


class RoutedRequests:
    """
    The requester side of module-to-module messaging for one module.

    @param module_id: this module's id (C{source} of its requests).
    @param clock: the clock deadlines and retries run on.
    @param channels: the module's L{ChannelManager}, or C{None} without channels (then
        requests fail with L{NotAvailable}).
    @param max_frame_length: the channel frame cap.
    @param request_timeout: seconds until a request's deadline unless told otherwise.
    @param breakers: the circuit breakers, one per target.
    @param random: the retry jitter source (tests pin it).
    @param slo: the module's SLO windows, or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        *,
        module_id: str,
        clock: IReactorTime,
        channels: Any = None,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        breakers: Breakers | None = None,
        random: Callable[[], float] = _random.random,
        slo: Any = None,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {request_timeout!r}")
        self.module_id = module_id
        self.clock = clock
        self.channels = channels
        self.max_frame_length = max_frame_length
        self.request_timeout = request_timeout
        #: one circuit breaker per target module
        self.breakers = breakers if breakers is not None else Breakers(clock)
        #: per-target default timeouts and retry policies (L{configure_target})
        self.target_timeouts: dict[str, float] = {}
        self.target_retries: dict[str, RetryPolicy] = {}
        self.random = random
        #: the module's L{SloMonitor<pywatt_twisted.link.SloMonitor>}: each request's
        #: outcome and round trip go to the windows of its target and its channel
        self.slo = slo
        #: attempts sent again under a retry policy
        self.retries = 0
        self.pending: CorrelationTable[int] = CorrelationTable(
            clock,
            abandoned=_abandoned_request,
            timeout_error=Timeout,
            timeout_text=_timeout_text,
        )
        self.stopping = False
        #: counters, for /health
        self.requests_sent = 0
        self.replies_received = 0
        self.replies_ignored = 0

    def _request_frame(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        request_id: int,
        no_reply: bool,
        deadline: float | None = None,
        span: Any = None,
        now: float | None = None,
    ) -> tuple[bytes, str]:
        encoded = routed_request_json(
            payload,
            endpoint,
            self.module_id,
            no_reply,
            int(self.clock.seconds() if now is None else now),
            None if deadline is None else int(deadline * 1000),
            extra_properties=None if span is None else tracing.properties_to_send(span),
        )
        frame = route_to_module_frame(
            target_module_id, endpoint, request_id, encoded, self.max_frame_length
        )
        return frame, RouteToModule.op

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
        if self.channels is None or self.stopping:
            problem = self._unavailable(f"a request to {target_module_id}/{endpoint}")
            assert problem is not None  # one of the two conditions above holds
            return self._refused(target_module_id, problem)
        if timeout is None:
            timeout = self.target_timeouts.get(target_module_id, self.request_timeout)
        if timeout <= 0:
            return self._refused(
                target_module_id, ValueError(f"timeout must be positive, got {timeout!r}")
            )
        if retry is not None and not idempotent:
            return self._refused(
                target_module_id,
                ValueError(
                    f"retry= for a request to {target_module_id}/{endpoint} needs "
                    "idempotent=True: a request that may have "
                    "reached the target is only sent again when running it twice is safe"
                ),
            )
        if retry is None and idempotent:
            retry = self.target_retries.get(target_module_id)
        try:
            route = self._route(prefer, channel)
        except ValueError as e:
            return self._refused(target_module_id, e)
        span = tracing.rpc_client_span(target_module_id, endpoint) if tracing.switch.on else None
        now = self.clock.seconds()  # one reading: the start, the deadline, the attempt
        call = _Call(
            self,
            target_module_id,
            endpoint,
            payload,
            now + timeout,
            route,
            retry,
            span,
            now,
        )
        call.attempt(now)
        return tracing.traced(span, call.result)

    def _refused(self, target: str, error: Exception) -> Deferred[Any]:
        """
        A request refused before anything was sent: a failed Deferred, counted as an
        error in the SLO windows of the target (and of the channel a send would take).
        """
        slo = self.slo
        if slo is not None:
            choice = getattr(self.channels, "choice", None)
            picked = choice.pick(None) if choice is not None else None
            channel = None if picked is None else picked.name
            _observe(slo, target, channel, Failure(error), slo.clock.seconds())
        return fail(error)

    def _send_failed(self, failure: Failure, key: int) -> None:
        if failure.check(CancelledError):
            return
        self.pending.fail(key, failure.value)

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
                random_uuid4_int(),
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
        call = self.pending.pop(message.request_id.int)
        if call is None:
            self.replies_ignored += 1
            self.log.warn(
                "ignoring routed_module_response {request_id} from {source}: no request waits "
                "for it (already answered, timed out, or never sent by this module)",
                request_id=str(message.request_id),
                source=message.source_module_id,
            )
            return
        self.replies_received += 1
        assert isinstance(call, _Call)  # (the table holds only calls)
        target, endpoint, span = call.target, call.endpoint, call.span
        if span is not None:
            tracing.reply_received(span, message.payload)  # X3: the callee's context
        try:
            value = decode_reply(message.payload)
        except ValueError as e:
            call.errback(
                ProtocolError(
                    f"the reply of module {message.source_module_id!r} to {endpoint!r} is not "
                    f"JSON ({e}); expected the bare reply JSON or an envelope"
                )
            )
            return
        error = error_object(value)
        if error is not None:
            kind, text = error
            call.errback(
                RemoteError.from_kind(kind, f"{target}/{endpoint} failed ({kind}): {text}")
            )
            return
        call.callback(value)

    def stop(self, reason: str = "the module is stopping") -> None:
        """
        Fail every waiting request: nothing will answer them any more.
        """
        self.stopping = True
        self.pending.stop(reason)

    def health(self) -> dict[str, Any]:
        """
        The requester's part of what C{/health} shows under C{messaging}.
        """
        return {
            "pending_requests": len(self.pending),
            "requests_sent": self.requests_sent,
            "replies_received": self.replies_received,
            "replies_ignored": self.replies_ignored,
            "timeouts": self.pending.timeouts,
        }
