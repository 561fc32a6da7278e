# -*- test-case-name: tests.runtime.test_redaction -*-
"""
The process-wide registry of secret values that must never reach a log line.

What is held is bounded: for each secret name, its current value and the last
C{history} values it had before (C{--redaction-history} / C{PYWATT_REDACTION_HISTORY});
older values are forgotten. Matching is an Aho-Corasick automaton over the held values
and their escaped forms: one pass over the text, whose cost does not depend on how many
values are held, and which is rebuilt from the held values only (so its size, and the
cost of adding a value, stay flat however many rotations there were).

Values of at least L{MIN_SUBSTRING_LENGTH} characters are redacted wherever they occur,
also inside longer words. Shorter values are redacted only as whole tokens: where the
characters right before and right after the occurrence are not letters, digits or
underscores (or the text starts or ends there). A token is a maximal run of letters,
digits and underscores, so a short secret C{"user"} is redacted in C{"user=..."} or
C{"the user"} but not in C{"username"} or C{"user_id"}.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import ahocorasick
from twisted.logger import Logger

from pywatt_twisted._runtime.secret import REDACTED, Secret

#: Values shorter than this are only redacted as whole tokens (see the module docstring).
MIN_SUBSTRING_LENGTH = 8

#: Past values kept per secret name when the redactor is not told otherwise (the
#: default of C{RuntimeConfig.redaction_history}).
DEFAULT_HISTORY = 3

log = Logger(namespace="pywatt_twisted._runtime.redaction")


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


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _whole_token(text: str, start: int, end: int) -> bool:
    """
    Whether C{text[start:end]} is not glued to a letter, digit or underscore on either
    side.
    """
    return (start == 0 or not _is_word(text[start - 1])) and (
        end == len(text) or not _is_word(text[end])
    )


class _Matcher:
    """
    An Aho-Corasick automaton (C{pyahocorasick}) over a fixed set of forms: finding every
    occurrence is one pass over the text, at C speed, whatever the number of forms.

    @ivar size: the number of trie nodes, for tests: it grows with the total length of
        the forms, nothing else.
    """

    __slots__ = ("_automaton", "size")

    def __init__(self, forms: Mapping[str, bool]) -> None:
        """
        @param forms: C{form -> whole_token_only}.
        """
        automaton = ahocorasick.Automaton()
        for form, whole in forms.items():
            automaton.add_word(form, (len(form), whole))
        self._automaton: ahocorasick.Automaton | None = None
        self.size = 0
        if forms:
            automaton.make_automaton()
            self._automaton = automaton
            self.size = automaton.get_stats()["nodes_count"]

    def spans(self, text: str, short: bool) -> list[tuple[int, int]]:
        """
        The C{(start, end)} of every occurrence of a form in C{text}; whole-token-only
        forms count only as whole tokens, and not at all unless C{short}.
        """
        if self._automaton is None:
            return []
        found: list[tuple[int, int]] = []
        for last, (length, whole) in self._automaton.iter(text):
            end = last + 1
            start = end - length
            if whole and not (short and _whole_token(text, start, end)):
                continue
            found.append((start, end))
        return found


_EMPTY = _Matcher({})


class Redactor:
    """
    Replaces registered secret values in a text with C{[REDACTED]}: the value as is, and
    its escaped forms (see L{variants}), so that a C{repr()} of an object, an exception or
    a container holding the value is redacted too. Values of at least
    L{MIN_SUBSTRING_LENGTH} characters are redacted also as substrings; shorter ones only
    as whole tokens (see the module docstring), and registering one logs a warning, once
    per name, that the secret is weak.

    A value added under a name replaces that name's current value; the replaced value
    stays redacted until C{history} newer values have replaced it (old log readers may
    still hold it), then it is forgotten, and the first time that happens is logged.
    Values added without a name stay for good. Thread-safe (stdlib logging may call from
    threads): a redaction reads the current automaton without locking.

    @ivar build_steps: characters put into the automaton by its last rebuild (the work of
        the last L{add}), for tests: it depends on the values held, not on how many
        values were ever added.
    """

    def __init__(self, history: int = DEFAULT_HISTORY) -> None:
        """
        @param history: past values still redacted per name after it changed.
        """
        self._check_history(history)
        self._history = history
        self._current: dict[str, str] = {}
        self._past: dict[str, deque[str]] = {}
        self._pinned: set[str] = set()
        self._forms_of: dict[str, dict[str, bool]] = {}
        self._warned_weak: set[str | None] = set()
        self._warned_history = False
        self._matcher = _EMPTY
        self._lock = threading.Lock()
        self.build_steps = 0

    @staticmethod
    def _check_history(history: int) -> None:
        if history < 0:
            raise ValueError(f"redaction history must be 0 or more values, got {history!r}")

    @property
    def history(self) -> int:
        """
        Past values still redacted per name.
        """
        return self._history

    def set_history(self, history: int) -> None:
        """
        Keep C{history} past values per name from now on (the oldest beyond it are
        forgotten at once).
        """
        self._check_history(history)
        with self._lock:
            self._history = history
            dropped = False
            for name, past in self._past.items():
                dropped = dropped or len(past) > history
                self._past[name] = deque(list(past)[len(past) - history :], maxlen=history)
            self._rebuild()
        if dropped:
            self._dropped_once()

    def add(self, value: str | Secret, name: str | None = None) -> None:
        """
        Register a value for redaction. Empty values are ignored.

        @param value: the value, or a L{Secret} (whose name is used when C{name} is not
            given).
        @param name: the secret this is the current value of; the previous value of the
            same name becomes history. Without a name (and not a L{Secret}), the value is
            kept for good.
        """
        if isinstance(value, Secret):
            text = value.expose()
            if name is None:
                name = value.name
        else:
            text = value
        if not text:
            return
        dropped = False
        weak = False
        with self._lock:
            if name is None:
                if text in self._pinned:
                    return
                self._pinned.add(text)
            else:
                current = self._current.get(name)
                if current == text:
                    return
                past = self._past.get(name)
                if past is None:
                    past = self._past[name] = deque(maxlen=self._history)
                if text in past:
                    past.remove(text)
                if current is not None and self._history:
                    dropped = len(past) == self._history
                    past.append(current)
                elif current is not None:
                    dropped = True
                self._current[name] = text
            if len(text) < MIN_SUBSTRING_LENGTH and name not in self._warned_weak:
                self._warned_weak.add(name)
                weak = True
            self._rebuild()
        if weak:
            log.warn(
                "secret {secret} is shorter than {minimum} characters: it is redacted from "
                "logs only where it stands as a whole word, not inside longer words; such "
                "a short secret is weak, use a longer one",
                secret=name if name is not None else "(unnamed)",
                minimum=MIN_SUBSTRING_LENGTH,
            )
        if dropped:
            self._dropped_once()

    def _dropped_once(self) -> None:
        if self._warned_history:
            return
        self._warned_history = True
        log.info(
            "a secret value older than the last {history} past value(s) of its name is no "
            "longer redacted from logs (the redaction history limit; raise it with "
            "--redaction-history or PYWATT_REDACTION_HISTORY)",
            history=self._history,
        )

    def add_all(self, values: Iterable[str | Secret]) -> None:
        for value in values:
            self.add(value)

    def _held(self) -> set[str]:
        held = set(self._pinned)
        held.update(self._current.values())
        for past in self._past.values():
            held.update(past)
        return held

    def _rebuild(self) -> None:
        held = self._held()
        for gone in set(self._forms_of) - held:
            del self._forms_of[gone]
        forms: dict[str, bool] = {}
        for value in held:
            value_forms = self._forms_of.get(value)
            if value_forms is None:
                whole = len(value) < MIN_SUBSTRING_LENGTH
                value_forms = self._forms_of[value] = dict.fromkeys(variants(value), whole)
            for form, whole in value_forms.items():
                # A form shared by a long and a short value is redacted as a substring.
                forms[form] = forms.get(form, True) and whole
        self.build_steps = sum(len(form) for form in forms)
        self._matcher = _Matcher(forms)

    def __len__(self) -> int:
        """
        The number of distinct values held (not counting their escaped forms).
        """
        with self._lock:
            return len(self._held())

    @property
    def matcher_size(self) -> int:
        """
        The number of states of the matching automaton (bounded by the values held).
        """
        return self._matcher.size

    def redact(self, text: str) -> str:
        """
        Return C{text} with every registered value replaced by C{[REDACTED]}: the
        leftmost occurrence first, the longest one where several start at one place.
        """
        return self._redact(text, short=True)

    def redact_key(self, text: str) -> str:
        """
        Like L{redact}, but only values of at least L{MIN_SUBSTRING_LENGTH} characters:
        for the keys of logged dicts, which are names more often than data, so a short
        secret such as C{"user"} does not rewrite a key named C{user}.
        """
        return self._redact(text, short=False)

    def _redact(self, text: str, short: bool) -> str:
        matcher = self._matcher
        if not matcher.size or not text:
            return text
        spans = matcher.spans(text, short)
        if not spans:
            return text
        spans.sort(key=lambda span: (span[0], -span[1]))
        out: list[str] = []
        cursor = 0
        for start, end in spans:
            if start >= cursor:
                out.append(text[cursor:start])
                out.append(REDACTED)
                cursor = end
        out.append(text[cursor:])
        return "".join(out)

    def redact_value(self, value: Any) -> Any:
        """
        Redact strings inside a JSON-like structure (dicts, lists, tuples); other values
        are turned into their redacted C{str()} if they are not plain JSON scalars. Dict
        keys go through L{redact_key}.
        """
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self.redact_key(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        if isinstance(value, bytes):
            return self.redact(value.decode("utf-8", "replace"))
        return self.redact(str(value))


#: The registry used by the module's log observers.
default_redactor = Redactor()
