"""
Tests for L{pywatt_twisted.data._database.DatabaseConfig}: URL parsing and redaction.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data._database import DatabaseConfig, redact_url
from pywatt_twisted.errors import ConfigurationError


class _Secret:
    def __init__(self, value: str) -> None:
        self._value = value

    def expose(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "[REDACTED]"


class FromUrlTests(SynchronousTestCase):
    def test_postgres(self) -> None:
        c = DatabaseConfig.from_url("postgres://u%40x:p%3Aw@db.local:6543/app?sslmode=require")
        self.assertEqual(
            (c.dialect, c.host, c.port, c.user, c.password, c.database),
            ("postgresql", "db.local", 6543, "u@x", "p:w", "app"),
        )
        self.assertEqual(c.options, {"sslmode": "require"})
        kw = c.connect_kwargs()
        self.assertEqual(kw["dbname"], "app")
        self.assertEqual(kw["sslmode"], "require")
        self.assertEqual(kw["connect_timeout"], 5)

    def test_mysql(self) -> None:
        c = DatabaseConfig.from_url("mariadb://root@127.0.0.1/test", connect_timeout=0.5)
        self.assertEqual((c.dialect, c.port, c.password), ("mysql", None, None))
        kw = c.connect_kwargs()
        self.assertEqual((kw["port"], kw["database"], kw["connect_timeout"]), (3306, "test", 1))
        self.assertNotIn("password", kw)

    def test_sqlite(self) -> None:
        self.assertEqual(DatabaseConfig.from_url("sqlite:////tmp/x.db").database, "/tmp/x.db")
        self.assertEqual(DatabaseConfig.from_url("sqlite:rel/x.db").database, "rel/x.db")
        for url in ("sqlite://", "sqlite://:memory:", "sqlite:///:memory:", "sqlite::memory:"):
            self.assertEqual(DatabaseConfig.from_url(url).database, ":memory:", url)
        kw = DatabaseConfig.from_url("sqlite:////tmp/x.db").connect_kwargs()
        self.assertIs(kw["check_same_thread"], False)

    def test_sqlite_three_slashes_is_relative(self) -> None:
        """
        C{sqlite:///notes.db} is C{notes.db} in the working directory, as in SQLAlchemy
        (it used to be C{/notes.db}, at the root of the filesystem); four slashes make
        an absolute path; C{sqlite:notes.db} and C{sqlite:/abs.db} work too.
        """
        cases = {
            "sqlite:///notes.db": "notes.db",
            "sqlite:///data/notes.db?timeout=5": "data/notes.db",
            "sqlite:////var/lib/notes.db": "/var/lib/notes.db",
            "sqlite:notes.db": "notes.db",
            "sqlite:/var/lib/notes.db": "/var/lib/notes.db",
            "sqlite:///my%20notes.db": "my notes.db",
        }
        for url, path in cases.items():
            self.assertEqual(DatabaseConfig.from_url(url).database, path, url)

    def test_sqlite_relative_file_lands_in_working_directory(self) -> None:
        """
        Opening C{sqlite:///notes.db} creates C{notes.db} in the current directory.
        """
        import os
        import sqlite3

        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        old = os.getcwd()
        os.chdir(work)
        self.addCleanup(os.chdir, old)
        sqlite3.connect(**DatabaseConfig.from_url("sqlite:///notes.db").connect_kwargs()).close()
        self.assertEqual(os.listdir(work), ["notes.db"])

    def test_sqlite_host_is_refused_with_the_fix(self) -> None:
        """
        C{sqlite://notes.db} (a host, no path) says which URL was meant.
        """
        with self.assertRaises(ConfigurationError) as c:
            DatabaseConfig.from_url("sqlite://notes.db")
        self.assertIn("sqlite:///notes.db", str(c.exception))
        self.assertIn("relative to the working directory", str(c.exception))
        self.assertIn("sqlite:////absolute/path.db", str(c.exception))

    def test_secret(self) -> None:
        c = DatabaseConfig.from_url(_Secret("mysql://a:b@h/d"))
        self.assertEqual(c.password, "b")

    def test_bad_urls_are_redacted(self) -> None:
        for url in (
            "oracle://u:hunter2@h/d",
            "postgresql://u:hunter2@h:notaport/d",
            "postgresql://u:hunter2@h/",
        ):
            with self.assertRaises(ConfigurationError) as c:
                DatabaseConfig.from_url(url)
            self.assertNotIn("hunter2", str(c.exception))
            self.assertIn("***", str(c.exception))

    def test_not_a_string(self) -> None:
        self.assertRaises(ConfigurationError, DatabaseConfig.from_url, 42)

    def test_pool_bounds(self) -> None:
        self.assertRaises(ConfigurationError, DatabaseConfig.from_url, "sqlite:x", max_pool=0)
        self.assertRaises(
            ConfigurationError, DatabaseConfig.from_url, "sqlite:x", min_pool=3, max_pool=2
        )
        self.assertRaises(
            ConfigurationError, DatabaseConfig.from_url, "sqlite:x", connect_timeout=0
        )

    def test_max_waiting(self) -> None:
        """
        C{max_waiting} defaults to 1000 and must be an int from 1 to 1,000,000.
        """
        self.assertEqual(DatabaseConfig.from_url("sqlite:x").max_waiting, 1000)
        self.assertEqual(DatabaseConfig.from_url("sqlite:x", max_waiting=7).max_waiting, 7)
        for bad in (0, -1, True, 1.5, "10", 1_000_001):
            with self.assertRaises(ConfigurationError) as c:
                DatabaseConfig.from_url("sqlite:x", max_waiting=bad)
            self.assertIn("max_waiting", str(c.exception))
            self.assertIn(repr(bad), str(c.exception))

    def test_repr_hides_password(self) -> None:
        c = DatabaseConfig.from_url("postgresql://u:hunter2@h/d")
        self.assertNotIn("hunter2", repr(c))


class RedactTests(SynchronousTestCase):
    def test_url_redacted(self) -> None:
        c = DatabaseConfig.from_url("postgresql://u:hunter2@h:5/d?sslmode=disable")
        self.assertEqual(c.url_redacted, "postgresql://u:***@h:5/d?sslmode=disable")
        self.assertEqual(DatabaseConfig.from_url("mysql://u@h/d").url_redacted, "mysql://u@h/d")
        # SQLAlchemy's form, which reads back as the same path
        for url, redacted in (
            ("sqlite:///a/b.db", "sqlite:///a/b.db"),
            ("sqlite:a.db", "sqlite:///a.db"),
            ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
            ("sqlite://", "sqlite://:memory:"),
        ):
            c = DatabaseConfig.from_url(url)
            self.assertEqual(c.url_redacted, redacted, url)
            self.assertEqual(DatabaseConfig.from_url(c.url_redacted).database, c.database)

    def test_redact_url(self) -> None:
        self.assertEqual(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0")
        self.assertEqual(redact_url("redis://h:1/0"), "redis://h:1/0")
        self.assertEqual(redact_url("x://u:pw@h:port/d"), "x://u:***@h:port/d")
