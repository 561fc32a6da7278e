"""
Streamed bodies (EXTENSIONS.md X1) with the L{FakeOrchestrator}: through real routes,
on stdin and on the TCP and Unix-socket channels, checked from the orchestrator's side.
"""

from __future__ import annotations

import hashlib
from typing import Any

from klein import Klein
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted.errors import MessageTooLarge, RemoteError
from pywatt_twisted.streaming import StreamFailed
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import HttpResponse
from pywatt_twisted.wire.stream import StreamOptions
from tests.runtime.modules import big_body_app, pattern

MiB = 1024 * 1024


class ChannelStreamingTests(SynchronousTestCase):
    def start(self, window: int = 8, **kw: Any) -> tuple[FakeOrchestrator, Any]:
        orchestrator = FakeOrchestrator(
            channels=("tcp", "ipc"),
            streaming=StreamOptions(65536, window, kw.pop("gzip", False)),
            **kw,
        )
        module = self.successResultOf(orchestrator.start(big_body_app))
        return orchestrator, module

    def upload(self, size: int, via: str) -> None:
        _orchestrator, module = self.start()
        body = pattern(size, seed=3)
        response = self.successResultOf(
            module.request("POST", "/sha256", body=body, via=via, stream=True)
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body.decode(), hashlib.sha256(body).hexdigest())

    def download(self, size: int, via: str, window: int = 8) -> FakeOrchestrator:
        orchestrator, module = self.start(window=window)
        response = self.successResultOf(module.request("GET", f"/blob?size={size}", via=via))
        self.assertEqual(response.code, 200)
        self.assertEqual(
            hashlib.sha256(response.body).digest(), hashlib.sha256(pattern(size)).digest()
        )
        [head] = [m for m in orchestrator.sent if isinstance(m, HttpResponse)]
        self.assertIsNotNone(head.stream_id)
        self.assertLessEqual(orchestrator.max_unacked_chunks, window)
        return orchestrator

    def test_1_mib_upload_tcp(self) -> None:
        self.upload(MiB, "tcp")

    def test_64_mib_upload_tcp(self) -> None:
        self.upload(64 * MiB, "tcp")

    def test_1_mib_upload_unix_socket(self) -> None:
        self.upload(MiB, "ipc")

    def test_1_mib_upload_stdio(self) -> None:
        self.upload(MiB, "stdio")

    def test_1_mib_download_tcp(self) -> None:
        self.download(MiB, "tcp")

    def test_64_mib_download_tcp(self) -> None:
        self.download(64 * MiB, "tcp")

    def test_1_mib_download_unix_socket(self) -> None:
        self.download(MiB, "ipc")

    def test_paused_reader_stops_the_writer_on_a_channel(self) -> None:
        orchestrator, module = self.start(window=4)
        orchestrator.pause_reading()
        d = module.request("GET", f"/blob?size={MiB}", via="tcp")
        orchestrator.reactor.advance(5)
        self.assertNoResult(d)
        self.assertEqual(orchestrator.max_unacked_chunks, 4)
        orchestrator.resume_reading()
        response = self.successResultOf(d)
        self.assertEqual(len(response.body), MiB)
        self.assertEqual(orchestrator.max_unacked_chunks, 4)

    def test_gzip_round_trip_on_a_channel(self) -> None:
        _orchestrator, module = self.start(gzip=True)
        response = self.successResultOf(module.request("GET", "/zeros?size=500000", via="tcp"))
        self.assertEqual(response.body, bytes(500000))
        body = b"compressible " * 40000
        response = self.successResultOf(
            module.request("POST", "/sha256", body=body, via="tcp", stream=True)
        )
        self.assertEqual(response.body.decode(), hashlib.sha256(body).hexdigest())

    def test_not_enabled_means_not_streamed(self) -> None:
        """
        Without X0 streaming the module never streams a response: one too large for a
        frame is the response_too_large 502.
        """
        orchestrator = FakeOrchestrator(
            channels=("tcp",), config=RuntimeConfig(max_frame_length=256 * 1024)
        )
        module = self.successResultOf(orchestrator.start(big_body_app))
        response = self.successResultOf(module.request("GET", "/blob?size=200000", via="tcp"))
        self.assertEqual(response.code, 502)
        self.assertEqual(response.json()["error"]["kind"], "response_too_large")

    def test_stall_fails_the_response(self) -> None:
        orchestrator, module = self.start(window=2, config=RuntimeConfig(stream_stall_timeout=30))
        orchestrator.pause_reading()
        d = module.request("GET", f"/blob?size={MiB}", via="tcp")
        orchestrator.reactor.advance(30)
        failure = self.failureResultOf(d, StreamFailed)
        self.assertEqual(failure.value.kind, "cancelled")
        self.assertIn("stall", failure.value.reason)


def big_reply_app(state):
    @state.handler("big")
    def big(source, content):
        return {"blob": "x" * content}

    return Klein()


class ModuleToModuleLimitTests(SynchronousTestCase):
    """
    Module-to-module bodies are limited to one frame (docs/streaming.md): a reply too
    large is replaced by a C{bad_reply} error naming the limit, never lost; a request
    too large fails at once.
    """

    def start(self) -> Any:
        orchestrator = FakeOrchestrator(
            channels=("tcp",), config=RuntimeConfig(max_frame_length=64 * 1024)
        )
        return self.successResultOf(orchestrator.start(big_reply_app))

    def test_reply_too_large_is_a_bad_reply_error(self) -> None:
        module = self.start()
        self.assertEqual(len(self.successResultOf(module.call("big", 1000))["blob"]), 1000)
        failure = self.failureResultOf(module.call("big", 100000), RemoteError)
        self.assertEqual(failure.value.kind, "bad_reply")
        self.assertIn("65536-byte frame limit", str(failure.value))

    def test_request_too_large_fails_at_once(self) -> None:
        module = self.start()
        state = module.state
        failure = self.failureResultOf(
            state.send_request("other", "x", {"blob": "y" * 100000}), MessageTooLarge
        )
        self.assertIn("65536", str(failure.value))
