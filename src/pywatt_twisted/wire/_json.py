# -*- test-case-name: tests.wire.test_codec -*-
"""
The JSON backend of the wire layer.

U{orjson<https://github.com/ijl/orjson>} is used when it is importable (it is a declared
dependency: on the channel hot path it is several times faster than the standard library,
see C{bench/bench_wire.py}); the standard library is the fallback. Both behave like
serde_json for what crosses the wire:

  - output is compact (no spaces), keys in insertion order, non-ASCII left as UTF-8;
  - C{NaN} and C{Infinity} are rejected on input (serde_json rejects them too);
  - integers beyond 64 bits are read as floats (as serde_json does without
    C{arbitrary_precision}); on output they fall back to the standard library, which
    writes them exactly.
"""

from __future__ import annotations

import json as _stdlib_json
from collections.abc import Callable
from typing import Any

__all__ = [
    "BACKEND",
    "BACKEND_DECODE_ERROR",
    "JSONDecodeError",
    "backend_dumps",
    "backend_loads",
    "dumps",
    "dumps_sorted",
    "loads",
]


class JSONDecodeError(ValueError):
    """
    The input is not valid JSON (raised by L{loads} whichever backend is active).
    """


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_std_decoder = _stdlib_json.JSONDecoder(parse_constant=_reject_constant)
_std_encoder = _stdlib_json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_std_sorted_encoder = _stdlib_json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=True
)


def _std_loads(data: bytes | bytearray | memoryview | str) -> Any:
    if not isinstance(data, str):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONDecodeError(f"input is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        value, end = _std_decoder.raw_decode(data, _skip_ws(data, 0))
    except ValueError as e:
        raise JSONDecodeError(str(e)) from None
    if _skip_ws(data, end) != len(data):
        raise JSONDecodeError(f"extra data after the JSON value at char {end}")
    return value


def _skip_ws(text: str, index: int) -> int:
    length = len(text)
    while index < length and text[index] in " \t\r\n":
        index += 1
    return index


def _std_dumps(obj: object) -> bytes:
    return _std_encoder.encode(obj).encode("utf-8")


def _std_dumps_sorted(obj: object) -> bytes:
    return _std_sorted_encoder.encode(obj).encode("utf-8")


loads: Callable[[bytes | bytearray | memoryview | str], Any]
dumps: Callable[[object], bytes]
dumps_sorted: Callable[[object], bytes]
backend_loads: Callable[[bytes | bytearray | memoryview | str], Any]
"""
The backend's own C{loads}, for the per-frame hot path: it raises
L{BACKEND_DECODE_ERROR} (not L{JSONDecodeError}) on invalid input, which the caller
turns into its own error; one Python call less than L{loads}.
"""
BACKEND_DECODE_ERROR: type[ValueError]
backend_dumps: Callable[[object], bytes]
"""
The backend's own C{dumps}, for the per-frame hot path: it raises C{TypeError} where
L{dumps} falls back to the standard library (the caller then calls L{dumps}).
"""

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    BACKEND = "json"
    loads = backend_loads = _std_loads
    backend_dumps = _std_dumps
    BACKEND_DECODE_ERROR = JSONDecodeError
    dumps = _std_dumps
    dumps_sorted = _std_dumps_sorted
else:
    BACKEND = "orjson"
    _orjson_loads = _orjson.loads
    _orjson_dumps = _orjson.dumps
    _OPT_SORT = _orjson.OPT_SORT_KEYS
    backend_loads = _orjson_loads
    backend_dumps = _orjson_dumps
    BACKEND_DECODE_ERROR = _orjson.JSONDecodeError

    def loads(data: bytes | bytearray | memoryview | str) -> Any:
        try:
            return _orjson_loads(data)
        except _orjson.JSONDecodeError as e:
            raise JSONDecodeError(str(e)) from None

    def dumps(obj: object) -> bytes:
        try:
            return _orjson_dumps(obj)
        except TypeError:
            # Integers over 64 bits, non-str keys, tuples-as-keys...: the standard library
            # either writes them exactly or raises its own clear TypeError.
            return _std_dumps(obj)

    def dumps_sorted(obj: object) -> bytes:
        try:
            return _orjson_dumps(obj, option=_OPT_SORT)
        except TypeError:
            return _std_dumps_sorted(obj)
