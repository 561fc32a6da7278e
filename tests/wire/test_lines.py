"""
Tests for L{pywatt_twisted.wire.lines}.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import LineTooLong
from pywatt_twisted.testing.strategies import chunkings
from pywatt_twisted.wire.lines import DEFAULT_MAX_LINE_LENGTH, LineDecoder


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
