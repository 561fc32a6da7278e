"""
Tests for L{pywatt_twisted.orchestrator._providers}: the secret providers behind C{pywatt dev}
and the testing toolkit.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.orchestrator._providers import (
    ChainedSecretProvider,
    EnvironmentSecretProvider,
    FileSecretProvider,
    ISecretProvider,
    MemorySecretProvider,
    read_secrets_file,
)


class Changes:
    def __init__(self) -> None:
        self.seen: list[frozenset[str]] = []

    def __call__(self, names: frozenset[str]) -> None:
        self.seen.append(names)


class MemoryProviderTests(SynchronousTestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ISecretProvider, MemorySecretProvider()))

    def test_get_and_names(self) -> None:
        p = MemorySecretProvider({"A": "1", "B": "2"})
        self.assertEqual((p.get("A"), p.get("B"), p.get("C")), ("1", "2", None))
        self.assertEqual(p.names(), frozenset({"A", "B"}))

    def test_changes_notify_only_changed_names(self) -> None:
        p = MemorySecretProvider({"A": "1", "B": "2"})
        changes = Changes()
        p.subscribe(changes)
        self.assertEqual(p.update({"A": "1", "B": "3", "C": "4"}), frozenset({"B", "C"}))
        p.set("A", "1")  # unchanged: no notification
        p.set("A", "5")
        p.remove("C")
        p.remove("NEVER_THERE")
        self.assertEqual(changes.seen, [frozenset({"B", "C"}), frozenset({"A"}), frozenset({"C"})])
        self.assertIsNone(p.get("C"))

    def test_unsubscribe(self) -> None:
        p = MemorySecretProvider()
        changes = Changes()
        unsubscribe = p.subscribe(changes)
        p.set("A", "1")
        unsubscribe()
        unsubscribe()  # idempotent
        p.set("A", "2")
        self.assertEqual(changes.seen, [frozenset({"A"})])

    def test_broken_subscriber_does_not_stop_the_others(self) -> None:
        p = MemorySecretProvider()

        def broken(names: frozenset[str]) -> None:
            raise RuntimeError("subscriber bug")

        changes = Changes()
        p.subscribe(broken)
        p.subscribe(changes)
        p.set("A", "1")
        self.assertEqual(changes.seen, [frozenset({"A"})])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class EnvironmentProviderTests(SynchronousTestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ISecretProvider, EnvironmentSecretProvider({})))

    def test_prefix(self) -> None:
        environ = {
            "PYWATT_SECRET_API_KEY": "k",
            "PYWATT_SECRET_": "no name",
            "API_KEY": "not a secret variable",
            "PYWATT_SECRETS_FILE": "x",
        }
        p = EnvironmentSecretProvider(environ)
        self.assertEqual(p.get("API_KEY"), "k")
        self.assertIsNone(p.get(""))
        self.assertEqual(p.names(), frozenset({"API_KEY"}))

    def test_read_at_each_get(self) -> None:
        environ: dict[str, str] = {}
        p = EnvironmentSecretProvider(environ)
        self.assertIsNone(p.get("A"))
        environ["PYWATT_SECRET_A"] = "later"
        self.assertEqual(p.get("A"), "later")

    def test_process_environment_by_default(self) -> None:
        os.environ["PYWATT_SECRET_PROVIDER_TEST"] = "from-os"
        self.addCleanup(os.environ.pop, "PYWATT_SECRET_PROVIDER_TEST", None)
        self.assertEqual(EnvironmentSecretProvider().get("PROVIDER_TEST"), "from-os")

    def test_custom_prefix_and_no_notifications(self) -> None:
        p = EnvironmentSecretProvider({"X_A": "1"}, prefix="X_")
        self.assertEqual(p.get("A"), "1")
        unsubscribe = p.subscribe(Changes())
        unsubscribe()


class FileProviderTests(SynchronousTestCase):
    def write(self, path: str, data: Any, mtime: int | None = None) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(data if isinstance(data, str) else json.dumps(data))
        if mtime is not None:
            os.utime(path, ns=(mtime, mtime))

    def path(self, data: Any = None) -> str:
        path = self.mktemp()
        if data is not None:
            self.write(path, data, mtime=1_000_000_000_000_000_000)
        return path

    def test_interface_and_values(self) -> None:
        p = FileSecretProvider(self.path({"A": "1", "B": "2"}), Clock())
        self.assertTrue(verifyObject(ISecretProvider, p))
        self.assertEqual((p.get("A"), p.get("Z")), ("1", None))
        self.assertEqual(p.names(), frozenset({"A", "B"}))

    def test_bad_files_name_the_file_and_key_never_a_value(self) -> None:
        missing = self.path()
        e = self.assertRaises(ConfigurationError, read_secrets_file, missing)
        self.assertIn("does not exist", str(e))
        for content, expected in (
            ('{"A": "s3cret-value", ', "not valid JSON"),
            ('["s3cret-value"]', "JSON object"),
            ('{"A": "ok", "B": 12345}', "'B' must be a string"),
        ):
            path = self.path(content)
            e = self.assertRaises(ConfigurationError, read_secrets_file, path)
            self.assertIn(path, str(e))
            self.assertIn(expected, str(e))
            self.assertNotIn("s3cret-value", str(e))
            self.assertNotIn("12345", str(e))

    def test_polling_turns_an_edit_into_a_change(self) -> None:
        clock = Clock()
        path = self.path({"A": "1", "B": "2"})
        p = FileSecretProvider(path, clock, interval=2)
        changes = Changes()
        p.subscribe(changes)
        p.start()
        clock.advance(2)
        self.assertEqual(changes.seen, [], "an untouched file is not a change")
        self.write(path, {"A": "1", "B": "3", "C": "4"}, mtime=1_000_000_000_000_000_001)
        clock.advance(1)
        self.assertEqual(changes.seen, [])
        clock.advance(1)
        self.assertEqual(changes.seen, [frozenset({"B", "C"})])
        self.assertEqual(p.get("B"), "3")
        p.stop()
        self.write(path, {"A": "9"}, mtime=1_000_000_000_000_000_002)
        clock.advance(10)
        self.assertEqual(len(changes.seen), 1, "stopped providers do not poll")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_same_size_edit_with_the_same_second(self) -> None:
        clock = Clock()
        path = self.path({"A": "1"})
        p = FileSecretProvider(path, clock, interval=1)
        changes = Changes()
        p.subscribe(changes)
        # Same size, mtime one nanosecond later (a second-resolution stamp misses it).
        self.write(path, {"A": "2"}, mtime=1_000_000_000_000_000_001)
        p.check()
        self.assertEqual(changes.seen, [frozenset({"A"})])

    def test_atomic_replace_seen_by_inode(self) -> None:
        path = self.path({"A": "1"})
        p = FileSecretProvider(path, Clock())
        changes = Changes()
        p.subscribe(changes)
        other = path + ".new"
        # Same size, same mtime: only the inode differs, as after an editor's rename.
        self.write(other, {"A": "2"}, mtime=1_000_000_000_000_000_000)
        os.replace(other, path)
        p.check()
        self.assertEqual(changes.seen, [frozenset({"A"})])

    def test_invalid_edit_keeps_previous_values(self) -> None:
        path = self.path({"A": "1"})
        p = FileSecretProvider(path, Clock())
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.write(path, '{"A": "half-written', mtime=1_000_000_000_000_000_005)
        p.check()
        self.assertEqual(p.get("A"), "1")
        self.assertTrue(
            any("keeping the previous secrets" in e.get("log_format", "") for e in logged)
        )
        self.assertFalse(any("half-written" in json.dumps(e, default=str) for e in logged))
        # Fixing the file picks up the values again.
        self.write(path, {"A": "2"}, mtime=1_000_000_000_000_000_006)
        p.check()
        self.assertEqual(p.get("A"), "2")

    def test_deleted_file_keeps_previous_values(self) -> None:
        path = self.path({"A": "1"})
        p = FileSecretProvider(path, Clock())
        os.remove(path)
        p.check()
        self.assertEqual(p.get("A"), "1")


class ChainedProviderTests(SynchronousTestCase):
    def test_first_that_knows_answers(self) -> None:
        first = MemorySecretProvider({"A": "from-first"})
        second = MemorySecretProvider({"A": "from-second", "B": "b"})
        env = EnvironmentSecretProvider({"PYWATT_SECRET_C": "c"})
        p = ChainedSecretProvider([first, second, env])
        self.assertTrue(verifyObject(ISecretProvider, p))
        self.assertEqual(
            (p.get("A"), p.get("B"), p.get("C"), p.get("D")), ("from-first", "b", "c", None)
        )
        self.assertEqual(p.names(), frozenset({"A", "B", "C"}))

    def test_empty_string_is_a_value(self) -> None:
        p = ChainedSecretProvider(
            [MemorySecretProvider({"A": ""}), MemorySecretProvider({"A": "x"})]
        )
        self.assertEqual(p.get("A"), "")

    def test_changes_from_every_provider(self) -> None:
        first, second = MemorySecretProvider(), MemorySecretProvider()
        p = ChainedSecretProvider([first, second])
        changes = Changes()
        unsubscribe = p.subscribe(changes)
        first.set("A", "1")
        second.set("B", "2")
        unsubscribe()
        first.set("A", "3")
        self.assertEqual(changes.seen, [frozenset({"A"}), frozenset({"B"})])
