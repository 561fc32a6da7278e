# -*- test-case-name: tests.wire.test_framing -*-
"""
Channel framing (PROTOCOL.md section 4): a 4-byte big-endian payload length, one format
byte, then the payload.

::

    offset 0   4 bytes   payload length N (unsigned, big-endian, header not included)
    offset 4   1 byte    format: 1 JSON, 2 "Binary", 3 Base64 (0 "Auto", never written)
    offset 5   N bytes   payload

L{encode_frame} writes frames; L{FrameDecoder} reads them incrementally from any
chunking of the stream, checking the length cap on the header before it buffers a
single payload byte. L{frame_json} turns a frame into JSON text by the accept rules.

Nothing here raises in the middle of a stream: problems come out of
L{FrameDecoder.feed} as L{FrameError} values next to the good frames.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Final

from attrs import frozen

from pywatt_twisted.errors import FrameError, FrameTooLarge, UnsupportedFrameFormat
from pywatt_twisted.wire._value import Value, unfrozen

__all__ = [
    "DEFAULT_MAX_FRAME_LENGTH",
    "FORMAT_AUTO",
    "FORMAT_BASE64",
    "FORMAT_BINARY",
    "FORMAT_JSON",
    "FORMAT_NAMES",
    "HEADER_LENGTH",
    "Frame",
    "FrameDecoder",
    "UnknownFrameFormat",
    "encode_frame",
    "frame_header",
    "frame_json",
]

FORMAT_AUTO: Final = 0
FORMAT_JSON: Final = 1
FORMAT_BINARY: Final = 2
FORMAT_BASE64: Final = 3

FORMAT_NAMES: Final = {
    FORMAT_AUTO: "Auto",
    FORMAT_JSON: "Json",
    FORMAT_BINARY: "Binary",
    FORMAT_BASE64: "Base64",
}
"""Format byte -> the Rust C{EncodingFormat} variant name."""

DEFAULT_MAX_FRAME_LENGTH: Final = 16 * 1024 * 1024
"""Default cap on a frame's payload length (16 MiB), both directions."""

HEADER_LENGTH: Final = 5
"""Bytes before the payload: 4 length bytes and the format byte."""

_HEADER: Final = struct.Struct(">IB")

#: The start of a payload at least this long is held as a view of the read it came in
#: (see L{FrameDecoder._scan}).
_VIEW_MIN: Final = 16384
_unpack_header = _HEADER.unpack_from
_pack_header = _HEADER.pack


class UnknownFrameFormat(UnsupportedFrameFormat):
    """
    A frame's format byte is none of 0-3. L{FrameDecoder} reports it as a value and skips
    the frame (its length is known, so the stream stays in sync).

    @ivar format: the format byte.
    @ivar length: the payload length that was skipped.
    """

    def __init__(self, format: int, length: int) -> None:
        super().__init__(
            f"expected a frame format byte of 1 (JSON), 2, 3 (Base64) or 0, got {format}; "
            f"the frame ({length} bytes) was skipped"
        )
        self.format = format
        self.length = length


@frozen(eq=False, repr=False)
class Frame(Value):
    """
    One decoded frame.

    @ivar format: the format byte (see C{FORMAT_*}).
    @ivar payload: the payload bytes.
    """

    format: int
    payload: bytes


_UnfrozenFrame = unfrozen(Frame)


def build_frame(fmt: int, payload: bytes) -> Frame:
    """
    (Internal: for the library's own readers, not part of the public API.)
    C{Frame(fmt, payload)}, built as an unfrozen twin switched to L{Frame}
    (L{unfrozen}): the decoder makes one per frame, and the frozen class's generated
    C{__init__} costs about three times as much (4.0k against 1.4k instructions; it has
    no validators or converters to skip).
    """
    frame = _UnfrozenFrame()
    frame.format = fmt
    frame.payload = payload
    frame.__class__ = Frame
    return frame  # type: ignore[no-any-return]


def frame_header(length: int, format: int = FORMAT_JSON) -> bytes:
    """
    The 5 header bytes of a frame with a C{length}-byte payload, for writing a header and
    a large payload separately (C{transport.writeSequence}) without concatenating them.
    """
    return _pack_header(length, format)


def encode_frame(
    payload: bytes,
    format: int = FORMAT_JSON,
    max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
) -> bytes:
    """
    Frame C{payload}.

    @param format: the format byte; leave it at L{FORMAT_JSON} for protocol messages.
    @raise FrameTooLarge: if C{payload} is longer than C{max_frame_length}.
    """
    length = len(payload)
    if length > max_frame_length:
        raise FrameTooLarge(length, max_frame_length)
    return _pack_header(length, format) + payload


