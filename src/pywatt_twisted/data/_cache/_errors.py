"""
Errors of the cache layer; all derive from L{pywatt_twisted.errors.DataError}.
"""

from __future__ import annotations

from pywatt_twisted.errors import BackendUnavailable, DataError


class CacheError(DataError):
    """
    A cache operation failed.
    """


class InvalidKey(CacheError, ValueError):
    """
    A key breaks the rules every backend shares (see L{validate_key}).
    """


class SerializationError(CacheError, TypeError):
    """
    A value cannot be stored (not bytes nor JSON-able), or stored data cannot be read
    back (written by something else).
    """


class CacheUnavailable(CacheError, BackendUnavailable):
    """
    The cache server could not be reached or dropped the connection. Escaping an HTTP
    route, it is answered C{503} (see L{BackendUnavailable}).
    """

    backend = "cache"


class InvalidTTL(CacheError, ValueError):
    """
    A ttl is not None nor a positive, finite number of seconds.
    """
