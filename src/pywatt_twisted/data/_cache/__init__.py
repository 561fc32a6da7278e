"""
Caches behind one interface, L{ICache}: L{MemoryCache}, L{FileCache}, L{RedisCache},
L{MemcachedCache}, created directly or with L{Cache.from_url}.
"""

from pywatt_twisted.data._cache._base import ICache, ICacheStore, Lock, StoreCache
from pywatt_twisted.data._cache._codec import (
    MAX_KEY_BYTES,
    decode_value,
    encode_value,
    validate_key,
)
from pywatt_twisted.data._cache._errors import (
    CacheError,
    CacheUnavailable,
    InvalidKey,
    InvalidTTL,
    SerializationError,
)
from pywatt_twisted.data._cache._factory import Cache
from pywatt_twisted.data._cache.file import FileCache
from pywatt_twisted.data._cache.memory import MemoryCache


def __getattr__(name: str) -> object:
    # the network backends import their client libraries only when used
    if name == "RedisCache":
        from pywatt_twisted.data._cache.redis import RedisCache

        return RedisCache
    if name == "MemcachedCache":
        from pywatt_twisted.data._cache.memcached import MemcachedCache

        return MemcachedCache
    raise AttributeError(name)


__all__ = [
    "MAX_KEY_BYTES",
    "Cache",
    "CacheError",
    "CacheUnavailable",
    "FileCache",
    "ICache",
    "ICacheStore",
    "InvalidKey",
    "InvalidTTL",
    "Lock",
    "MemcachedCache",
    "MemoryCache",
    "RedisCache",
    "SerializationError",
    "StoreCache",
    "decode_value",
    "encode_value",
    "validate_key",
]
