# -*- test-case-name: tests.testing.test_fake_orchestrator -*-
"""
L{FakeModule}: a module started by
L{FakeOrchestrator.start <pywatt_twisted.testing.FakeOrchestrator.start>}, and what a
test does with it: HTTP requests, routed calls and notifications, stop.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from pywatt_twisted._runtime.service import ModuleService
from pywatt_twisted._runtime.state import AppState
from pywatt_twisted.errors import PyWattError
from pywatt_twisted.testing._http import FakeResponse
from pywatt_twisted.wire.envelope import routed_request_payload
from pywatt_twisted.wire.messages import (
    HttpRequest,
    RoutedModuleMessage,
)

if TYPE_CHECKING:
    from pywatt_twisted.testing._orchestrator import FakeOrchestrator


class FakeModule:
    """
    A module started by L{FakeOrchestrator.start}.

    @ivar service: its L{ModuleService}.
    @ivar state: its L{AppState}.
    """

    def __init__(self, orchestrator: FakeOrchestrator, service: ModuleService) -> None:
        self._orchestrator = orchestrator
        self.service = service

    @property
    def state(self) -> AppState:
        assert self.service.state is not None
        return self.service.state

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Any = None,
        json_body: Any = None,
        via: str = "stdio",
        stream: bool = False,
    ) -> Deferred[FakeResponse]:
        """
        Send an HTTP request through HTTP-over-IPC (an C{http_request} on stdin, or on
        the C{"tcp"} / C{"ipc"} channel with C{via}), or with C{via="http"} as direct
        HTTP to the module's own HTTP server (in memory: real HTTP/1.1 bytes through its
        C{Site}, no socket), and fire with the module's real response. C{json_body} is
        encoded and sets content-type.

        With C{stream}, the body is sent as X1 chunks (C{docs/streaming.md}) with the
        orchestrator's C{streaming} options (or the X0 defaults), never more than the
        window unacknowledged. A response the module streams is read the same way
        (acked as it arrives unless L{FakeOrchestrator.pause_reading}) and the
        Deferred fires with the whole body; it fails with
        L{pywatt_twisted.streaming.StreamFailed} if the stream ends early.
        """
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("content-type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        if via == "http":
            return self._orchestrator._direct_http(method, path, headers, body)
        request_id = f"fake-{uuid.uuid4()}"
        d = self._orchestrator._expect_http(request_id)
        if stream:
            self._orchestrator._upload(request_id, method, path, headers, body or b"", via)
            return d
        self._orchestrator.send(
            HttpRequest(request_id=request_id, method=method, uri=path, headers=headers, body=body),
            via=via,
        )
        return d

    def call(
        self,
        endpoint: str,
        payload: Any,
        *,
        source: str = "other-module",
        via: str | None = None,
        timeout: float = 30.0,
    ) -> Deferred[Any]:
        """
        Call the module's routed handler C{endpoint} with C{payload} as module C{source}
        would (C{send_request}): a C{routed_module_message} whose payload envelope names
        the endpoint, on C{via} (C{"tcp"}, C{"ipc"} or C{"stdio"}; by default the TCP
        channel, else the Unix socket, else stdin).

        @return: a Deferred that fires with the handler's reply (decoded JSON), or fails
            with L{RemoteError} (its C{kind} is the error reply's: C{handler_error},
            C{unknown_endpoint}, C{overloaded}...) or with L{RequestTimeout} after
            C{timeout} seconds of the module's clock without a reply.
        """
        request_id = uuid.uuid4()
        d = self._orchestrator.calls.add(
            request_id,
            timeout,
            f"no reply from module {self._orchestrator.module_id!r} to {endpoint!r} "
            f"within {timeout:g} s",
            context=endpoint,
        )
        try:
            self._send_routed(endpoint, payload, source, via, request_id, no_reply=False)
        except PyWattError as e:
            self._orchestrator.calls.fail(request_id, e)
        return d

    def notify(
        self, endpoint: str, payload: Any, *, source: str = "other-module", via: str | None = None
    ) -> None:
        """
        Send C{payload} to the routed handler C{endpoint} as a notification from module
        C{source} (C{send_message}: the handler runs and sends no reply).
        """
        self._send_routed(endpoint, payload, source, via, uuid.uuid4(), no_reply=True)

    def _send_routed(
        self,
        endpoint: str,
        payload: Any,
        source: str,
        via: str | None,
        request_id: uuid.UUID,
        no_reply: bool,
    ) -> None:
        orchestrator = self._orchestrator
        wrapped = routed_request_payload(payload, endpoint, source, no_reply)
        message = RoutedModuleMessage(source, request_id, wrapped)
        orchestrator.send(message, via=via or orchestrator.routing_link())

    def stop(self) -> Deferred[None]:
        """
        Stop the module (as after a C{shutdown}); fires when it has stopped.
        """
        return self._orchestrator.shutdown()
