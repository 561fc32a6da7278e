# -*- test-case-name: tests.data.test_cache -*-
"""
L{RedisCache}: an L{ICache} on Redis through txredisapi (a lazy connection pool that
reconnects by itself). Keys live under C{namespace:}; C{clear} walks them with C{SCAN}
(never C{KEYS}); locks are C{SET NX PX} plus a Lua compare-and-delete.

The pool is txredisapi's, with our own connection handshake (L{_PoolProtocol}): no
C{SELECT} for database 0, and a failed C{AUTH}/C{SELECT} (a connection lost in the
middle, a timeout, a refusal) drops only that connection and lets the pool reconnect
with growing backoff, where txredisapi would stop reconnecting for good.

Availability (see L{pywatt_twisted.data._cache._availability}): a failed connection
attempt (refused, timed out, a failed handshake) fails the commands waiting for a
connection at once, and later ones too while no connection is open or being opened; a
command without a reply within C{reply_timeout} fails and drops its connection. Either
marks the cache unavailable (one WARNING, C{/health}) and calls fail at once for
C{connect_timeout} seconds.

txredisapi schedules its connection and reply timers on the global reactor; C{clock}
is used for lock waits and for the bound on waiting for a usable connection.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import txredisapi
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted.data._cache._availability import (
    Availability,
    ReportingEndpoint,
    report_failure,
)
from pywatt_twisted.data._cache._base import ICacheStore, StoreCache
from pywatt_twisted.data._cache._errors import CacheError, CacheUnavailable
from pywatt_twisted.data._database._config import redact_url
from pywatt_twisted.data._resources import track

_COMPARE_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_INCREMENT_TTL = """
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 and tonumber(v) == tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
"""


def _glob_escape(text: str) -> str:
    for c in "\\*?[]":
        text = text.replace(c, "\\" + c)
    return text


def _prefix(parts: tuple[str, ...]) -> str:
    return "".join(p + ":" for p in parts)


def _none(_: object) -> None:
    return None


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


#: defaults of the C{connect_timeout} and C{reply_timeout} options, in seconds
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_REPLY_TIMEOUT = 5.0

_HINT = (
    "Raise ?connect_timeout= (opening a connection) or ?reply_timeout= (a command) in "
    "the cache URL if the server is only slow."
)


def _server_url(url: str) -> str:
    """
    C{url} without its password and its options (the query string): what messages
    name the server by.
    """
    return redact_url(urlunsplit(urlsplit(url)._replace(query="", fragment="")))


class _NoConnection(txredisapi.ConnectionError):
    """
    No usable connection: the last connection attempt failed, or none turned up
    within C{connect_timeout}.
    """


class _PoolProtocol(txredisapi.RedisProtocol):
    """
    A pool connection that runs the C{AUTH}/C{SELECT} handshake itself.

    txredisapi's own handshake calls C{factory.stopTrying()} when either command fails,
    for any reason: a connection the server closes during C{SELECT 0} stops the whole
    pool from ever reconnecting, and the error is also put into the pool's ready
    L{Deferred}, which nobody handles. Here the factory is built without a password
    and database (so txredisapi's handshake does nothing) and this class does the
    handshake from L{_PoolFactory}'s settings; a failure closes this connection only.
    """

    factory: _PoolFactory

    def __init__(self, *args: Any, **kw: Any) -> None:
        from twisted.internet import reactor

        super().__init__(*args, **kw)
        #: the clock of the reply timer (txredisapi's timers run on the global reactor)
        self.clock: Any = reactor
        #: (deadline, reply Deferred) of the commands sent with a reply timeout, oldest
        #: first; answered ones are dropped as new commands are sent and by the sweep
        self._replies: deque[tuple[float, Deferred[Any]]] = deque()
        #: the one timer of the reply timeouts (L{_sweep}), armed while commands wait
        self._sweeper: Any = None

    def execute_command(self, *args: Any, **kw: Any) -> Deferred[Any]:
        """
        Send a command; with the factory's C{reply_wait}, fail it (and every command
        waiting on this connection) and drop the connection when no reply comes
        within that many seconds, as txredisapi's C{replyTimeout} does, but with one
        timer per connection (L{_sweep}) instead of a timer per command: Redis answers
        the commands of a connection in order, so the oldest unanswered one is always
        the first to time out.
        """
        d: Deferred[Any] = super().execute_command(*args, **kw)
        timeout = self.factory.reply_wait
        if timeout and kw.get("apply_timeout", True):
            replies = self._replies
            while replies and replies[0][1].called:
                replies.popleft()
            clock = self.clock
            replies.append((clock.seconds() + timeout, d))
            if self._sweeper is None:
                self._sweeper = clock.callLater(timeout, self._sweep)
        return d

    def _sweep(self) -> None:
        self._sweeper = None
        replies = self._replies
        while replies and replies[0][1].called:
            replies.popleft()
        if not replies:
            return
        clock = self.clock
        deadline = replies[0][0]
        now = clock.seconds()
        if now < deadline:
            self._sweeper = clock.callLater(deadline - now, self._sweep)
            return
        # what txredisapi's per-command timer does: every waiting command fails with
        # the same TimeoutError (in order, the late one first) and the connection goes
        replies.clear()
        error_text = f"Not received Redis response in {self.factory.reply_wait} seconds"
        while self.replyQueue.waiting:
            self.replyQueue.put(txredisapi.TimeoutError(error_text))
        self.transport.abortConnection()

    def connectionLost(self, why: Failure = connectionDone) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and sweeper.active():
            sweeper.cancel()
        super().connectionLost(why)
        self._replies.clear()

    def connectionMade(self) -> None:
        factory = self.factory
        if factory.auth_password is None and not factory.select_db:
            # nothing to negotiate: ready at once (txredisapi's connectionMade marks it)
            super().connectionMade()
            return
        Deferred.fromCoroutine(self._handshake())

    async def _handshake(self) -> None:
        factory = self.factory
        step = "AUTH"
        try:
            if factory.auth_password is not None:
                reply = await self.auth(factory.auth_password, factory.auth_username)
                if isinstance(reply, Exception):
                    raise reply
            if factory.select_db:
                step = f"SELECT {factory.select_db}"
                reply = await self.select(factory.select_db)
                if isinstance(reply, Exception):
                    raise reply
        except Exception as e:
            factory.handshake_failed(self, step, e)
            return
        super().connectionMade()


class _PoolFactory(txredisapi.RedisFactory):
    """
    txredisapi's lazy, reconnecting pool factory with L{_PoolProtocol} connections, a
    handled ready L{Deferred}, and a bound on how long a command waits for a usable
    connection.

    @ivar select_db: the database to C{SELECT} on connect (0 sends nothing).
    @ivar connect_wait: seconds a command waits for a usable connection before it
        fails (the C{connect_timeout} option).
    @ivar reply_wait: seconds a command waits for its reply (the C{reply_timeout}
        option; C{None}: no limit), timed by L{_PoolProtocol} rather than txredisapi.
    """

    protocol = _PoolProtocol
    log = Logger()

    def __init__(
        self,
        *,
        db: int,
        password: str | None,
        username: str | None,
        poolsize: int,
        reply_timeout: float | None,
        connect_wait: float,
        clock: Any,
        url_redacted: str,
        availability: Availability | None = None,
    ) -> None:
        # no password or dbid for txredisapi: _PoolProtocol does the handshake; no
        # replyTimeout either (a timer per command): _PoolProtocol times the replies
        super().__init__(
            url_redacted,
            None,
            poolsize,
            isLazy=True,
            handler=txredisapi.ConnectionHandler,
            charset=None,
            password=None,
            replyTimeout=None,
            convertNumbers=False,
            username=None,
        )
        self.reconnect = True
        self.select_db = db
        self.reply_wait = reply_timeout
        self.auth_password = password
        self.auth_username = username
        self.connect_wait = connect_wait
        self.clock = clock
        self.url_redacted = url_redacted
        self.availability = availability
        #: why the last connection attempt failed, until a connection is made again:
        #: while it is set and the pool is empty, commands fail at once with it
        self._connect_error: str | None = None
        #: the error given to the waiting commands failed at once (see L{_fail_waiting})
        self._waiting_error: Exception | None = None
        #: the handshake problem last logged (each distinct one is logged once)
        self._problem: str | None = None
        #: the commands waiting for a usable connection (their Deferreds)
        self._waiting: set[Deferred[Any]] = set()
        # the "pool complete" Deferred the handler keeps: nobody else waits on it, so
        # any error put into it must not end up as an unhandled error at collection
        self.deferred.addErrback(self._pool_failed)

    def _secret_free(self, text: str) -> str:
        if self.auth_password:
            text = text.replace(self.auth_password, "***")
        return text

    def _pool_failed(self, failure: Failure) -> None:
        self.log.warn(
            "Redis at {url}: {error}",
            url=self.url_redacted,
            error=self._secret_free(failure.getErrorMessage()),
        )

    def handshake_failed(self, proto: _PoolProtocol, step: str, error: Exception) -> None:
        """
        The handshake of C{proto} failed: close that connection and let its pool slot
        reconnect (after a delay that grows while new connections keep failing).
        """
        proto.transport.loseConnection()
        if self.disconnectCalled:
            # we are closing: the handshake was cut short on purpose
            return
        problem = f"{step} failed on a new connection: {type(error).__name__}: {error}"
        problem = self._secret_free(problem)
        self._cannot_connect(problem)
        if problem != self._problem:
            self._problem = problem
            self.log.warn(
                "Redis at {url}: {problem}; dropping that connection and reconnecting"
                " (backoff from {initial} s up to {max} s between attempts)",
                url=self.url_redacted,
                problem=problem,
                initial=self.initialDelay,
                max=self.maxDelay,
            )

    def buildProtocol(self, addr: Any) -> _PoolProtocol:
        proto: _PoolProtocol = super().buildProtocol(addr)
        # a connection is being made: commands wait for it (up to connect_wait)
        self._connect_error = None
        proto.whenConnected().addCallback(self._usable)
        return proto

    def _usable(self, proto: _PoolProtocol) -> None:
        if self._problem is not None:
            self.log.info("Redis at {url}: connected again", url=self.url_redacted)
            self._problem = None
        self._connect_error = None
        if self.availability is not None:
            self.availability.connected()

    def connect_failed(self, failure: Failure) -> None:
        """
        A connection attempt failed (refused, timed out): the commands waiting for a
        connection fail at once, and so do new ones until a connection is made.
        """
        if self.disconnectCalled:
            return
        self._cannot_connect(f"could not connect: {self._secret_free(report_failure(failure))}")

    def _cannot_connect(self, problem: str) -> None:
        self._connect_error = problem
        if self.size:
            # the other connections of the pool still serve the commands
            return
        if self.availability is not None:
            self.availability.failed(CacheUnavailable(problem), connecting=True)
        self._fail_waiting(_NoConnection(problem))

    def _fail_waiting(self, error: Exception) -> None:
        """
        Fail every command waiting for a connection with C{error}.
        """
        self._waiting_error = error
        try:
            for d in list(self._waiting):
                d.cancel()
        finally:
            self._waiting_error = None

    def getConnection(self, peek: bool = False) -> Deferred[Any]:
        """
        A usable connection of the pool, waiting at most C{connect_wait} seconds for
        one while the pool (re)connects.
        """
        if not self.size and self._connect_error is not None and not self.disconnectCalled:
            return defer.fail(
                _NoConnection(
                    f"{self._connect_error} (the pool keeps reconnecting in the background)"
                )
            )
        d: Deferred[Any] = super().getConnection(peek)
        if d.called:
            return d
        self._waiting.add(d)
        d.addTimeout(self.connect_wait, self.clock, onTimeoutCancel=self._no_connection)
        d.addErrback(self._closed_while_waiting)
        d.addBoth(self._done_waiting, d)
        return d

    def _done_waiting(self, result: object, d: Deferred[Any]) -> object:
        self._waiting.discard(d)
        return result

    def _closed_while_waiting(self, failure: Failure) -> None:
        failure.trap(defer.CancelledError)
        if self._waiting_error is not None:
            raise self._waiting_error
        raise txredisapi.ConnectionError("the cache was closed while this command waited")

    def disconnect(self) -> Deferred[None]:
        """
        Close the pool; the commands still waiting for a connection fail at once.
        """
        for d in list(self._waiting):
            d.cancel()
        result: Deferred[None] = super().disconnect()
        return result

    def _no_connection(self, result: object, timeout: float) -> Failure:
        # logged once per outage by the cache's Availability (the store's _fail)
        return Failure(
            _NoConnection(
                f"no usable connection within connect_timeout={timeout:g} s (raise it with"
                " the connect_timeout option of the URL, e.g. ?connect_timeout=30)"
            )
        )


@implementer(ICacheStore)
class RedisStore:
    """
    The storage behind L{RedisCache}.
    """

    #: prefix() depends only on the namespace path (see L{ICacheStore})
    static_prefix = True
    backend = "redis"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        password: str | None = None,
        username: str | None = None,
        poolsize: int = 4,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reply_timeout: float | None = DEFAULT_REPLY_TIMEOUT,
        clock: Any = None,
        url_redacted: str | None = None,
    ) -> None:
        from twisted.internet import reactor

        if clock is None:
            clock = reactor
        self.clock = clock
        self.inflight: dict[Any, Any] = {}
        self.url_redacted = url_redacted or f"redis://{host}:{port}/{db}"
        self.reply_timeout = reply_timeout
        self._password = password
        self.availability = Availability(
            backend="Redis",
            url_redacted=self.url_redacted,
            address=f"{host}:{port}",
            retry_after=connect_timeout,
            clock=clock,
            hint=_HINT,
        )
        self._factory = _PoolFactory(
            db=db,
            password=password,
            username=username,
            poolsize=poolsize,
            reply_timeout=reply_timeout,
            connect_wait=connect_timeout,
            clock=clock,
            url_redacted=self.url_redacted,
            availability=self.availability,
        )
        # like txredisapi's own pools: connections on the global reactor
        endpoint = HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
        self._endpoint = ReportingEndpoint(endpoint, self._factory.connect_failed)
        self._factory.startConnecting(self._endpoint)
        self._redis = self._factory.handler

    def __repr__(self) -> str:
        return f"<RedisStore {self.url_redacted}>"

    def prefix(self, parts: tuple[str, ...]) -> str:
        return _prefix(parts)

    def _fail(self, failure: Failure) -> Failure:
        error = failure.value
        if isinstance(error, CacheError):
            return failure
        message = str(error)
        if self._password:
            message = message.replace(self._password, "***")
        if isinstance(error, txredisapi.ResponseError):
            raise CacheError(f"Redis at {self.url_redacted} refused the command: {message}")
        if isinstance(error, txredisapi.TimeoutError):
            unavailable = CacheUnavailable(
                f"Redis at {self.url_redacted} did not answer within "
                f"reply_timeout={self.reply_timeout:g} s; the connection was dropped (raise "
                "it with the reply_timeout option of the URL, e.g. ?reply_timeout=30)"
            )
            self.availability.failed(unavailable, connecting=False)
            raise unavailable
        unavailable = CacheUnavailable(
            f"could not reach Redis at {self.url_redacted}: {type(error).__name__}: {message};"
            " check that the server runs and the URL is right (the pool keeps reconnecting)"
        )
        if isinstance(error, _NoConnection):
            self.availability.failed(unavailable, connecting=True)
        raise unavailable

    def _call(self, name: str, *args: Any, **kw: Any) -> Deferred[Any]:
        try:
            d = getattr(self._redis, name)(*args, **kw)
        except Exception:
            return defer.fail().addErrback(self._fail)
        return d.addErrback(self._fail)

    @staticmethod
    def _k(key: str) -> bytes:
        return key.encode("utf-8")

    # get and set are the hot paths: the client called directly, no closures, and one
    # (result, error) callback pair on set instead of an errback plus a callback

    def get(self, key: str) -> Deferred[bytes | None]:
        try:
            d = self._redis.get(key.encode("utf-8"))
        except Exception:
            return defer.fail().addErrback(self._fail)
        return d.addErrback(self._fail)

    def get_many(self, keys: list[str]) -> Deferred[dict[str, bytes]]:
        return self._call("mget", [self._k(k) for k in keys]).addCallback(
            lambda values: {k: v for k, v in zip(keys, values, strict=True) if v is not None}
        )

    def set(self, key: str, data: bytes, ttl: float | None) -> Deferred[None]:
        pexpire = None if ttl is None else _ms(ttl)
        try:
            d = self._redis.set(key.encode("utf-8"), data, pexpire=pexpire)
        except Exception:
            return defer.fail().addErrback(self._fail)
        return d.addCallbacks(_none, self._fail)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Deferred[None]:
        if ttl is None:
            mapping = {self._k(k): v for k, v in items.items()}
            return self._call("mset", mapping).addCallback(lambda _: None)
        return defer.gatherResults(
            [self.set(k, v, ttl) for k, v in items.items()], consumeErrors=True
        ).addCallbacks(lambda _: None, lambda f: f.value.subFailure)

    def set_nx(self, key: str, data: bytes, ttl: float | None) -> Deferred[bool]:
        pexpire = None if ttl is None else _ms(ttl)
        return self._call(
            "set", self._k(key), data, pexpire=pexpire, only_if_not_exists=True
        ).addCallback(lambda r: r is not None)

    def delete(self, key: str) -> Deferred[bool]:
        return self._call("delete", self._k(key)).addCallback(lambda n: int(n) > 0)

    def exists(self, key: str) -> Deferred[bool]:
        return self._call("exists", self._k(key)).addCallback(lambda n: int(n) > 0)

    def increment(self, key: str, delta: int, ttl: float | None) -> Deferred[int]:
        if ttl is None:
            d = self._call("incrby", self._k(key), delta)
        else:
            d = self._call("eval", _INCREMENT_TTL, [self._k(key)], [delta, _ms(ttl)])

        def not_int(f: Failure) -> Failure:
            if f.check(CacheError) and "not an integer" in str(f.value):
                raise CacheError(
                    f"expected an integer value at {key[:60]!r} to increment, got another "
                    "type; delete it or use another key"
                )
            return f

        return d.addCallbacks(int, not_int)

    def compare_delete(self, key: str, data: bytes) -> Deferred[bool]:
        return self._call("eval", _COMPARE_DELETE, [self._k(key)], [data]).addCallback(
            lambda n: int(n) > 0
        )

    def clear(self, parts: tuple[str, ...]) -> Deferred[None]:
        return Deferred.fromCoroutine(self._clear(parts))

    async def _clear(self, parts: tuple[str, ...]) -> None:
        pattern = _glob_escape(_prefix(parts)) + "*"
        cursor: Any = 0
        while True:
            cursor, keys = await self._call("scan", cursor, pattern.encode(), 500)
            if keys:
                await self._call("delete", keys)
            if int(cursor) == 0:
                return

    def close(self) -> Deferred[None]:
        return self._redis.disconnect().addCallback(lambda _: None)


class RedisCache(StoreCache):
    """
    An L{ICache} on a Redis server. Connects lazily (the first command waits for a
    connection); reconnects by itself, with growing backoff, after a drop or a failed
    C{AUTH}/C{SELECT} (the commands in flight fail with L{CacheUnavailable}). While the
    server cannot be reached, calls fail at once with L{CacheUnavailable} (see the
    module docstring). Created while a module starts, it is closed when the module
    stops.

    @param poolsize: the number of connections.
    @param connect_timeout: seconds to open a connection, the longest a command
        waits for a usable one, and how long calls fail at once after a failure.
    @param reply_timeout: seconds to wait for a reply; then the command fails and its
        connection is dropped (C{None}: no limit).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        password: str | None = None,
        username: str | None = None,
        namespace: str | None = None,
        poolsize: int = 4,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reply_timeout: float | None = DEFAULT_REPLY_TIMEOUT,
        clock: Any = None,
        url: str | None = None,
    ) -> None:
        store = RedisStore(
            host=host,
            port=port,
            db=db,
            password=password,
            username=username,
            poolsize=poolsize,
            connect_timeout=connect_timeout,
            reply_timeout=reply_timeout,
            clock=clock,
            url_redacted=_server_url(url) if url else None,
        )
        super().__init__(store, (namespace,) if namespace else ())
        track(self)
