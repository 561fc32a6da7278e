# -*- test-case-name: tests.data.test_database_config -*-
"""
Database configuration: a value object built from a URL (usually the C{DATABASE_URL}
secret) or by hand, and the redaction of its password.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import attrs

from pywatt_twisted.data._threads import MAX_WAITING_LIMIT, checked_bound
from pywatt_twisted.errors import ConfigurationError

#: URL scheme -> dialect
SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}

#: dialect -> DB-API module name handed to adbapi
DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "sqlite": "sqlite3"}

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}

MEMORY = ":memory:"


def _expose(value: object) -> str:
    """
    Accept a plain string or a L{pywatt_twisted} C{Secret} (anything with C{expose()}).
    """
    expose = getattr(value, "expose", None)
    if callable(expose):
        value = expose()
    if not isinstance(value, str):
        raise ConfigurationError(
            f"expected a database URL as a string or a Secret, got {type(value).__name__}"
        )
    return value


@attrs.frozen
class DatabaseConfig:
    """
    Everything needed to open a L{Database}.

    @ivar dialect: C{"postgresql"}, C{"mysql"} or C{"sqlite"}.
    @ivar host: server host (ignored for SQLite).
    @ivar port: server port; None for the dialect's default.
    @ivar user: user name, or None.
    @ivar password: password, or None; never shown by C{repr}.
    @ivar database: database name, or for SQLite the file path or C{":memory:"}.
    @ivar options: extra driver keyword arguments from the URL query string
        (C{sslmode}, C{application_name}, C{charset}, C{unix_socket}...), as strings.
    @ivar min_pool: connections (threads) kept ready.
    @ivar max_pool: most connections open at once; extra calls queue.
    @ivar max_waiting: most calls waiting for a connection while all C{max_pool} are
        busy (1000 by default); one more fails at once with L{DatabaseUnavailable}
        instead of queueing without bound.
    @ivar connect_timeout: seconds allowed to open a connection (5 by default; URL
        option C{?connect_timeout=N}). A server that does not answer in time makes the
        call fail with L{DatabaseUnavailable}.
    @ivar statement_timeout: seconds a statement may run before the server cancels it
        (30 by default; URL option C{?statement_timeout=N}; None for no limit). Enforced
        server-side (PostgreSQL C{statement_timeout}, MariaDB C{max_statement_time},
        MySQL C{max_execution_time}, which bounds C{SELECT}s only), so a cancelled
        statement does not keep running; MySQL/MariaDB connections also stop waiting
        for a reply C{statement_timeout + 5} seconds after sending. SQLite has no limit.
    """

    dialect: str = attrs.field(validator=attrs.validators.in_(tuple(DRIVERS)))
    database: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    options: dict[str, str] = attrs.field(factory=dict)
    min_pool: int = 1
    max_pool: int = 5
    max_waiting: int = 1000
    connect_timeout: float = 5.0
    statement_timeout: float | None = 30.0

    def __attrs_post_init__(self) -> None:
        if self.max_pool < 1 or self.min_pool < 0 or self.min_pool > self.max_pool:
            raise ConfigurationError(
                "expected 0 <= min_pool <= max_pool and max_pool >= 1, got "
                f"min_pool={self.min_pool}, max_pool={self.max_pool}"
            )
        checked_bound("max_waiting", self.max_waiting, MAX_WAITING_LIMIT, ConfigurationError)
        if not self.connect_timeout > 0:
            raise ConfigurationError(
                f"expected connect_timeout > 0 seconds, got {self.connect_timeout!r}"
            )
        if self.statement_timeout is not None and not self.statement_timeout > 0:
            raise ConfigurationError(
                "expected statement_timeout > 0 seconds (or None for no limit), got "
                f"{self.statement_timeout!r}"
            )

    @classmethod
    def from_url(cls, url: object, **overrides: Any) -> DatabaseConfig:
        """
        Parse a database URL.

        The query string may set C{connect_timeout} and C{statement_timeout} (seconds;
        C{statement_timeout=0} or C{none} for no limit); an explicit keyword wins over
        the URL. Other query options go to the driver.

        Forms: C{postgresql://user:pass@host:port/db?sslmode=require} (also
        C{postgres://}), C{mysql://user:pass@host:port/db} (also C{mariadb://}),
        and SQLite in SQLAlchemy's convention: C{sqlite:///relative/path.db} (relative to
        the working directory), C{sqlite:////absolute/path.db}, also
        C{sqlite:relative/path.db} and C{sqlite:/absolute/path.db}; C{sqlite://} and
        C{sqlite:///:memory:} (or C{sqlite://:memory:}) for an in-memory database.
        User and password are percent-decoded.

        @param url: a string or a C{Secret} holding one.
        @param overrides: any other L{DatabaseConfig} field (C{min_pool}...).
        @raise ConfigurationError: on an unknown scheme or a malformed URL; the message
            shows the URL with its password redacted.
        """
        text = _expose(url)
        scheme = text.partition(":")[0].lower()
        if SCHEMES.get(scheme) == "sqlite":
            return cls._from_sqlite_url(text, overrides)
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as e:
            raise ConfigurationError(
                f"expected a database URL such as postgresql://user@host:5432/db, got "
                f"{redact_url(text)!r} ({e})"
            ) from None
        scheme = parts.scheme.lower()
        dialect = SCHEMES.get(scheme)
        if dialect is None:
            raise ConfigurationError(
                f"expected a database URL with a scheme in {sorted(SCHEMES)}, got "
                f"{redact_url(text)!r}"
            )
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        overrides = _timeouts_from(options, overrides, redact_url(text))
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ConfigurationError(
                f"expected a database name in the URL path ({scheme}://host/DBNAME), got "
                f"{redact_url(text)!r}"
            )
        return cls(
            dialect=dialect,
            database=database,
            host=parts.hostname or "127.0.0.1",
            port=port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            options=options,
            **overrides,
        )

    @classmethod
    def _from_sqlite_url(cls, text: str, overrides: dict[str, Any]) -> DatabaseConfig:
        rest = text.partition(":")[2]
        rest, _, query = rest.partition("?")
        options = dict(parse_qsl(query, keep_blank_values=True))
        overrides = _timeouts_from(options, overrides, text)
        if rest.startswith("//"):
            # sqlite://<host>/<path>, as SQLAlchemy reads it: no host, and the one slash
            # after it is the separator, so sqlite:///notes.db is the relative notes.db
            rest = rest[2:]
            if rest.startswith("/"):
                rest = rest[1:] or MEMORY
            elif rest not in ("", MEMORY):
                raise ConfigurationError(
                    f"expected no host in a SQLite URL, got {text!r}: write "
                    f"sqlite:///{rest} for {rest!r} relative to the working directory, "
                    f"or sqlite:////absolute/path.db"
                )
            rest = rest or MEMORY
        if rest == MEMORY:
            path = MEMORY
        elif not rest:
            raise ConfigurationError(
                "expected a SQLite URL with a path (sqlite:///relative/path.db, "
                f"sqlite:////absolute/path.db, sqlite:relative.db) or sqlite://, got {text!r}"
            )
        else:
            path = unquote(rest)
        return cls(dialect="sqlite", database=path, options=options, **overrides)

    @property
    def address(self) -> str:
        """
        Where the server is, for messages: C{host:port}, or the SQLite path.
        """
        if self.dialect == "sqlite":
            return self.database
        return f"{self.host}:{self.port or _DEFAULT_PORTS[self.dialect]}"

    @property
    def url_redacted(self) -> str:
        """
        The URL of this configuration with the password replaced by C{***}.
        """
        if self.dialect == "sqlite":
            # the SQLAlchemy form: one slash more than the path has
            base = "sqlite://:memory:" if self.database == MEMORY else f"sqlite:///{self.database}"
        else:
            auth = ""
            if self.user is not None:
                auth = quote(self.user, safe="")
                if self.password is not None:
                    auth += ":***"
                auth += "@"
            port = f":{self.port}" if self.port is not None else ""
            base = f"{self.dialect}://{auth}{self.host}{port}/{quote(self.database)}"
        if self.options:
            base += "?" + "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return base

    def connect_kwargs(self) -> dict[str, Any]:
        """
        Keyword arguments for the driver's C{connect()}.
        """
        timeout = self.connect_timeout
        if self.dialect == "sqlite":
            kw: dict[str, Any] = {
                "database": self.database,
                "check_same_thread": False,
                # transactions are opened explicitly (BEGIN) so that DDL is
                # transactional and commit/rollback mean the same as elsewhere
                "isolation_level": None,
                "timeout": timeout,
            }
            if self.database.startswith("file:"):
                kw["uri"] = True
            return kw
        if self.dialect == "postgresql":
            kw = {
                "host": self.host,
                "port": self.port or _DEFAULT_PORTS["postgresql"],
                "dbname": self.database,
                # libpq counts whole seconds and treats less than 2 as 2
                "connect_timeout": max(2, math.ceil(timeout)),
            }
            if self.user is not None:
                kw["user"] = self.user
            if self.password is not None:
                kw["password"] = self.password
            kw.update(self.options)
            if self.statement_timeout is not None:
                # server-side, from the first statement on; the URL's own "options"
                # come after, so a -c statement_timeout there wins
                ms = max(1, int(self.statement_timeout * 1000))
                kw["options"] = f"-c statement_timeout={ms} {kw.get('options', '')}".strip()
            return kw
        kw = {
            "host": self.host,
            "port": self.port or _DEFAULT_PORTS["mysql"],
            "database": self.database,
            "connect_timeout": max(1, math.ceil(timeout)),
            # covers the server greeting and login too: a server that accepts the TCP
            # connection but never answers fails within connect_timeout; once the
            # connection is open the wait for a reply becomes statement_timeout + 5 s
            "read_timeout": timeout,
            "write_timeout": timeout,
            "charset": "utf8mb4",
            "autocommit": False,
        }
        if self.user is not None:
            kw["user"] = self.user
        if self.password is not None:
            kw["password"] = self.password
        kw.update(self.options)
        return kw


def _seconds(name: str, value: str, url: str) -> float | None:
    """
    A timeout from a URL option: seconds, or None for C{0}/C{none} (statement_timeout).
    """
    if name == "statement_timeout" and value.strip().lower() in ("0", "none", ""):
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigurationError(
            f"expected {name} in seconds (a positive number) in the database URL, got "
            f"{name}={value!r} in {url!r}"
        )
    return seconds


def _timeouts_from(options: dict[str, str], overrides: dict[str, Any], url: str) -> dict[str, Any]:
    """
    Move C{connect_timeout} and C{statement_timeout} from URL options into the fields
    (a keyword given explicitly, not None, wins).
    """
    overrides = dict(overrides)
    for name in ("connect_timeout", "statement_timeout"):
        if name in options:
            value = _seconds(name, options.pop(name), url)
            if overrides.get(name) is None:
                overrides[name] = value
        if name in overrides and overrides[name] is None and name == "connect_timeout":
            del overrides[name]
    return overrides


def redact_url(url: str) -> str:
    """
    Replace the password of a URL with C{***}; the rest is left as it was.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
        parts = None
    if parts is None or password is None:
        # a malformed URL: hide whatever sits between "user:" and "@"
        scheme, sep, rest = url.partition("://")
        if sep and "@" in rest:
            auth, _, host = rest.rpartition("@")
            user = auth.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}" if ":" in auth else url
        return url
    netloc = parts.netloc
    auth, _, hostport = netloc.rpartition("@")
    user = auth.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hostport}").geturl()
