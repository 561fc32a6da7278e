"""
Tests for L{pywatt_twisted.runtime.logging} and L{pywatt_twisted.runtime.redaction}.
"""

from __future__ import annotations

import io
import json
import logging as stdlib_logging

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.runtime.logging import (
    JsonLinesObserver,
    bridge_stdlib_logging,
    filtered,
    level_from_environment,
    parse_log_level,
)
from pywatt_twisted.runtime.redaction import Redactor
from pywatt_twisted.runtime.secret import Secret


class Captured:
    def __init__(self, level: LogLevel = LogLevel.debug) -> None:
        self.stream = io.StringIO()
        self.redactor = Redactor()
        self.observer = JsonLinesObserver(self.stream, self.redactor, module_id="m1")
        self.publisher = LogPublisher(filtered(self.observer, level))
        self.log = Logger(namespace="test.ns", observer=self.publisher)

    def records(self) -> list[dict]:
        lines = self.stream.getvalue().splitlines()
        for line in lines:
            self.assertion(line)
        return [json.loads(x) for x in lines]

    @staticmethod
    def assertion(line: str) -> None:
        assert not line.startswith("\x1e"), "no RFC 7464 record separator"


class JsonLinesObserverTests(SynchronousTestCase):
    def test_shape(self) -> None:
        c = Captured()
        c.log.info("hello {who}", who="world")
        (record,) = c.records()
        self.assertEqual(record["message"], "hello world")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "test.ns")
        self.assertEqual(record["module_id"], "m1")
        self.assertEqual(record["who"], "world")
        self.assertTrue(record["timestamp"].endswith("Z"))

    def test_level_filter(self) -> None:
        c = Captured(LogLevel.warn)
        c.log.info("quiet")
        c.log.warn("loud")
        self.assertEqual([r["message"] for r in c.records()], ["loud"])

    def test_redacts_message_fields_substrings_and_secret_objects(self) -> None:
        c = Captured()
        c.redactor.add("hunter22")
        secret = Secret("PW", "s3cr3t-value")
        c.redactor.add(secret)
        c.log.info("pw={pw} url={url}", pw="hunter22", url="postgres://u:hunter22@db/x")
        c.log.info("object {s!r} and {s}", s=secret)
        c.log.info("field only", nested={"deep": ["a hunter22 b"]}, obj=secret)
        text = c.stream.getvalue()
        self.assertNotIn("hunter22", text)
        self.assertNotIn("s3cr3t-value", text)
        records = c.records()
        self.assertEqual(records[0]["message"], "pw=[REDACTED] url=postgres://u:[REDACTED]@db/x")
        self.assertIn("[REDACTED]", records[1]["message"])
        self.assertEqual(records[2]["nested"], {"deep": ["a [REDACTED] b"]})

    def test_field_names_never_rewritten(self) -> None:
        """
        Field names are not data: a secret value that is also a field name ("user", or
        a long value) leaves the name alone and redacts the values.
        """
        c = Captured()
        c.redactor.add(Secret("DB_USER", "user"))
        c.redactor.add(Secret("LONG", "long_field_name"))
        c.log.info(
            "login {user}",
            user="user",
            long_field_name="long_field_name",
            cfg={"user": "user", "host": "db"},
        )
        (record,) = c.records()
        self.assertEqual(record["message"], "login [REDACTED]")
        self.assertEqual(record["user"], "[REDACTED]")
        self.assertEqual(record["long_field_name"], "[REDACTED]")
        self.assertEqual(record["cfg"], {"user": "[REDACTED]", "host": "db"})

    def test_values_added_later_are_redacted(self) -> None:
        c = Captured()
        c.log.info("before {v}", v="rotated-later-1")
        c.redactor.add("rotated-later-1")
        c.log.info("after {v}", v="rotated-later-1")
        records = c.records()
        self.assertEqual(records[1]["message"], "after [REDACTED]")

    def test_failure_traceback_redacted(self) -> None:
        c = Captured()
        c.redactor.add("tb-secret-9")
        try:
            raise ValueError("bad value tb-secret-9")
        except ValueError:
            c.log.failure("it broke", Failure())
        (record,) = c.records()
        self.assertEqual(record["level"], "critical")
        self.assertIn("ValueError: bad value [REDACTED]", record["traceback"])
        self.assertNotIn("tb-secret-9", c.stream.getvalue())

    def test_unserialisable_field(self) -> None:
        c = Captured()
        c.log.info("x", thing=object())
        (record,) = c.records()
        self.assertIn("object", record["thing"])

    def test_non_ascii(self) -> None:
        c = Captured()
        c.log.info("héllo ✓")
        self.assertEqual(c.records()[0]["message"], "héllo ✓")


class StdlibBridgeTests(SynchronousTestCase):
    def test_stdlib_records_reach_the_observer_redacted(self) -> None:
        c = Captured()
        c.redactor.add("std-secret-7")
        handler = bridge_stdlib_logging(LogLevel.info, publisher=c.publisher)
        self.addCleanup(stdlib_logging.getLogger().removeHandler, handler)
        logger = stdlib_logging.getLogger("some.library")
        logger.info("connecting with %s", "std-secret-7")
        logger.debug("too detailed")
        try:
            raise KeyError("std-secret-7")
        except KeyError:
            logger.exception("lookup failed")
        records = c.records()
        self.assertEqual(records[0]["message"], "connecting with [REDACTED]")
        self.assertEqual(records[0]["namespace"], "some.library")
        self.assertEqual(records[1]["level"], "error")
        self.assertIn("KeyError", records[1]["message"])
        self.assertNotIn("std-secret-7", c.stream.getvalue())
        self.assertEqual(len(records), 2)


class LevelTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parse_log_level("WARNING"), LogLevel.warn)
        self.assertEqual(parse_log_level("trace"), LogLevel.debug)
        self.assertRaises(ConfigurationError, parse_log_level, "loud")

    def test_environment(self) -> None:
        self.patch_env({"PYWATT_LOG_LEVEL": "error", "RUST_LOG": "debug"})
        self.assertEqual(level_from_environment(), LogLevel.error)
        self.assertEqual(level_from_environment("debug"), LogLevel.debug)
        self.patch_env({"RUST_LOG": "warn"})
        self.assertEqual(level_from_environment(), LogLevel.warn)
        self.patch_env({"RUST_LOG": "my_crate=debug"})
        self.assertEqual(level_from_environment(), LogLevel.info)

    def patch_env(self, values: dict[str, str]) -> None:
        import os

        kept = {k: v for k, v in os.environ.items() if k not in ("PYWATT_LOG_LEVEL", "RUST_LOG")}
        self.patch(os, "environ", {**kept, **values})


class RedactorTests(SynchronousTestCase):
    def test_longest_first_and_empty_ignored(self) -> None:
        r = Redactor()
        r.add("abcdefgh")
        r.add("abcdefghijkl")
        r.add("")
        self.assertEqual(r.redact("xabcdefghijklx abcdefgh"), "x[REDACTED]x [REDACTED]")
        self.assertEqual(len(r), 2)

    def test_regex_characters_are_literal(self) -> None:
        r = Redactor()
        r.add("a.b*c")
        self.assertEqual(r.redact("a.b*c axbbc"), "[REDACTED] axbbc")
