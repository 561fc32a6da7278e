"""
Module definitions used by the runtime tests (in-process and as real processes).
"""

from __future__ import annotations

import gc
import json

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.client import ResponseDone
from twisted.web.resource import Resource

from pywatt_twisted import pywatt_module
from pywatt_twisted.streaming import StreamFailed, body_stream, incremental_body

#: The errors the incremental routes of L{big_body_app} read (tests clear it).
INCREMENTAL_FAILURES: list[StreamFailed] = []


@pywatt_module(secrets=["API_KEY", "DB_PASSWORD"])
def echo_app(state):
    """
    Routes that show exactly what the module received.
    """
    app = Klein()

    @app.route("/echo", methods=["GET", "POST", "PUT"])
    def echo(request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-echo", b"1")
        return json.dumps(
            {
                "method": request.method.decode(),
                "path": request.path.decode(),
                "args": {k.decode(): [x.decode() for x in v] for k, v in request.args.items()},
                "headers": {
                    k.decode().lower(): v[-1].decode()
                    for k, v in request.requestHeaders.getAllRawHeaders()
                },
                "body": request.content.read().decode("utf-8", "replace"),
            }
        ).encode()

    @app.route("/items/<int:item_id>", methods=["GET"])
    def item(request, item_id):
        return json.dumps({"id": item_id}).encode()

    @app.route("/slow", methods=["GET"])
    def slow(request):
        delay = float(request.args.get(b"delay", [b"0.2"])[0])
        return deferLater(state.reactor, delay, lambda: b"slow done")

    @app.route("/async", methods=["GET"])
    async def async_route(request):
        await deferLater(state.reactor, 0, lambda: None)
        return b"async done"

    @app.route("/gc-frozen", methods=["GET"])
    def gc_frozen(request):
        # (how many objects the process froze after its announce: _runtime.heap)
        return str(gc.get_freeze_count()).encode()

    @app.route("/key", methods=["GET"])
    def key(request):
        return state.secret("API_KEY").expose().encode()

    @app.route("/hang", methods=["GET"])
    def hang(request):
        return Deferred()

    @app.route("/print", methods=["GET"])
    def printer(request):
        print("a stray print() must not reach stdout")
        return b"printed"

    @app.route("/boom", methods=["GET"])
    def boom(request):
        raise RuntimeError("route exploded")

    return app


@pywatt_module(health=None, metrics=False)
def plain_resource(state):
    """
    A module whose app is a plain twisted.web resource.
    """
    root = Resource()
    leaf = Resource()
    leaf.render_GET = lambda request: b"plain"  # type: ignore[method-assign]
    leaf.isLeaf = True
    root.putChild(b"plain", leaf)
    return root


def _failing_state(init, secrets):
    raise RuntimeError("database host not configured")


@pywatt_module(state_builder=_failing_state)
def failing_start(state):
    """
    A module that can never start: its state builder raises.
    """
    return Klein()


def pattern(size: int, seed: int = 0) -> bytes:
    """
    C{size} deterministic bytes (the same C{size} and C{seed} give the same bytes);
    the streaming tests compare hashes of these.
    """
    import hashlib

    block = b"".join(hashlib.sha256(b"%d:%d" % (seed, i)).digest() for i in range(2048))
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


@pywatt_module(health=None, metrics=False)
def big_body_app(state):
    """
    Routes with large bodies: C{/sha256} hashes the request body, C{/blob?size=N}
    answers N bytes of L{pattern}.
    """
    import hashlib

    app = Klein()

    @app.route("/sha256", methods=["POST", "PUT"])
    def sha(request):
        digest = hashlib.sha256()
        content = request.content
        content.seek(0)
        while True:
            piece = content.read(65536)
            if not piece:
                break
            digest.update(piece)
        request.setHeader(b"content-type", b"text/plain")
        return digest.hexdigest().encode()

    @app.route("/incremental/sha256", methods=["POST"])
    @incremental_body
    async def incremental_sha(request):
        # (reads the body as it arrives: each chunk is acked as this loop takes it;
        # ?delay=S waits S seconds after each piece, a slow reader)
        digest = hashlib.sha256()
        delay = float(request.args.get(b"delay", [b"0"])[0])
        try:
            async for piece in body_stream(request):
                digest.update(piece)
                if delay:
                    await deferLater(state.reactor, delay, lambda: None)
        except StreamFailed as e:
            INCREMENTAL_FAILURES.append(e)
            raise
        request.setHeader(b"content-type", b"text/plain")
        return digest.hexdigest().encode()

    @app.route("/incremental/protocol", methods=["POST"])
    @incremental_body
    def incremental_protocol(request):
        # (the same through deliverBody, treq style: a protocol that pauses for
        # ?delay=S seconds after each piece)
        delay = float(request.args.get(b"delay", [b"0"])[0])
        done = Deferred()

        class Hasher(Protocol):
            def __init__(self):
                self.digest = hashlib.sha256()

            def dataReceived(self, data):
                self.digest.update(data)
                if delay:
                    self.transport.pauseProducing()
                    state.reactor.callLater(delay, self.transport.resumeProducing)

            def connectionLost(self, reason):
                if reason.check(ResponseDone):
                    done.callback(self.digest.hexdigest().encode())
                else:
                    INCREMENTAL_FAILURES.append(reason.value)
                    done.errback(reason)

        body_stream(request).deliverBody(Hasher())
        return done

    @app.route("/incremental/ignore", methods=["POST"])
    @incremental_body
    def incremental_ignore(request):
        # (answers without reading the body: the module cancels the rest)
        return b"not read"

    @app.route("/blob", methods=["GET"])
    def blob(request):
        size = int(request.args.get(b"size", [b"0"])[0])
        request.setHeader(b"content-type", b"application/octet-stream")
        return pattern(size)

    @app.route("/zeros", methods=["GET"])
    def zeros(request):
        size = int(request.args.get(b"size", [b"0"])[0])
        request.setHeader(b"content-type", b"application/octet-stream")
        return bytes(size)

    return app


@pywatt_module(secrets=["API_KEY"], health=None, metrics=False)
def waiting_body_app(state):
    """
    L{big_body_app}'s C{/sha256} and C{/incremental/sha256}, in a module that is not
    ready until its C{API_KEY} secret arrives (for requests that come before).
    """
    import hashlib

    app = Klein()

    @app.route("/sha256", methods=["POST"])
    def sha(request):
        digest = hashlib.sha256()
        for piece in iter(lambda: request.content.read(65536), b""):
            digest.update(piece)
        return digest.hexdigest().encode()

    @app.route("/incremental/sha256", methods=["POST"])
    @incremental_body
    async def incremental_sha(request):
        digest = hashlib.sha256()
        async for piece in body_stream(request):
            digest.update(piece)
        return digest.hexdigest().encode()

    return app
