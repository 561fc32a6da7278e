# -*- test-case-name: tests.data.test_proxied -*-
"""
A database reached through the orchestrator (C{state.service(name)}): L{ProxyDatabase}
provides L{IDatabase} (the interface of a direct L{Database}: C{execute}, C{query},
C{query_one}, C{run_interaction} / C{transaction(fn)}, C{async with transaction()},
C{ping}, C{health}, C{close}) with every statement one C{service_operation}.
L{DatabaseOperations} is the orchestrator's end, running them on a real L{Database}.

Operations (C{params} objects; SQL parameters and row values as in
L{pywatt_twisted.data._proxied}):

    - C{describe {}} -> {dialect, name, url (redacted), max_pool}
    - C{execute|query|query_one {query, params, idempotent, timeout}} -> rows affected /
      rows / row or null
    - C{ping {timeout}} -> null
    - C{begin_transaction {}} -> {transaction_id}
    - C{transaction_execute|transaction_query|transaction_query_one {transaction_id,
      query, params}}
    - C{transaction_commit|transaction_rollback {transaction_id}} -> null

The data layer's rule holds over the wire: a statement is never sent twice on its own.
When no reply comes (the orchestrator did not answer in time, the module is stopping),
a statement that was sent fails with L{StatementInterrupted} (C{connection_lost} true:
the outcome is unknown) unless it was called with C{idempotent=True}, which is sent
once more; a transaction whose statement or commit lost its reply fails whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from pywatt_twisted.data._database._core import IDatabase, Params, Row
from pywatt_twisted.data._database._errors import (
    DatabaseError,
    DatabaseUnavailable,
    StatementInterrupted,
    TransactionClosed,
)
from pywatt_twisted.data._proxied import (
    decode_value,
    encode_params,
    encode_value,
    error_from_info,
)
from pywatt_twisted.errors import ServiceError, ServiceUnavailable

__all__ = ["DatabaseOperations", "ProxyDatabase"]

T = TypeVar("T")

_blocking: Any = blockingCallFromThread

#: seconds added to a statement's own timeout to wait for its reply
REPLY_GRACE = 5.0


def _rows(value: object) -> list[Row]:
    if not isinstance(value, list):
        raise DatabaseError(f"expected rows as a list from the proxied database, got {value!r}")
    return [_row(r) for r in value]  # type: ignore[misc]


def _row(value: object) -> Row | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DatabaseError(f"expected a row as an object from the proxied database, got {value!r}")
    return {k: decode_value(v) for k, v in value.items()}


class ProxyTransaction:
    """
    A transaction held open at the orchestrator's end across awaits (C{async with
    db.transaction() as tx}); the same methods as L{AsyncTransaction}.
    """

    def __init__(self, db: ProxyDatabase) -> None:
        self._db = db
        self._state = "new"
        self._id: str | None = None
        #: the L{StatementInterrupted} that ended it, if one did
        self.interrupted: StatementInterrupted | None = None

    async def __aenter__(self) -> ProxyTransaction:
        if self._state != "new":
            raise TransactionClosed("expected a new transaction, got one already used")
        db = self._db
        if db._closed:
            raise db._closed_error()
        self._state = "opening"
        try:
            reply = await db._run("begin_transaction", {}, "open a transaction")
        except BaseException:
            self._state = "done"
            raise
        self._id = str(reply["transaction_id"]) if isinstance(reply, dict) else str(reply)
        self._state = "open"
        db._open_transactions.add(self)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._state != "open":
            return False
        if exc_type is None:
            await self.commit()
        else:
            await self._abort()
        return False

    def _closed(self) -> TransactionClosed:
        if self.interrupted is not None:
            return TransactionClosed(
                "expected an open transaction, got one ended by an interrupted statement "
                f"({self.interrupted}); nothing more of it runs"
            )
        return TransactionClosed(
            "expected an open transaction, got one that already "
            f"{'finished' if self._state == 'done' else 'has not started'}; "
            "use it inside its async with block"
        )

    async def _statement(self, operation: str, sql: str, params: Params) -> Any:
        if self._state != "open":
            raise self._closed()
        try:
            return await self._db._run(
                operation,
                {"transaction_id": self._id, "query": sql, "params": encode_params(params)},
                "run a statement",
            )
        except StatementInterrupted as e:
            # the transaction is over: the rest is refused, the end does not commit;
            # the rollback goes out without holding up the error
            self.interrupted = e
            Deferred.fromCoroutine(self._abort())
            raise

    def execute(self, sql: str, params: Params = None) -> Deferred[int]:
        """
        Run a statement in this transaction; fire with the rows affected.
        """
        d = Deferred.fromCoroutine(self._statement("transaction_execute", sql, params))
        return d.addCallback(int)

    def query(self, sql: str, params: Params = None) -> Deferred[list[Row]]:
        """
        Run a query in this transaction; fire with its rows as C{dict}s.
        """
        d = Deferred.fromCoroutine(self._statement("transaction_query", sql, params))
        return d.addCallback(_rows)

    def query_one(self, sql: str, params: Params = None) -> Deferred[Row | None]:
        """
        Run a query in this transaction; fire with its first row or None.
        """
        d = Deferred.fromCoroutine(self._statement("transaction_query_one", sql, params))
        return d.addCallback(_row)

    async def _end(self, operation: str) -> None:
        if self._state != "open":
            if self.interrupted is not None and operation == "transaction_commit":
                raise StatementInterrupted(
                    f"{self.interrupted}; the whole transaction failed (not committed)",
                    connection_lost=self.interrupted.connection_lost,
                    dialect=self._db.dialect,
                )
            return
        self._state = "done"
        try:
            await self._db._run(operation, {"transaction_id": self._id}, "commit")
        finally:
            self._db._open_transactions.discard(self)

    async def _abort(self) -> None:
        """
        Roll back, keeping the error that got us here (a lost rollback changes
        nothing: the orchestrator rolls back what the module abandons).
        """
        try:
            await self._end("transaction_rollback")
        except Exception as e:
            self._db._log.info("rollback of a proxied transaction failed: {e}", e=e)

    def commit(self) -> Deferred[None]:
        """
        Commit now (the block's end then does nothing). A commit whose reply is lost
        fails with L{StatementInterrupted}: it may or may not have happened.
        """
        return Deferred.fromCoroutine(self._end("transaction_commit"))

    def rollback(self) -> Deferred[None]:
        """
        Roll back now (the block's end then does nothing).
        """
        return Deferred.fromCoroutine(self._end("transaction_rollback"))


class _ThreadTransaction:
    """
    What C{run_interaction}'s function gets in its thread: blocking C{execute},
    C{query}, C{query_one}, each waiting for the reactor-side L{ProxyTransaction}.
    """

    def __init__(self, reactor: Any, tx: ProxyTransaction) -> None:
        self._reactor = reactor
        self._tx = tx

    def execute(self, sql: str, params: Params = None) -> int:
        result: int = _blocking(self._reactor, self._tx.execute, sql, params)
        return result

    def query(self, sql: str, params: Params = None) -> list[Row]:
        result: list[Row] = _blocking(self._reactor, self._tx.query, sql, params)
        return result

    def query_one(self, sql: str, params: Params = None) -> Row | None:
        result: Row | None = _blocking(self._reactor, self._tx.query_one, sql, params)
        return result


@implementer(IDatabase)
class ProxyDatabase:
    """
    A database the orchestrator provides (see the module docstring). Made by
    C{state.service(name)}; its statistics and C{health()} have the shape of a direct
    L{Database}'s, so L{DatabaseCollector} works on it.

    @ivar interrupted: calls failed with L{StatementInterrupted}.
    @ivar retries: C{idempotent=True} calls sent again after a lost reply.
    @ivar refused: always 0 (kept for the shape of L{Database.health}): a proxied
        database's calls wait at the orchestrator, which bounds its own queue
        (C{pywatt dev --service-queue-size}), not in this process.
    """

    _log = Logger()
    refused = 0

    def __init__(
        self,
        link: Any,
        *,
        reactor: Any,
        dialect: str,
        name: str | None = None,
        url: str | None = None,
        max_pool: int = 1,
    ) -> None:
        self._link = link
        self._reactor = reactor
        self._dialect = dialect
        self.name = name or link.name
        self._url = url or ""
        self._max_pool = max_pool
        self._closed = False
        self._closing: Deferred[None] | None = None
        self._in_flight = 0
        self._idle: list[Deferred[None]] = []
        self._open_transactions: set[ProxyTransaction] = set()
        self.calls = 0
        self.errors = 0
        self.reconnects = 0
        self.interrupted = 0
        self.retries = 0
        self.last_error: str | None = None

    @property
    def dialect(self) -> str:
        return self._dialect

    @property
    def url_redacted(self) -> str:
        return f"service:{self._link.name}" + (f" ({self._url})" if self._url else "")

    def __repr__(self) -> str:
        return f"<ProxyDatabase {self.name} {self.url_redacted}>"

    def _closed_error(self) -> TransactionClosed:
        return TransactionClosed(f"the proxied database {self.name!r} was closed")

    async def _run(
        self,
        operation: str,
        params: dict[str, Any],
        doing: str,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """
        One operation, with the data layer's rules for lost replies and its counters.
        """
        if self._closed and operation not in ("transaction_rollback",):
            raise self._closed_error()
        self.calls += 1
        self._in_flight += 1
        wait = None if timeout is None else max(self._link.timeout, timeout + REPLY_GRACE)
        try:
            attempt = 0
            while True:
                try:
                    return await self._link.call(operation, params, timeout=wait)
                except ServiceUnavailable as e:
                    if not e.sent:
                        raise DatabaseUnavailable(
                            f"{self.dialect} (proxied {self.name!r}) could not {doing}: {e}",
                            dialect=self.dialect,
                        ) from None
                    if idempotent and attempt == 0:
                        attempt += 1
                        self.retries += 1
                        continue
                    self.interrupted += 1
                    raise StatementInterrupted(
                        f"{self.dialect} (proxied {self.name!r}): {doing} got no reply ({e}); "
                        "it was sent, so its outcome is unknown, and it was not sent again",
                        connection_lost=True,
                        dialect=self.dialect,
                    ) from None
                except ServiceError as e:
                    typed = error_from_info(e.info, e.detail)
                    if typed is None:
                        raise
                    if isinstance(typed, StatementInterrupted):
                        self.interrupted += 1
                    raise typed from None
        except BaseException as e:
            self.errors += 1
            self.last_error = str(e)
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle:
                idle, self._idle = self._idle, []
                for waiter in idle:
                    waiter.callback(None)

    def _statement(
        self,
        operation: str,
        sql: str,
        params: Params,
        idempotent: bool,
        timeout: float | None,
    ) -> Deferred[Any]:
        try:
            encoded = encode_params(params)
        except DatabaseError:
            return defer.fail()
        return Deferred.fromCoroutine(
            self._run(
                operation,
                {"query": sql, "params": encoded, "idempotent": idempotent, "timeout": timeout},
                "run a statement",
                idempotent=idempotent,
                timeout=timeout,
            )
        )

    def execute(
        self,
        sql: str,
        params: Params = None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Deferred[int]:
        """
        See L{Database.execute}: the statement runs at the orchestrator's end.
        """
        return self._statement("execute", sql, params, idempotent, timeout).addCallback(int)

    def query(
        self,
        sql: str,
        params: Params = None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Deferred[list[Row]]:
        """
        See L{Database.query}.
        """
        return self._statement("query", sql, params, idempotent, timeout).addCallback(_rows)

    def query_one(
        self,
        sql: str,
        params: Params = None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Deferred[Row | None]:
        """
        See L{Database.query_one}.
        """
        return self._statement("query_one", sql, params, idempotent, timeout).addCallback(_row)

    def run_interaction(self, fn: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """
        See L{Database.run_interaction}: C{fn(tx, *args, **kw)} runs in a thread of the
        reactor's pool; C{tx}'s blocking C{execute} / C{query} / C{query_one} each wait
        for one operation of a transaction held at the orchestrator's end.
        """
        return Deferred.fromCoroutine(self._interaction(fn, args, kw))

    async def _interaction(self, fn: Callable[..., T], args: Any, kw: Any) -> T:
        tx = ProxyTransaction(self)
        await tx.__aenter__()
        try:
            result: T = await deferToThreadPool(
                self._reactor,
                self._reactor.getThreadPool(),
                fn,
                _ThreadTransaction(self._reactor, tx),
                *args,
                **kw,
            )
        except BaseException:
            await tx._abort()
            if tx.interrupted is not None:
                raise StatementInterrupted(
                    f"{tx.interrupted}; the whole transaction failed (not committed)",
                    connection_lost=tx.interrupted.connection_lost,
                    dialect=self.dialect,
                ) from None
            raise
        await tx.commit()
        return result

    def transaction(self, fn: Callable[..., Any] | None = None, *args: Any, **kw: Any) -> Any:
        """
        See L{Database.transaction}.
        """
        if fn is None:
            if args or kw:
                raise TypeError("transaction() without a function takes no arguments")
            return ProxyTransaction(self)
        return self.run_interaction(fn, *args, **kw)

    def ping(self, timeout: float | None = None) -> Deferred[None]:
        """
        Ask the orchestrator's end to run C{SELECT 1} (retried once after a lost reply).
        """
        return Deferred.fromCoroutine(
            self._run("ping", {"timeout": timeout}, "ping", idempotent=True, timeout=timeout)
        ).addCallback(lambda _: None)

    def health(self) -> dict[str, Any]:
        """
        The shape of L{Database.health}; C{pool.open} is 1 while the proxied
        connection is open; C{service} has the link's counters.
        """
        return {
            "status": "closed" if self._closed else "ok",
            "name": self.name,
            "dialect": self.dialect,
            "url": self.url_redacted,
            "pool": {
                "min": 0,
                "max": self._max_pool,
                "open": 0 if self._closed else 1,
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
            "service": self._link.health(),
        }

    def close(self) -> Deferred[None]:
        """
        Refuse new calls, roll back open transactions, wait for running calls, then
        release the connection at the orchestrator's end. Safe to call more than once.
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
        for tx in list(self._open_transactions):
            await tx._abort()
        if self._in_flight:
            waiter: Deferred[None] = Deferred()
            self._idle.append(waiter)
            await waiter
        await self._link.close()


# -- the orchestrator's end ----------------------------------------------------------------

#: transactions one proxied connection may hold open at once
DEFAULT_MAX_TRANSACTIONS = 64
#: seconds a proxied transaction may stay open with no operation before it is rolled back
DEFAULT_TRANSACTION_IDLE = 60.0


class _Held:
    __slots__ = ("timer", "tx")

    def __init__(self, tx: Any, timer: Any) -> None:
        self.tx = tx
        self.timer = timer


class DatabaseOperations:
    """
    Runs proxied database operations on a real L{Database}, holding the transactions
    each connection opened (at most C{max_transactions}; one idle for
    C{transaction_idle} seconds is rolled back and logged).
    """

    log = Logger()

    def __init__(
        self,
        db: Any,
        *,
        max_transactions: int = DEFAULT_MAX_TRANSACTIONS,
        transaction_idle: float = DEFAULT_TRANSACTION_IDLE,
    ) -> None:
        self.db = db
        self.max_transactions = max_transactions
        self.transaction_idle = transaction_idle
        self._held: dict[str, dict[str, _Held]] = {}
        self._ids = itertools.count(1)
        self.rolled_back_idle = 0

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(
            {
                "describe",
                "execute",
                "query",
                "query_one",
                "ping",
                "begin_transaction",
                "transaction_execute",
                "transaction_query",
                "transaction_query_one",
                "transaction_commit",
                "transaction_rollback",
            }
        )

    def run(self, connection_id: str, operation: str, params: object) -> Deferred[Any] | None:
        """
        Run one operation for C{connection_id}; None when there is no such operation.
        """
        if operation not in self.operations:
            return None
        if not isinstance(params, dict):
            return defer.fail(DatabaseError(f"expected params as an object, got {params!r}"))
        return Deferred.fromCoroutine(self._run(connection_id, operation, params))

    async def _run(self, connection_id: str, operation: str, p: dict[str, Any]) -> Any:
        db = self.db
        if operation == "describe":
            return {
                "dialect": db.dialect,
                "name": db.name,
                "url": db.url_redacted,
                "max_pool": getattr(db, "_max_pool", 1),
            }
        if operation == "ping":
            await db.ping(timeout=p.get("timeout"))
            return None
        if operation in ("execute", "query", "query_one"):
            method = getattr(db, operation)
            result = await method(
                str(p.get("query")),
                self._params(p),
                idempotent=bool(p.get("idempotent")),
                timeout=p.get("timeout"),
            )
            return encode_value(result)
        if operation == "begin_transaction":
            held = self._held.setdefault(connection_id, {})
            if len(held) >= self.max_transactions:
                raise DatabaseError(
                    f"this connection already holds {len(held)} open transactions (the "
                    "limit); commit or roll back one first",
                    dialect=db.dialect,
                )
            tx = db.transaction()
            await tx.__aenter__()
            tid = f"tx-{next(self._ids)}"
            held[tid] = _Held(tx, None)
            self._touch(connection_id, tid)
            return {"transaction_id": tid}
        tid = str(p.get("transaction_id"))
        entry = self._held.get(connection_id, {}).get(tid)
        if entry is None:
            raise DatabaseError(
                f"no open transaction {tid!r} on this connection (it ended, or was rolled "
                "back after idling)",
                dialect=db.dialect,
            )
        if operation in ("transaction_commit", "transaction_rollback"):
            self._forget(connection_id, tid)
            if operation == "transaction_commit":
                await entry.tx.commit()
            else:
                await entry.tx.rollback()
            return None
        self._touch(connection_id, tid)
        method = getattr(entry.tx, operation[len("transaction_") :])
        try:
            return encode_value(await method(str(p.get("query")), self._params(p)))
        except StatementInterrupted:
            self._forget(connection_id, tid)
            await entry.tx.rollback()
            raise

    @staticmethod
    def _params(p: dict[str, Any]) -> dict[str, Any] | None:
        params = p.get("params")
        if params is None:
            return None
        if not isinstance(params, dict):
            raise DatabaseError(f"expected params as an object, got {type(params).__name__}")
        return {k: decode_value(v) for k, v in params.items()}

    def _touch(self, connection_id: str, tid: str) -> None:
        entry = self._held[connection_id][tid]
        if entry.timer is not None and entry.timer.active():
            entry.timer.reset(self.transaction_idle)
            return
        entry.timer = self.db._reactor.callLater(
            self.transaction_idle, self._idled, connection_id, tid
        )

    def _forget(self, connection_id: str, tid: str) -> _Held | None:
        entry = self._held.get(connection_id, {}).pop(tid, None)
        if entry is not None and entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        return entry

    def _idled(self, connection_id: str, tid: str) -> None:
        entry = self._forget(connection_id, tid)
        if entry is None:
            return
        self.rolled_back_idle += 1
        self.log.warn(
            "rolled back proxied transaction {tid} of {connection}: no operation for {s} s",
            tid=tid,
            connection=connection_id,
            s=self.transaction_idle,
        )
        entry.tx.rollback().addErrback(lambda f: None)

    def release(self, connection_id: str) -> Deferred[None]:
        """
        The connection is gone: roll back every transaction it held.
        """
        held = self._held.pop(connection_id, {})
        ds = []
        for tid in list(held):
            entry = held[tid]
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            ds.append(entry.tx.rollback().addErrback(lambda f: None))
        return defer.gatherResults(ds).addCallback(lambda _: None)
