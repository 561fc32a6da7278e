"""
Tests for L{pywatt_twisted.wire.lines}.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import LineTooLong
from pywatt_twisted.testing.strategies import chunkings
from pywatt_twisted.wire.lines import (
    DEFAULT_MAX_LINE_LENGTH,
    HEAD_BYTES,
    LineDecoder,
    http_request_id,
)


def feed_all(decoder: LineDecoder, chunks: list[bytes]) -> list[bytes | LineTooLong]:
    out: list[bytes | LineTooLong] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def reference(data: bytes, limit: int) -> list[object]:
    """
    What a L{LineDecoder} must produce for C{data}, written the obvious way:
    C{"too long"} in place of each over-long line (finished or not).
    """
    out: list[object] = []
    *complete, rest = data.split(b"\n")
    for line in complete:
        if len(line) > limit:
            out.append("too long")
            continue
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip(b" \t\r\n\x0b\x0c"):
            out.append(line)
    if len(rest) > limit:
        # An unfinished line is reported as soon as it is known to be too long.
        out.append("too long")
    return out


def comparable(items: list[bytes | LineTooLong]) -> list[object]:
    return ["too long" if isinstance(item, LineTooLong) else item for item in items]


class LineDecoderTests(SynchronousTestCase):
    def test_split(self) -> None:
        """
        Lines split on C{\\n}; a trailing C{\\r} is stripped; blank and whitespace-only
        lines are skipped; the last partial line is held.
        """
        decoder = LineDecoder()
        self.assertEqual(
            decoder.feed(b'{"a":1}\r\n\n  \t\r\n{"b":2}\n{"c"'), [b'{"a":1}', b'{"b":2}']
        )
        self.assertEqual(decoder.buffered, 4)
        self.assertEqual(decoder.feed(b":3}\n"), [b'{"c":3}'])
        self.assertEqual(decoder.buffered, 0)
        self.assertEqual(DEFAULT_MAX_LINE_LENGTH, 1024 * 1024)

    def test_interior_carriage_return_kept(self) -> None:
        """
        Only one trailing C{\\r} is stripped.
        """
        self.assertEqual(LineDecoder().feed(b"a\rb\r\r\n"), [b"a\rb\r"])

    def test_too_long_in_one_chunk(self) -> None:
        """
        A complete over-long line becomes one L{LineTooLong}; the next lines are fine.
        """
        decoder = LineDecoder(max_line_length=5)
        out = decoder.feed(b"12345\n123456\nok\n")
        self.assertEqual(out[0], b"12345")
        self.assertIsInstance(out[1], LineTooLong)
        self.assertEqual(out[2], b"ok")
        self.assertIn("at most 5 bytes", str(out[1]))

    def test_too_long_across_chunks(self) -> None:
        """
        An over-long line is reported once, as soon as it passes the cap, and its bytes
        are dropped (not buffered) up to the newline.
        """
        decoder = LineDecoder(max_line_length=10)
        self.assertEqual(decoder.feed(b"0123456789"), [])
        [error] = decoder.feed(b"abc")
        self.assertIsInstance(error, LineTooLong)
        self.assertEqual(decoder.buffered, 0)
        for _ in range(100):
            self.assertEqual(decoder.feed(b"x" * 1000), [])
            self.assertEqual(decoder.buffered, 0)
        self.assertEqual(decoder.feed(b"tail\nnext\n"), [b"next"])

    @settings(deadline=None)
    @given(
        st.data(),
        st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=10),
    )
    def test_any_chunking(self, data: st.DataObject, lines: list[bytes]) -> None:
        """
        However the input is cut, the output is the reference split, with one
        L{LineTooLong} per over-long line, and at most the cap is ever buffered.
        """
        limit = 6
        stream = b"".join(line + b"\n" for line in lines)
        decoder = LineDecoder(max_line_length=limit)
        out: list[bytes | LineTooLong] = []
        for chunk in data.draw(chunkings(stream)):
            out.extend(decoder.feed(chunk))
            self.assertLessEqual(decoder.buffered, limit)
        self.assertEqual(comparable(out), reference(stream, limit))
        self.assertEqual(decoder.buffered, 0)

    @settings(deadline=None)
    @given(st.data(), st.binary(max_size=80))
    def test_arbitrary_bytes(self, data: st.DataObject, stream: bytes) -> None:
        """
        Arbitrary bytes never raise and match the reference.
        """
        decoder = LineDecoder(max_line_length=8)
        out = feed_all(decoder, data.draw(chunkings(stream)))
        self.assertEqual(comparable(out), reference(stream, 8))


class FirstLineCapTests(SynchronousTestCase):
    def test_first_line_has_its_own_cap(self) -> None:
        """
        The first line (the init line) is checked against C{first_line_length}, every
        later line against C{max_line_length}; blank lines do not count as first.
        """
        decoder = LineDecoder(max_line_length=20, first_line_length=5)
        out = decoder.feed(b"\n  \n123456\n" + b"x" * 20 + b"\n")
        self.assertEqual(comparable(out), ["too long", b"x" * 20])
        decoder = LineDecoder(max_line_length=20, first_line_length=5)
        self.assertEqual(decoder.feed(b"12345\n" + b"y" * 20 + b"\n"), [b"12345", b"y" * 20])

    def test_unfinished_first_line(self) -> None:
        decoder = LineDecoder(max_line_length=20, first_line_length=5)
        self.assertEqual(comparable(decoder.feed(b"123456")), ["too long"])
        self.assertEqual(decoder.feed(b"7\n" + b"z" * 19 + b"\n"), [b"z" * 19])

    @given(st.binary(max_size=3 * HEAD_BYTES), st.data())
    @settings(max_examples=50)
    def test_head_of_discarded_line(self, data: bytes, draw: st.DataObject) -> None:
        """
        An over-long line's L{LineTooLong} keeps its first bytes (and the cap), however
        it was split across reads: what had arrived when it became too long, at most
        L{HEAD_BYTES}, so always more than the cap when the cap is below L{HEAD_BYTES}.
        """
        data = data.replace(b"\n", b"_")
        decoder = LineDecoder(max_line_length=10)
        out = feed_all(decoder, draw.draw(chunkings(data + b"!" * 11 + b"\n")))
        [error] = out
        assert isinstance(error, LineTooLong)
        line = data + b"!" * 11
        self.assertTrue(line.startswith(error.head))
        self.assertGreater(len(error.head), 10)
        self.assertLessEqual(len(error.head), HEAD_BYTES)
        self.assertEqual(error.limit, 10)


class HttpRequestIdTests(SynchronousTestCase):
    def test_rust_field_order(self) -> None:
        head = b'{"op":"http_request","request_id":"r-\\"1","method":"POST","uri":"/","he'
        self.assertEqual(http_request_id(head), 'r-"1')

    def test_spaced_json(self) -> None:
        head = json.dumps({"op": "http_request", "request_id": "abc", "body": [1, 2]}).encode()
        self.assertEqual(http_request_id(head[:60]), "abc")

    def test_not_a_request(self) -> None:
        self.assertIsNone(http_request_id(b'{"op":"secret","request_id":"x"'))
        self.assertIsNone(http_request_id(b'{"op":"http_request","method":"GET"'))
        self.assertIsNone(http_request_id(b"garbage"))

    @given(st.text(min_size=1, max_size=100))
    def test_any_id(self, request_id: str) -> None:
        """
        Whatever the id, the JSON encoders' output gives it back.
        """
        head = json.dumps(
            {"op": "http_request", "request_id": request_id, "method": "GET"},
            separators=(",", ":"),
        ).encode()
        self.assertEqual(http_request_id(head), request_id)
