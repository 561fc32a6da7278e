"""
The uploads module's own tests, with FakeOrchestrator: files of several MiB go in as
streamed chunks and come back through FileSender, on a channel, within the window.

    trial examples.uploads.test_module
"""

import hashlib
import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from examples.uploads.module import create_app
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.stream import StreamOptions

MiB = 1024 * 1024


class UploadsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.patch(os, "environ", {**os.environ, "UPLOAD_DIR": self.directory})
        self.orch = FakeOrchestrator(channels=["tcp"], streaming=StreamOptions(65536, 4))
        self.module = self.successResultOf(self.orch.start(create_app))

    def test_upload_is_read_incrementally(self) -> None:
        body = os.urandom(3 * MiB)
        d = self.module.request("PUT", "/files/a.bin", body=body, via="tcp", stream=True)
        answer = self.successResultOf(d).json()
        self.assertEqual(
            answer, {"name": "a.bin", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        )
        with open(os.path.join(self.directory, "a.bin"), "rb") as f:
            self.assertEqual(f.read(), body)
        self.assertLessEqual(self.orch.uploads[-1].max_unacked, 4)

    def test_file_sender_download(self) -> None:
        """
        A route that sends a file with twisted's FileSender is streamed out, paused
        while the window is full: a reader that stops acknowledging holds the module
        at 4 chunks.
        """
        body = os.urandom(2 * MiB + 123)
        with open(os.path.join(self.directory, "b.bin"), "wb") as f:
            f.write(body)
        self.orch.pause_reading()
        d = self.module.request("GET", "/files/b.bin", via="tcp")
        self.assertNoResult(d)
        self.assertEqual(self.orch.max_unacked_chunks, 4)
        self.orch.resume_reading()
        self.orch.reactor.pump([0] * 200)
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, body)
        self.assertEqual(self.orch.max_unacked_chunks, 4)

    def test_bad_name(self) -> None:
        d = self.module.request("GET", "/files/..secret", via="tcp")
        self.assertEqual(self.successResultOf(d).code, 400)
