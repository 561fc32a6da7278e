"""
L{pywatt_twisted._transport._read_size.ReadSize}: a transport's read size raised and put
back.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._transport._read_size import ReadSize


class _Transport:
    def __init__(self, size: object) -> None:
        self.bufferSize = size


class ReadSizeTests(SynchronousTestCase):
    def test_raised_and_restored(self) -> None:
        transport = _Transport(65536)
        size = ReadSize()
        size.raise_to(transport, 262144)
        self.assertEqual((transport.bufferSize, size.normal), (262144, 65536))
        size.restore()
        self.assertEqual((transport.bufferSize, size.normal), (65536, None))
        size.restore()  # (nothing to put back)
        self.assertEqual(transport.bufferSize, 65536)

    def test_raised_once(self) -> None:
        # A second raise while raised keeps the transport's own size to put back.
        transport = _Transport(65536)
        size = ReadSize()
        size.raise_to(transport, 262144)
        size.raise_to(transport, 524288)
        self.assertEqual(transport.bufferSize, 262144)
        size.restore()
        self.assertEqual(transport.bufferSize, 65536)

    def test_never_lowered(self) -> None:
        transport = _Transport(1 << 20)
        size = ReadSize()
        size.raise_to(transport, 262144)
        self.assertEqual((transport.bufferSize, size.normal), (1 << 20, None))

    def test_no_integer_buffer_size(self) -> None:
        # TLS's transport, or none at all: left as it is.
        transport = _Transport(None)
        size = ReadSize()
        size.raise_to(transport, 262144)
        size.raise_to(None, 262144)
        size.restore()
        self.assertIsNone(transport.bufferSize)
        self.assertIsNone(size.normal)
