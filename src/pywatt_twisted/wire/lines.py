# -*- test-case-name: tests.wire.test_lines -*-
"""
Splitting the stdio streams into lines (PROTOCOL.md sections 2.2 and 3).

One JSON object per C{\\n}-terminated line. A trailing C{\\r} is stripped, blank
(whitespace-only) lines are skipped, and a line longer than the cap is reported once and
discarded up to the next newline, without buffering it (its first bytes are kept, so an
over-long C{http_request} can still be answered by its id: L{http_request_id}). The
first line, the init line, has its own cap (1 MiB, as the original SDKs); the runtime
lets later lines be as long as a channel frame.
"""

from __future__ import annotations

import json
import re
from typing import Final

from pywatt_twisted.errors import LineTooLong

__all__ = [
    "DEFAULT_MAX_INIT_LENGTH",
    "DEFAULT_MAX_LINE_LENGTH",
    "HEAD_BYTES",
    "LineDecoder",
    "LineTooLong",
    "http_request_id",
]

DEFAULT_MAX_INIT_LENGTH: Final = 1024 * 1024
"""Default cap on the init line (the first line) in bytes, as the original SDKs (1 MiB)."""

DEFAULT_MAX_LINE_LENGTH: Final = DEFAULT_MAX_INIT_LENGTH
"""Default cap on a line's length in bytes, not counting the newline (1 MiB). The
runtime raises it to the frame cap for the lines after the init line."""

HEAD_BYTES: Final = 4096
"""How many bytes of a discarded over-long line L{LineTooLong.head} keeps."""

_OP_HTTP_REQUEST = re.compile(rb'^\s*\{\s*"op"\s*:\s*"http_request"\s*,')
_REQUEST_ID = re.compile(rb'"request_id"\s*:\s*"((?:[^"\\]|\\.){1,2000})"')


def http_request_id(head: bytes) -> str | None:
    """
    The C{request_id} of an C{http_request} line known only by its first bytes (an
    over-long line, discarded unparsed), or C{None} when C{head} does not start like
    one. The encoders put C{op} first and C{request_id} right after it (Rust field
    order), before the body, so the head of even a huge request names it.
    """
    if not _OP_HTTP_REQUEST.match(head):
        return None
    found = _REQUEST_ID.search(head)
    if found is None:
        return None
    raw = found.group(1)
    try:
        value = json.loads(b'"' + raw + b'"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


class LineDecoder:
    """
    Incremental line splitter: feed it whatever the pipe delivers.

    @ivar max_line_length: the cap, in bytes before the C{\\n} (a trailing C{\\r}
        counts).
    @ivar first_line_length: the cap on the first line (the init line) when it differs
        from C{max_line_length}; C{None} when the same cap applies to every line.
    """

    def __init__(
        self,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        first_line_length: int | None = None,
    ) -> None:
        self.max_line_length = max_line_length
        self.first_line_length = first_line_length
        self._first = first_line_length is not None
        self._partial: list[bytes] = []
        self._partial_length = 0
        self._discarding = False

    @property
    def buffered(self) -> int:
        """
        The number of bytes held of a line whose newline has not arrived yet.
        """
        return self._partial_length

    def _limit(self) -> int:
        if self._first:
            assert self.first_line_length is not None
            return self.first_line_length
        return self.max_line_length

    def _too_long(self, limit: int, head: bytes) -> LineTooLong:
        self._first = False
        return LineTooLong(
            f"expected a line of at most {limit} bytes, got a longer one; "
            "it was discarded up to its newline",
            head=head[:HEAD_BYTES],
            limit=limit,
        )

    def _head_of_partial(self, rest: bytes) -> bytes:
        head = b""
        for piece in self._partial:
            head += piece[: HEAD_BYTES - len(head)]
            if len(head) >= HEAD_BYTES:
                return head
        return head + rest[: HEAD_BYTES - len(head)]

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """
        Consume C{data}; return the complete lines it finished (without C{\\r\\n}), in
        order, with one L{LineTooLong} value in place of each over-long line.
        """
        out: list[bytes | LineTooLong] = []
        if not data:
            return out
        if type(data) is not bytes:
            data = bytes(data)
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return out
            self._discarding = False
            data = data[newline + 1 :]
        parts = data.split(b"\n")
        rest = parts.pop()
        if parts and self._partial:
            self._partial.append(parts[0])
            parts[0] = b"".join(self._partial)
            self._partial = []
            self._partial_length = 0
        for line in parts:
            limit = self._limit()
            if len(line) > limit:
                out.append(self._too_long(limit, line))
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            self._first = False
            out.append(line)
        if rest:
            limit = self._limit()
            total = self._partial_length + len(rest)
            if total > limit:
                out.append(self._too_long(limit, self._head_of_partial(rest)))
                self._partial = []
                self._partial_length = 0
                self._discarding = True
            else:
                self._partial.append(rest)
                self._partial_length = total
        return out
