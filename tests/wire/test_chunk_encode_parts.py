"""
L{encode_stream_chunk_parts}: a C{stream_chunk} encoded in three pieces around its
base64 (written with C{writeSequence}, never copied into the JSON text) gives exactly
the bytes of L{encode}, whatever the stream id, numbers and flags; and the channel
server's C{send} writes the same frame as before with it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.orchestrator import ChannelServer
from pywatt_twisted.orchestrator._channel_server import ModuleConnection
from pywatt_twisted.wire import envelope
from pywatt_twisted.wire.codec import (
    decode_envelope_from_module,
    decode_from_orchestrator,
    encode,
    encode_stream_chunk_parts,
)
from pywatt_twisted.wire.envelope import encode_channel_frame
from pywatt_twisted.wire.framing import FORMAT_JSON, encode_frame
from pywatt_twisted.wire.messages import StreamAck, StreamChunk

ODD_IDS = [
    "s-1",
    "",
    '"data":""',
    'x","data":"',
    "\\",
    "d\u00e4ta \u2603 \U0001f600",
    "\x00\x1f\n",
]


class EncodeStreamChunkPartsTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        stream_id=st.text() | st.sampled_from(ODD_IDS),
        sequence=st.integers(min_value=0, max_value=2**63 - 1),
        data=st.binary(max_size=3000),
        compressed=st.booleans(),
        checksum=st.integers(min_value=0, max_value=2**32 - 1),
        is_final=st.booleans(),
    )
    def test_same_bytes_as_encode(
        self,
        stream_id: str,
        sequence: int,
        data: bytes,
        compressed: bool,
        checksum: int,
        is_final: bool,
    ) -> None:
        chunk = StreamChunk(stream_id, sequence, data, compressed, checksum, is_final)
        head, b64, tail = encode_stream_chunk_parts(chunk)
        self.assertEqual(head + b64 + tail, encode(chunk))
        self.assertEqual(decode_from_orchestrator(head + b64 + tail), chunk)

    def test_large_chunk(self) -> None:
        data = bytes(range(256)) * 1024
        chunk = StreamChunk("dev-1", 7, data, False, 99, True)
        head, b64, tail = encode_stream_chunk_parts(chunk)
        self.assertEqual(head + b64 + tail, encode(chunk))
        self.assertLess(len(head) + len(tail), 200)  # (the base64 is its own piece)


class ChannelServerSendTests(SynchronousTestCase):
    def connection(self) -> tuple[ModuleConnection, StringTransport]:
        connection = ModuleConnection(ChannelServer(Clock()))
        transport = StringTransport()
        connection.makeConnection(transport)
        return connection, transport

    def test_reads_256_kib(self) -> None:
        """
        A module's socket is read 256 KiB at a time (a transport that reads less by
        default is raised; one without the attribute is left alone).
        """
        connection = ModuleConnection(ChannelServer(Clock()))
        transport = StringTransport()
        transport.bufferSize = 65536  # type: ignore[attr-defined]
        connection.makeConnection(transport)
        self.assertEqual(transport.bufferSize, 256 * 1024)  # type: ignore[attr-defined]
        bare = StringTransport()
        ModuleConnection(ChannelServer(Clock())).makeConnection(bare)
        self.assertFalse(hasattr(bare, "bufferSize"))

    def test_chunk_frame_as_before(self) -> None:
        """
        A chunk goes out as the same frame C{encode_frame(encode(chunk))} gives;
        other messages as before.
        """
        connection, transport = self.connection()
        for message in (
            StreamChunk('s"1', 3, b"\x00\xff" * 40000, False, 5, False),
            StreamChunk("s", 4, b"", True, 0, True),
            StreamAck("s", 3),
        ):
            transport.clear()
            connection.send(message)
            self.assertEqual(transport.value(), encode_frame(encode(message), FORMAT_JSON, 1 << 32))


class ChannelFrameTests(SynchronousTestCase):
    """
    A module's chunk frame (L{encode_channel_frame}, no metadata) takes the joined
    path: the same bytes as the general one, whatever the chunk.
    """

    def general(self, chunk: StreamChunk, id_bytes: bytes) -> bytes:
        payload = b'{"id":"' + id_bytes + b'","content":' + encode(chunk) + b',"metadata":{}}'
        return encode_frame(payload, FORMAT_JSON, 1 << 32)

    @settings(max_examples=100, deadline=None)
    @given(
        stream_id=st.text() | st.sampled_from(ODD_IDS),
        sequence=st.integers(min_value=0, max_value=2**63 - 1),
        data=st.binary(max_size=3000),
        is_final=st.booleans(),
    )
    def test_same_bytes(self, stream_id: str, sequence: int, data: bytes, is_final: bool) -> None:
        chunk = StreamChunk(stream_id, sequence, data, False, 77, is_final)
        self.patch(envelope, "envelope_id_bytes", lambda: b"0123abcd-0000-4000-8000-000000000001")
        frame = encode_channel_frame(chunk, 1 << 32)
        self.assertEqual(frame, self.general(chunk, b"0123abcd-0000-4000-8000-000000000001"))
        self.assertEqual(decode_envelope_from_module(frame[5:]).content, chunk)

    def test_too_large(self) -> None:
        from pywatt_twisted.errors import MessageTooLarge

        chunk = StreamChunk("s", 0, b"x" * 3000, False, 0, False)
        self.assertRaises(MessageTooLarge, encode_channel_frame, chunk, 3000)

    def test_with_metadata_as_before(self) -> None:
        chunk = StreamChunk("s", 0, b"abc", False, 0, False)
        frame = encode_channel_frame(chunk, 1 << 32, {"source": "m"})
        self.assertEqual(decode_envelope_from_module(frame[5:]).content, chunk)
