# -*- test-case-name: tests.runtime.test_logging -*-
"""
Logging for a module: every event becomes one JSON object on one line of stderr, with
every secret value redacted before anything is written.

Format (JSON Lines, no RFC 7464 record separator)::

    {"timestamp": "2026-11-26T16:30:00.123456Z", "level": "info", "message": "...",
     "namespace": "pywatt_twisted.runtime.service", "module_id": "counter", ...}

Extra keys: C{traceback} when the event carries a failure, and the event's own fields
(those not starting with C{log_}) when they are JSON scalars or simple containers.
"""

from __future__ import annotations

import json
import logging as stdlib_logging
import os
import traceback as tb
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, cast

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
from zope.interface import implementer

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.runtime.redaction import Redactor, default_redactor

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


def level_from_environment(explicit: str | None = None) -> LogLevel:
    """
    The log level: C{explicit} (from C{--log-level}), else C{PYWATT_LOG_LEVEL}, else
    C{RUST_LOG} when it is a plain level name, else info.
    """
    if explicit:
        return parse_log_level(explicit)
    if os.environ.get("PYWATT_LOG_LEVEL"):
        return parse_log_level(os.environ["PYWATT_LOG_LEVEL"])
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


@implementer(ILogObserver)
class JsonLinesObserver:
    """
    An L{ILogObserver} writing each event as one redacted JSON line to a text stream.

    @ivar module_id: set once the init blob is known; included in every line.
    """

    def __init__(
        self,
        stream: IO[str],
        redactor: Redactor = default_redactor,
        module_id: str | None = None,
    ) -> None:
        self._stream = stream
        self._redactor = redactor
        self.module_id = module_id

    def __call__(self, event: LogEvent) -> None:
        try:
            line = event_as_json(event, self._redactor, self.module_id)
        except Exception as e:  # the observer must never raise into the publisher
            line = json.dumps(
                {"level": "error", "message": f"unloggable event: {type(e).__name__}"}
            )
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


def stderr_text_stream() -> IO[str]:
    """
    A line-buffered text stream on file descriptor 2 that survives C{sys.stderr} being
    replaced by twistd's logging redirection.
    """
    return open(os.dup(2), "w", encoding="utf-8", errors="replace", buffering=1)


__all__ = [
    "JsonLinesObserver",
    "bridge_stdlib_logging",
    "event_as_json",
    "filtered",
    "level_from_environment",
    "parse_log_level",
    "stderr_text_stream",
]
