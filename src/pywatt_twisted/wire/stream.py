# -*- test-case-name: tests.wire.test_stream -*-
"""
Streamed bodies and compression on the wire (EXTENSIONS.md X0-X2), as plain values.

  - L{StreamChunk}, L{StreamAck}, L{StreamCancel}: the three X1 messages (both
    directions), defined with every other op in L{pywatt_twisted.wire.messages} and
    re-exported here; their JSON codec is L{pywatt_twisted.wire.codec}.
  - L{StreamOptions}: what the orchestrator enabled in the init blob's
    C{extensions} (X0), L{StreamOptions.from_extensions}.
  - L{make_chunk} / L{open_chunk}: build a chunk from body bytes (CRC-32 of the
    uncompressed bytes; gzip when enabled, the chunk is at least L{GZIP_MIN_SIZE}
    bytes and it saves at least 10 %) and check and unpack one (decompress when
    marked, bounded; verify the checksum).

No I/O and no reactor: the per-stream state machines (window, acks, stall timer) that
use these are in L{pywatt_twisted.streaming}.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Final

from attrs import frozen

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire._value import Value
from pywatt_twisted.wire.messages import StreamAck, StreamCancel, StreamChunk

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_WINDOW",
    "GZIP_MIN_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_WINDOW",
    "ChunkError",
    "StreamAck",
    "StreamCancel",
    "StreamChunk",
    "StreamOptions",
    "crc32",
    "gzip_enabled",
    "make_chunk",
    "open_chunk",
]

#: X0 default chunk size in bytes.
DEFAULT_CHUNK_SIZE: Final = 65536

#: X0 default window: chunks a sender may have unacknowledged.
DEFAULT_WINDOW: Final = 8

#: X1 default: seconds without a chunk before the receiver cancels the stream.
DEFAULT_STALL_TIMEOUT: Final = 60.0

#: X2: chunks smaller than this are never compressed.
GZIP_MIN_SIZE: Final = 1024

#: The largest chunk size and window accepted from an init blob (a blob asking for
#: more is clamped, and the clamp is visible in L{StreamOptions}): 4 MiB x 64.
MAX_CHUNK_SIZE: Final = 4 * 1024 * 1024
MAX_WINDOW: Final = 64


class ChunkError(ProtocolError):
    """
    A received chunk cannot be used: bad base64, bad gzip, a checksum mismatch, or it
    unpacks to more than the chunk size allows. The receiver answers it with a failed
    L{StreamAck} and cancels the stream.

    @ivar kind: C{"checksum"}, C{"gap"}, C{"compression"}, C{"too_large"},
        C{"unknown_stream"}.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


try:
    # ISA-L's CRC-32 (the same checksum, SIMD: about 12x zlib's on a 256 KiB chunk,
    # which zlib takes ~65 us for: the largest per-byte cost of a chunk on each side)
    from isal.isal_zlib import crc32 as _fast_crc32
except ImportError:  # pragma: no cover (isal is a dependency; zlib is the same checksum)
    _fast_crc32 = zlib.crc32


def crc32(data: bytes | bytearray | memoryview) -> int:
    """
    The CRC-32 (ISO-HDLC, as zlib and Rust's crc32fast) of C{data}, unsigned.
    """
    return _fast_crc32(data) & 0xFFFFFFFF


@frozen(eq=False, repr=False)
class StreamOptions(Value):
    """
    What the orchestrator enabled (X0), or what a sender uses.

    @ivar chunk_size: uncompressed bytes per chunk.
    @ivar window: chunks a sender may have unacknowledged.
    @ivar gzip: compress chunks (X2).
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    window: int = DEFAULT_WINDOW
    gzip: bool = False

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}, got {self.chunk_size}")
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW}, got {self.window}")

    @classmethod
    def from_extensions(cls, extensions: Mapping[str, Any] | None) -> StreamOptions | None:
        """
        The streaming options of an init blob's C{extensions} object, or C{None} when
        streaming is off (no C{streaming} key). Missing values take the X0 defaults;
        values out of range are clamped to 1..L{MAX_CHUNK_SIZE} and 1..L{MAX_WINDOW}.

        @raise ProtocolError: a value of the wrong type, naming the field.
        """
        if not extensions:
            return None
        streaming = extensions.get("streaming")
        if streaming is None or streaming is False:
            return None
        if streaming is True:
            streaming = {}
        if not isinstance(streaming, Mapping):
            raise ProtocolError(
                f"expected an object, got {type(streaming).__name__}",
                field="extensions.streaming",
            )
        chunk_size = _count(streaming, "chunk_size", DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE)
        window = _count(streaming, "window", DEFAULT_WINDOW, MAX_WINDOW)
        return cls(chunk_size=chunk_size, window=window, gzip=gzip_enabled(extensions))


def gzip_enabled(extensions: Mapping[str, Any] | None) -> bool:
    """
    Whether C{"gzip"} is in the C{extensions.compression} list (X2).
    """
    if not extensions:
        return False
    compression = extensions.get("compression")
    return isinstance(compression, list) and "gzip" in compression


def _count(obj: Mapping[str, Any], key: str, default: int, maximum: int) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is not int:
        raise ProtocolError(
            f"expected a positive integer, got {value!r}", field=f"extensions.streaming.{key}"
        )
    return min(max(value, 1), maximum)


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def make_chunk(
    stream_id: str, sequence: int, data: bytes, *, is_final: bool = False, gzip: bool = False
) -> StreamChunk:
    """
    The chunk carrying C{data}. With C{gzip}, a chunk of at least L{GZIP_MIN_SIZE}
    bytes is compressed unless that saves less than 10 % (then it goes as is).
    """
    data = bytes(data)
    checksum = crc32(data)
    if gzip and len(data) >= GZIP_MIN_SIZE:
        packed = _gzip(data)
        if len(packed) <= len(data) * 0.9:
            return StreamChunk(stream_id, sequence, packed, True, checksum, is_final)
    return StreamChunk(stream_id, sequence, data, False, checksum, is_final)


def open_chunk(chunk: StreamChunk, max_size: int) -> bytes:
    """
    The uncompressed bytes of C{chunk}, checked against its checksum.

    @param max_size: the most bytes a chunk may unpack to (a compressed chunk that
        inflates to more is refused without inflating it all).
    @raise ChunkError: C{compression}, C{too_large} or C{checksum}.
    """
    data = chunk.data
    if chunk.compressed:
        inflater = zlib.decompressobj(31)
        try:
            data = inflater.decompress(data, max_size + 1)
        except zlib.error as e:
            raise ChunkError(
                "compression", f"chunk {chunk.sequence} is marked compressed but is not gzip: {e}"
            ) from None
        if len(data) > max_size or inflater.unconsumed_tail:
            raise ChunkError(
                "too_large", f"chunk {chunk.sequence} inflates to more than {max_size} bytes"
            )
        if not inflater.eof:
            raise ChunkError("compression", f"chunk {chunk.sequence}: truncated gzip data")
    elif len(data) > max_size:
        raise ChunkError(
            "too_large", f"chunk {chunk.sequence} carries {len(data)} bytes, above {max_size}"
        )
    actual = crc32(data)
    if actual != chunk.checksum:
        raise ChunkError(
            "checksum",
            f"checksum mismatch on chunk {chunk.sequence}: expected {chunk.checksum}, "
            f"computed {actual} over {len(data)} bytes",
        )
    return data
