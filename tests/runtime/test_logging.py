"""
Tests for L{pywatt_twisted._runtime.logging} and L{pywatt_twisted._runtime.redaction}.
"""

from __future__ import annotations

import io
import json
import logging as stdlib_logging
import os
import time

from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.logging import (
    JsonLinesObserver,
    StderrWriter,
    bridge_stdlib_logging,
    dropped_lines_event,
    filtered,
    level_from_environment,
    open_nonblocking_stderr,
    parse_log_level,
)
from pywatt_twisted._runtime.redaction import Redactor
from pywatt_twisted._runtime.secret import Secret
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.web.metrics import ModuleMetrics


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


def _pipe(test: SynchronousTestCase) -> tuple[int, int]:
    """
    A pipe with both ends non-blocking, closed at cleanup.
    """
    r, w = os.pipe()
    for fd in (r, w):
        os.set_blocking(fd, False)
        test.addCleanup(_close_quietly, fd)
    return r, w


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _fill(fd: int) -> None:
    """
    Write to a non-blocking pipe until it takes no more.
    """
    while True:
        try:
            os.write(fd, b"#" * 65536)
        except BlockingIOError:
            return


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class StderrWriterTests(SynchronousTestCase):
    """
    L{StderrWriter} never blocks: a bounded buffer, then drops counted and reported
    once stderr drains.
    """

    def setUp(self) -> None:
        self.r, self.w = _pipe(self)
        self.reactor = MemoryReactor()
        self.writer = StderrWriter(self.w, self.reactor, max_buffer=1000, in_io_thread=lambda: True)
        self.writer.notice = lambda count: f"NOTICE dropped {count}"

    def lines(self, n: int, tag: str = "line") -> list[bytes]:
        return [f"{tag} {i:04} ".encode().ljust(99, b".") + b"\n" for i in range(n)]

    def test_writes_at_once_when_the_pipe_has_room(self) -> None:
        self.assertTrue(self.writer.write_line(b"hello\n"))
        self.assertEqual(_read_all(self.r), b"hello\n")
        self.assertEqual(self.reactor.getWriters(), [])
        self.assertEqual(self.writer.dropped_total, 0)

    def test_full_pipe_buffers_up_to_the_bound_then_drops(self) -> None:
        _fill(self.w)
        results = [self.writer.write_line(x) for x in self.lines(50)]
        self.assertEqual(results, [True] * 10 + [False] * 40)
        self.assertEqual(self.writer.buffered, 1000)
        self.assertEqual(self.writer.dropped_total, 40)
        self.assertEqual(self.reactor.getWriters(), [self.writer])

    def test_one_dropped_line_once_stderr_drains(self) -> None:
        _fill(self.w)
        for x in self.lines(50):
            self.writer.write_line(x)
        # Still full: nothing changes, no notice yet.
        self.writer.doWrite()
        self.assertEqual(self.writer.buffered, 1000)
        # The reader catches up.
        _read_all(self.r)
        self.writer.doWrite()
        out = _read_all(self.r).splitlines()
        self.assertEqual(out, [x.rstrip(b"\n") for x in self.lines(10)] + [b"NOTICE dropped 40"])
        self.assertEqual(self.reactor.getWriters(), [])
        self.assertEqual(self.writer.buffered, 0)
        # Later lines go straight out; the notice is not repeated; the total stays.
        self.writer.write_line(b"after\n")
        self.writer.doWrite()
        self.assertEqual(_read_all(self.r), b"after\n")
        self.assertEqual(self.writer.dropped_total, 40)

    def test_notice_is_a_json_line_naming_the_setting(self) -> None:
        observer = JsonLinesObserver(self.writer, Redactor(), module_id="m9")
        self.writer.notice = lambda count: observer.render(dropped_lines_event(count, 1000, 0.0))
        log = Logger(namespace="t", observer=observer)
        _fill(self.w)
        for i in range(100):
            log.info("event {i}", i=i)
        dropped = self.writer.dropped_total
        self.assertGreater(dropped, 0)
        _read_all(self.r)
        self.writer.doWrite()
        records = [json.loads(x) for x in _read_all(self.r).splitlines()]
        notice = records[-1]
        self.assertEqual(notice["level"], "warn")
        self.assertEqual(notice["dropped"], dropped)
        self.assertEqual(notice["buffer_bytes"], 1000)
        self.assertEqual(notice["module_id"], "m9")
        self.assertIn("--log-buffer-bytes / PYWATT_LOG_BUFFER_BYTES", notice["message"])
        self.assertEqual([r["i"] for r in records[:-1]], list(range(len(records) - 1)))

    def test_line_longer_than_the_buffer_is_dropped_when_blocked(self) -> None:
        _fill(self.w)
        self.assertFalse(self.writer.write_line(b"x" * 2000 + b"\n"))
        self.assertEqual(self.writer.buffered, 0)
        self.assertEqual(self.writer.dropped_total, 1)

    def test_reader_gone(self) -> None:
        os.close(self.r)
        self.assertFalse(self.writer.write_line(b"nobody\n"))
        self.assertFalse(self.writer.write_line(b"nobody\n"))
        self.assertEqual(self.writer.dropped_total, 2)
        self.assertEqual(self.reactor.getWriters(), [])

    def test_from_another_thread_the_reactor_is_told_through_call_from_thread(self) -> None:
        calls: list[tuple[object, ...]] = []
        self.reactor.callFromThread = lambda f, *a: calls.append((f, *a))  # type: ignore[attr-defined]
        writer = StderrWriter(self.w, self.reactor, 1000, in_io_thread=lambda: False)
        _fill(self.w)
        writer.write_line(b"from a thread\n")
        self.assertEqual(calls, [(self.reactor.addWriter, writer)])

    def test_final_flush_writes_what_is_left(self) -> None:
        _fill(self.w)
        for x in self.lines(5):
            self.writer.write_line(x)
        _read_all(self.r)
        self.writer.flush_final(timeout=5)
        self.assertEqual(_read_all(self.r), b"".join(self.lines(5)))

    def test_final_flush_never_hangs(self) -> None:
        """
        With a reader that never reads, the final flush gives up after its timeout.
        """
        _fill(self.w)
        self.writer.write_line(b"stuck\n")
        started = time.monotonic()
        self.writer.flush_final(timeout=0.05)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(self.writer.buffered, 6)

    def test_final_flush_restores_blocking_mode(self) -> None:
        writer = StderrWriter(self.w, self.reactor, 1000, restore_blocking=True)
        writer.flush_final(timeout=0)
        self.assertTrue(os.get_blocking(self.w))


