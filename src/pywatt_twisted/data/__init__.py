"""
Data access for PyWatt modules, without blocking the reactor: L{Database} (PostgreSQL,
MySQL/MariaDB, SQLite over C{twisted.enterprise.adbapi}) and L{Cache} (memory, file,
Redis, Memcached behind L{ICache}).

The names are imported when first used (C{from pywatt_twisted.data import Database}
works as always): the runtime imports this package for its resource tracking, and a
module that uses no database or cache should not pay for loading them at start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pywatt_twisted.data._cache import (  # noqa: F401
        Cache,
        CacheError,
        CacheUnavailable,
        FileCache,
        ICache,
        InvalidKey,
        InvalidTTL,
        Lock,
        MemoryCache,
        SerializationError,
    )
    from pywatt_twisted.data._cache.memcached import MemcachedCache  # noqa: F401
    from pywatt_twisted.data._cache.redis import RedisCache  # noqa: F401
    from pywatt_twisted.data._database import (  # noqa: F401
        AsyncTransaction,
        Database,
        DatabaseCollector,
        DatabaseConfig,
        DatabaseError,
        DatabaseUnavailable,
        IDatabase,
        IntegrityError,
        ParameterError,
        QueryError,
        StatementInterrupted,
        SyncTransaction,
        TransactionClosed,
    )
    from pywatt_twisted.errors import DataError  # noqa: F401

#: the names each module defines; imported from it on first use
_SOURCES: dict[str, tuple[str, ...]] = {
    "pywatt_twisted.data._cache": (
        "Cache",
        "CacheError",
        "CacheUnavailable",
        "FileCache",
        "ICache",
        "InvalidKey",
        "InvalidTTL",
        "Lock",
        "MemcachedCache",
        "MemoryCache",
        "RedisCache",
        "SerializationError",
    ),
    "pywatt_twisted.data._database": (
        "AsyncTransaction",
        "Database",
        "DatabaseCollector",
        "DatabaseConfig",
        "DatabaseError",
        "DatabaseUnavailable",
        "IDatabase",
        "IntegrityError",
        "ParameterError",
        "QueryError",
        "StatementInterrupted",
        "SyncTransaction",
        "TransactionClosed",
    ),
    "pywatt_twisted.errors": ("DataError",),
}

# name -> the module that defines it
_LAZY = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
