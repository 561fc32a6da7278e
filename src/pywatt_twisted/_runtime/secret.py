# -*- test-case-name: tests.runtime.test_secret -*-
"""
L{Secret}: a secret value that does not leak by accident.
"""

from __future__ import annotations

import json
from typing import Any

from pywatt_twisted.errors import SecretError

REDACTED = "[REDACTED]"

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


class Secret:
    """
    A secret value received from the orchestrator (or a secret provider).

    C{str()} and C{repr()} give C{[REDACTED]}, so logging or formatting a L{Secret} never
    shows its value; C{json.dumps} refuses it; L{expose} returns the value itself. Two
    secrets compare equal when name and value are equal.

    The typed accessors raise L{SecretError} naming the secret, never showing the value.
    """

    __slots__ = ("_name", "_rotation_id", "_value")

    def __init__(self, name: str, value: str, rotation_id: str | None = None) -> None:
        self._name = name
        self._value = value
        self._rotation_id = rotation_id

    @property
    def name(self) -> str:
        """
        The secret's name (not secret).
        """
        return self._name

    @property
    def rotation_id(self) -> str | None:
        """
        The rotation that delivered this value, if any.
        """
        return self._rotation_id

    def expose(self) -> str:
        """
        The secret value itself. Call this at the last moment, where the value is used.
        """
        return self._value

    def expose_bytes(self) -> bytes:
        """
        The secret value encoded as UTF-8.
        """
        return self._value.encode("utf-8")

    def get_int(self) -> int:
        """
        The value as an integer.

        @raise SecretError: if it is not one.
        """
        try:
            return int(self._value.strip())
        except ValueError:
            raise SecretError(f"secret {self._name!r} is not an integer") from None

    def get_float(self) -> float:
        """
        The value as a float.

        @raise SecretError: if it is not one.
        """
        try:
            return float(self._value.strip())
        except ValueError:
            raise SecretError(f"secret {self._name!r} is not a number") from None

    def get_bool(self) -> bool:
        """
        The value as a boolean: C{1/true/yes/on} or C{0/false/no/off} (any case).

        @raise SecretError: for anything else.
        """
        text = self._value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SecretError(
            f"secret {self._name!r} is not a boolean (expected one of true/false, yes/no, "
            "on/off, 1/0)"
        )

    def get_json(self) -> Any:
        """
        The value parsed as JSON.

        @raise SecretError: if it is not valid JSON (the parser's position is given, not
            the text).
        """
        try:
            return json.loads(self._value)
        except json.JSONDecodeError as e:
            raise SecretError(
                f"secret {self._name!r} is not valid JSON ({e.msg} at line {e.lineno} "
                f"column {e.colno})"
            ) from None

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret(name={self._name!r}, value={REDACTED})"

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._name, self._value) == (other._name, other._value)

    def __hash__(self) -> int:
        return hash((Secret, self._name, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("Secret objects cannot be pickled; call expose() deliberately")
