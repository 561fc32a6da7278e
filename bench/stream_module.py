"""
The module of C{bench/bench_stream.py}: C{POST /crc32} (the bench's) and C{POST /sha256}
check the request body as it arrives (C{incremental_body}); C{POST /sha256-spooled}
does the same from C{request.content}, spooled first. C{GET /blob?size=N} answers N
bytes from a push producer (so the module never holds the body: it is paused while
the stream's window is full).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from pywatt_twisted import pywatt_module
from pywatt_twisted.streaming import body_stream, incremental_body

try:
    # (the bench's check, not the library's work: the same SIMD CRC-32 as the bench's
    # HTTP client uses, ~16x zlib's, so a minimal route costs what it should)
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover
    _crc32 = zlib.crc32

BLOCK = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(8192))  # 256 KiB


@implementer(IPushProducer)
class BlobProducer:
    """
    Writes C{size} bytes of L{BLOCK} repeated, one block per reactor turn, while not
    paused.
    """

    def __init__(self, request: Any, size: int, reactor: Any) -> None:
        self.request = request
        self.left = size
        self.reactor = reactor
        self.paused = False
        self.stopped = False
        self.done: Deferred[None] = Deferred()
        self.call: Any = None

    def start(self) -> Deferred[None]:
        self.request.registerProducer(self, True)
        self._schedule()
        return self.done

    def _schedule(self) -> None:
        if self.call is None and not self.paused and not self.stopped:
            self.call = self.reactor.callLater(0, self._write)

    def _write(self) -> None:
        self.call = None
        while not self.paused and not self.stopped and self.left:
            piece = BLOCK[: min(len(BLOCK), self.left)]
            self.left -= len(piece)
            self.request.write(piece)
            break
        if not self.left and not self.stopped:
            self.stopped = True
            self.request.unregisterProducer()
            self.done.callback(None)
            return
        self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self.stopped = True


@pywatt_module(health=None, metrics=False)
def create_app(state: Any) -> Klein:
    app = Klein()

    @app.route("/sha256", methods=["POST"])
    @incremental_body
    async def sha(request: Any) -> bytes:
        # (reads the body as it arrives, acknowledged as it is hashed: no spool)
        digest = hashlib.sha256()
        async for piece in body_stream(request):
            digest.update(piece)
        return digest.hexdigest().encode()

    @app.route("/crc32", methods=["POST"])
    @incremental_body
    async def crc(request: Any) -> bytes:
        # (the bench's check: a running CRC-32, read as the body arrives)
        value = 0
        async for piece in body_stream(request):
            value = _crc32(piece, value)
        return b"%08x" % value

    @app.route("/sha256-spooled", methods=["POST"])
    def sha_spooled(request: Any) -> bytes:
        digest = hashlib.sha256()
        for piece in iter(lambda: request.content.read(1 << 20), b""):
            digest.update(piece)
        return digest.hexdigest().encode()

    @app.route("/blob", methods=["GET"])
    def blob(request: Any) -> Deferred[None]:
        request.setHeader(b"content-type", b"application/octet-stream")
        size = int(request.args[b"size"][0])
        return BlobProducer(request, size, state.reactor).start()

    return app