def frame_json(frame: Frame) -> bytes:
    """
    The JSON text a frame carries (PROTOCOL.md 4.2 accept rules):

      - 1 (JSON): the payload as is;
      - 3 (Base64): the payload base64-decoded;
      - 2 (Binary): the payload as is. Real bincode is never produced by any peer, and a
        Rust sender labels JSON as Binary; whether it I{is} JSON is decided by the
        caller's JSON decode, which then fails for non-JSON bytes;
      - 0 (Auto, the Python SDK's JSON code): the payload as is, leniently (the caller
        should log a warning).

    @raise UnsupportedFrameFormat: for any other format byte, or a Base64 frame whose
        payload is not base64.
    """
    fmt = frame.format
    if fmt == FORMAT_JSON or fmt == FORMAT_BINARY or fmt == FORMAT_AUTO:
        return frame.payload
    if fmt == FORMAT_BASE64:
        try:
            return base64.b64decode(frame.payload, validate=True)
        except (binascii.Error, ValueError):
            raise UnsupportedFrameFormat(
                "expected standard base64 in a format-3 (Base64) frame, got other bytes; "
                "the frame was dropped"
            )
    raise UnknownFrameFormat(fmt, len(frame.payload))


class FrameDecoder:
    """
    Incremental frame reader: feed it whatever the transport delivers.

    Cost is linear in the bytes fed: a frame whose payload spans many reads is
    collected as a list of chunks and joined once; many small frames in one read are
    cut out of it by offset.

    @ivar failed: C{True} once a frame header announced more than the maximum frame
        length. The stream cannot be trusted past that point, so later feeds return
        C{[]} and the caller must abort the connection.
    """

    failed: bool

    json_payloads: bool = False
    """
    Give the payload of each JSON frame (format 1) as its C{bytes} in place of a
    L{Frame} (other formats still come as L{Frame}s): a reader that only wants the
    JSON is spared building a frame object per frame. Off by default.
    """

    def __init__(
        self, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH, json_payloads: bool = False
    ) -> None:
        self.max_frame_length = max_frame_length
        self.json_payloads = json_payloads
        self.failed = False
        # A partial header (fewer than 5 bytes) held between feeds.
        self._head = b""
        # While a payload is incomplete: its format, its length, the chunks so far.
        self._need = -1
        self._format = 0
        self._chunks: list[bytes | memoryview] = []
        self._have = 0

    @property
    def buffered(self) -> int:
        """
        The number of bytes received and held, waiting for the rest of their frame.
        """
        if self._need >= 0:
            return HEADER_LENGTH + self._have
        return len(self._head)

    @property
    def missing(self) -> int:
        """
        The number of bytes still to come of a payload whose start arrived (0 when
        no payload is incomplete).
        """
        need = self._need
        return need - self._have if need >= 0 else 0

    def feed(self, data: bytes) -> list[Frame | FrameError | bytes]:
        """
        Consume C{data}; return the frames it completed, in order, with a L{FrameError}
        value in place of each bad one (L{UnknownFrameFormat}: the frame was skipped;
        L{FrameTooLarge}: the decoder has failed, see L{failed}). With
        L{json_payloads}, a JSON frame comes as its payload C{bytes}.
        """
        if self.failed or not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        out: list[Frame | FrameError | bytes] = []
        pos = 0
        need = self._need
        if need >= 0:
            have = self._have
            size = len(data)
            if have + size < need:
                self._chunks.append(data)
                self._have = have + size
                return out
            take = need - have
            chunks = self._chunks
            if chunks:
                chunks.append(memoryview(data)[:take] if take < size else data)
                payload = b"".join(chunks)
            else:
                payload = data[:take] if take < size else data
            self._chunks = []
            self._have = 0
            self._need = -1
            self._emit(out, self._format, payload)
            if take == size:
                return out
            pos = take
        elif self._head:
            data = self._head + data
            self._head = b""
        self._scan(out, data, pos)
        return out

    def _emit(self, out: list[Frame | FrameError | bytes], fmt: int, payload: bytes) -> None:
        if fmt == FORMAT_JSON and self.json_payloads:
            out.append(payload)
        elif fmt <= FORMAT_BASE64:
            out.append(build_frame(fmt, payload))
        else:
            out.append(UnknownFrameFormat(fmt, len(payload)))

    def _scan(self, out: list[Frame | FrameError | bytes], data: bytes, pos: int) -> None:
        size = len(data)
        limit = self.max_frame_length
        append = out.append
        unfrozen_frame = _UnfrozenFrame
        # the format byte given as bytes (-1: none, every frame is a Frame)
        as_bytes = FORMAT_JSON if self.json_payloads else -1
        while size - pos >= HEADER_LENGTH:
            length, fmt = _unpack_header(data, pos)
            if length > limit:
                self.failed = True
                append(FrameTooLarge(length, limit))
                return
            start = pos + HEADER_LENGTH
            end = start + length
            if end > size:
                self._need = length
                self._format = fmt
                # (a large start of a payload is held as a view: its bytes are copied
                # once, by the join; a small one is copied, not to hold the whole read)
                if start >= size:
                    self._chunks = []
                elif size - start >= _VIEW_MIN:
                    self._chunks = [memoryview(data)[start:]]
                else:
                    self._chunks = [data[start:]]
                self._have = size - start
                return
            if fmt == as_bytes:
                append(data[start:end])
            elif fmt <= FORMAT_BASE64:
                frame = unfrozen_frame()  # build_frame(fmt, payload), inline
                frame.format = fmt
                frame.payload = data[start:end]
                frame.__class__ = Frame
                append(frame)
            else:
                append(UnknownFrameFormat(fmt, length))
            pos = end
        if pos < size:
            self._head = data[pos:]
