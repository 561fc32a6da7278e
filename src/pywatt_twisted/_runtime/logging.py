# -*- test-case-name: tests.runtime.test_logging -*-
"""
Logging for a module: every event becomes one JSON object on one line of stderr, with
every secret value redacted before anything is written.

Format (JSON Lines, no RFC 7464 record separator)::

    {"timestamp": "2026-11-26T16:30:00.123456Z", "level": "info", "message": "...",
     "namespace": "pywatt_twisted._runtime.service", "module_id": "counter", ...}

Extra keys: C{traceback} when the event carries a failure, and the event's own fields
(those not starting with C{log_}) when they are JSON scalars or simple containers.

Writing never blocks the reactor: in a module process the lines go through a
L{StderrWriter}, a non-blocking writer with a bounded buffer (C{log_buffer_bytes}). When
nobody reads stderr and the buffer is full, lines are dropped and counted
(C{pywatt_log_dropped_total}); once stderr drains, one "dropped N log line(s)" line says
how many.
"""

from __future__ import annotations

import errno
import json
import logging as stdlib_logging
import os
import select
import stat
import threading
import time
import traceback as tb
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from twisted.internet import fdesc
from twisted.internet.interfaces import IWriteDescriptor
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    formatEvent,
    globalLogPublisher,
)
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted import tracing
from pywatt_twisted._runtime.redaction import Redactor, default_redactor
from pywatt_twisted.errors import ConfigurationError

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_SCALARS = (str, int, float, bool, type(None))


def parse_log_level(name: str | None, default: str = "info") -> LogLevel:
    """
    Map a level name (C{debug}, C{info}, C{warn}/C{warning}, C{error}, C{critical}, any
    case; also C{RUST_LOG}-style C{trace}) to a L{LogLevel}.

    @raise ConfigurationError: for an unknown name.
    """
    text = (name or default).strip().lower()
    if text == "trace":
        text = "debug"
    try:
        return _LEVELS[text]
    except KeyError:
        raise ConfigurationError(
            f"unknown log level {name!r}; expected one of debug, info, warn, error, critical"
        ) from None


#: The environment variable of the log level (C{--log-level} wins over it).
LOG_LEVEL_VARIABLE = "PYWATT_LOG_LEVEL"


def level_from_environment(explicit: str | None = None) -> LogLevel:
    """
    The log level: C{explicit} (from C{--log-level}), else C{PYWATT_LOG_LEVEL}, else
    C{RUST_LOG} when it is a plain level name, else info.
    """
    if explicit:
        return parse_log_level(explicit)
    if os.environ.get(LOG_LEVEL_VARIABLE):
        return parse_log_level(os.environ[LOG_LEVEL_VARIABLE])
    rust = os.environ.get("RUST_LOG", "").strip().lower()
    if rust in _LEVELS or rust == "trace":
        return parse_log_level(rust)
    return LogLevel.info


def _jsonable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if depth < 3 and isinstance(value, list | tuple):
        return all(_jsonable(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v, depth + 1) for k, v in value.items())
    return False


def event_as_json(event: LogEvent, redactor: Redactor, module_id: str | None = None) -> str:
    """
    Render one log event as a redacted JSON object on one line (no trailing newline).
    """
    level = event.get("log_level", LogLevel.info)
    message = formatEvent(event) if "log_format" in event else ""
    if not message and "log_failure" not in event and "log_format" not in event:
        message = eventAsText(event, includeTimestamp=False, includeSystem=False)
    record: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(event.get("log_time", 0.0), UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        "level": getattr(level, "name", str(level)),
        "message": redactor.redact(message),
        "namespace": event.get("log_namespace", "-"),
        "module_id": module_id,
    }
    if tracing.switch.on:
        # rendered where the event is emitted: the current span is the emitter's
        ids = tracing.current_ids()
        if ids is not None:
            record["trace_id"], record["span_id"] = ids
    failure = event.get("log_failure")
    if failure is not None:
        try:
            text = failure.getTraceback()
        except Exception:  # pragma: no cover - a broken Failure must not kill logging
            text = repr(failure)
        record["traceback"] = redactor.redact(text)
        if not record["message"]:
            record["message"] = redactor.redact(failure.getErrorMessage())
    for key, value in event.items():
        if key.startswith("log_") or key in record or key in ("format", "isError", "system"):
            continue
        if key == "message" or key == "time":
            continue
        # Field names are chosen by code, not data: never rewritten (a short secret
        # "user" must not turn a field named user into [REDACTED]).
        name = key
        if _jsonable(value):
            record[name] = redactor.redact_value(value)
        else:
            try:
                record[name] = redactor.redact(repr(value))
            except Exception:
                record[name] = "<unrepresentable>"
    return json.dumps(record, ensure_ascii=False, default=lambda o: redactor.redact(str(o)))


