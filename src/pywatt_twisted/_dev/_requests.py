# -*- test-case-name: tests.dev.test_supervisor_requests -*-
"""
What C{pywatt dev} asks of one module and waits for: HTTP requests (the front's, on
the module's preferred channel, bodies streamed from a file when large) and secret
rotations, each answered through a correlation table with a timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pywatt_twisted._runtime.correlation import CorrelationTable
from pywatt_twisted.errors import PyWattError, RequestTimeout
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse, Rotated, RotationAck

if TYPE_CHECKING:
    from pywatt_twisted._dev.supervisor import ModuleSupervisor


class ModuleRequests:
    """
    The requests in flight to one supervised module.

    @ivar pending_http: request id -> the caller of L{http}.
    @ivar pending_rotations: rotation id -> the caller of L{rotate}.
    @ivar acks: every C{rotation_ack} the module sent.
    """

    def __init__(self, supervisor: ModuleSupervisor) -> None:
        self._supervisor = supervisor
        self.pending_http: CorrelationTable[str] = CorrelationTable(supervisor.reactor)
        self.pending_rotations: CorrelationTable[str] = CorrelationTable(supervisor.reactor)
        self.acks: list[RotationAck] = []
        self._ack_waiters: list[Deferred[RotationAck]] = []

    def http(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        body: bytes | None,
        body_file: IO[bytes] | None = None,
    ) -> Deferred[HttpResponse]:
        """
        Send an C{http_request} to the module (on its Unix-socket or TCP channel when
        connected, else on stdin); fires with its C{HttpResponse}. With C{body_file},
        the body is streamed from that file as X1 chunks (C{body} is ignored). A
        response with a C{stream_id} has its body in L{DevStreams.take_relay}.
        """
        supervisor = self._supervisor
        timeout = supervisor.request_timeout
        request_id = f"dev-{uuid.uuid4()}"
        d: Deferred[HttpResponse] = self.pending_http.add(
            request_id,
            timeout,
            f"module {supervisor.module_id} did not answer within {timeout:g} s",
        )
        try:
            if body_file is not None:
                self._stream_request(request_id, method, uri, headers, body_file)
            else:
                supervisor.send_preferred(
                    HttpRequest(
                        request_id=request_id,
                        method=method,
                        uri=uri,
                        headers=dict(headers),
                        body=body,
                    )
                )
        except PyWattError as e:
            self.pending_http.fail(request_id, e)
        return d

    def _stream_request(
        self,
        request_id: str,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        body_file: IO[bytes],
    ) -> None:
        supervisor = self._supervisor
        connection = supervisor.links.connection()
        if connection is not None:
            link, send = str(connection.listener), connection.send
        else:
            link, send = "stdio", supervisor.send
        stream_id = f"dev-{uuid.uuid4().hex}"
        send(HttpRequest(request_id, method, uri, dict(headers), None, stream_id))
        supervisor.streams.upload(link, send, stream_id, body_file)

    def http_answered(self, message: HttpResponse) -> None:
        if not self.pending_http.resolve(message.request_id, message):
            self._supervisor.console.say(
                self._supervisor.module_id,
                f"response to unknown request {message.request_id}",
                "warn",
            )
            # Nobody will attach a streamed one (its caller timed out or is gone): end
            # its stream rather than keep the relay and the module's window forever.
            relay = self._supervisor.streams.take_relay(message.request_id)
            if relay is not None and relay.receiver is not None:
                relay.receiver.cancel("nobody waits for this response any more")

    def rotate(
        self, names: frozenset[str], rotation_id: str | None = None
    ) -> Deferred[RotationAck | None] | None:
        """
        Tell the module that C{names} rotated, if it uses any of them. Fires with its ack,
        or with C{None} when none came within C{request_timeout} seconds (said on the
        console).
        """
        supervisor = self._supervisor
        used = sorted(names & supervisor.used_secrets)
        if not used or supervisor._child is None:
            return None
        rotation_id = rotation_id or f"rot-{uuid.uuid4().hex[:8]}"
        d: Deferred[RotationAck | None] = self.pending_rotations.add(
            rotation_id,
            supervisor.request_timeout,
            f"{supervisor.module_id} did not acknowledge rotation {rotation_id} within "
            f"{supervisor.request_timeout:g} s",
        )
        d.addErrback(self._rotation_unacked)
        supervisor.console.say(
            "pywatt-dev", f"rotating {', '.join(used)} in {supervisor.module_id} ({rotation_id})"
        )
        supervisor._child.send(Rotated(keys=tuple(used), rotation_id=rotation_id))
        return d

    def _rotation_unacked(self, failure: Failure) -> None:
        failure.trap(RequestTimeout)
        self._supervisor.console.say("pywatt-dev", str(failure.value), "warn")

    def rotation_acked(self, message: RotationAck) -> None:
        self.acks.append(message)
        text = f"rotation {message.rotation_id} acknowledged: {message.status}"
        if message.message:
            text += f" ({message.message})"
        self._supervisor.console.say(
            "pywatt-dev",
            f"{self._supervisor.module_id} {text}",
            "info" if message.status == "success" else "warn",
        )
        self.pending_rotations.resolve(message.rotation_id, message)
        ack_waiters, self._ack_waiters = self._ack_waiters, []
        for ack_waiter in ack_waiters:
            ack_waiter.callback(message)

    def when_rotation_acked(self) -> Deferred[RotationAck]:
        """
        Fires with the module's next C{rotation_ack}.
        """
        d: Deferred[RotationAck] = Deferred()
        self._ack_waiters.append(d)
        return d

    def describe_acks(self) -> list[dict[str, Any]]:
        """
        The last ten acks, for the status page.
        """
        return [
            {"rotation_id": a.rotation_id, "status": a.status, "message": a.message}
            for a in self.acks[-10:]
        ]
