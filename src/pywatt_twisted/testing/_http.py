# -*- test-case-name: tests.testing.test_fake_orchestrator -*-
"""
The HTTP pieces of L{FakeOrchestrator <pywatt_twisted.testing.FakeOrchestrator>}: the
response a test gets, and the in-memory plumbing of direct HTTP and streamed bodies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from pywatt_twisted.streaming import StreamFailed
from pywatt_twisted.testing._memory_channels import MemoryStreamEndpoint
from pywatt_twisted.wire.messages import (
    HttpResponse,
)


@frozen
class FakeResponse:
    """
    A module's answer to L{FakeModule.request}.

    @ivar code: the HTTP status code.
    @ivar headers: response headers (lower-case names).
    @ivar body: the body bytes.
    """

    code: int
    headers: Mapping[str, str]
    body: bytes

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)

    def json(self) -> Any:
        return json.loads(self.body)


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body written at once (no cooperator: the test's clock need not move).
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAgentEndpointFactory)
class OneEndpoint:
    """
    An agent endpoint factory that connects every URI to one in-memory endpoint.
    """

    def __init__(self, endpoint: MemoryStreamEndpoint) -> None:
        self.endpoint = endpoint

    def endpointForURI(self, uri: Any) -> MemoryStreamEndpoint:
        return self.endpoint


class CollectedBody:
    """
    Collects a streamed response body for L{FakeModule.request}.
    """

    def __init__(self, head: HttpResponse, waiter: Deferred[FakeResponse] | None) -> None:
        self.head = head
        self.waiter = waiter
        self.parts: list[bytes] = []

    def body_data(self, data: bytes) -> None:
        self.parts.append(data)

    def body_done(self) -> None:
        if self.waiter is not None:
            self.waiter.callback(
                FakeResponse(
                    code=self.head.status_code,
                    headers=dict(self.head.headers),
                    body=b"".join(self.parts),
                )
            )

    def body_failed(self, error: StreamFailed) -> None:
        self.parts = []
        if self.waiter is not None:
            self.waiter.errback(error)
