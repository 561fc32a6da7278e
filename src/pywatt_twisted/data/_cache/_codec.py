# -*- test-case-name: tests.data.test_cache_codec -*-
"""
How values and keys are stored, the same on every backend.

Values
======
    - C{bytes} (and C{bytearray}, C{memoryview}): C{b"b"} followed by the bytes, raw.
    - C{int} (not C{bool}): its decimal digits, untagged (C{b"42"}, C{b"-7"}), so the
      server-side counters of Redis (C{INCRBY}) and Memcached (C{incr}) work on values
      written by L{ICache.set} and L{ICache.increment} alike.
    - anything else JSON can hold (C{str}, C{float}, C{bool}, C{None}, lists, dicts with
      string keys): C{b"j"} followed by compact UTF-8 JSON. A C{str} is stored as JSON,
      so C{"abc"} is C{b'j"abc"'}; tuples come back as lists.

A value read back is therefore equal to the value stored (bytes stay bytes, strings stay
strings). C{None} can be stored, but reads back like a missing key.

Keys
====
A key is a non-empty C{str} without whitespace or control characters whose UTF-8 form,
with the namespace prefix, is at most 250 bytes (the Memcached limit, enforced on every
backend so that code moves between backends unchanged).
"""

from __future__ import annotations

import json
import math

from pywatt_twisted.data._cache._errors import InvalidKey, InvalidTTL, SerializationError

MAX_KEY_BYTES = 250

_BYTES = b"b"
_JSON = b"j"


def encode_value(value: object) -> bytes:
    """
    Serialise a value for storage.

    @raise SerializationError: when it is neither bytes nor JSON-able.
    """
    if isinstance(value, bytes):
        return _BYTES + value
    if isinstance(value, bytearray | memoryview):
        return _BYTES + bytes(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SerializationError(
            f"expected bytes or a JSON-able value (str, number, bool, None, list, dict), "
            f"got {type(value).__name__} ({e}); convert it first"
        ) from None
    return _JSON + text.encode("utf-8")


def decode_value(data: bytes) -> object:
    """
    Read back a stored value.

    @raise SerializationError: on data this library did not write.
    """
    tag = data[:1]
    if tag == _BYTES:
        return data[1:]
    if tag == _JSON:
        try:
            return json.loads(data[1:])
        except ValueError as e:
            raise SerializationError(f"stored JSON value is corrupt ({e})") from None
    try:
        return int(data)
    except ValueError:
        raise SerializationError(
            f"expected stored data tagged b'b' (bytes), b'j' (JSON) or a decimal integer, "
            f"got {len(data)} bytes starting {data[:8]!r}; was it written by another "
            "program? give it its own namespace"
        ) from None


def validate_key(key: object, prefix: str = "") -> str:
    """
    Check a key and return the full stored key (C{prefix + key}).

    @raise InvalidKey: with what was wrong and what is allowed.
    """
    # Fast path, taken by every ordinary key: a printable str without spaces has no
    # whitespace or control character (str.isprintable is False for every other
    # whitespace and for all of U+0000-U+001F and U+007F), and an ASCII full key's
    # UTF-8 size is its length. Anything else gets the detailed check below.
    if isinstance(key, str) and key and key.isprintable() and " " not in key:
        full = prefix + key
        if (len(full) if full.isascii() else len(full.encode("utf-8"))) <= MAX_KEY_BYTES:
            return full
    return _check_key(key, prefix)


def _check_key(key: object, prefix: str) -> str:
    if not isinstance(key, str):
        raise InvalidKey(f"expected a cache key as str, got {type(key).__name__}")
    if not key:
        raise InvalidKey("expected a non-empty cache key, got ''")
    for c in key:
        if c.isspace() or ord(c) < 33 or ord(c) == 127:
            raise InvalidKey(
                f"expected a cache key without whitespace or control characters, got "
                f"{key[:60]!r}; replace or hash those characters"
            )
    full = prefix + key
    size = len(full.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise InvalidKey(
            f"expected a cache key of at most {MAX_KEY_BYTES} UTF-8 bytes including the "
            f"namespace prefix, got {size} ({full[:40]!r}...); hash long keys"
        )
    return full


def validate_ttl(ttl: object) -> float | None:
    """
    Check a time to live: None (no expiry) or a positive number of seconds.
    """
    if ttl is None:
        return None
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not (ttl > 0 and math.isfinite(ttl))
    ):
        raise InvalidTTL(
            f"expected ttl as None or a positive number of seconds, got {ttl!r}; "
            "use delete() to remove a key"
        )
    return float(ttl)


def validate_namespace(namespace: object) -> str:
    """
    Check a namespace name: the same rules as a key, and no C{:}.
    """
    if not isinstance(namespace, str) or not namespace or ":" in namespace:
        raise InvalidKey(f"expected a namespace as a non-empty str without ':', got {namespace!r}")
    validate_key(namespace)
    return namespace
