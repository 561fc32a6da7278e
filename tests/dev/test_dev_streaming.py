"""
Integration: large bodies through C{pywatt dev}'s front port, streamed to and from a
real module process as X1 chunks (EXTENSIONS.md), with chunked transfer encoding to the
HTTP client.
"""

from __future__ import annotations

import hashlib

import treq
from twisted.trial.unittest import TestCase

from tests.dev.process import start_dev
from tests.runtime.modules import pattern

MiB = 1024 * 1024


class DevStreamingTests(TestCase):
    timeout = 120

    async def test_large_upload_and_download(self) -> None:
        proto, base = await start_dev(self, "--module=big=tests.runtime.modules:big_body_app")
        await proto.wait_for(r"big announced")
        body = pattern(24 * MiB, seed=5)
        response = await treq.post(f"{base}/big/sha256", data=body, persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual((await response.text()), hashlib.sha256(body).hexdigest())

        # The same body to a route that reads it as it arrives (@incremental_body).
        response = await treq.post(f"{base}/big/incremental/sha256", data=body, persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual((await response.text()), hashlib.sha256(body).hexdigest())

        response = await treq.get(f"{base}/big/blob?size={24 * MiB}", persistent=False)
        self.assertEqual(response.code, 200)
        # Relayed as it arrives: no content-length (chunked transfer encoding).
        self.assertIsNone(response.headers.getRawHeaders(b"content-length"))
        digest = hashlib.sha256()
        await treq.collect(response, digest.update)
        self.assertEqual(digest.hexdigest(), hashlib.sha256(pattern(24 * MiB)).hexdigest())
