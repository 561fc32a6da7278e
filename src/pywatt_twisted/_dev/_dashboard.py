# -*- test-case-name: tests.dev.test_dashboard -*-
"""
The live dashboard of C{pywatt dev} at C{/_pywatt/} on the front port: the modules (state,
pid, uptime, restarts, last exit, channels, endpoints), the recent front-port requests
(status, latency) and the recent log lines of each module, updated live by server-sent
events (C{/_pywatt/events}). C{/_pywatt/modules} stays the JSON status.

The page is static package data (C{dev/_static/}: one HTML page, one script, one style
sheet; no build step, no external asset). It is read-only (GET and HEAD only) and, like
the whole front port, bound to 127.0.0.1; a request whose C{Host} is not a loopback name
is refused (403), so a web page that rebinds its own name to 127.0.0.1 cannot read it.

Every buffer is bounded: L{Dashboard.max_requests} requests, L{Dashboard.max_lines} log
lines per module (each cut at L{MAX_LINE} characters), L{Dashboard.max_clients} event
streams (one more is answered 503). An event stream whose reader does not keep up (its
transport asked us to pause) gets no events until it drains, then one full snapshot in
place of what it missed.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from importlib.resources import files
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from pywatt_twisted._runtime.redaction import Redactor
from pywatt_twisted.orchestrator._providers import ISecretProvider

#: characters kept of one log line (the rest is replaced by an ellipsis)
MAX_LINE = 4000
#: the console source of C{pywatt dev}'s own lines
DEV_SOURCE = "pywatt-dev"
#: seconds between two looks at the modules' state while a stream is open
TICK = 0.5
#: seconds between two keep-alive comments on an idle stream
KEEPALIVE = 15.0

_ASSETS = {
    "": ("dashboard.html", b"text/html; charset=utf-8"),
    "dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: what of C{describe()} changes by itself with time (not a reason to send an update)
_MOVING = ("uptime", "last_heartbeat_ack")


def _asset(name: str) -> bytes:
    return files("pywatt_twisted._dev").joinpath("_static", name).read_bytes()


def loopback_host(host: bytes | None) -> bool:
    """
    Whether a C{Host} header names the loopback interface (any port).
    """
    if not host:
        return False
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        name = text[: text.find("]") + 1] if "]" in text else text
    else:
        name = text.rpartition(":")[0] if ":" in text else text
    return name in _LOOPBACK_HOSTS


@implementer(IPushProducer)
class _Stream:
    """
    One open event stream (a browser tab).
    """

    def __init__(self, dashboard: Dashboard, request: Request) -> None:
        self.dashboard = dashboard
        self.request = request
        self.paused = False
        self.missed = False
        self.closed = False

    def send(self, event: str, data: Any) -> None:
        if self.closed:
            return
        if self.paused:
            self.missed = True
            return
        body = json.dumps(data, separators=(",", ":"), default=str)
        self.request.write(f"event: {event}\ndata: {body}\n\n".encode())

    def comment(self) -> None:
        if not self.closed and not self.paused:
            self.request.write(b": keep-alive\n\n")

    # IPushProducer: the transport's buffer is full / drained again.
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.missed and not self.closed:
            self.missed = False
            self.send("snapshot", self.dashboard.snapshot())

    def stopProducing(self) -> None:
        self.closed = True


class Dashboard:
    """
    The dashboard's state and its resource (rendered by the front port's resource for
    every C{/_pywatt/...} path).

    @param modules: C{callable()} returning the supervisors by module id.
    @param secrets: the provider the modules' secrets come from: their values are
        redacted from the log lines kept here (the modules redact them already; this is
        a second guard).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        modules: Callable[[], Mapping[str, Any]],
        secrets: ISecretProvider | None = None,
        *,
        max_requests: int = 200,
        max_lines: int = 200,
        max_clients: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reactor = reactor
        self._modules = modules
        self._secrets = secrets
        self.max_requests = max_requests
        self.max_lines = max_lines
        self.max_clients = max_clients
        self._clock = clock
        self.requests: deque[dict[str, Any]] = deque(maxlen=max_requests)
        self.lines: dict[str, deque[dict[str, Any]]] = {}
        self._streams: list[_Stream] = []
        self._loop: LoopingCall | None = None
        self._last_modules: str | None = None
        self._last_sent = 0.0
        self._redactor = Redactor()
        self._redacted: set[str] = set()

    # -- what is recorded -----------------------------------------------------------------

    def record_request(self, entry: dict[str, Any]) -> None:
        """
        A front-port request finished (C{module}, C{method}, C{path}, C{status}, C{ms},
        C{at}).
        """
        self.requests.append(entry)
        self._broadcast("request", entry)

    def console_line(self, source: str, text: str, level: str) -> None:
        """
        A line the console showed: kept under its module (or C{pywatt-dev}); a line of
        any other source is not kept.
        """
        if source != DEV_SOURCE and source not in self._modules():
            return
        self._learn_secrets()
        text = self._redactor.redact(text)
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + "…"
        entry = {"source": source, "level": level, "text": text, "at": self._clock()}
        lines = self.lines.get(source)
        if lines is None:
            lines = self.lines[source] = deque(maxlen=self.max_lines)
        lines.append(entry)
        self._broadcast("log", entry)

    def _learn_secrets(self) -> None:
        """
        Add the values of the secrets the modules asked for to the redactor.
        """
        if self._secrets is None:
            return
        for supervisor in self._modules().values():
            for name in getattr(supervisor, "used_secrets", ()):
                value = self._secrets.get(name)
                if value and value not in self._redacted:
                    self._redacted.add(value)
                    self._redactor.add(value, name)

    # -- what is shown --------------------------------------------------------------------

    def modules(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self._modules().values()]

    def snapshot(self) -> dict[str, Any]:
        return {
            "now": self._clock(),
            "modules": self.modules(),
            "requests": list(self.requests),
            "logs": {source: list(lines) for source, lines in self.lines.items()},
            "limits": {"requests": self.max_requests, "lines": self.max_lines},
        }

    def _broadcast(self, event: str, data: Any) -> None:
        for stream in list(self._streams):
            stream.send(event, data)

    def _tick(self) -> None:
        """
        Send the modules' state when it changed (and a keep-alive when idle).
        """
        modules = self.modules()
        key = json.dumps(
            [{k: v for k, v in m.items() if k not in _MOVING} for m in modules],
            sort_keys=True,
            default=str,
        )
        now = self.reactor.seconds()
        if key != self._last_modules:
            self._last_modules = key
            self._last_sent = now
            self._broadcast("modules", {"now": self._clock(), "modules": modules})
        elif now - self._last_sent >= KEEPALIVE:
            self._last_sent = now
            for stream in list(self._streams):
                stream.comment()

    # -- HTTP -----------------------------------------------------------------------------

    def render(self, request: Request, segments: list[str]) -> Any:
        """
        Serve C{/_pywatt/<segments>}.
        """
        if not loopback_host(request.getHeader(b"host")):
            return self._plain(request, 403, "the dashboard answers only for 127.0.0.1")
        method = request.method.upper()
        if method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return self._plain(request, 405, "the dashboard is read-only")
        if not segments:
            # /_pywatt: the page's relative links need the trailing slash.
            request.setResponseCode(301)
            request.setHeader(b"location", b"/_pywatt/")
            return b""
        name = "/".join(segments)
        if name == "modules":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(self.modules(), indent=2, default=str).encode() + b"\n"
        if name == "events":
            return self._stream(request)
        if name in _ASSETS:
            filename, content_type = _ASSETS[name]
            request.setHeader(b"content-type", content_type)
            request.setHeader(b"content-security-policy", _CSP)
            request.setHeader(b"x-content-type-options", b"nosniff")
            request.setHeader(b"cache-control", b"no-store")
            return _asset(filename)
        return self._plain(request, 404, f"no dashboard page {name!r}")

    def _plain(self, request: Request, code: int, text: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return text.encode() + b"\n"

    def _stream(self, request: Request) -> Any:
        if len(self._streams) >= self.max_clients:
            return self._plain(
                request, 503, f"{self.max_clients} dashboard streams are open already"
            )
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        if request.method.upper() == b"HEAD":
            return b""
        stream = _Stream(self, request)
        self._streams.append(stream)
        request.registerProducer(stream, True)
        request.write(b"retry: 1000\n\n")
        stream.send("snapshot", self.snapshot())
        self._last_modules = None

        def gone(_: object) -> None:
            stream.closed = True
            if stream in self._streams:
                self._streams.remove(stream)
            if not self._streams and self._loop is not None:
                self._loop.stop()
                self._loop = None

        request.notifyFinish().addBoth(gone)
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.reactor
            self._loop.start(TICK, now=False)
        return NOT_DONE_YET

    def stop(self) -> None:
        """
        End every open stream (C{pywatt dev} is stopping).
        """
        for stream in list(self._streams):
            stream.closed = True
            try:
                stream.request.unregisterProducer()
                stream.request.finish()
            except Exception:  # the connection went already
                pass
        self._streams = []
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