class OpenNonBlockingStderrTests(SynchronousTestCase):
    def test_pipe_gets_a_description_of_its_own(self) -> None:
        """
        For a pipe, the non-blocking descriptor does not change the blocking mode of
        the original one (nor of the process at the other end).
        """
        r, w = os.pipe()
        self.addCleanup(_close_quietly, r)
        self.addCleanup(_close_quietly, w)
        fd, shared = open_nonblocking_stderr(w)
        self.addCleanup(os.close, fd)
        self.assertFalse(shared)
        self.assertFalse(os.get_blocking(fd))
        self.assertTrue(os.get_blocking(w))
        os.write(fd, b"through\n")
        self.assertEqual(os.read(r, 100), b"through\n")

    def test_file_is_duplicated(self) -> None:
        with open(self.mktemp(), "wb") as f:
            fd, shared = open_nonblocking_stderr(f.fileno())
            self.addCleanup(os.close, fd)
            self.assertTrue(shared)
            self.assertFalse(os.get_blocking(fd))


class LogDropMetricTests(SynchronousTestCase):
    def test_pywatt_log_dropped_total(self) -> None:
        _, w = _pipe(self)
        writer = StderrWriter(w, MemoryReactor(), 10, in_io_thread=lambda: True)
        metrics = ModuleMetrics()
        metrics.watch_log_drops(lambda: writer.dropped_total)
        self.assertIn(b"pywatt_log_dropped_total 0.0", metrics.render())
        _fill(w)
        for _ in range(3):
            writer.write_line(b"0123456789abcdef\n")
        self.assertIn(b"pywatt_log_dropped_total 3.0", metrics.render())
        self.assertIn(b"# TYPE pywatt_log_dropped_total counter", metrics.render())
