"""
Tests for L{pywatt_twisted.wire.framing}.
"""

from __future__ import annotations

import base64
import struct

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import FrameError, FrameTooLarge, UnsupportedFrameFormat
from pywatt_twisted.testing.strategies import chunkings, frame_streams, frames
from pywatt_twisted.wire.framing import (
    DEFAULT_MAX_FRAME_LENGTH,
    FORMAT_AUTO,
    FORMAT_BASE64,
    FORMAT_BINARY,
    FORMAT_JSON,
    HEADER_LENGTH,
    Frame,
    FrameDecoder,
    UnknownFrameFormat,
    build_frame,
    encode_frame,
    frame_header,
    frame_json,
)

HEARTBEAT = b'{"op":"heartbeat"}'


def raw(payload: bytes, fmt: int = FORMAT_JSON) -> bytes:
    """
    A frame built independently of L{encode_frame}.
    """
    return len(payload).to_bytes(4, "big") + bytes([fmt]) + payload


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Frame | FrameError]:
    out: list[Frame | FrameError] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def comparable(items: list[Frame | FrameError]) -> list[object]:
    return [item if isinstance(item, Frame) else (type(item), str(item)) for item in items]


class EncodeTests(SynchronousTestCase):
    def test_layout(self) -> None:
        """
        4-byte big-endian length, the format byte, the payload (vector heartbeat_channel).
        """
        self.assertEqual(
            encode_frame(HEARTBEAT), bytes.fromhex("00000012017b226f70223a22686561727462656174227d")
        )
        self.assertEqual(encode_frame(b"", FORMAT_BASE64), b"\x00\x00\x00\x00\x03")
        self.assertEqual(frame_header(70000), struct.pack(">IB", 70000, 1))
        self.assertEqual(HEADER_LENGTH, 5)
        self.assertEqual(DEFAULT_MAX_FRAME_LENGTH, 16 * 1024 * 1024)

    def test_cap(self) -> None:
        """
        A payload over the cap raises L{FrameTooLarge}; one at the cap is fine.
        """
        self.assertEqual(encode_frame(b"x" * 10, max_frame_length=10), raw(b"x" * 10))
        error = self.assertRaises(FrameTooLarge, encode_frame, b"x" * 11, max_frame_length=10)
        self.assertEqual((error.length, error.limit), (11, 10))


