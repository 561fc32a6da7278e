"""
L{pywatt_twisted._transport._read_size.ReadSize}: a transport's read size raised and put
back.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._transport._read_size import ReadSize, SendLimit


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


class _Sender:
    # (as Twisted's socket transports: the limit is a class attribute)
    SEND_LIMIT = 128 * 1024


class SendLimitTests(SynchronousTestCase):
    def test_raised_and_restored(self) -> None:
        """
        L{SendLimit} raises C{SEND_LIMIT}, not the read size, and puts it back.
        """
        transport = _Sender()
        limit = SendLimit()
        limit.raise_to(transport, 1 << 20)
        self.assertEqual((transport.SEND_LIMIT, limit.normal), (1 << 20, 128 * 1024))
        self.assertEqual(_Sender.SEND_LIMIT, 128 * 1024)
        limit.restore()
        self.assertEqual((transport.SEND_LIMIT, limit.normal), (128 * 1024, None))

    def test_transport_without_a_send_limit(self) -> None:
        # (an in-memory transport, TLS's: left as it is)
        transport = _Transport(65536)
        limit = SendLimit()
        limit.raise_to(transport, 1 << 20)
        limit.restore()
        self.assertFalse(hasattr(transport, "SEND_LIMIT"))
        self.assertEqual(transport.bufferSize, 65536)