class TextStream(Protocol):
    """
    Where a L{JsonLinesObserver} writes: a text stream (C{io.StringIO} in tests) or a
    L{StderrWriter}. Each C{write} is one whole line.
    """

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


@implementer(ILogObserver)
class JsonLinesObserver:
    """
    An L{ILogObserver} writing each event as one redacted JSON line to a text stream.

    @ivar module_id: set once the init blob is known; included in every line.
    """

    def __init__(
        self,
        stream: TextStream,
        redactor: Redactor = default_redactor,
        module_id: str | None = None,
    ) -> None:
        self._stream = stream
        self._redactor = redactor
        self.module_id = module_id

    def render(self, event: LogEvent) -> str:
        """
        The redacted JSON line (without its newline) this observer writes for C{event}.
        """
        try:
            return event_as_json(event, self._redactor, self.module_id)
        except Exception as e:  # the observer must never raise into the publisher
            return json.dumps(
                {"level": "error", "message": f"unloggable event: {type(e).__name__}"}
            )

    def __call__(self, event: LogEvent) -> None:
        line = self.render(event)
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass


def filtered(observer: ILogObserver, level: LogLevel) -> ILogObserver:
    """
    Wrap an observer so that only events at C{level} or above reach it.
    """
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=level)])


class _TwistedLoggerHandler(stdlib_logging.Handler):
    """
    A stdlib C{logging} handler that re-emits records into twisted.logger, so stdlib
    logging from libraries ends up in the same redacted JSON stream.
    """

    _LEVELS = (
        (stdlib_logging.CRITICAL, LogLevel.critical),
        (stdlib_logging.ERROR, LogLevel.error),
        (stdlib_logging.WARNING, LogLevel.warn),
        (stdlib_logging.INFO, LogLevel.info),
    )

    def __init__(self, publisher: Callable[[LogEvent], None]) -> None:
        super().__init__()
        self._publisher = publisher

    def emit(self, record: stdlib_logging.LogRecord) -> None:
        level = LogLevel.debug
        for threshold, mapped in self._LEVELS:
            if record.levelno >= threshold:
                level = mapped
                break
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            message = message + "\n" + "".join(tb.format_exception(*record.exc_info))
        Logger(namespace=record.name, observer=cast(ILogObserver, self._publisher)).emit(
            level, "{stdlib_message}", stdlib_message=message
        )


def bridge_stdlib_logging(
    level: LogLevel, publisher: Callable[[LogEvent], None] = globalLogPublisher
) -> stdlib_logging.Handler:
    """
    Route the stdlib root logger into twisted.logger at C{level} and above. Returns the
    installed handler (remove it with C{logging.getLogger().removeHandler(h)}).
    """
    handler = _TwistedLoggerHandler(publisher)
    root = stdlib_logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _TwistedLoggerHandler):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(
        {
            LogLevel.debug: stdlib_logging.DEBUG,
            LogLevel.info: stdlib_logging.INFO,
            LogLevel.warn: stdlib_logging.WARNING,
            LogLevel.error: stdlib_logging.ERROR,
            LogLevel.critical: stdlib_logging.CRITICAL,
        }[level]
    )
    return handler