class DecoderTests(SynchronousTestCase):
    def test_one_frame(self) -> None:
        """
        A whole frame in one feed gives one L{Frame}.
        """
        self.assertEqual(FrameDecoder().feed(raw(HEARTBEAT)), [Frame(FORMAT_JSON, HEARTBEAT)])

    def test_many_and_empty(self) -> None:
        """
        Many frames (empty payloads too) in one chunk come out in order.
        """
        data = raw(b"a") + raw(b"", FORMAT_BINARY) + raw(b"ccc", FORMAT_AUTO)
        self.assertEqual(
            FrameDecoder().feed(data),
            [Frame(1, b"a"), Frame(FORMAT_BINARY, b""), Frame(FORMAT_AUTO, b"ccc")],
        )

    def test_partial_and_buffered(self) -> None:
        """
        Partial headers and payloads are held (and counted in C{buffered}) until complete.
        """
        decoder = FrameDecoder()
        data = raw(b"hello") + raw(b"x")
        self.assertEqual(decoder.feed(data[:3]), [])
        self.assertEqual(decoder.buffered, 3)
        self.assertEqual(decoder.feed(data[3:7]), [])
        self.assertEqual(decoder.buffered, 7)
        self.assertEqual(decoder.feed(data[7:9]), [])
        self.assertEqual(decoder.buffered, 9)
        self.assertEqual(decoder.feed(data[9:12]), [Frame(1, b"hello")])
        self.assertEqual(decoder.buffered, 2)
        self.assertEqual(decoder.feed(data[12:]), [Frame(1, b"x")])
        self.assertEqual(decoder.buffered, 0)
        self.assertEqual(decoder.feed(b""), [])

    def test_too_large(self) -> None:
        """
        A header over the cap is reported as a value after the good frames before it;
        no payload byte is buffered; the decoder then stays failed.
        """
        decoder = FrameDecoder(max_frame_length=100)
        out = decoder.feed(raw(b"ok") + struct.pack(">IB", 101, 1) + b"x" * 50)
        self.assertEqual(out[0], Frame(1, b"ok"))
        self.assertIsInstance(out[1], FrameTooLarge)
        self.assertEqual((out[1].length, out[1].limit), (101, 100))  # type: ignore[union-attr]
        self.assertEqual(len(out), 2)
        self.assertTrue(decoder.failed)
        self.assertEqual(decoder.buffered, 0)
        self.assertEqual(decoder.feed(raw(b"later")), [])

    def test_huge_header_alone(self) -> None:
        """
        A 4 GiB announcement is refused from the header alone.
        """
        decoder = FrameDecoder()
        [error] = decoder.feed(b"\xff\xff\xff\xff\x01")
        self.assertIsInstance(error, FrameTooLarge)
        self.assertTrue(decoder.failed)

    def test_at_cap(self) -> None:
        """
        A frame exactly at the cap is accepted.
        """
        self.assertEqual(FrameDecoder(max_frame_length=4).feed(raw(b"1234")), [Frame(1, b"1234")])

    def test_unknown_format(self) -> None:
        """
        A format byte above 3 is reported as L{UnknownFrameFormat} in the frame's place
        and the stream goes on, also when the frame spans feeds.
        """
        decoder = FrameDecoder()
        data = raw(b"a") + raw(b"bad-payload", 9) + raw(b"c")
        out = decoder.feed(data[:12]) + decoder.feed(data[12:])
        self.assertEqual(out[0], Frame(1, b"a"))
        self.assertIsInstance(out[1], UnknownFrameFormat)
        self.assertEqual((out[1].format, out[1].length), (9, 11))  # type: ignore[union-attr]
        self.assertEqual(out[2], Frame(1, b"c"))
        self.assertFalse(decoder.failed)
        self.assertIn("got 9", str(out[1]))

    def test_large_frame_in_small_chunks(self) -> None:
        """
        A 1 MiB payload fed in 1000-byte chunks comes out whole, once.
        """
        payload = bytes(range(256)) * 4096
        data = raw(payload) + raw(b"tail")
        decoder = FrameDecoder()
        out = feed_all(decoder, [data[i : i + 1000] for i in range(0, len(data), 1000)])
        self.assertEqual(out, [Frame(1, payload), Frame(1, b"tail")])
        self.assertIsInstance(out[0].payload, bytes)  # type: ignore[union-attr]

    def test_missing(self) -> None:
        """
        L{FrameDecoder.missing} is what is still to come of a started payload.
        """
        decoder = FrameDecoder()
        data = raw(b"a" * 100)
        self.assertEqual(decoder.missing, 0)
        decoder.feed(data[:3])  # (a partial header: no payload started)
        self.assertEqual(decoder.missing, 0)
        decoder.feed(data[3:30])
        self.assertEqual(decoder.missing, 75)
        decoder.feed(data[30:])
        self.assertEqual(decoder.missing, 0)

    def test_payload_start_large_or_small(self) -> None:
        """
        A payload that starts near the end of a large read (a small start, copied) or
        early in it (a large start, held as a view of the read) comes out whole, as
        bytes, and the read it started in may be reused by its owner afterwards.
        """
        payload = bytes(range(256)) * 1024  # 256 KiB
        for start in (100, 40000):
            with self.subTest(start=start):
                decoder = FrameDecoder()
                first = raw(b"x" * (65536 - start - 10)) + raw(payload)
                read = bytearray(first[:65536])
                out = decoder.feed(read)  # type: ignore[arg-type]
                self.assertEqual(len(out), 1)
                read[:] = b"\0" * len(read)  # (a reused buffer: must not matter)
                out = decoder.feed(first[65536:])
                self.assertEqual(out, [Frame(1, payload)])
                self.assertIs(type(out[0].payload), bytes)  # type: ignore[union-attr]

    def test_accepts_bytearray_and_memoryview(self) -> None:
        """
        Transports may hand over other buffer types.
        """
        decoder = FrameDecoder()
        data = raw(b"xyz")
        self.assertEqual(
            decoder.feed(bytearray(data[:6])) + decoder.feed(memoryview(data[6:])),  # type: ignore[arg-type]
            [Frame(1, b"xyz")],
        )

    @settings(deadline=None)
    @given(st.data(), frame_streams())
    def test_any_chunking(self, data: st.DataObject, stream: list[Frame]) -> None:
        """
        However the stream is cut (byte at a time included), the same frames come out.
        """
        encoded = b"".join(raw(f.payload, f.format) for f in stream)
        chunks = data.draw(chunkings(encoded))
        decoder = FrameDecoder()
        self.assertEqual(feed_all(decoder, chunks), stream)
        self.assertEqual(decoder.buffered, 0)

    @settings(deadline=None)
    @given(st.data(), frame_streams(), frames(max_payload=64))
    def test_truncated(self, data: st.DataObject, stream: list[Frame], last: Frame) -> None:
        """
        A stream cut short delivers the complete frames and nothing of the last one,
        which is held in C{buffered}.
        """
        complete = b"".join(raw(f.payload, f.format) for f in stream)
        tail = raw(last.payload, last.format)
        cut = data.draw(st.integers(0, len(tail) - 1))
        chunks = data.draw(chunkings(complete + tail[:cut]))
        decoder = FrameDecoder()
        self.assertEqual(feed_all(decoder, chunks), stream)
        self.assertEqual(decoder.buffered, cut)

    @settings(deadline=None)
    @given(st.data(), frame_streams(), frame_streams())
    def test_oversize_mid_stream(
        self, data: st.DataObject, before: list[Frame], after: list[Frame]
    ) -> None:
        """
        An oversize header anywhere: the frames before it, then one L{FrameTooLarge}
        value, then nothing; never an exception, whatever the chunking.
        """
        limit = 300
        encoded = (
            b"".join(raw(f.payload, f.format) for f in before)
            + struct.pack(">IB", data.draw(st.integers(limit + 1, 2**32 - 1)), 1)
            + b"".join(raw(f.payload, f.format) for f in after)
        )
        decoder = FrameDecoder(max_frame_length=limit)
        out = feed_all(decoder, data.draw(chunkings(encoded)))
        self.assertEqual(out[:-1], before)
        self.assertIsInstance(out[-1], FrameTooLarge)
        self.assertTrue(decoder.failed)

    @settings(deadline=None)
    @given(st.data(), st.lists(frames(formats=st.integers(0, 255)), max_size=6))
    def test_bad_formats_are_values(self, data: st.DataObject, stream: list[Frame]) -> None:
        """
        Frames with any format byte: valid ones as frames, the rest as
        L{UnknownFrameFormat} values in place, whatever the chunking.
        """
        encoded = b"".join(raw(f.payload, f.format) for f in stream)
        expected = comparable(
            [f if f.format <= 3 else UnknownFrameFormat(f.format, len(f.payload)) for f in stream]
        )
        out = feed_all(FrameDecoder(), data.draw(chunkings(encoded)))
        self.assertEqual(comparable(out), expected)


