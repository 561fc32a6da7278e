# -*- test-case-name: tests.runtime.test_redaction -*-
"""
The process-wide registry of secret values that must never reach a log line.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Any

from pywatt_twisted.runtime.secret import REDACTED, Secret


def _python_escape(text: str, escape_single: bool) -> str:
    """
    C{text} as it appears inside a Python C{repr()} of a string: backslashes doubled,
    non-printable characters escaped, and the single quote escaped when the repr is
    single-quoted and the string also holds a double quote.
    """
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'" if escape_single else "'")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def _bytes_escape(text: str, escape_single: bool) -> str:
    """
    C{text} as it appears inside the C{repr()} of its UTF-8 bytes.
    """
    inner = repr(("'\"" if escape_single else "").encode() + text.encode("utf-8", "replace"))
    return inner[2 + (3 if escape_single else 0) : -1]


def _escape_forms(text: str) -> set[str]:
    forms = {
        _python_escape(text, True),
        _python_escape(text, False),
        _bytes_escape(text, True),
        _bytes_escape(text, False),
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
    }
    return forms


def variants(value: str) -> set[str]:
    """
    The forms in which C{value} can show up in a log line: as is, and escaped once or
    twice the way C{repr()} (of a string, of bytes, of a container or an exception that
    holds one) or JSON would escape it.
    """
    first = _escape_forms(value)
    result = {value} | first
    for form in first:
        result |= _escape_forms(form)
    return {v for v in result if v}


class Redactor:
    """
    Replaces every registered secret value, wherever it occurs in a text (also as a
    substring), with C{[REDACTED]}: the value as is, and its escaped forms (see
    L{variants}), so that a C{repr()} of an object, an exception or a container holding
    the value is redacted too.

    Values are only ever added: a value that was rotated away stays redacted, since old
    log readers may still hold it. Thread-safe (stdlib logging may call from threads).
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str | Secret) -> None:
        """
        Register a value (or a L{Secret}'s value) for redaction. Empty values are ignored.
        """
        text = value.expose() if isinstance(value, Secret) else value
        if not text:
            return
        with self._lock:
            if text in self._values:
                return
            self._values.add(text)
            self._forms |= variants(text)
            # Longest first, so a value that contains another is replaced whole.
            ordered = sorted(self._forms, key=lambda v: (-len(v), v))
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def add_all(self, values: Iterable[str | Secret]) -> None:
        for value in values:
            self.add(value)

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """
        Return C{text} with every registered value replaced by C{[REDACTED]}.
        """
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def redact_value(self, value: Any) -> Any:
        """
        Redact strings inside a JSON-like structure (dicts, lists, tuples); other values
        are turned into their redacted C{str()} if they are not plain JSON scalars.
        """
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        if isinstance(value, bytes):
            return self.redact(value.decode("utf-8", "replace"))
        return self.redact(str(value))


#: The registry used by the module's log observers.
default_redactor = Redactor()
