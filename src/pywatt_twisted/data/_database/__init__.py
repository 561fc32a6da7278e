"""
The database layer: L{Database} over C{twisted.enterprise.adbapi} for PostgreSQL,
MySQL/MariaDB and SQLite, with named C{:name} parameters on every backend.
"""

from pywatt_twisted.data._database._config import DatabaseConfig, redact_url
from pywatt_twisted.data._database._core import (
    AsyncTransaction,
    Database,
    IDatabase,
    SyncTransaction,
)
from pywatt_twisted.data._database._errors import (
    DatabaseError,
    DatabaseUnavailable,
    IntegrityError,
    QueryError,
    StatementInterrupted,
    TransactionClosed,
)
from pywatt_twisted.data._database._metrics import DatabaseCollector
from pywatt_twisted.data._database._params import ParameterError, TranslatedStatement, translate

__all__ = [
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
    "TranslatedStatement",
    "redact_url",
    "translate",
]
