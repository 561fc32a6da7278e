# -*- test-case-name: tests.data.test_proxied -*-
"""
What crosses the wire for a proxied database or cache (C{state.service(name)}), shared
by the module's side (L{pywatt_twisted.data._database._proxy},
L{pywatt_twisted.data._cache._proxy}) and the orchestrator's side
(L{pywatt_twisted.orchestrator._services}).

Values
======
SQL parameters and row values travel as JSON. What JSON cannot hold is tagged as a
one-key-pair object C{{"$t": TYPE, "v": VALUE}}: C{bytes} (base64), C{decimal}
(string), C{datetime} / C{date} / C{time} (ISO 8601), C{timedelta} (seconds),
C{uuid} (string), C{float} (C{"nan"}, C{"inf"}, C{"-inf"}), and C{object} for a
mapping that itself has a C{"$t"} key. Anything else is refused with a clear error.

Errors
======
A data-layer error raised at the orchestrator's end travels as
C{error_info = {"kind": <class name>, "dialect", "code", "driver_error",
"connection_lost", "connecting"}} and is raised at the module's end as the same class,
with the same fields, so code written against a direct L{Database} or cache handles a
proxied one unchanged.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import math
import uuid
from collections.abc import Mapping
from typing import Any

from pywatt_twisted.data._cache._errors import (
    CacheError,
    CacheUnavailable,
    InvalidKey,
    InvalidTTL,
    SerializationError,
)
from pywatt_twisted.data._database._errors import (
    DatabaseError,
    DatabaseUnavailable,
    IntegrityError,
    QueryError,
    StatementInterrupted,
    TransactionClosed,
)
from pywatt_twisted.data._database._params import ParameterError
from pywatt_twisted.errors import DataError

__all__ = [
    "ProxyValueError",
    "b64",
    "decode_value",
    "encode_value",
    "error_from_info",
    "error_info",
    "unb64",
]

_TAG = "$t"


class ProxyValueError(DataError, TypeError):
    """
    A value cannot be sent over a proxied service (a type JSON has no tag for).
    """


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ProxyValueError(f"expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ProxyValueError(f"expected base64 text, got {text[:40]!r} ({e})") from None


def encode_value(value: object) -> object:
    """
    A SQL parameter or row value as JSON (see the module docstring).

    @raise ProxyValueError: for a type with no JSON form.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {_TAG: "float", "v": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG: "bytes", "v": b64(bytes(value))}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, datetime.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, datetime.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, datetime.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {_TAG: "timedelta", "v": value.total_seconds()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        encoded = {k: encode_value(v) for k, v in value.items()}
        return {_TAG: "object", "v": encoded} if _TAG in encoded else encoded
    raise ProxyValueError(
        f"cannot send a value of type {type(value).__name__} over a proxied service; "
        "convert it to str, int, float, bool, None, bytes, Decimal, a date/time, a UUID, "
        "a list or a dict first"
    )


def decode_value(value: object) -> object:
    """
    The inverse of L{encode_value}.
    """
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: decode_value(v) for k, v in value.items()}
    v = value.get("v")
    try:
        if tag == "bytes":
            return unb64(v)
        if tag == "decimal":
            return decimal.Decimal(str(v))
        if tag == "datetime":
            return datetime.datetime.fromisoformat(str(v))
        if tag == "date":
            return datetime.date.fromisoformat(str(v))
        if tag == "time":
            return datetime.time.fromisoformat(str(v))
        if tag == "timedelta":
            return datetime.timedelta(seconds=float(v))  # type: ignore[arg-type]
        if tag == "uuid":
            return uuid.UUID(str(v))
        if tag == "float":
            return float(str(v))
        if tag == "object" and isinstance(v, dict):
            return {k: decode_value(x) for k, x in v.items()}
    except (ValueError, TypeError, decimal.InvalidOperation) as e:
        raise ProxyValueError(f"cannot read a {tag} value {v!r} ({e})") from None
    raise ProxyValueError(f"unknown value tag {tag!r} from a proxied service")


def encode_params(params: object) -> object:
    """
    SQL parameters (a mapping, or None) as JSON.
    """
    if params is None:
        return None
    if not isinstance(params, Mapping):
        raise ParameterError(
            f"expected the parameters as a mapping of name -> value, got {type(params).__name__}"
        )
    return {str(k): encode_value(v) for k, v in params.items()}


# -- errors ------------------------------------------------------------------------------

#: the error classes that travel by name, most specific first
_CLASSES: tuple[type[DataError], ...] = (
    StatementInterrupted,
    DatabaseUnavailable,
    IntegrityError,
    QueryError,
    ParameterError,
    TransactionClosed,
    DatabaseError,
    InvalidKey,
    InvalidTTL,
    SerializationError,
    CacheUnavailable,
    CacheError,
)
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_FIELDS = ("dialect", "code", "driver_error", "connection_lost", "connecting")


def error_info(error: BaseException) -> dict[str, Any] | None:
    """
    The C{error_info} object for a data-layer error, or None for anything else.
    """
    for cls in _CLASSES:
        if isinstance(error, cls):
            info: dict[str, Any] = {"kind": cls.__name__}
            for name in _FIELDS:
                value = getattr(error, name, None)
                if value is not None:
                    info[name] = value if isinstance(value, str | int | bool) else str(value)
            return info
    return None


def error_from_info(info: object, message: str) -> DataError | None:
    """
    The data-layer error an C{error_info} object names (None when it names none).
    """
    if not isinstance(info, dict):
        return None
    cls = _BY_NAME.get(str(info.get("kind")))
    if cls is None:
        return None
    error: DataError
    if issubclass(cls, StatementInterrupted):
        error = cls(
            message,
            connection_lost=bool(info.get("connection_lost", True)),
            dialect=info.get("dialect"),
            code=info.get("code"),
            driver_error=info.get("driver_error"),
        )
    elif issubclass(cls, DatabaseError):
        error = cls(
            message,
            dialect=info.get("dialect"),
            code=info.get("code"),
            driver_error=info.get("driver_error"),
        )
        if info.get("connecting"):
            error.connecting = True  # type: ignore[attr-defined]
    else:
        error = cls(message)
    return error
