"""
Tests for L{pywatt_twisted.wire.stream} and the X1 ops in L{pywatt_twisted.wire.codec}.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire.codec import (
    decode_from_module,
    decode_from_orchestrator,
    decode_init,
    encode,
    encode_init,
    encode_stdout_http_response,
)
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse
from pywatt_twisted.wire.stream import (
    GZIP_MIN_SIZE,
    ChunkError,
    StreamAck,
    StreamCancel,
    StreamChunk,
    StreamOptions,
    crc32,
    make_chunk,
    open_chunk,
)

#: The chunk of EXTENSIONS.md X1, with "hello" as its data.
SPEC_CHUNK = (
    b'{"op":"stream_chunk","stream_id":"s-1","sequence":0,"data":"aGVsbG8=",'
    b'"compressed":false,"checksum":907060870,"is_final":false}'
)


class SpecShapeTests(SynchronousTestCase):
    """
    The three X1 messages, byte for byte in the spec's field order, both directions.
    """

    def test_chunk_vector(self) -> None:
        chunk = make_chunk("s-1", 0, b"hello")
        self.assertEqual(chunk.checksum, zlib.crc32(b"hello"))
        self.assertEqual(encode(chunk), SPEC_CHUNK)
        self.assertEqual(decode_from_orchestrator(SPEC_CHUNK), chunk)
        self.assertEqual(decode_from_module(SPEC_CHUNK), chunk)

    def test_ack_vector(self) -> None:
        wire = b'{"op":"stream_ack","stream_id":"s-1","sequence":4,"success":true,"error":null}'
        self.assertEqual(encode(StreamAck("s-1", 4)), wire)
        self.assertEqual(decode_from_orchestrator(wire), StreamAck("s-1", 4))
        failed = StreamAck("s-1", 2, False, "checksum mismatch")
        self.assertEqual(decode_from_module(encode(failed)), failed)

    def test_cancel_vector(self) -> None:
        wire = b'{"op":"stream_cancel","stream_id":"s-1","reason":"stalled"}'
        self.assertEqual(encode(StreamCancel("s-1", "stalled")), wire)
        self.assertEqual(decode_from_module(wire), StreamCancel("s-1", "stalled"))

    def test_streamed_request(self) -> None:
        """
        C{http_request} with C{"body": null} and a C{stream_id}; without one the Rust
        form is unchanged (no C{stream_id} key).
        """
        wire = (
            b'{"op":"http_request","request_id":"r","method":"POST","uri":"/u",'
            b'"headers":{},"body":null,"stream_id":"s-9"}'
        )
        message = decode_from_orchestrator(wire)
        self.assertEqual(message, HttpRequest("r", "POST", "/u", {}, None, "s-9"))
        self.assertEqual(encode(message), wire)
        self.assertNotIn(b"stream_id", encode(HttpRequest("r", "GET", "/", {})))

    def test_streamed_response_on_stdout(self) -> None:
        """
        On stdout the stream id goes inside the wrapper's content.
        """
        response = HttpResponse("r", 200, {"a": "b"}, b"", "s-2")
        line = encode_stdout_http_response(response, source="m")
        obj = json.loads(line)
        self.assertEqual(obj["content"]["stream_id"], "s-2")
        self.assertEqual(obj["content"]["body"], [])
        self.assertEqual(decode_from_module(line), response)
        plain = encode_stdout_http_response(HttpResponse("r", 200, {}, b"x"), source="m")
        self.assertNotIn(b"stream_id", plain)

    def test_channel_response(self) -> None:
        response = HttpResponse("r", 200, {}, b"", "s-3")
        self.assertEqual(decode_from_module(encode(response)), response)

    def test_bad_fields(self) -> None:
        for wire, field in [
            (
                b'{"op":"stream_chunk","stream_id":"s","sequence":0,"data":"%%%","checksum":0}',
                "stream_chunk.data",
            ),
            (
                b'{"op":"stream_chunk","stream_id":"s","sequence":-1,"data":"","checksum":0}',
                "stream_chunk.sequence",
            ),
            (
                b'{"op":"stream_chunk","stream_id":"s","sequence":0,"data":"","checksum":4294967296}',
                "stream_chunk.checksum",
            ),
            (b'{"op":"stream_ack","sequence":0}', "stream_ack.stream_id"),
        ]:
            error = self.assertRaises(ProtocolError, decode_from_orchestrator, wire)
            self.assertEqual(error.field, field)


class NegotiationTests(SynchronousTestCase):
    BLOB = {
        "orchestrator_api": "http://127.0.0.1:9900",
        "module_id": "m",
        "env": {},
        "listen": "127.0.0.1:0",
        "security_level": "None",
    }

    def test_x0_example(self) -> None:
        blob = decode_init(
            {
                **self.BLOB,
                "extensions": {
                    "streaming": {"chunk_size": 65536, "window": 8},
                    "compression": ["gzip"],
                    "trace_context": True,
                },
            }
        )
        self.assertEqual(
            StreamOptions.from_extensions(blob.extensions), StreamOptions(65536, 8, True)
        )
        self.assertEqual(decode_init(encode_init(blob)), blob)

    def test_off_and_defaults(self) -> None:
        self.assertIsNone(StreamOptions.from_extensions(decode_init(self.BLOB).extensions))
        self.assertNotIn(b"extensions", encode_init(decode_init(self.BLOB)))
        self.assertIsNone(StreamOptions.from_extensions({"compression": ["gzip"]}))
        self.assertEqual(StreamOptions.from_extensions({"streaming": {}}), StreamOptions())
        self.assertEqual(
            StreamOptions.from_extensions({"streaming": {"chunk_size": 2**40, "window": 0}}),
            StreamOptions(4 * 1024 * 1024, 1, False),
        )

    def test_bad_values(self) -> None:
        self.assertRaises(ProtocolError, StreamOptions.from_extensions, {"streaming": 3})
        self.assertRaises(
            ProtocolError, StreamOptions.from_extensions, {"streaming": {"window": "8"}}
        )
        self.assertRaises(ProtocolError, decode_init, {**self.BLOB, "extensions": [1]})


class ChunkTests(SynchronousTestCase):
    def test_crc32_is_zlibs(self) -> None:
        """
        L{crc32} (ISA-L's when installed) is zlib's CRC-32, unsigned, on every kind of
        buffer and size, including empty and unaligned views.
        """
        data = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(9000))
        cases: list[bytes | bytearray | memoryview] = [
            b"",
            b"a",
            b"\xff" * 7,
            data,
            bytearray(data[:1001]),
            memoryview(data)[3:65539],
        ]
        for case in cases:
            self.assertEqual(crc32(case), zlib.crc32(case) & 0xFFFFFFFF)
        self.assertEqual(crc32(b"123456789"), 0xCBF43926)  # (the CRC-32 check value)

    def test_gzip_round_trip(self) -> None:
        data = b"abcdefgh" * 512
        chunk = make_chunk("s", 3, data, gzip=True, is_final=True)
        self.assertTrue(chunk.compressed)
        self.assertLess(len(chunk.data), len(data) // 10)
        self.assertEqual(gzip.decompress(chunk.data), data)  # RFC 1952
        self.assertEqual(chunk.checksum, crc32(data))
        self.assertEqual(open_chunk(decode_from_orchestrator(encode(chunk)), 65536), data)

    def test_not_worth_it(self) -> None:
        """
        Random bytes do not shrink by 10 %: sent as they are. Under 1 KiB: never
        compressed. Without gzip enabled: never compressed.
        """
        noise = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(128))
        self.assertFalse(make_chunk("s", 0, noise, gzip=True).compressed)
        self.assertFalse(make_chunk("s", 0, b"a" * (GZIP_MIN_SIZE - 1), gzip=True).compressed)
        self.assertTrue(make_chunk("s", 0, b"a" * GZIP_MIN_SIZE, gzip=True).compressed)
        self.assertFalse(make_chunk("s", 0, b"a" * 4096).compressed)

    def test_checksum_mismatch(self) -> None:
        chunk = StreamChunk("s", 0, b"hello", False, crc32(b"hellO"), False)
        error = self.assertRaises(ChunkError, open_chunk, chunk, 100)
        self.assertEqual(error.kind, "checksum")

    def test_bad_gzip(self) -> None:
        chunk = StreamChunk("s", 0, b"not gzip", True, 0, False)
        self.assertEqual(self.assertRaises(ChunkError, open_chunk, chunk, 100).kind, "compression")
        truncated = make_chunk("s", 0, b"x" * 5000, gzip=True).data[:-4]
        chunk = StreamChunk("s", 0, truncated, True, crc32(b"x" * 5000), False)
        self.assertEqual(
            self.assertRaises(ChunkError, open_chunk, chunk, 10000).kind, "compression"
        )

    def test_bomb_is_bounded(self) -> None:
        """
        A compressed chunk that inflates beyond the bound is refused without being
        inflated whole.
        """
        chunk = make_chunk("s", 0, b"\0" * (8 * 1024 * 1024), gzip=True)
        self.assertLess(len(chunk.data), 20000)
        error = self.assertRaises(ChunkError, open_chunk, chunk, 65536)
        self.assertEqual(error.kind, "too_large")

    def test_plain_too_large(self) -> None:
        chunk = make_chunk("s", 0, b"x" * 101)
        self.assertEqual(self.assertRaises(ChunkError, open_chunk, chunk, 100).kind, "too_large")

    @given(
        st.binary(max_size=5000)
        | st.builds(lambda n, b: b * n, st.integers(1, 3000), st.binary(min_size=1, max_size=3)),
        st.booleans(),
        st.integers(0, 2**63),
        st.booleans(),
    )
    @settings(max_examples=200)
    def test_round_trip(self, data: bytes, use_gzip: bool, sequence: int, final: bool) -> None:
        """
        Any bytes survive make_chunk -> JSON -> decode -> open_chunk; compression only
        when it saved at least 10 % of a chunk of at least 1 KiB.
        """
        chunk = make_chunk("id", sequence, data, gzip=use_gzip, is_final=final)
        if chunk.compressed:
            self.assertTrue(use_gzip and len(data) >= GZIP_MIN_SIZE)
            self.assertLessEqual(len(chunk.data), len(data) * 0.9)
        wire = json.loads(encode(chunk))
        self.assertEqual(base64.b64decode(wire["data"]), chunk.data)
        decoded = decode_from_module(encode(chunk))
        self.assertEqual(decoded, chunk)
        self.assertEqual(open_chunk(decoded, max(len(data), 1)), data)

    @given(st.binary(min_size=1, max_size=300), st.integers(0, 299), st.integers(1, 255))
    def test_any_corruption_is_caught(self, data: bytes, where: int, flip: int) -> None:
        """
        Changing any byte of the carried data is a checksum (or gzip) error.
        """
        chunk = make_chunk("id", 0, data)
        where %= len(data)
        bad = bytearray(chunk.data)
        bad[where] ^= flip
        corrupted = StreamChunk("id", 0, bytes(bad), False, chunk.checksum, False)
        self.assertRaises(ChunkError, open_chunk, corrupted, 1000)
