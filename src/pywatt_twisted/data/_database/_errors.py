"""
Errors of the database layer. All derive from L{pywatt_twisted.errors.DataError}; none
of their messages ever includes a password.
"""

from __future__ import annotations

from pywatt_twisted.errors import BackendUnavailable, DataError


class DatabaseError(DataError):
    """
    A database operation failed.

    @ivar dialect: C{"postgresql"}, C{"mysql"} or C{"sqlite"}, when known.
    @ivar code: the driver's error code (PostgreSQL SQLSTATE such as C{"23505"}, MySQL
        error number such as C{1062}), or None.
    @ivar driver_error: the class name of the driver's exception, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        dialect: str | None = None,
        code: object = None,
        driver_error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.dialect = dialect
        self.code = code
        self.driver_error = driver_error


class DatabaseUnavailable(DatabaseError, BackendUnavailable):
    """
    The server could not be reached (within C{connect_timeout}), refused the login, or
    dropped the connection. The pool throws the broken connection away; the next call
    opens a new one. Escaping an HTTP route, it is answered C{503} (see
    L{BackendUnavailable <pywatt_twisted.errors.BackendUnavailable>}).

    @ivar connecting: whether a new connection could not be opened (the server is
        down, unreachable or refused the login), rather than an open one breaking.
    """

    backend = "database"
    connecting = False


class StatementInterrupted(DatabaseUnavailable):
    """
    A statement (or the commit of its transaction) was interrupted after it was sent to
    the server, and it was B{not} run again.

    With C{connection_lost} true (the server killed the connection, the network broke,
    the server restarted) the outcome is unknown: the statement may or may not have been
    applied, and a commit may or may not have happened. With it false the server
    cancelled the statement (MySQL C{KILL QUERY}, PostgreSQL C{pg_cancel_backend}, a
    statement timeout) and rolled it back. Either way the whole transaction it belonged
    to is over; the next call opens a new connection when needed. Calls made with
    C{idempotent=True} are retried once on a new connection instead, after a lost
    connection only.

    @ivar connection_lost: whether the connection died (outcome unknown) rather than
        the server cancelling the statement (not applied).
    """

    def __init__(
        self,
        message: str,
        *,
        connection_lost: bool = True,
        dialect: str | None = None,
        code: object = None,
        driver_error: str | None = None,
    ) -> None:
        super().__init__(message, dialect=dialect, code=code, driver_error=driver_error)
        self.connection_lost = connection_lost


class QueryError(DatabaseError):
    """
    The server rejected a statement (syntax, unknown table, type mismatch...).
    """


class IntegrityError(QueryError):
    """
    A constraint was violated (unique key, foreign key, not null, check).
    """


class TransactionClosed(DatabaseError):
    """
    A statement was sent through a transaction that has already committed or rolled
    back, or through a database that was closed.
    """
