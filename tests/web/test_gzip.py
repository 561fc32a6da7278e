"""
Tests for L{pywatt_twisted.web._gzip}: direct HTTP responses gzip-encoded by
twisted.web's encoder when the client accepts it, the body is at least 1 KiB and the
content type is compressible; never over HTTP-over-IPC.
"""

from __future__ import annotations

import gzip

from klein import Klein
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.web._gzip import compressible

TEXT = b"hello, compressible world. " * 200


def create_app(state):
    app = Klein()

    @app.route("/text")
    def text(request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return TEXT

    @app.route("/small")
    def small(request):
        request.setHeader(b"content-type", b"application/json")
        return b'{"ok": true}'

    @app.route("/png")
    def png(request):
        request.setHeader(b"content-type", b"image/png")
        return b"\x89PNG" + bytes(4000)

    return app


class DirectHttpGzipTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.orchestrator = FakeOrchestrator()
        self.module = self.successResultOf(self.orchestrator.start(create_app))

    def get(self, path: str, accept: str | None = None, via: str = "http"):
        headers = {} if accept is None else {"accept-encoding": accept}
        return self.successResultOf(self.module.request("GET", path, headers=headers, via=via))

    def test_gzip_when_accepted(self) -> None:
        response = self.get("/text", "gzip, deflate")
        self.assertEqual(response.headers["content-encoding"], "gzip")
        self.assertIn("accept-encoding", response.headers["vary"].lower())
        self.assertLess(len(response.body), len(TEXT) // 5)
        self.assertEqual(gzip.decompress(response.body), TEXT)

    def test_not_without_accept_encoding(self) -> None:
        response = self.get("/text")
        self.assertNotIn("content-encoding", response.headers)
        self.assertEqual(response.body, TEXT)
        response = self.get("/text", "br")
        self.assertNotIn("content-encoding", response.headers)

    def test_small_body_is_not_compressed(self) -> None:
        response = self.get("/small", "gzip")
        self.assertNotIn("content-encoding", response.headers)
        self.assertEqual(response.body, b'{"ok": true}')

    def test_incompressible_type_is_not_compressed(self) -> None:
        response = self.get("/png", "gzip")
        self.assertNotIn("content-encoding", response.headers)

    def test_not_over_ipc(self) -> None:
        """
        HTTP-over-IPC responses are never gzip-encoded (chunks carry X2 instead).
        """
        response = self.get("/text", "gzip", via="stdio")
        self.assertNotIn("content-encoding", response.headers)
        self.assertEqual(response.body, TEXT)

    def test_compressible(self) -> None:
        for kind in [b"text/html", b"application/json; charset=utf-8", b"application/ld+json"]:
            self.assertTrue(compressible(kind), kind)
        for kind in [None, b"", b"image/png", b"application/octet-stream", b"application/zip"]:
            self.assertFalse(compressible(kind), kind)


class CompressibleCacheTests(SynchronousTestCase):
    def test_cached_answers_and_bound(self) -> None:
        from pywatt_twisted.web import _gzip

        self.patch(_gzip, "_known", {})
        self.assertTrue(_gzip.compressible(b"application/json; charset=utf-8"))
        self.assertFalse(_gzip.compressible(b"image/png"))
        self.assertEqual(
            _gzip._known, {b"application/json; charset=utf-8": True, b"image/png": False}
        )
        self.assertTrue(_gzip.compressible(b"application/json; charset=utf-8"))
        self.assertFalse(_gzip.compressible(b"image/png"))
        for i in range(2 * _gzip._KNOWN_LIMIT):
            self.assertTrue(_gzip.compressible(b"text/x-%d" % i))
        self.assertEqual(len(_gzip._known), _gzip._KNOWN_LIMIT)
        self.assertTrue(_gzip.compressible(bytearray(b"text/plain")))


class _OtherHeaders:
    """
    Response headers with Twisted's public methods but no C{_rawHeaders} dict, as a
    Twisted that keeps them otherwise would have.
    """

    def __init__(self) -> None:
        from twisted.web.http_headers import Headers

        self._kept = Headers()
        for name in ("hasHeader", "getRawHeaders", "addRawHeader", "setRawHeaders"):
            setattr(self, name, getattr(self._kept, name))
        self.getAllRawHeaders = self._kept.getAllRawHeaders


class MaybeGzipWithoutRawHeadersTests(SynchronousTestCase):
    """
    L{maybe_gzip} reads Twisted's C{Headers._rawHeaders} directly; with headers that
    keep them otherwise it makes the same decision through their public methods.
    """

    def request(self, content_type: bytes, size: int) -> object:
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b""])
        request.code = 200
        request.requestHeaders.setRawHeaders(b"accept-encoding", [b"gzip"])
        request.responseHeaders = _OtherHeaders()  # type: ignore[assignment]
        request.responseHeaders.setRawHeaders(b"content-type", [content_type])
        request.responseHeaders.setRawHeaders(b"content-length", [str(size).encode()])
        return request

    def test_compressible(self) -> None:
        from pywatt_twisted.web._gzip import maybe_gzip

        request = self.request(b"text/plain", 4096)
        maybe_gzip(request, b"x")
        self.assertIsNotNone(getattr(request, "_encoder", None))
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"vary"),
            [b"Accept-Encoding"],  # type: ignore[attr-defined]
        )

    def test_not_compressible(self) -> None:
        from pywatt_twisted.web._gzip import maybe_gzip

        for content_type, size in ((b"image/png", 4096), (b"text/plain", 10)):
            request = self.request(content_type, size)
            maybe_gzip(request, b"x")
            self.assertIsNone(getattr(request, "_encoder", None))
