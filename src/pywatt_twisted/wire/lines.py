# -*- test-case-name: tests.wire.test_lines -*-
"""
Splitting the stdio streams into lines (PROTOCOL.md sections 2.2 and 3).

One JSON object per C{\\n}-terminated line. A trailing C{\\r} is stripped, blank
(whitespace-only) lines are skipped, and a line longer than the cap (1 MiB by default,
the same cap the original SDKs put on the init line) is reported once and discarded up
to the next newline, without buffering it.
"""

from __future__ import annotations

from typing import Final

from pywatt_twisted.errors import LineTooLong

__all__ = ["DEFAULT_MAX_LINE_LENGTH", "LineDecoder", "LineTooLong"]

DEFAULT_MAX_LINE_LENGTH: Final = 1024 * 1024
"""Default cap on a line's length in bytes, not counting the newline (1 MiB)."""


class LineDecoder:
    """
    Incremental line splitter: feed it whatever the pipe delivers.

    @ivar max_line_length: the cap, in bytes before the C{\\n} (a trailing C{\\r}
        counts).
    """

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        self.max_line_length = max_line_length
        self._partial: list[bytes] = []
        self._partial_length = 0
        self._discarding = False

    @property
    def buffered(self) -> int:
        """
        The number of bytes held of a line whose newline has not arrived yet.
        """
        return self._partial_length

    def _too_long(self) -> LineTooLong:
        return LineTooLong(
            f"expected a line of at most {self.max_line_length} bytes, got a longer one; "
            "it was discarded up to its newline"
        )

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
        limit = self.max_line_length
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
            if len(line) > limit:
                out.append(self._too_long())
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            out.append(line)
        if rest:
            total = self._partial_length + len(rest)
            if total > limit:
                out.append(self._too_long())
                self._partial = []
                self._partial_length = 0
                self._discarding = True
            else:
                self._partial.append(rest)
                self._partial_length = total
        return out
