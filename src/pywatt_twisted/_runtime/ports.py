# -*- test-case-name: tests.runtime.test_ports -*-
"""
Port negotiation (PROTOCOL.md 6.6): C{port_request} on stdout, C{port_response} on
stdin, correlated by C{request_id}.

Timeouts and retries follow the Rust SDK (PROTOCOL.md 2.8): 3 attempts, the first waits
3 s and each retry 1 s longer (at most 10 s). A retry re-sends the same request (same
C{request_id}), so an orchestrator that answers late, or twice, allocates one port. A
refusal (C{success: false}, or C{success: true} with port 0) fails at once. There is
B{no fallback port}: when the orchestrator does not answer, the module says so and
does not invent one (gap G11).

A C{port_response} whose C{request_id} is C{"auto-assigned"} (which the Rust SDK treats
as a wildcard) answers the oldest outstanding request; any other unknown id is logged
and ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from attrs import frozen
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted import tracing
from pywatt_twisted._runtime.correlation import CorrelationTable, Pending
from pywatt_twisted.errors import BootstrapError, NotAvailable, RequestTimeout
from pywatt_twisted.wire._value import Value
from pywatt_twisted.wire.messages import PortRequest, PortResponse

__all__ = [
    "PortNegotiationFailed",
    "PortNegotiationTimeout",
    "PortNegotiator",
    "RetryPolicy",
]

WILDCARD_REQUEST_ID = "auto-assigned"


class PortNegotiationFailed(BootstrapError):
    """
    The orchestrator refused to allocate a port.
    """


class PortNegotiationTimeout(PortNegotiationFailed, RequestTimeout):
    """
    The orchestrator answered none of the attempts of a C{port_request}.
    """


@frozen(eq=False, repr=False)
class RetryPolicy(Value):
    """
    How long each C{port_request} attempt waits: C{initial} seconds, plus C{step} per
    retry, at most C{maximum}; C{attempts} in all.
    """

    initial: float = 3.0
    step: float = 1.0
    maximum: float = 10.0
    attempts: int = 3

    def wait(self, attempt: int) -> float:
        """
        Seconds attempt number C{attempt} (0 for the first) waits for its reply.
        """
        return min(self.initial + self.step * attempt, self.maximum)

    @property
    def total(self) -> float:
        return sum(self.wait(i) for i in range(self.attempts))


class _Negotiation:
    """
    A C{port_request} and how many times it was sent.
    """

    __slots__ = ("attempt", "request")

    def __init__(self, request: PortRequest) -> None:
        self.request = request
        self.attempt = 0


class PortNegotiator:
    """
    Asks the orchestrator for ports.

    @param send: writes a message to stdout.
    @param clock: the clock the attempts are timed on.
    """

    log = Logger()

    def __init__(
        self,
        send: Callable[[object], object],
        clock: IReactorTime,
        policy: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._send = send
        self.clock = clock
        self.policy = policy
        # request id -> the caller waiting for its port_response
        self._waiting: CorrelationTable[str] = CorrelationTable(
            clock,
            timeout_error=PortNegotiationTimeout,
            retry=self._retry,
            abandoned=lambda key, negotiation, reason: NotAvailable(
                f"port_request abandoned: {reason}"
            ),
        )

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def stopping(self) -> bool:
        """
        Whether L{stop} was called: no more requests go out.
        """
        return self._waiting.stopped

    def request_port(self, specific_port: int | None = None) -> Deferred[int]:
        """
        Ask the orchestrator for C{specific_port}, or any port. Fires with the port it
        allocated, or fails with L{PortNegotiationFailed} (refused) or
        L{PortNegotiationTimeout} (no answer to any attempt).
        """
        if self.stopping:
            return fail(NotAvailable("port_request not sent: the module is stopping"))
        if specific_port is not None and not 0 < specific_port < 65536:
            return fail(ValueError(f"specific_port must be 1-65535 or None, got {specific_port}"))
        request = PortRequest(request_id=str(uuid.uuid4()), specific_port=specific_port)
        wanted = f"port {specific_port}" if specific_port else "any port"
        if tracing.switch.on:
            # tracing: one span for the negotiation, retries included
            span = tracing.internal_span("port_request", **{"pywatt.port.wanted": wanted})
            return tracing.traced(span, self._negotiate(request, wanted))
        return self._negotiate(request, wanted)

    def _negotiate(self, request: PortRequest, wanted: str) -> Deferred[int]:
        d: Deferred[int] = self._waiting.add(
            request.request_id,
            self.policy.wait(0),
            f"the orchestrator answered none of {self.policy.attempts} port_request "
            f"attempts for {wanted} (request {request.request_id}, {self.policy.total:g} s in "
            "all); give the module a 'listen' address in its init blob, or check that the "
            "orchestrator serves port negotiation",
            context=_Negotiation(request),
        )
        self._send_request(request)
        return d

    def _send_request(self, request: PortRequest) -> None:
        try:
            self._send(request)
        except Exception as e:
            self._waiting.fail(request.request_id, e)

    def _retry(self, request_id: str, entry: Pending) -> float | None:
        """
        An attempt got no answer in time: send the same request again, or give up.
        """
        negotiation: _Negotiation = entry.context
        negotiation.attempt += 1
        if negotiation.attempt >= self.policy.attempts:
            return None
        self.log.warn(
            "no port_response to {id} yet; asking again (attempt {n} of {total})",
            id=request_id,
            n=negotiation.attempt + 1,
            total=self.policy.attempts,
        )
        self._send_request(negotiation.request)
        return self.policy.wait(negotiation.attempt)

    def response_received(self, response: PortResponse) -> None:
        """
        A C{port_response} arrived: fire the request it answers.
        """
        request_id: str | None = response.request_id
        if request_id not in self._waiting and request_id == WILDCARD_REQUEST_ID:
            request_id = self._waiting.oldest()
        entry = None if request_id is None else self._waiting.pop(request_id)
        if entry is None:
            self.log.warn(
                "ignoring port_response {id}: no port_request with that id is outstanding "
                "(answered already, timed out, or never sent)",
                id=response.request_id,
            )
            return
        negotiation: _Negotiation = entry.context
        if not response.success or response.port == 0:
            wanted = negotiation.request.specific_port
            entry.errback(
                PortNegotiationFailed(
                    f"the orchestrator refused to allocate "
                    f"{'port ' + str(wanted) if wanted else 'a port'}: "
                    f"{response.error_message or 'no reason given'}"
                    + (" (success with port 0)" if response.success else "")
                )
            )
            return
        if negotiation.request.specific_port not in (None, response.port):
            self.log.info(
                "asked for port {wanted}, the orchestrator allocated {port}",
                wanted=negotiation.request.specific_port,
                port=response.port,
            )
        entry.callback(response.port)

    def stop(self, reason: str = "the module is stopping") -> None:
        """
        Fail every outstanding request, and send no more.
        """
        self._waiting.stop(reason)
