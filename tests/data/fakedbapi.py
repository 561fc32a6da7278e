"""
A scripted DB-API 2.0 driver shaped like psycopg, for testing what L{Database} does when
a connection dies at a chosen moment, without a server.

A L{FakeServer} records every statement that reached it (C{sent}: what ran, whatever
became of it) and every statement committed (C{committed}). Its C{plan} says what the
next statements do: C{"ok"}, C{"lost"} (the statement reaches the server, then the
connection dies before the reply), C{"cancelled"} (the server cancels it: SQLSTATE
57014, the connection stays usable), C{"error"} (an ordinary server error); and
C{commit_plan} the same for commits (C{"lost"}: the commit is applied, the reply lost).

C{Database} reaches it through C{DRIVERS}, patched to name this module; the test sets
the module's C{server} to the L{FakeServer} to use.
"""

from __future__ import annotations

from typing import Any


class Error(Exception):
    sqlstate: str | None = None


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class QueryCanceled(OperationalError):
    sqlstate = "57014"


class FakeServer:
    """
    The server side: what reached it, what was committed, and the script.
    """

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.committed: list[str] = []
        self.plan: list[str] = []
        self.commit_plan: list[str] = []
        self.connections: list[FakeConnection] = []

    def next(self, plan: list[str]) -> str:
        return plan.pop(0) if plan else "ok"


server = FakeServer()


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self._conn = conn
        self.rowcount = -1
        self.description: Any = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        conn = self._conn
        if conn.closed or conn.broken:
            raise OperationalError("the connection is closed")
        conn.server.sent.append(sql)
        action = conn.server.next(conn.server.plan)
        if action == "lost":
            conn.lose()
            raise OperationalError("server closed the connection unexpectedly")
        if action == "cancelled":
            conn.pending.clear()
            raise QueryCanceled("canceling statement due to user request")
        if action == "error":
            raise ProgrammingError("syntax error")
        conn.pending.append(sql)
        self.rowcount = 1
        self.description = [("n",)]
        self._rows = [(len(conn.server.sent),)]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def close(self) -> None:
        pass


class FakeConnection:
    """
    psycopg-like: C{closed} and C{broken} flags.
    """

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.closed = False
        self.broken = False
        self.pending: list[str] = []
        server.connections.append(self)

    def lose(self) -> None:
        """
        The connection dies: the server rolls back what was not committed.
        """
        self.broken = True
        self.closed = True
        self.pending.clear()

    def cursor(self) -> FakeCursor:
        if self.closed:
            raise OperationalError("the connection is closed")
        return FakeCursor(self)

    def commit(self) -> None:
        if self.closed or self.broken:
            raise OperationalError("the connection is closed")
        action = self.server.next(self.server.commit_plan)
        self.server.committed.extend(self.pending)
        self.pending.clear()
        if action == "lost":
            self.lose()
            raise OperationalError("server closed the connection unexpectedly")

    def rollback(self) -> None:
        if self.closed or self.broken:
            raise OperationalError("the connection is closed")
        self.pending.clear()

    def close(self) -> None:
        self.closed = True


def connect(**kw: Any) -> FakeConnection:
    return FakeConnection(server)
