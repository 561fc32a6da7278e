# -*- test-case-name: tests.data.test_database -*-
"""
L{Database}: one API over PostgreSQL (psycopg 3), MySQL/MariaDB (PyMySQL) and SQLite
(sqlite3), built on L{twisted.enterprise.adbapi.ConnectionPool}.

Every call runs in the pool's thread pool on that thread's connection, inside a
transaction that commits when the work returns and rolls back when it raises. Nothing
blocks the reactor thread.

Reconnection, and no silent re-run: a statement that may have reached the server is
never sent again on its own. Before the first statement of a transaction, a pooled
connection already known to be dead (the driver marked it closed, or the server closed
its socket while it sat idle) is replaced: nothing was sent on it, so that is safe and
the call goes on. Once a statement was sent, a connection lost before its reply (server
killed it, network cut, restart) or a statement the server cancelled fails the call with
L{StatementInterrupted}: the whole transaction is over (nothing more of it runs, it does
not commit), the broken connection is thrown away and the next call opens a new one.
Only C{execute}/C{query}/C{query_one} called with C{idempotent=True} (and L{ping}) are
run again, once, on a new connection, after a lost connection.

C{twisted.enterprise.adbapi} provides only the thread pool and the per-thread
connections here (C{connect}/C{disconnect}); its C{runInteraction} and C{cp_reconnect}
machinery are not used, so nothing below this module re-runs work either. Work reaches the
pool's threads through L{ConnectionPool.run_in_thread} (C{_pool.py}), which hands calls
over in bursts instead of one C{ThreadPool} task each.
"""

from __future__ import annotations

import contextvars
import queue
import select
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from pywatt_twisted import tracing
from pywatt_twisted.data._database._config import DRIVERS, MEMORY, DatabaseConfig
from pywatt_twisted.data._database._errors import (
    DatabaseError,
    DatabaseUnavailable,
    IntegrityError,
    QueryError,
    StatementInterrupted,
    TransactionClosed,
)
from pywatt_twisted.data._database._params import ParameterError, translate
from pywatt_twisted.data._database._pool import ConnectionPool
from pywatt_twisted.data._threads import Refusals

T = TypeVar("T")

Row = dict[str, object]
Params = Mapping[str, object] | None