def dropped_lines_event(count: int, limit: int, when: float) -> LogEvent:
    """
    The log event a L{StderrWriter} writes once stderr drains after it dropped lines.

    @param count: lines dropped since the last such event.
    @param limit: the log buffer size in bytes.
    @param when: the event's time (seconds since the epoch).
    """
    return {
        "log_level": LogLevel.warn,
        "log_namespace": __name__,
        "log_time": when,
        "log_format": (
            "dropped {dropped} log line(s): stderr was not read and the log buffer of "
            "{buffer_bytes} bytes was full; raise it with --log-buffer-bytes / "
            "PYWATT_LOG_BUFFER_BYTES (pywatt_log_dropped_total counts every dropped line)"
        ),
        "dropped": count,
        "buffer_bytes": limit,
    }


#: Seconds L{StderrWriter.flush_final} may wait for stderr at exit.
FINAL_FLUSH_SECONDS = 1.0


def open_nonblocking_stderr(stderr: int = 2) -> tuple[int, bool]:
    """
    A non-blocking descriptor writing to what descriptor C{stderr} (2) writes to.

    When stderr is a pipe, it is opened anew through C{/proc/self/fd/2}: a description
    of its own, so descriptor 2 and the process at the other end keep their blocking
    mode. Otherwise (a terminal, a socket, a file, or no C{/proc}) descriptor 2 is
    duplicated and the shared description is made non-blocking.

    @return: the descriptor, and whether its mode is shared with descriptor 2 (then
        L{StderrWriter.flush_final} restores blocking mode).
    """
    try:
        if stat.S_ISFIFO(os.fstat(stderr).st_mode):
            flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
            return os.open(f"/proc/self/fd/{stderr}", flags), False
    except OSError:
        pass
    fd = os.dup(stderr)
    fdesc.setNonBlocking(fd)
    return fd, True


