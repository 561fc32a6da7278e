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
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted.errors import BootstrapError, NotAvailable, RequestTimeout
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


@frozen
class RetryPolicy:
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
    def __init__(self, request: PortRequest, d: Deferred[int]) -> None:
        self.request = request
        self.deferred = d
        self.attempt = 0
        self.timer: Any = None


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
        self._waiting: dict[str, _Negotiation] = {}
        self.stopping = False

    def __len__(self) -> int:
        return len(self._waiting)

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
        d: Deferred[int] = Deferred(lambda _: self._forget(request.request_id))
        negotiation = _Negotiation(request, d)
        self._waiting[request.request_id] = negotiation
        self._attempt(negotiation)
        return d

    def _attempt(self, negotiation: _Negotiation) -> None:
        wait = self.policy.wait(negotiation.attempt)
        negotiation.timer = self.clock.callLater(wait, self._timed_out, negotiation)
        if negotiation.attempt:
            self.log.warn(
                "no port_response to {id} yet; asking again (attempt {n} of {total})",
                id=negotiation.request.request_id,
                n=negotiation.attempt + 1,
                total=self.policy.attempts,
            )
        try:
            self._send(negotiation.request)
        except Exception as e:
            self._finish(negotiation.request.request_id).errback(e)

    def _timed_out(self, negotiation: _Negotiation) -> None:
        negotiation.timer = None
        negotiation.attempt += 1
        if negotiation.attempt < self.policy.attempts:
            self._attempt(negotiation)
            return
        wanted = negotiation.request.specific_port
        self._finish(negotiation.request.request_id).errback(
            PortNegotiationTimeout(
                f"the orchestrator answered none of {self.policy.attempts} port_request "
                f"attempts for {'port ' + str(wanted) if wanted else 'any port'} (request "
                f"{negotiation.request.request_id}, {self.policy.total:g} s in all); give the "
                "module a 'listen' address in its init blob, or check that the orchestrator "
                "serves port negotiation"
            )
        )

    def _finish(self, request_id: str) -> Deferred[int]:
        negotiation = self._waiting.pop(request_id)
        if negotiation.timer is not None and negotiation.timer.active():
            negotiation.timer.cancel()
        negotiation.timer = None
        return negotiation.deferred

    def _forget(self, request_id: str) -> None:
        if request_id in self._waiting:
            self._finish(request_id)

    def response_received(self, response: PortResponse) -> None:
        """
        A C{port_response} arrived: fire the request it answers.
        """
        request_id = response.request_id
        if request_id not in self._waiting and request_id == WILDCARD_REQUEST_ID and self._waiting:
            request_id = next(iter(self._waiting))
        if request_id not in self._waiting:
            self.log.warn(
                "ignoring port_response {id}: no port_request with that id is outstanding "
                "(answered already, timed out, or never sent)",
                id=response.request_id,
            )
            return
        negotiation = self._waiting[request_id]
        d = self._finish(request_id)
        if not response.success or response.port == 0:
            wanted = negotiation.request.specific_port
            d.errback(
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
        d.callback(response.port)

    def stop(self, reason: str = "the module is stopping") -> None:
        for request_id in list(self._waiting):
            self._finish(request_id).errback(NotAvailable(f"port_request abandoned: {reason}"))
        self.stopping = True
