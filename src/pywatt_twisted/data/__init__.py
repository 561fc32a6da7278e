"""
Data access for PyWatt modules, without blocking the reactor: L{Database} (PostgreSQL,
MySQL/MariaDB, SQLite over C{twisted.enterprise.adbapi}) and L{Cache} (memory, file,
Redis, Memcached behind L{ICache}).
"""

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
    SyncTransaction,
    TransactionClosed,
)
from pywatt_twisted.errors import DataError

__all__ = [
    "AsyncTransaction",
    "DataError",
    "Database",
    "DatabaseCollector",
    "DatabaseConfig",
    "DatabaseError",
    "DatabaseUnavailable",
    "IDatabase",
    "IntegrityError",
    "ParameterError",
    "QueryError",
    "SyncTransaction",
    "TransactionClosed",
]