@implementer(IWriteDescriptor)
class StderrWriter:
    """
    Writes log lines to a non-blocking descriptor without ever blocking the reactor.

    A line is written at once when the buffer is empty and the descriptor takes it;
    what it does not take waits in a buffer of at most C{max_buffer} bytes (plus the
    rest of one line already partly written) and is written when the reactor finds the
    descriptor writable. A line that does not fit is dropped and counted in
    L{dropped_total}; once the buffer is empty again, one line made by L{notice} says
    how many were dropped. Thread-safe: log events may come from any thread.

    It has the C{write}/C{flush} of a text stream, so a L{JsonLinesObserver} can write
    to it; each C{write} must be one whole line.

    @ivar dropped_total: lines dropped since the start (C{pywatt_log_dropped_total}).
    @ivar notice: C{count -> str}, the text (without newline) of the "dropped N
        line(s)" line.
    """

    def __init__(
        self,
        fd: int,
        reactor: Any,
        max_buffer: int = 1024 * 1024,
        restore_blocking: bool = False,
        in_io_thread: Callable[[], bool] = threadable.isInIOThread,
    ) -> None:
        """
        @param fd: a non-blocking descriptor (see L{open_nonblocking_stderr}).
        @param reactor: where to wait for it to become writable.
        @param max_buffer: the most bytes held for it (C{log_buffer_bytes}).
        @param restore_blocking: put C{fd} back in blocking mode in L{flush_final}.
        @param in_io_thread: whether the caller runs in the reactor thread (else the
            reactor is told through C{callFromThread}).
        """
        self._fd = fd
        self._reactor = reactor
        self._in_io_thread = in_io_thread
        self.max_buffer = max_buffer
        self._restore_blocking = restore_blocking
        self._buffer = bytearray()
        self._lock = threading.RLock()
        self._registered = False
        self._broken = False
        self._unreported = 0
        self.dropped_total = 0
        self.notice: Callable[[int], str] = lambda count: event_as_json(
            dropped_lines_event(count, self.max_buffer, time.time()), default_redactor
        )

    @classmethod
    def for_stderr(cls, reactor: Any, max_buffer: int) -> StderrWriter:
        """
        A writer on a non-blocking descriptor for this process's stderr.
        """
        fd, shared = open_nonblocking_stderr()
        return cls(fd, reactor, max_buffer, restore_blocking=shared)

    @property
    def buffered(self) -> int:
        """
        Bytes waiting to be written.
        """
        return len(self._buffer)

    # -- the text-stream side -----------------------------------------------------------

    def write(self, text: str) -> None:
        """
        Write one whole line (with its newline).
        """
        self.write_line(text.encode("utf-8", "replace"))

    def flush(self) -> None:
        """
        Nothing to do: lines go out as soon as the descriptor takes them.
        """

    def write_line(self, data: bytes) -> bool:
        """
        Write or buffer one line; C{False} when it was dropped.
        """
        with self._lock:
            if self._broken:
                self._drop()
                return False
            if self._buffer:
                if len(self._buffer) + len(data) > self.max_buffer:
                    self._drop()
                    return False
                self._buffer += data
                return True
            written = self._write_some(data)
            if self._broken:
                return False
            if written == 0 and len(data) > self.max_buffer:
                self._drop()
                return False
            if written < len(data):
                # The rest of a partly written line is kept even above the bound: the
                # stream must stay whole lines.
                self._buffer += data[written:]
                self._want_writable()
            elif self._unreported:
                self._report_drops()
            return True

    def _drop(self) -> None:
        self.dropped_total += 1
        self._unreported += 1

    def _write_some(self, data: bytes | bytearray) -> int:
        """
        One non-blocking write; the bytes taken (0 when the descriptor is full). A
        descriptor whose reader is gone takes (and loses) everything, counted as dropped.
        """
        while True:
            try:
                return os.write(self._fd, data)
            except InterruptedError:
                continue
            except BlockingIOError:
                return 0
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return 0
                self._broken = True
                self._buffer.clear()
                self._drop()
                return len(data)

    def _report_drops(self) -> None:
        count, self._unreported = self._unreported, 0
        line = (self.notice(count) + "\n").encode("utf-8", "replace")
        written = self._write_some(line)
        if written < len(line) and not self._broken:
            self._buffer += line[written:]
            self._want_writable()

    def _want_writable(self) -> None:
        if self._registered or self._broken:
            return
        self._registered = True
        if self._in_io_thread():
            self._reactor.addWriter(self)
        else:
            self._reactor.callFromThread(self._reactor.addWriter, self)

    # -- IWriteDescriptor ---------------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "stderr"

    def doWrite(self) -> None:
        """
        The descriptor is writable: write what is buffered; once it is all out, report
        the dropped lines and stop watching the descriptor.
        """
        with self._lock:
            self._drain_once()
            if not self._buffer:
                self._registered = False
                self._reactor.removeWriter(self)

    def _drain_once(self) -> None:
        while self._buffer and not self._broken:
            written = self._write_some(self._buffer)
            if written == 0:
                return
            del self._buffer[:written]
            if not self._buffer and self._unreported:
                self._report_drops()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor is shutting down and forgot us; flush_final writes what is left.
        with self._lock:
            self._registered = False

    # -- exit ---------------------------------------------------------------------------

    def flush_final(self, timeout: float = FINAL_FLUSH_SECONDS) -> None:
        """
        At exit: write what is buffered, waiting at most C{timeout} seconds in all for
        the descriptor to take it, then give the descriptor back its blocking mode if
        it shares it with stderr. What is still left after that is lost.
        """
        with self._lock:
            deadline = time.monotonic() + timeout
            if self._unreported and not self._buffer:
                self._report_drops()
            while self._buffer and not self._broken:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    select.select([], [self._fd], [], remaining)
                except (OSError, ValueError):
                    break
                self._drain_once()
            if self._restore_blocking:
                try:
                    fdesc.setBlocking(self._fd)
                except OSError:
                    pass
                self._restore_blocking = False


__all__ = [
    "FINAL_FLUSH_SECONDS",
    "LOG_LEVEL_VARIABLE",
    "JsonLinesObserver",
    "StderrWriter",
    "TextStream",
    "bridge_stdlib_logging",
    "dropped_lines_event",
    "event_as_json",
    "filtered",
    "level_from_environment",
    "open_nonblocking_stderr",
    "parse_log_level",
]
