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

The code is split by side: L{RoutedMessaging} (here) is the module's one entry point and
owns the two halves, the caller side in L{pywatt_twisted._runtime.routed_requests}
(deadlines, breakers, retries, replies) and the handler side in
L{pywatt_twisted._runtime.routed_handlers} (limits, timeouts, error replies); the
envelopes and error payloads both use are in L{pywatt_twisted._runtime.routed_envelopes}.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime

from pywatt_twisted._runtime.resilience import Breakers
from pywatt_twisted._runtime.routed_envelopes import (
    RoutedHandler,
    decode_reply,
    error_payload,
    error_reply,
    request_payload,
    unwrap_request,
)
from pywatt_twisted._runtime.routed_handlers import (
    DEFAULT_HANDLER_MAX_CONCURRENT,
    DEFAULT_HANDLER_QUEUE_BYTES,
    DEFAULT_HANDLER_QUEUE_SIZE,
    DEFAULT_HANDLER_TIMEOUT,
    RoutedHandlers,
)
from pywatt_twisted._runtime.routed_requests import DEFAULT_REQUEST_TIMEOUT, RoutedRequests
from pywatt_twisted.errors import PayloadError
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH

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


class RoutedMessaging:
    """
    The requester and handler sides of module-to-module messaging for one module:
    L{requests} (a L{RoutedRequests}) and L{handling} (a L{RoutedHandlers}). Their entry
    points are bound here (C{send_request}, C{send_message}, C{configure_target},
    C{response_received} of the caller side; C{message_received}, C{refuse}, C{drain}
    of the handler side).

    @param module_id: this module's id (C{source} of its requests, C{source_module_id}
        of its replies).
    @param clock: the clock timeouts run on.
    @param handlers: endpoint -> C{handler(source_module_id, payload)}; read at dispatch
        time, so handlers registered after start are found.
    @param channels: the module's L{ChannelManager}, or C{None} without channels (then
        requests fail with L{NotAvailable<pywatt_twisted.errors.NotAvailable>}).
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
    @param request_timeout: seconds until a request's deadline unless told otherwise.
    @param breakers: the module's circuit breakers, one per target (shared with the
        proxied services).
    @param random: the retry jitter source (tests pin it).
    @param slo: the module's L{SloMonitor<pywatt_twisted.link.SloMonitor>}: the outcome
        and round trip of each request count in the windows of its target and of the
        channel it went on.
    """

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
        slo: Any = None,
    ) -> None:
        self.handling = handling = RoutedHandlers(
            module_id=module_id,
            clock=clock,
            handlers=handlers,
            max_frame_length=max_frame_length,
            redact=redact,
            replies=replies,
            max_concurrent=max_concurrent,
            queue_size=queue_size,
            queue_bytes=queue_bytes,
            handler_timeout=handler_timeout,
            handler_timeouts=handler_timeouts,
        )
        self.requests = requests = RoutedRequests(
            module_id=module_id,
            clock=clock,
            channels=channels,
            max_frame_length=max_frame_length,
            request_timeout=request_timeout,
            breakers=breakers,
            random=random,
            slo=slo,
        )
        self.module_id = module_id
        self.channels = channels
        self.handlers = handling.handlers
        self.breakers = requests.breakers
        #: the requests waiting for their reply
        self.pending = requests.pending
        # The entry points of each side, bound once (no extra call per message).
        self.send_request = requests.send_request
        self.send_message = requests.send_message
        self.configure_target = requests.configure_target
        self.response_received = requests.response_received
        self.message_received = handling.message_received
        self.refuse = handling.answers.refuse
        self.drain = handling.drain

    def stop(self, reason: str = "the module is stopping") -> None:
        """
        Fail every waiting request (nothing will answer them any more) and report the
        overloads not logged yet.
        """
        self.handling.stop()
        self.requests.stop(reason)

    def health(self) -> Mapping[str, Any]:
        """
        What C{/health} shows under C{messaging}.
        """
        requests, handling = self.requests.health(), self.handling.health()
        return {
            "handlers": handling.pop("handlers"),
            **requests,
            **handling,
            "retries": self.requests.retries,
            "breakers": self.breakers.snapshot(),
        }

    def collect(self) -> list[Any]:
        """
        The handler-side and breaker metric families, for L{ModuleMetrics.add_collector
        <pywatt_twisted.web.metrics.ModuleMetrics.add_collector>}.
        """
        return [*self.handling.collect(), *self.breakers.collect()]