class BuiltFrameTests(SynchronousTestCase):
    """
    The frames the decoder makes (L{build_frame}, and its inline form in the decoder's
    scan) are the objects C{Frame(fmt, payload)} makes: exactly of class L{Frame},
    frozen, equal, hashed and shown alike.
    """

    def assertLikeConstructed(self, frame: object, fmt: int, payload: bytes) -> None:
        made = Frame(fmt, payload)
        self.assertIs(type(frame), Frame)
        self.assertEqual(frame, made)
        self.assertEqual(hash(frame), hash(made))
        self.assertEqual(repr(frame), repr(made))
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, frame, "payload", b"")

    def test_build_frame(self) -> None:
        self.assertLikeConstructed(build_frame(FORMAT_BINARY, b"abc"), FORMAT_BINARY, b"abc")

    def test_decoded(self) -> None:
        decoder = FrameDecoder()
        # whole frames in one read (the scan), then one spanning two reads
        encoded = raw(HEARTBEAT) + raw(b"abc", FORMAT_BINARY) + raw(b"xyz", FORMAT_BASE64)
        one, two, three = decoder.feed(encoded[:-2]) + decoder.feed(encoded[-2:])
        self.assertLikeConstructed(one, FORMAT_JSON, HEARTBEAT)
        self.assertLikeConstructed(two, FORMAT_BINARY, b"abc")
        self.assertLikeConstructed(three, FORMAT_BASE64, b"xyz")


