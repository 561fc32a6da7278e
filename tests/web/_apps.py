"""
Apps and helpers shared by the web tests: a Klein app whose routes cover every shape
the bridge must carry, routes held open by Deferreds the test controls, and a tiny
HTTP/1.1 exchange over a L{StringTransport} to see what direct HTTP produces.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from klein import Klein
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.web.site import PyWattSite, build_root_resource


class Holds:
    """
    Deferreds that held routes wait on, by key, created on first use.
    """

    def __init__(self) -> None:
        self.waiting: dict[str, Deferred[Any]] = {}
        self.cancelled: list[str] = []
        self._arrivals: dict[str, list[Deferred[None]]] = {}

    def get(self, key: str) -> Deferred[Any]:
        if key not in self.waiting:
            self.waiting[key] = Deferred(lambda _d, key=key: self.cancelled.append(key))
            for arrival in self._arrivals.pop(key, []):
                arrival.callback(None)
        return self.waiting[key]

    def arrived(self, key: str) -> Deferred[None]:
        """
        Fires once a route has asked for C{key}.
        """
        arrival: Deferred[None] = Deferred()
        if key in self.waiting:
            arrival.callback(None)
        else:
            self._arrivals.setdefault(key, []).append(arrival)
        return arrival

    def release(self, key: str, value: Any = b"released") -> None:
        self.get(key).callback(value)


class Streamer(Resource):
    """
    A plain resource that returns NOT_DONE_YET and writes its body over time.
    """

    isLeaf = True

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"text/plain")
        request.write(b"one,")
        self.clock.callLater(1, request.write, b"two,")
        self.clock.callLater(2, lambda: (request.write(b"three"), request.finish()))
        return NOT_DONE_YET


def build_app(holds: Holds, clock: Any) -> Klein:
    """
    The app every bridge and site test uses.
    """
    app = Klein()

    @app.route("/echo", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def echo(request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        body = request.content.read()
        return json.dumps(
            {
                "method": request.method.decode(),
                "uri": request.uri.decode(),
                "path": request.path.decode(),
                "args": {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()},
                "headers": {
                    k.decode().lower(): [v.decode() for v in vs]
                    for k, vs in request.requestHeaders.getAllRawHeaders()
                },
                "body": base64.b64encode(body).decode(),
                "client": request.getClientAddress().host,
                "prepath": [p.decode() for p in request.prepath],
            },
            sort_keys=True,
        ).encode()

    @app.route("/items/<int:item_id>", methods=["GET"])
    def item(request: Any, item_id: int) -> str:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"x-item", str(item_id).encode())
        return f"item {item_id}"

    @app.route("/multi", methods=["GET"])
    def multi(request: Any) -> bytes:
        request.responseHeaders.addRawHeader(b"X-Multi", b"a")
        request.responseHeaders.addRawHeader(b"X-Multi", b"b")
        request.responseHeaders.addRawHeader(b"Connection", b"keep-alive")
        return b"multi"

    @app.route("/cookies", methods=["GET"])
    def cookies(request: Any) -> bytes:
        request.addCookie(b"first", b"1", path=b"/")
        request.addCookie(b"second", b"2", path=b"/")
        return b"cookies"

    @app.route("/cookie", methods=["GET"])
    def cookie(request: Any) -> bytes:
        request.addCookie(b"only", b"1", path=b"/", httpOnly=True)
        return b"cookie"

    @app.route("/created", methods=["POST"])
    def created(request: Any) -> bytes:
        request.setResponseCode(201)
        request.setHeader(b"location", b"/items/7")
        request.setHeader(b"content-type", b"application/json")
        return b'{"id":7}'

    @app.route("/boom")
    def boom(request: Any) -> bytes:
        raise ValueError("secret-internal-detail")

    @app.route("/held/<key>")
    def held(request: Any, key: str) -> Deferred[Any]:
        request.notifyFinish().addErrback(lambda f: holds.cancelled.append("finish:" + key))
        return holds.get(key)

    @app.route("/async/<key>")
    async def async_route(request: Any, key: str) -> bytes:
        value = await holds.get(key)
        return b"async:" + value

    @app.route("/stream", methods=["GET"])
    def stream(request: Any) -> Deferred[Any]:
        request.setHeader(b"content-type", b"text/plain")
        request.write(b"part1,")
        d = holds.get("stream")
        d.addCallback(lambda _: request.write(b"part2,"))
        d.addCallback(lambda _: b"end")
        return d

    @app.route("/streamer", methods=["GET"])
    def streamer(request: Any) -> Resource:
        return Streamer(clock)

    @app.route("/drop", methods=["GET"])
    def drop(request: Any) -> Deferred[Any]:
        request.write(b"partial")
        request.loseConnection()
        return Deferred()

    @app.route("/form", methods=["POST"])
    def form(request: Any) -> bytes:
        return json.dumps(
            {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        ).encode()

    @app.route("/health", methods=["POST"])
    def health_post(request: Any) -> bytes:
        return b"user-post"

    @app.route("/user-health", methods=["GET"])
    def user_health(request: Any) -> bytes:
        return b"user"

    return app


def build_site(
    app: Klein,
    clock: Any,
    *,
    status: dict[str, object] | None = None,
    health_path: str | None = "/health",
    metrics: bool = True,
) -> PyWattSite:
    """
    The site the runtime would build around C{app}.
    """
    module_metrics = ModuleMetrics() if metrics else None
    current = status if status is not None else {"status": "ok", "module_id": "mod-1"}
    root = build_root_resource(
        app.resource(), health_path=health_path, metrics=module_metrics, status=lambda: current
    )
    return PyWattSite(root, module_metrics, reactor=clock)


def direct_exchange(site: PyWattSite, raw: bytes) -> tuple[StringTransport, Any]:
    """
    Feed C{raw} request bytes to a fresh HTTP channel of C{site}; return the
    transport (its C{value()} is the response so far) and the protocol.
    """
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 5555),
    )
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    return transport, protocol


def parse_response(data: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """
    Parse one HTTP/1.1 response (Content-Length or chunked) into status, headers
    (lower-case names, all values) and body.
    """
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if headers.get("transfer-encoding") == ["chunked"]:
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
    else:
        body = rest
    return status, headers, body
