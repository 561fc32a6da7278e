"""
Data access for PyWatt modules, without blocking the reactor: L{Database} (PostgreSQL,
MySQL/MariaDB, SQLite over C{twisted.enterprise.adbapi}) and L{Cache} (memory, file,
Redis, Memcached behind L{ICache}).
"""

from pywatt_twisted.data.cache import (
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
from pywatt_twisted.data.database import (
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
from pywatt_twisted.errors import DataError


def __getattr__(name: str) -> object:
    if name in ("RedisCache", "MemcachedCache"):
        from pywatt_twisted.data import cache

        return getattr(cache, name)
    raise AttributeError(name)


__all__ = [
    "AsyncTransaction",
    "Cache",
    "CacheError",
    "CacheUnavailable",
    "DataError",
    "Database",
    "DatabaseCollector",
    "DatabaseConfig",
    "DatabaseError",
    "DatabaseUnavailable",
    "FileCache",
    "ICache",
    "IDatabase",
    "IntegrityError",
    "InvalidKey",
    "InvalidTTL",
    "Lock",
    "MemcachedCache",
    "MemoryCache",
    "ParameterError",
    "QueryError",
    "RedisCache",
    "SerializationError",
    "StatementInterrupted",
    "SyncTransaction",
    "TransactionClosed",
]