class JsonPayloadsTests(SynchronousTestCase):
    """
    L{FrameDecoder} with C{json_payloads}: the payload bytes of each JSON frame in
    place of its L{Frame}; everything else as without it.
    """

    @settings(deadline=None)
    @given(st.data(), st.lists(frames(formats=st.integers(0, 255)), max_size=6))
    def test_json_frames_as_bytes_whatever_the_chunking(
        self, data: st.DataObject, stream: list[Frame]
    ) -> None:
        encoded = b"".join(raw(f.payload, f.format) for f in stream)
        chunks = data.draw(chunkings(encoded))
        plain = feed_all(FrameDecoder(), chunks)
        expected = [
            item.payload if isinstance(item, Frame) and item.format == FORMAT_JSON else item
            for item in plain
        ]
        out: list[object] = []
        decoder = FrameDecoder(json_payloads=True)
        for chunk in chunks:
            out.extend(decoder.feed(chunk))
        self.assertEqual(
            [x if isinstance(x, (bytes, Frame)) else (type(x), str(x)) for x in out],
            [x if isinstance(x, (bytes, Frame)) else (type(x), str(x)) for x in expected],
        )
        self.assertEqual(
            [type(x) for x in out if not isinstance(x, FrameError)],
            [bytes if f.format == FORMAT_JSON else Frame for f in stream if f.format <= 3],
        )

    def test_spanning_json_frame_as_bytes(self) -> None:
        """
        A JSON frame whose payload comes over several feeds is given as bytes too.
        """
        decoder = FrameDecoder(json_payloads=True)
        encoded = raw(HEARTBEAT) + raw(b"abc", FORMAT_BINARY)
        self.assertEqual(decoder.feed(encoded[:7]), [])
        self.assertEqual(decoder.feed(encoded[7:12]), [])
        self.assertEqual(decoder.feed(encoded[12:]), [HEARTBEAT, Frame(FORMAT_BINARY, b"abc")])


class FrameJsonTests(SynchronousTestCase):
    def test_formats(self) -> None:
        """
        1, 2 and 0 pass the payload through; 3 is base64-decoded.
        """
        for fmt in (FORMAT_JSON, FORMAT_BINARY, FORMAT_AUTO):
            self.assertEqual(frame_json(Frame(fmt, HEARTBEAT)), HEARTBEAT)
        encoded = base64.b64encode(HEARTBEAT)
        self.assertEqual(frame_json(Frame(FORMAT_BASE64, encoded)), HEARTBEAT)

    def test_bad_base64(self) -> None:
        """
        A Base64 frame that is not base64 raises L{UnsupportedFrameFormat}.
        """
        error = self.assertRaises(
            UnsupportedFrameFormat, frame_json, Frame(FORMAT_BASE64, b"{not base64}")
        )
        self.assertIn("base64", str(error))

    def test_unknown(self) -> None:
        """
        Any other format byte raises L{UnsupportedFrameFormat}.
        """
        error = self.assertRaises(UnsupportedFrameFormat, frame_json, Frame(4, HEARTBEAT))
        self.assertIsInstance(error, UnknownFrameFormat)
