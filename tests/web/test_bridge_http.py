"""
The bridge's answer must equal the direct-HTTP answer of the same site: a real
listening L{PyWattSite} on 127.0.0.1:0, with treq as the client.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from pywatt_twisted.web.bridge import HttpBridge
from pywatt_twisted.wire.messages import HttpRequest
from tests.web._apps import Holds, build_app, build_site

#: Headers whose values must be the same on both paths (date and server may tick).
COMPARED = ("content-type", "location", "x-item", "allow", "x-multi", "set-cookie")

ROUTES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/items/12?verbose=1", {}, None),
    ("GET", "/nowhere", {}, None),
    ("POST", "/created", {"Content-Type": "application/json"}, b'{"name":"w"}'),
    ("GET", "/multi", {}, None),
    ("GET", "/cookie", {}, None),
    ("GET", "/boom", {}, None),
    ("DELETE", "/items/1", {}, None),
    ("GET", "/health", {}, None),
    ("HEAD", "/items/4", {}, None),
]


class DirectVersusBridgeTests(TestCase):
    def setUp(self) -> None:
        self.holds = Holds()
        self.site = build_site(build_app(self.holds, reactor), reactor)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(self.pool.closeCachedConnections)
        self.client = treq.client.HTTPClient(Agent(reactor, pool=self.pool))
        self.bridge = HttpBridge(self.site, reactor=reactor)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    async def direct(
        self, method: str, uri: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        response = await self.client.request(
            method, self.base + uri, headers={k: [v] for k, v in headers.items()}, data=body
        )
        content = await response.content()
        flat = {
            name.decode().lower(): ", ".join(v.decode() for v in values)
            for name, values in response.headers.getAllRawHeaders()
        }
        return response.code, flat, content

    async def test_same_answers(self) -> None:
        for method, uri, headers, body in ROUTES:
            status, direct_headers, direct_body = await self.direct(method, uri, headers, body)
            host = {"Host": f"127.0.0.1:{self.port.getHost().port}"}
            bridged = await self.bridge.handle(
                HttpRequest(
                    request_id=uri, method=method, uri=uri, headers={**host, **headers}, body=body
                )
            )
            self.assertEqual(bridged.status_code, status, f"{method} {uri}")
            self.assertEqual(bridged.body, direct_body, f"{method} {uri}")
            for name in COMPARED:
                self.assertEqual(
                    bridged.headers.get(name), direct_headers.get(name), f"{method} {uri} {name}"
                )
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)

    async def test_echo_sees_the_same_request(self) -> None:
        """
        The route sees the same method, target, query, headers and body on both paths
        (apart from the client's own Host/Connection/User-Agent choices).
        """
        body = b"\x00\x01payload\xff" * 100
        headers = {"Content-Type": "application/octet-stream", "X-Trace": "t-1"}
        _, _, direct_body = await self.direct("POST", "/echo?q=a%2Fb&q=2", headers, body)
        bridged = await self.bridge.handle(
            HttpRequest(
                request_id="e",
                method="POST",
                uri="/echo?q=a%2Fb&q=2",
                headers=headers,
                body=body,
            )
        )
        direct = json.loads(direct_body)
        via_bridge = json.loads(bridged.body)
        for key in ("method", "uri", "path", "args", "body", "prepath"):
            self.assertEqual(via_bridge[key], direct[key], key)
        for name in ("content-type", "x-trace", "content-length"):
            self.assertEqual(via_bridge["headers"][name], direct["headers"][name], name)

    async def test_held_route_concurrently_on_both_paths(self) -> None:
        direct: Deferred[Any] = Deferred.fromCoroutine(self.direct("GET", "/held/d", {}, None))
        bridged = self.bridge.handle(
            HttpRequest(request_id="h", method="GET", uri="/held/b", headers={}, body=None)
        )
        self.holds.release("b", b"bridge")
        self.assertEqual((await bridged).body, b"bridge")
        await self.holds.arrived("d")  # the direct request travels through the socket
        self.holds.release("d", b"direct")
        self.assertEqual((await direct)[2], b"direct")