class IDatabase(Interface):
    """
    A SQL database reached without blocking the reactor. Parameters are always named
    C{:name} placeholders with a mapping of values.
    """

    dialect = Attribute('C{"postgresql"}, C{"mysql"} or C{"sqlite"}.')
    url_redacted = Attribute("The database URL with its password replaced by C{***}.")

    def execute(sql: str, params: Params = None, *, idempotent: bool = False) -> Deferred[int]:
        """
        Run one statement in its own transaction; fire with the rows affected (-1 when
        the driver does not know). Interrupted after it was sent, it fails with
        L{StatementInterrupted}, unless C{idempotent} is true: then it runs once more on
        a new connection.
        """

    def query(sql: str, params: Params = None, *, idempotent: bool = False) -> Deferred[list[Row]]:
        """
        Run one query; fire with its rows as C{dict}s of column name -> value. The same
        rule as L{execute} for interruptions.
        """

    def query_one(
        sql: str, params: Params = None, *, idempotent: bool = False
    ) -> Deferred[Row | None]:
        """
        Run one query; fire with its first row, or None when there is none. The same
        rule as L{execute} for interruptions.
        """

    def run_interaction(fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred[Any]:
        """
        Call C{fn(tx, *args, **kw)} in a pool thread with a L{SyncTransaction}; commit
        when it returns, roll back when it raises; fire with its return value.
        """

    def transaction(fn: Callable[..., Any] | None = None, *args: Any, **kw: Any) -> Any:
        """
        With C{fn}: the same as L{run_interaction}. Without: an async context manager
        giving an L{AsyncTransaction}.
        """

    def ping() -> Deferred[None]:
        """
        Check that the database answers; fail with L{DatabaseUnavailable} if not.
        """

    def health() -> dict[str, Any]:
        """
        Pool statistics and last error, for C{/health}.
        """

    def close() -> Deferred[None]:
        """
        Roll back open transactions, wait for running calls, close every connection.
        """


def _is_broken(dialect: str, conn: Any) -> bool:
    """
    Whether a driver connection can no longer be used.
    """
    if conn is None:
        return True
    if dialect == "postgresql":
        return bool(conn.closed or conn.broken)
    if dialect == "mysql":
        return not conn.open
    return False


#: The outcomes of L{_interruption}: the connection died (outcome unknown), or the
#: server cancelled the statement (rolled back).
LOST = "lost"
CANCELLED = "cancelled"

#: MySQL/MariaDB error numbers meaning the connection is gone: 2006 server gone away,
#: 2013 lost connection during query, 2055 lost connection (client side); 1053 server
#: shutdown, 1927 connection killed (MariaDB), 4031 idle session timeout (MySQL 8).
_MYSQL_LOST = frozenset({1053, 1927, 2006, 2013, 2055, 4031})
#: ... meaning the server cancelled the statement: 1317 query interrupted (C{KILL
#: QUERY}), 1969 C{max_statement_time} (MariaDB), 3024 C{max_execution_time} (MySQL).
_MYSQL_CANCELLED = frozenset({1317, 1969, 3024})
#: PostgreSQL SQLSTATEs meaning the connection is gone (besides class 08): 57P01
#: admin shutdown (C{pg_terminate_backend}), 57P02 crash shutdown, 57P03 cannot connect
#: now, 57P05 idle session timeout.
_PG_LOST = frozenset({"57P01", "57P02", "57P03", "57P05"})
#: 57014 query cancelled (C{pg_cancel_backend}, C{statement_timeout}).
_PG_CANCELLED = frozenset({"57014"})


def _interruption(dialect: str, error: BaseException, conn: Any) -> str | None:
    """
    Whether a driver error raised by a statement (or a commit) that was sent means the
    statement was interrupted: L{LOST} when the connection died, L{CANCELLED} when the
    server cancelled it, None for an ordinary error (the connection is fine). SQLite has
    no server connection: always None.
    """
    if dialect == "sqlite":
        return None
    if _is_broken(dialect, conn):
        return LOST
    if dialect == "postgresql":
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            if state.startswith("08") or state in _PG_LOST:
                return LOST
            if state in _PG_CANCELLED:
                return CANCELLED
        return None
    number = error.args[0] if error.args else None
    if number in _MYSQL_LOST:
        return LOST
    if number in _MYSQL_CANCELLED:
        return CANCELLED
    return None


def _socket_fd(dialect: str, conn: Any) -> int | None:
    """
    The file descriptor of a driver connection's socket, or None when unknown.
    """
    try:
        if dialect == "postgresql":
            fd = int(conn.pgconn.socket)
        elif dialect == "mysql":
            sock = getattr(conn, "_sock", None)
            if sock is None:
                return None
            fd = int(sock.fileno())
        else:
            return None
    except Exception:
        return None
    return fd if fd >= 0 else None


def _readable(fd: int) -> bool:
    """
    Whether a socket has input (or end of file, or an error) waiting, without blocking.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


def _known_dead(dialect: str, conn: Any) -> bool:
    """
    Whether an idle connection is known to be unusable before anything is sent on it:
    the driver marked it closed, or its socket has input waiting. Between transactions
    the server sends nothing unasked, so input there is the server closing the
    connection (or announcing so); at worst a healthy connection is replaced.
    """
    if dialect == "sqlite":
        return conn is None  # (a file: no socket, nothing the server could have said)
    if _is_broken(dialect, conn):
        return True
    fd = _socket_fd(dialect, conn)
    return fd is not None and _readable(fd)


#: Seconds a MySQL/MariaDB connection waits for a reply beyond the statement timeout
#: (the server cancels the statement first; this catches a server that went silent).
REPLY_GRACE = 5.0


_get_ident = threading.get_ident


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _mysql_timeout(conn: Any, cursor: Any, seconds: float | None) -> None:
    """
    Set a MySQL/MariaDB connection's statement timeout: server-side (MariaDB
    C{max_statement_time}, MySQL C{max_execution_time}; 0 is no limit) and the client's
    wait for a reply (C{seconds + REPLY_GRACE}, forever when None).
    """
    if getattr(conn, "_pywatt_mariadb", True):
        value = f"{seconds:.3f}" if seconds is not None else "0"
        cursor.execute(f"SET SESSION max_statement_time = {value}")
    else:
        value = str(_ms(seconds)) if seconds is not None else "0"
        cursor.execute(f"SET SESSION max_execution_time = {value}")
    reply = seconds + REPLY_GRACE if seconds is not None else None
    # PyMySQL applies these on every read/write of the socket
    conn._read_timeout = reply
    conn._write_timeout = reply


def _on_connect(config: DatabaseConfig, conn: Any) -> None:
    """
    C{cp_openfun}: give a new connection the configured statement timeout (a
    connection whose set-up fails is closed, not leaked).
    """
    if config.dialect != "mysql":
        # PostgreSQL gets it at connect time (DatabaseConfig.connect_kwargs)
        return
    try:
        conn._pywatt_mariadb = "mariadb" in str(conn.get_server_info()).lower()
        cursor = conn.cursor()
        try:
            _mysql_timeout(conn, cursor, config.statement_timeout)
        finally:
            cursor.close()
        conn.commit()
    except BaseException:
        try:
            conn.close()
        except Exception:
            pass
        raise


class SyncTransaction:
    """
    The transaction handed to a function run by L{Database.run_interaction}: it lives in
    a pool thread and its methods block. Do not keep it after the function returns.

    Once one of its statements is interrupted (L{StatementInterrupted}), the
    transaction is over: later statements fail with L{TransactionClosed} and it does
    not commit.
    """

    def __init__(
        self,
        db: Database,
        *,
        single: bool = False,
        pool: ConnectionPool | None = None,
        timeout: float | None = None,
    ) -> None:
        self._db = db
        # the pool the call was submitted to (after a rotation, calls already queued
        # finish on the old pool, whose thread this is)
        self._pool = pool if pool is not None else db._pool
        self._dialect = db.dialect
        self._single = single
        self._timeout = timeout
        self._conn: Any = None
        self._cursor: Any = None
        self._statements = 0
        # whether anything of this transaction was sent on self._conn
        self._sent = False
        self._interrupted: StatementInterrupted | None = None

    # connection handling ------------------------------------------------------------

    def _open(self) -> None:
        """
        Take this thread's connection (opening it if needed) and start a transaction. A
        connection already known to be dead is replaced: nothing was sent on it.
        """
        try:
            self._conn = self._connect()
            if _known_dead(self._dialect, self._conn):
                self._reconnect()
                return
            self._cursor = self._conn.cursor()
            self._begin()
        except DatabaseUnavailable:
            raise
        except Exception:
            # cursor() refused by a connection that turned out closed: nothing was sent
            if self._conn is not None and _is_broken(self._dialect, self._conn):
                self._reconnect()
            else:
                raise

    def _reconnect(self) -> None:
        self._discard()
        self._db._count_reconnect()
        self._conn = self._connect()
        self._cursor = self._conn.cursor()
        self._begin()

    def _connect(self) -> Any:
        """
        This thread's connection, opened (within C{connect_timeout}) if needed; a
        driver error becomes L{DatabaseUnavailable} with C{connecting} set.
        """
        # (adbapi's connect() finds it by threading.current_thread().ident, which is
        # this; its lookup is most of the cost of taking an open connection)
        conn = self._pool.connections.get(_get_ident())
        if conn is not None:
            return conn
        try:
            return self._pool.connect()
        except self._db._driver.Error as e:
            raise self._db._connect_error(e) from None

    def _begin(self) -> None:
        """
        Start the transaction (SQLite) and apply a per-call statement timeout
        (PostgreSQL: C{SET LOCAL}, undone when the transaction ends).

        A single statement on SQLite (C{execute}, C{query}, C{query_one}) gets no
        C{BEGIN}: its connection is in autocommit mode, where one statement is atomic
        on its own, so a transaction around it would change nothing but cost a
        statement more per call.
        """
        if self._dialect == "sqlite":
            if not self._single:
                self._cursor.execute("BEGIN")
        elif self._dialect == "postgresql" and self._timeout is not None:
            self._cursor.execute(f"SET LOCAL statement_timeout = {_ms(self._timeout)}")

    def _discard(self) -> None:
        """
        Close and forget this thread's connection.
        """
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None and self._pool.connections.get(self._pool.threadID()) is conn:
            self._pool.disconnect(conn)

    def _commit(self) -> None:
        """
        Commit; an interrupted transaction raises its L{StatementInterrupted} instead.
        """
        if self._interrupted is not None:
            raise self._interrupted
        if self._conn is None:
            return
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        try:
            self._conn.commit()
        except Exception as e:
            self._interrupt(e, "commit")
            raise

    def _interrupt(self, error: BaseException, doing: str) -> None:
        """
        If C{error}, raised by something sent to the server, means the statement was
        interrupted, end this transaction and raise L{StatementInterrupted}; a lost
        connection is thrown away so the next call opens a new one. Otherwise return.
        """
        if not isinstance(error, self._db._driver.Error):
            return
        kind = _interruption(self._dialect, error, self._conn)
        if kind is None:
            return
        if kind == LOST:
            self._discard()
            self._db._count_reconnect()
        self._interrupted = self._db._interrupted_error(error, kind, doing, single=self._single)
        raise self._interrupted

    def _rollback(self) -> None:
        """
        Roll back; a connection that is broken or fails to roll back is thrown away.
        """
        if self._conn is None:
            return
        if _is_broken(self._dialect, self._conn):
            self._discard()
            return
        try:
            if self._cursor is not None:
                self._cursor.close()
                self._cursor = None
            self._conn.rollback()
        except Exception:
            self._discard()

    # statements ---------------------------------------------------------------------

    def _run(self, sql: str, params: Params) -> Any:
        if self._interrupted is not None:
            raise TransactionClosed(
                "expected a transaction that can go on, got one whose statement was "
                f"interrupted ({self._interrupted.driver_error}); nothing more of it runs "
                "and it will not commit: start a new transaction"
            )
        statement = translate(sql, self._dialect)
        bound = statement.bind(params)
        if self._cursor is None:
            self._open()
        elif not self._sent and _known_dead(self._dialect, self._conn):
            # (an async transaction opened a while ago) nothing was sent on it yet
            self._reconnect()
        self._sent = True
        per_call = self._dialect == "mysql" and self._timeout is not None
        if per_call:
            _mysql_timeout(self._conn, self._cursor, self._timeout)
        # tracing: one child span per statement of a transaction (a single statement's
        # span is the call's own, started in Database._run)
        span = tracing.db_statement_span(self._dialect, sql) if not self._single else None
        try:
            self._cursor.execute(statement.sql, bound)
        except Exception as e:
            if span is not None:
                tracing.fail_span(span, e)
            # sent, so never sent again: an interruption ends the transaction
            self._interrupt(e, "run a statement")
            raise
        finally:
            if span is not None:
                span.end()
            if per_call and not _is_broken(self._dialect, self._conn):
                _mysql_timeout(self._conn, self._cursor, self._db.config.statement_timeout)
        self._statements += 1
        return self._cursor

    def execute(self, sql: str, params: Params = None) -> int:
        """
        Run a statement; return the rows affected (-1 when the driver does not know).
        """
        cursor = self._run(sql, params)
        return int(cursor.rowcount)

    def query(self, sql: str, params: Params = None) -> list[Row]:
        """
        Run a query; return every row as a C{dict}.
        """
        cursor = self._run(sql, params)
        description = cursor.description
        if description is None:
            return []
        columns = [d[0] for d in description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def query_one(self, sql: str, params: Params = None) -> Row | None:
        """
        Run a query; return its first row as a C{dict}, or None.
        """
        cursor = self._run(sql, params)
        description = cursor.description
        if description is None:
            return None
        row = cursor.fetchone()
        if row is None:
            return None
        # drain the rest so the connection is ready for the next statement
        cursor.fetchall()
        return dict(zip([d[0] for d in description], row, strict=True))


class AsyncTransaction:
    """
    A transaction held open across reactor-side awaits::

        async with db.transaction() as tx:
            await tx.execute("UPDATE ...", {...})
            row = await tx.query_one("SELECT ...")

    It occupies one pool thread (and that thread's connection) from C{__aenter__} to
    C{__aexit__}; its statements run there one after another. Commits when the block
    ends normally, rolls back when it raises. While it is open, other calls share the
    remaining C{max_pool - 1} threads: with all of them held by open transactions that
    wait on a call outside their transaction, the pool would wait forever, so do not
    nest C{db.query} inside C{async with db.transaction()} with a full pool (use C{tx}).
    """

    _COMMIT = object()
    _ROLLBACK = object()

    def __init__(self, db: Database) -> None:
        self._db = db
        self._requests: queue.SimpleQueue[tuple[Any, tuple[Any, ...], Deferred[Any]]] = (
            queue.SimpleQueue()
        )
        self._state = "new"
        self._finished: Deferred[None] | None = None

    async def __aenter__(self) -> AsyncTransaction:
        if self._state != "new":
            raise TransactionClosed("expected a new transaction, got one already used")
        if self._db._closed:
            raise self._db._closed_error()
        pool = self._db._pool
        refused = self._db._admit(pool)
        if refused is not None:
            self._state = "done"
            raise refused
        ready: Deferred[None] = Deferred()
        self._state = "open"
        self._db._open_transactions.add(self)

        def unstarted(failure: Failure) -> object:
            # the loop never fired ready (the pool refused it: closed), so nothing else
            # would end the wait below
            if not ready.called:
                ready.errback(failure)
                return None
            return failure

        started = pool.run_in_thread(self._loop, ready, pool)
        started.addErrback(unstarted)
        self._finished = self._db._track(started, pool)
        try:
            await self._db._count(ready)
        except BaseException:
            self._state = "done"
            self._db._open_transactions.discard(self)
            raise
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._state != "open":
            return False
        if exc_type is None:
            await self.commit()
        else:
            await self.rollback()
        return False

    def _loop(self, ready: Deferred[None], pool: ConnectionPool) -> None:
        """
        Runs in a pool thread: open the transaction, then serve statements until a
        commit or rollback arrives.
        """
        call = self._db._reactor.callFromThread
        tx = SyncTransaction(self._db, single=False, pool=pool)
        try:
            tx._open()
        except BaseException as e:
            tx._rollback()
            call(ready.errback, Failure(self._db._wrap(e, "open a transaction")))
            return
        call(ready.callback, None)
        while True:
            method, args, d = self._requests.get()
            if method is self._COMMIT:
                try:
                    tx._commit()
                except BaseException as e:
                    tx._rollback()
                    call(d.errback, Failure(self._db._wrap(e, "commit")))
                else:
                    call(d.callback, None)
                return
            if method is self._ROLLBACK:
                tx._rollback()
                call(d.callback, None)
                return
            try:
                result = method(tx, *args)
            except BaseException as e:
                call(d.errback, Failure(self._db._wrap(e, "run a statement")))
            else:
                call(d.callback, result)

    def _submit(self, method: Any, *args: Any) -> Deferred[Any]:
        if self._state != "open":
            return defer.fail(
                TransactionClosed(
                    "expected an open transaction, got one that already "
                    f"{'finished' if self._state == 'done' else 'has not started'}; "
                    "use it inside its async with block"
                )
            )
        d: Deferred[Any] = Deferred()
        self._requests.put((method, args, d))
        return self._db._count(d)

    def execute(self, sql: str, params: Params = None) -> Deferred[int]:
        """
        Run a statement in this transaction; fire with the rows affected.
        """
        return self._submit(SyncTransaction.execute, sql, params)

    def query(self, sql: str, params: Params = None) -> Deferred[list[Row]]:
        """
        Run a query in this transaction; fire with its rows as C{dict}s.
        """
        return self._submit(SyncTransaction.query, sql, params)

    def query_one(self, sql: str, params: Params = None) -> Deferred[Row | None]:
        """
        Run a query in this transaction; fire with its first row or None.
        """
        return self._submit(SyncTransaction.query_one, sql, params)

    async def _end(self, how: object) -> None:
        if self._state != "open":
            return
        self._state = "done"
        d: Deferred[None] = Deferred()
        self._requests.put((how, (), d))
        try:
            await d
        finally:
            self._db._open_transactions.discard(self)
            if self._finished is not None:
                await self._finished

    def commit(self) -> Deferred[None]:
        """
        Commit now (the block's end then does nothing).
        """
        return Deferred.fromCoroutine(self._end(self._COMMIT))

    def rollback(self) -> Deferred[None]:
        """
        Roll back now (the block's end then does nothing).
        """
        return Deferred.fromCoroutine(self._end(self._ROLLBACK))


@implementer(IDatabase)
class Database:
    """
    A pooled SQL database; see L{IDatabase} and the module docstring.

    Create it with L{Database.from_url} (C{postgresql://}, C{mysql://},
    C{sqlite:///relative.db}, C{sqlite:////absolute.db}, C{sqlite://}) or from a
    L{DatabaseConfig}.

    @ivar config: the L{DatabaseConfig} in use.
    @ivar interrupted: calls that failed with L{StatementInterrupted}.
    @ivar retries: C{idempotent=True} calls run again after a lost connection.
    @ivar refused: calls failed at once because C{max_waiting} calls already waited.
    """

    _log = Logger()

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        reactor: Any = None,
        name: str | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        if not (IReactorThreads.providedBy(reactor) and IReactorCore.providedBy(reactor)):
            # typically FakeOrchestrator's MemoryReactorClock in a SynchronousTestCase
            raise TypeError(
                f"Database calls run in a thread pool and need a real, running reactor "
                f"(IReactorThreads and IReactorCore), not {type(reactor).__name__}. In "
                f"tests, use twisted.trial.unittest.TestCase (not SynchronousTestCase) "
                f"with the real reactor: FakeOrchestrator(..., reactor=reactor) and "
                f"async def tests (see docs/testing.md)"
            )
        self.config = config
        self.name = name or config.dialect
        self._reactor: Any = reactor
        # every password this Database used, scrubbed from driver messages
        self._passwords: set[str] = set()
        self._pool = self._make_pool(config)
        self._driver = self._pool.dbapi
        self._closed = False
        self._closing: Deferred[None] | None = None
        self._in_flight = 0
        # calls running or queued per pool (a rotation closes the old pool once its
        # count is zero), and who waits for that
        self._pool_in_flight: dict[int, int] = {}
        self._pool_idle: dict[int, list[Deferred[None]]] = {}
        self._idle: list[Deferred[None]] = []
        #: when the server could not be reached: (reactor time of the first failure,
        #: reactor time before which calls fail at once); None while it is reachable
        self._down: tuple[float, float] | None = None
        # old pools closing once their calls finish (after use_url)
        self._retiring: set[ConnectionPool] = set()
        self._open_transactions: set[AsyncTransaction] = set()
        self._lock = threading.Lock()
        self.calls = 0
        self.errors = 0
        self.reconnects = 0
        self.interrupted = 0
        self.retries = 0
        # calls refused because max_waiting calls already waited (see _admit)
        self._refusals = Refusals(
            self._log,
            "Database {name}: all {max_pool} connections are busy and {max_waiting} calls "
            "already wait; refusing calls until one of them starts",
            "Database {name}: accepting calls again; {count} were refused while the pool was full",
        )
        self.last_error: str | None = None
        self._shutdown_id = reactor.addSystemEventTrigger("before", "shutdown", self.close)
        from pywatt_twisted.data._resources import track

        track(self)

    def _make_pool(self, config: DatabaseConfig) -> ConnectionPool:
        """
        A connection pool for C{config}; its connections get the statement timeout.
        """
        if config.password:
            self._passwords.add(config.password)
        min_pool, max_pool = config.min_pool, config.max_pool
        if config.dialect == "sqlite" and config.database == MEMORY:
            # every sqlite3 connection to :memory: is its own empty database: keep one
            min_pool = max_pool = 1
        pool = ConnectionPool(
            DRIVERS[config.dialect],
            cp_min=min_pool,
            cp_max=max_pool,
            cp_reactor=self._reactor,
            cp_name=f"pywatt-db-{self.name}",
            # never re-open a cursor on a new connection in the middle of work
            cp_reconnect=False,
            cp_openfun=lambda conn: _on_connect(config, conn),
            max_waiting=config.max_waiting,
            **config.connect_kwargs(),
        )
        pool.threadpool.name = f"pywatt-db-{self.name}"
        self._min_pool, self._max_pool = min_pool, max_pool
        return pool

    # construction -------------------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: object,
        *,
        min_pool: int = 1,
        max_pool: int = 5,
        max_waiting: int = 1000,
        connect_timeout: float | None = None,
        statement_timeout: float | None = None,
        reactor: Any = None,
        name: str | None = None,
    ) -> Database:
        """
        Open a pool for a database URL (a string or a C{Secret}, typically the
        C{DATABASE_URL} secret). Connections open lazily, on first use: a server that
        is down does not stop this, the calls fail with L{DatabaseUnavailable}.

        @param max_waiting: most calls waiting for a connection while all C{max_pool}
            are busy; one more fails at once with L{DatabaseUnavailable}.
        @param connect_timeout: seconds to open a connection; default: the URL's
            C{?connect_timeout=}, else 5.
        @param statement_timeout: seconds a statement may run; default: the URL's
            C{?statement_timeout=} (C{0} for no limit), else 30.
        @raise pywatt_twisted.errors.ConfigurationError: on a malformed URL.
        """
        overrides: dict[str, Any] = {
            "min_pool": min_pool,
            "max_pool": max_pool,
            "max_waiting": max_waiting,
        }
        if connect_timeout is not None:
            overrides["connect_timeout"] = connect_timeout
        if statement_timeout is not None:
            overrides["statement_timeout"] = statement_timeout
        config = DatabaseConfig.from_url(url, **overrides)
        return cls(config, reactor=reactor, name=name)

    @classmethod
    def from_config(
        cls, config: DatabaseConfig, *, reactor: Any = None, name: str | None = None
    ) -> Database:
        """
        Open a pool for a L{DatabaseConfig}.
        """
        return cls(config, reactor=reactor, name=name)

    @property
    def dialect(self) -> str:
        return self.config.dialect

    @property
    def url_redacted(self) -> str:
        return self.config.url_redacted

    def __repr__(self) -> str:
        return f"<Database {self.url_redacted}>"

    # bookkeeping ---------------------------------------------------------------------

    def _track(self, d: Deferred[T], pool: ConnectionPool) -> Deferred[T]:
        """
        Count C{d} as a call in flight on C{pool} until it fires.
        """
        key = id(pool)
        self._enter(key)
        return d.addBoth(self._leave, key)

    def _enter(self, key: int) -> None:
        self._in_flight += 1
        self._pool_in_flight[key] = self._pool_in_flight.get(key, 0) + 1

    def _leave(self, result: T, key: int) -> T:
        self._in_flight -= 1
        left = self._pool_in_flight[key] - 1
        if left:
            self._pool_in_flight[key] = left
        else:
            del self._pool_in_flight[key]
            for w in self._pool_idle.pop(key, []):
                w.callback(None)
        if self._in_flight == 0:
            waiters, self._idle = self._idle, []
            for w in waiters:
                w.callback(None)
        return result

    def _track_and_count(self, d: Deferred[T], pool: ConnectionPool) -> Deferred[T]:
        """
        L{_count} of L{_track}, in one callback pair (once per call: no closures).
        """
        key = id(pool)
        self._enter(key)
        self.calls += 1
        return d.addCallbacks(
            self._left_ok, self._left_failed, callbackArgs=(key,), errbackArgs=(key,)
        )

    def _left_ok(self, result: T, key: int) -> T:
        return self._succeeded(self._leave(result, key))

    def _left_failed(self, f: Failure, key: int) -> Failure:
        return self._failed(self._leave(f, key))

    def _pool_drained(self, pool: ConnectionPool) -> Deferred[None]:
        """
        Fires once no call submitted to C{pool} is running or queued.
        """
        key = id(pool)
        if not self._pool_in_flight.get(key):
            return defer.succeed(None)
        waiter: Deferred[None] = Deferred()
        self._pool_idle.setdefault(key, []).append(waiter)
        return waiter

    def _count(self, d: Deferred[T]) -> Deferred[T]:
        """
        Count C{d} as a call, and its failure as an error (see L{_failed}).
        """
        self.calls += 1
        return d.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, result: T) -> T:
        if self._down is not None:
            self._up()
        return result

    def _failed(self, f: Failure) -> Failure:
        self.errors += 1
        self.last_error = str(f.value)
        if isinstance(f.value, StatementInterrupted):
            self.interrupted += 1
            self._log.warn("Database {name}: {error}", name=self.name, error=str(f.value))
        elif isinstance(f.value, DatabaseUnavailable) and f.value.connecting:
            self._went_down(f.value)
        return f

    # availability ----------------------------------------------------------------------

    def _went_down(self, error: DatabaseUnavailable) -> None:
        """
        A connection could not be opened: from now until C{connect_timeout} seconds
        later calls fail at once (one WARNING the first time, none again until a call
        succeeds).
        """
        now = self._reactor.seconds()
        first = self._down is None
        since = now if self._down is None else self._down[0]
        self._down = (since, now + self.config.connect_timeout)
        if first:
            self._log.warn(
                "Database {name} ({dialect} at {address}) is unavailable: {error}. Calls "
                "fail with DatabaseUnavailable (HTTP 503 when a route lets it escape) "
                "until it answers again; /health shows it. Raise ?connect_timeout= in the "
                "database URL if the server is only slow to accept connections.",
                name=self.name,
                dialect=self.dialect,
                address=self.config.address,
                error=str(error),
            )

    def _up(self) -> None:
        assert self._down is not None
        since = self._down[0]
        self._down = None
        self._log.info(
            "Database {name} ({dialect} at {address}) is available again after {seconds:.1f} s",
            name=self.name,
            dialect=self.dialect,
            address=self.config.address,
            seconds=self._reactor.seconds() - since,
        )

    @property
    def refused(self) -> int:
        return self._refusals.total

    def _admit(self, pool: ConnectionPool) -> DatabaseUnavailable | None:
        """
        None when a call (or a transaction) may wait for a connection of C{pool}; else
        the error that refuses it, counted as a failed call, because C{max_waiting}
        calls already wait. The first refusal of a run is logged as a WARNING, and the
        next call admitted logs how many were refused.
        """
        refusals = self._refusals
        if not pool.full():
            if refusals.run:
                refusals.accept(name=self.name)
            return None
        self.calls += 1
        self.errors += 1
        max_waiting = self.config.max_waiting
        refusals.refuse(name=self.name, max_pool=self._max_pool, max_waiting=max_waiting)
        return DatabaseUnavailable(
            f"expected room among the calls waiting for the {self.dialect} database "
            f"{self.url_redacted}, but all {self._max_pool} connections are busy and "
            f"max_waiting={max_waiting} calls already wait; this call was not run "
            "(retry later, or raise max_pool or max_waiting)",
            dialect=self.dialect,
        )

    def _fail_fast(self) -> DatabaseUnavailable | None:
        """
        The error for a call made while the server is known to be unreachable and the
        next connection attempt is not due yet, else None.
        """
        if self._down is None:
            return None
        now = self._reactor.seconds()
        since, retry_at = self._down
        if now >= retry_at:
            return None
        error = DatabaseUnavailable(
            f"expected the {self.dialect} database {self.url_redacted} to answer, but it "
            f"has been unreachable for {now - since:.1f} s ({self.last_error}); failing "
            f"at once, the next connection attempt is in {retry_at - now:.1f} s",
            dialect=self.dialect,
        )
        error.connecting = True
        return error

    def _connect_error(self, error: BaseException) -> DatabaseUnavailable:
        """
        The L{DatabaseUnavailable} for a driver error raised while opening a connection.
        """
        detail = self._scrub(str(error).strip()) or "(no message)"
        wrapped = DatabaseUnavailable(
            f"could not connect to the {self.dialect} database {self.url_redacted} "
            f"(connect_timeout={self.config.connect_timeout:g} s): "
            f"{type(error).__name__}: {detail}; check that the server is running, "
            "reachable from this module and accepts these credentials",
            dialect=self.dialect,
            code=self._code(error),
            driver_error=type(error).__name__,
        )
        wrapped.connecting = True
        return wrapped

    def _count_reconnect(self) -> None:
        with self._lock:
            self.reconnects += 1

    def _count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def _closed_error(self) -> TransactionClosed:
        return TransactionClosed(
            f"expected an open database, got {self.url_redacted} already closed; "
            "create a new Database"
        )

    def _scrub(self, text: str) -> str:
        passwords = set(self._passwords)
        if self.config.password:
            passwords.add(self.config.password)
        for password in passwords:
            text = text.replace(password, "***")
        return text

    def _code(self, error: BaseException) -> object:
        """
        The driver's error code: SQLSTATE, MySQL error number or SQLite error name.
        """
        if self.dialect == "postgresql":
            return getattr(error, "sqlstate", None)
        if self.dialect == "mysql":
            return error.args[0] if error.args else None
        return getattr(error, "sqlite_errorname", None)

    def _interrupted_error(
        self, error: BaseException, kind: str, doing: str, *, single: bool
    ) -> StatementInterrupted:
        """
        The L{StatementInterrupted} for a driver error that interrupted a statement
        (C{kind} L{LOST} or L{CANCELLED}) or a commit (C{doing} is C{"commit"}).

        @param single: whether the call was one statement (C{execute}, C{query},
            C{query_one}), which C{idempotent=True} could retry, rather than a
            transaction.
        """
        detail = self._scrub(str(error).strip()) or "(no message)"
        kind_name = type(error).__name__
        where = f"{self.dialect} database {self.url_redacted}"
        if kind == LOST:
            if doing == "commit":
                what = (
                    f"the connection was lost while committing ({kind_name}: {detail}), so "
                    "the transaction may or may not have been committed: the outcome is "
                    "unknown"
                )
            else:
                what = (
                    f"the connection was lost while the statement was running ({kind_name}: "
                    f"{detail}); the server rolls back the uncommitted transaction, but the "
                    "statement may have had effects outside it: the outcome is unknown"
                )
            if single:
                again = (
                    "it was not run again; check before retrying, or pass idempotent=True "
                    "for a statement that is safe to run twice"
                )
            else:
                again = (
                    "the whole transaction failed and nothing of it was run again; check "
                    "before running it again"
                )
            hint = f"{again}; the next call opens a new connection"
        else:
            what = (
                f"the server cancelled the statement ({kind_name}: {detail}; KILL QUERY, "
                "pg_cancel_backend or a statement timeout)"
            )
            hint = (
                "it was rolled back with its whole transaction and not run again"
                if not single
                else "it was rolled back and not run again"
            )
        interrupted = StatementInterrupted(
            f"could not {doing} on {where}: {what}; {hint}",
            connection_lost=kind == LOST,
            dialect=self.dialect,
            code=self._code(error),
            driver_error=kind_name,
        )
        if self._scrub(str(error)) == str(error):
            interrupted.__cause__ = error
        interrupted.__suppress_context__ = True
        return interrupted

    def _wrap(self, error: BaseException, doing: str) -> BaseException:
        """
        Turn a driver exception into a L{DatabaseError} subclass whose message names the
        database (password redacted); other exceptions pass through unchanged.
        """
        if isinstance(error, DatabaseError):
            return error
        driver = self._driver
        if not isinstance(error, driver.Error):
            return error
        detail = self._scrub(str(error).strip()) or "(no message)"
        code = self._code(error)
        kind = type(error).__name__
        where = f"{self.dialect} database {self.url_redacted}"
        if isinstance(error, driver.IntegrityError):
            cls: type[DatabaseError] = IntegrityError
            hint = "the data violates a constraint; fix the data or the constraint"
        elif isinstance(error, driver.OperationalError | driver.InterfaceError) and (
            self.dialect != "sqlite"
        ):
            cls = DatabaseUnavailable
            if doing == "commit":
                hint = (
                    "the connection broke while committing, so the commit may or may not "
                    "have been applied; check before retrying"
                )
            else:
                hint = (
                    "check that the server is running, reachable and accepts these "
                    "credentials; the next call opens a new connection"
                )
        else:
            cls = QueryError
            hint = "check the SQL statement and its parameters"
        wrapped = cls(
            f"could not {doing} on {where}: {kind}: {detail}; {hint}",
            dialect=self.dialect,
            code=code,
            driver_error=kind,
        )
        if self._scrub(str(error)) == str(error):
            wrapped.__cause__ = error
        wrapped.__suppress_context__ = True
        return wrapped

    # running work --------------------------------------------------------------------

    def _in_thread(
        self,
        pool: ConnectionPool,
        timeout: float | None,
        doing: str,
        idempotent: bool,
        single: bool,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kw: dict[str, Any],
    ) -> T:
        """
        Runs in a pool thread: one transaction around C{fn}; when it is C{idempotent}
        and its connection is lost, once more in a new transaction on a new connection.
        Never again otherwise: see the module docstring.
        """
        try:
            return self._attempt(pool, timeout, doing, single, fn, args, kw)
        except StatementInterrupted as e:
            if not (idempotent and e.connection_lost):
                raise
            self._count_retry()
            self._reactor.callFromThread(
                self._log.info,
                "Database {name}: the connection was lost during a call made with "
                "idempotent=True; running it once more on a new connection ({error})",
                name=self.name,
                error=str(e),
            )
        return self._attempt(pool, timeout, doing, single, fn, args, kw)

    def _attempt(
        self,
        pool: ConnectionPool,
        timeout: float | None,
        doing: str,
        single: bool,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kw: dict[str, Any],
    ) -> T:
        """
        Runs in a pool thread: one transaction around C{fn}, once.
        """
        tx = SyncTransaction(self, single=single, pool=pool, timeout=timeout)
        try:
            result = fn(tx, *args, **kw)
        except BaseException as e:
            tx._rollback()
            wrapped = self._wrap(e, doing)
            if wrapped is e:
                raise
            raise wrapped
        try:
            tx._commit()
        except BaseException as e:
            tx._rollback()
            wrapped = self._wrap(e, "commit")
            if wrapped is e:
                raise
            raise wrapped
        return result

    def _run(
        self,
        doing: str,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kw: dict[str, Any],
        *,
        idempotent: bool = False,
        single: bool = True,
        timeout: float | None = None,
        pool: ConnectionPool | None = None,
    ) -> Deferred[T]:
        if self._closed:
            return defer.fail(self._closed_error())
        if timeout is not None and not timeout > 0:
            return defer.fail(ValueError(f"expected timeout > 0 seconds, got {timeout!r}"))
        probe = pool is not None
        if pool is None:
            pool = self._pool
            fast = self._fail_fast()
            if fast is not None:
                self.calls += 1
                self.errors += 1
                return defer.fail(fast)
            refused = self._admit(pool)
            if refused is not None:
                return defer.fail(refused)
        span = None
        run: Callable[..., T] = self._in_thread
        if tracing.switch.on and not probe and doing != "ping":
            # tracing: a span for the statement (or the transaction, whose statements
            # get child spans in the pool thread, which runs in a copy of its context)
            span = tracing.db_span(self.dialect, args[0] if single else None)
            token = tracing.attach(span)
            run = partial(contextvars.copy_context().run, self._in_thread)  # type: ignore[arg-type]
            tracing.detach(token)
        d = pool.run_in_thread(
            run,
            pool,
            timeout,
            doing,
            idempotent,
            single,
            fn,
            args,
            kw,
        )
        if probe:
            # a pool not in use yet (use_url): its failure says nothing about this one
            return self._track(d, pool)
        return tracing.traced(span, self._track_and_count(d, pool))

    def execute(
        self,
        sql: str,
        params: Params = None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Deferred[int]:
        """
        Run one statement in its own transaction; fire with the rows affected (-1 when
        the driver does not know, e.g. SQLite for a C{SELECT}).

        A statement is never silently sent twice: interrupted after it was sent (the
        connection died, or the server cancelled it), the call fails with
        L{StatementInterrupted} and the next call opens a new connection.

        @param idempotent: the statement is safe to run twice (C{UPDATE ... SET x =
            5}, an upsert...): after a lost connection, run it once more on a new
            connection instead of failing.
        @param timeout: seconds this statement may run before the server cancels it
            (L{StatementInterrupted} with C{connection_lost} false; not run again);
            default: the database's C{statement_timeout}. Not applied on SQLite.
        """
        return self._run(
            "execute a statement",
            SyncTransaction.execute,
            (sql, params),
            {},
            idempotent=idempotent,
            timeout=timeout,
        )

    def query(
        self,
        sql: str,
        params: Params = None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Deferred[list[Row]]:
        """
        Run one query; fire with its rows as C{dict}s of column name -> value.

        Not retried either unless C{idempotent} is true (see L{execute}): a C{SELECT}
        can have side effects (functions, C{nextval}, C{FOR UPDATE}...). C{timeout} as
        for L{execute}.
        """
        return self._run(
            "run a query",
            SyncTransaction.query,
            (sql, params),
            {},
            idempotent=idempotent,
            timeout=timeout,
        )

    def query_one(
        self,
        sql: str,
        params: Params = None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Deferred[Row | None]:
        """
        Run one query; fire with its first row as a C{dict}, or None. The same retry
        and timeout rules as L{query}.
        """
        return self._run(
            "run a query",
            SyncTransaction.query_one,
            (sql, params),
            {},
            idempotent=idempotent,
            timeout=timeout,
        )

    def run_interaction(self, fn: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """
        Call C{fn(tx, *args, **kw)} in a pool thread, where C{tx} is a
        L{SyncTransaction} (blocking C{execute}, C{query}, C{query_one}). Commit when
        it returns, roll back when it raises; fire with its return value or its
        exception (driver errors become L{DatabaseError}s).

        A transaction is never run again: one whose statement or commit is interrupted
        fails whole with L{StatementInterrupted} (if C{fn} catches it, the rest of its
        statements fail with L{TransactionClosed} and the transaction does not commit).
        """
        return self._run("run a transaction", fn, args, kw, single=False)

    def transaction(self, fn: Callable[..., Any] | None = None, *args: Any, **kw: Any) -> Any:
        """
        C{await db.transaction(fn, ...)}: the same as L{run_interaction}.
        C{async with db.transaction() as tx}: an L{AsyncTransaction}.
        """
        if fn is None:
            if args or kw:
                raise TypeError("transaction() without a function takes no arguments")
            return AsyncTransaction(self)
        return self.run_interaction(fn, *args, **kw)

    def ping(self, timeout: float | None = None) -> Deferred[None]:
        """
        Run C{SELECT 1}; fire with None, or fail with L{DatabaseUnavailable} (or
        another L{DatabaseError}) when the database does not answer. Opening a
        connection is bounded by C{connect_timeout}, the statement by C{timeout}
        (default: C{statement_timeout}).
        """
        d = self._run(
            "ping", SyncTransaction.query_one, ("SELECT 1",), {}, idempotent=True, timeout=timeout
        )
        return d.addCallback(lambda _: None)

    def use_url(self, url: object) -> Deferred[None]:
        """
        Switch to a new URL (a rotated C{DATABASE_URL}): open a pool for it and ping
        it (within C{connect_timeout} and C{statement_timeout}); if it answers, new
        calls go to the new pool, calls already running finish on the old one, which is
        closed once they have. If it does not, nothing changes and the returned
        Deferred fails with L{DatabaseUnavailable} (or
        L{ConfigurationError<pywatt_twisted.errors.ConfigurationError>} for a malformed
        URL), its message naming the new URL with the password redacted.

        The pool sizes and timeouts stay those of the current configuration unless the
        new URL sets C{connect_timeout}/C{statement_timeout} itself.
        """
        return Deferred.fromCoroutine(self._use_url(url))

    async def _use_url(self, url: object) -> None:
        if self._closed:
            raise self._closed_error()
        old_config = self.config
        config = DatabaseConfig.from_url(
            url,
            min_pool=old_config.min_pool,
            max_pool=old_config.max_pool,
            max_waiting=old_config.max_waiting,
            connect_timeout=old_config.connect_timeout,
            statement_timeout=old_config.statement_timeout,
        )
        if config.dialect != old_config.dialect:
            from pywatt_twisted.errors import ConfigurationError

            raise ConfigurationError(
                f"expected a {old_config.dialect} URL for the new value of the database "
                f"{self.name}, got {config.url_redacted} ({config.dialect})"
            )
        new_pool = self._make_pool(config)
        if not self._reactor.running:
            new_pool.start()
        probe = self._run(
            "ping",
            SyncTransaction.query_one,
            ("SELECT 1",),
            {},
            pool=new_pool,
        )
        try:
            await probe
        except Exception as e:
            new_pool.close()
            # the new pool is not in use: its failure says nothing about the old one
            raise DatabaseUnavailable(
                f"the new database URL {config.url_redacted} cannot be used, so "
                f"{old_config.url_redacted} stays in use: {e}",
                dialect=config.dialect,
            ) from None
        old_pool, self._pool, self.config = self._pool, new_pool, config
        self._log.info(
            "Database {name}: now using {new} (was {old}); the old connections close once "
            "their running calls finish",
            name=self.name,
            new=config.url_redacted,
            old=old_config.url_redacted,
        )
        self._retire(old_pool)

    def _retire(self, pool: ConnectionPool) -> None:
        """
        Close a pool no longer in use once the calls submitted to it have finished.
        """

        def close(_: object) -> None:
            if not pool.threadpool.joined:
                pool.close()

        self._retiring.add(pool)
        d = self._pool_drained(pool)
        d.addCallback(close)
        d.addErrback(lambda f: self._log.failure("closing an old database pool failed", f))
        d.addBoth(lambda _: self._retiring.discard(pool))

    # health and shutdown --------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """
        Pool statistics for C{/health}: C{status} (C{"ok"}; C{"unavailable"} from a
        failed connection attempt until a call succeeds again, with
        C{unavailable_seconds}; C{"closed"}), C{dialect}, C{url} (redacted), C{pool}
        (C{min}, C{max}, C{open} connections, C{in_flight} calls, C{transactions}
        open), C{calls}, C{errors}, C{reconnects}, C{interrupted} (calls failed with
        L{StatementInterrupted}), C{retries} (C{idempotent=True} calls run again),
        C{refused} (calls failed at once because C{max_waiting} calls already waited),
        C{last_error}.
        """
        if self._closed:
            status = "closed"
        elif self._down is not None:
            status = "unavailable"
        else:
            status = "ok"
        return {
            "status": status,
            "name": self.name,
            "dialect": self.dialect,
            "url": self.url_redacted,
            "pool": {
                "min": self._min_pool,
                "max": self._max_pool,
                "open": len(self._pool.connections),
                "in_flight": self._in_flight,
                "transactions": len(self._open_transactions),
            },
            "calls": self.calls,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "interrupted": self.interrupted,
            "retries": self.retries,
            "refused": self.refused,
            "last_error": self.last_error,
            **(
                {"unavailable_seconds": round(self._reactor.seconds() - self._down[0], 3)}
                if self._down is not None and not self._closed
                else {}
            ),
        }

    def close(self) -> Deferred[None]:
        """
        Refuse new calls, roll back open L{AsyncTransaction}s, wait for running calls,
        then close every connection. Safe to call more than once.
        """
        if self._closing is None:
            self._closed = True
            self._closing = Deferred.fromCoroutine(self._close())
        d: Deferred[None] = Deferred()

        def done(result: object) -> object:
            d.callback(None)
            return result

        self._closing.addBoth(done)
        return d

    async def _close(self) -> None:
        if self._shutdown_id is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_id)
            except (ValueError, KeyError):
                pass
            self._shutdown_id = None
        for tx in list(self._open_transactions):
            try:
                await tx.rollback()
            except Exception:
                pass
        if self._in_flight:
            waiter: Deferred[None] = Deferred()
            self._idle.append(waiter)
            await waiter
        for pool in (*self._retiring, self._pool):
            if not pool.threadpool.joined:
                # (joined: the pool was already stopped, e.g. by adbapi's own shutdown
                # trigger)
                pool.close()


__all__ = [
    "AsyncTransaction",
    "Database",
    "DatabaseConfig",
    "IDatabase",
    "ParameterError",
    "SyncTransaction",
]
