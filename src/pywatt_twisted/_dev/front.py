# -*- test-case-name: tests.dev.test_front -*-
"""
The front HTTP port of C{pywatt dev}.

Routing is by **module id in the path**: C{/<module_id>/<path>} is sent to module
C{module_id} as C{/<path>} (query string kept). Only what the module announced is served:
a path that matches no announced endpoint gets 404, a method the endpoint did not announce
gets 405 with an C{Allow} header. Requests travel to the module as C{http_request} lines
over its stdin (HTTP-over-IPC), exactly as an orchestrator may send them.

C{/} shows a page listing the modules, their state, endpoints and channels;
C{/_pywatt/modules} gives the same as JSON.

Large request bodies (a C{Content-Length} above L{STREAM_ABOVE}, or chunked) to a
module path are not spooled first: L{FrontRequest} routes the request as soon as its
body starts to arrive and streams the body to the module as X1 chunks while it
arrives, pausing the client's connection while the module's window is full
(L{LiveRequestBody <pywatt_twisted._dev._streaming.LiveRequestBody>}). A chunked body
that ends at or below L{STREAM_ABOVE} still goes plain, in the C{http_request}.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pywatt_twisted._dev._status import SupervisorStatus
from pywatt_twisted._dev._streaming import LiveRequestBody
from pywatt_twisted.wire.messages import Endpoint

#: Request bodies larger than this go to the module as X1 chunks, forwarded as they
#: arrive (constant memory whatever their size).
STREAM_ABOVE = 1024 * 1024


def _module_target(target: bytes) -> bool:
    """
    Whether a request-target names a module path (C{/<module id>/...}), not the index
    or C{/_pywatt/...}.
    """
    if not target.startswith(b"/"):
        return False
    first = target[1:].split(b"?", 1)[0].split(b"/", 1)[0]
    return first not in (b"", b"_pywatt")


class FrontRequest(Request):
    """
    A front-port request. A large body to a module path (a C{Content-Length} above
    L{STREAM_ABOVE}, or chunked) is read as it arrives (L{LiveRequestBody}) instead of
    spooled to a temporary file: the request is processed (routed, sent to the
    module) when its first body bytes arrive, and the body follows as X1 chunks.

    The response may then be complete before the body is (an error, a 413 from the
    module): it goes out with C{Connection: close}, the rest of the body is read and
    dropped (its stream cancelled), and the connection closes when the body ends.
    Everything else is a plain L{twisted.web.server.Request}.
    """

    live: LiveRequestBody | None = None
    _answered_early = False

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        if (length is not None and length <= STREAM_ABOVE) or not _module_target(
            getattr(channel, "_path", b"")
        ):
            super().gotLength(length)
            return
        body = self.live = LiveRequestBody(self.transport, length, STREAM_ABOVE)
        body.on_first_data = self._process_early
        self.content = body  # type: ignore[assignment]

    def _process_early(self) -> None:
        """
        The body starts to arrive: process the request now (twisted.web would wait for
        its end).
        """
        channel = self.channel
        self.write = self._first_write  # type: ignore[method-assign]
        super().requestReceived(channel._command, channel._path, channel._version)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        body = self.live
        if body is None:
            super().requestReceived(command, path, version)
            return
        started = body.on_first_data is None
        body.end()
        if not started:
            # (no body bytes came at all: processed now, as any request)
            super().requestReceived(command, path, version)
        elif self._answered_early:
            HTTPRequest._cleanup(self)

    def _first_write(self, data: bytes) -> None:
        del self.write  # (the class's from now on)
        if self.live is not None and not self.live.ended and not self.startedWriting:
            # The head goes out while the body still arrives: the connection closes
            # after this response (RFC 9110 15.1 / 9112 9.6).
            self.setHeader(b"connection", b"close")
            self.channel.persistent = False
        self.write(data)

    def _cleanup(self) -> None:
        body = self.live
        if body is not None and not body.ended and not self._disconnected:
            # The response is complete, the body is not: read and drop the rest of it;
            # the channel hears of this request once it ended (cleaning up now would
            # make it parse the rest of the body as the next request).
            self._answered_early = True
            self.channel.persistent = False
            body.discard("the response was complete before the request body")
            notifications, self.notifications = self.notifications, []
            for d in notifications:
                d.callback(None)
            return
        super()._cleanup()


def endpoint_matches(pattern: str, path: str) -> bool:
    """
    Whether C{path} matches an announced C{pattern} (C{:name} matches one segment; a
    pattern ending in C{/} or C{/*} matches everything below it).
    """
    if pattern.endswith("/*"):
        return path == pattern[:-2] or path.startswith(pattern[:-1])
    if pattern.endswith("/") and pattern != "/":
        return path.startswith(pattern)
    want = pattern.strip("/").split("/")
    have = path.strip("/").split("/")
    if len(want) != len(have):
        return False
    return all((w.startswith(":") and h != "") or w == h for w, h in zip(want, have, strict=True))


def allowed_methods(endpoints: tuple[Endpoint, ...], path: str) -> set[str] | None:
    """
    The methods announced for C{path}, or C{None} when no endpoint matches it.
    """
    methods: set[str] | None = None
    for endpoint in endpoints:
        if endpoint_matches(endpoint.path, path):
            methods = (methods or set()) | {m.upper() for m in endpoint.methods}
    if methods is not None and "GET" in methods:
        methods.add("HEAD")
    return methods


class FrontResource(Resource):
    """
    The front port's root resource.

    @param modules: C{callable()} returning the supervisors by module id.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        modules: Callable[[], Mapping[str, Any]],
        *,
        hold: Any = None,
        on_request: Callable[[dict[str, Any]], object] | None = None,
        dashboard: Any = None,
    ) -> None:
        """
        @param hold: a L{RequestHold <pywatt_twisted._dev._reload.RequestHold>}: requests
            for a module that is coming back (a reload, a restart) wait for it instead
            of getting 503 (C{pywatt dev --reload}).
        @param on_request: called with each finished module request (C{module},
            C{method}, C{path}, C{status}, C{ms}, C{at}).
        @param dashboard: serves C{/_pywatt/} (the page, its assets and events) and
            C{/_pywatt/modules}; without it C{/_pywatt/...} is the JSON status.
        """
        super().__init__()
        self._modules = modules
        self._hold = hold
        self._on_request = on_request
        self._dashboard = dashboard

    def render(self, request: Request) -> Any:
        segments = [s.decode("utf-8", "replace") for s in request.postpath or []]
        if not segments or segments == [""]:
            return self._index(request)
        if segments[0] == "_pywatt":
            if self._dashboard is not None:
                return self._dashboard.render(request, segments[1:])
            return self._json(request, 200, [m.describe() for m in self._modules().values()])
        if self._on_request is not None:
            self._record(request, segments[0])
        return self._serve(request, segments, hold=self._hold is not None)

    def _record(self, request: Request, module_id: str) -> None:
        on_request = self._on_request
        assert on_request is not None
        started = time.monotonic()
        at = time.time()
        method = request.method.decode("ascii", "replace").upper()
        path = request.uri.decode("utf-8", "replace")

        def done(result: object) -> None:
            on_request(
                {
                    "module": module_id,
                    "method": method,
                    "path": path,
                    "status": request.code if result is None else None,
                    "ms": round((time.monotonic() - started) * 1000, 1),
                    "at": at,
                }
            )

        request.notifyFinish().addBoth(done)

    def _serve(self, request: Request, segments: list[str], hold: bool) -> Any:
        module_id = segments[0]
        supervisor = self._modules().get(module_id)
        if supervisor is None:
            return self._json(
                request,
                404,
                {"error": f"no module {module_id!r}", "modules": sorted(self._modules())},
            )
        path = "/" + "/".join(segments[1:])
        method = request.method.decode("ascii", "replace").upper()
        if hold and self._hold.coming_back(supervisor):
            waiting = self._hold.wait(supervisor)
            if waiting is None:
                return self._json(
                    request,
                    503,
                    {
                        "error": f"module {module_id!r} is {supervisor.status}, and "
                        f"{self._hold.limit} requests already wait for it"
                    },
                )
            waiting.addCallback(lambda _: self._after_hold(request, segments))
            waiting.addErrback(lambda f: self.log.failure("holding for {m}", f, m=module_id))
            return NOT_DONE_YET
        if supervisor.status != "running" or getattr(supervisor, "reloading", False):
            error = f"module {module_id!r} is {supervisor.status}"
            if (
                getattr(supervisor, "last_error", None)
                and supervisor.status == SupervisorStatus.CRASHED
            ):
                error += f": {supervisor.last_error}"
            return self._json(request, 503, {"error": error})
        allowed = allowed_methods(supervisor.endpoints, path)
        if allowed is None:
            return self._json(
                request, 404, {"error": f"module {module_id!r} announced no endpoint for {path}"}
            )
        if method not in allowed:
            request.setHeader(b"allow", ", ".join(sorted(allowed)).encode())
            return self._json(
                request,
                405,
                {"error": f"module {module_id!r} did not announce {method} {path}"},
            )
        uri = path
        query = request.uri.partition(b"?")[2]
        if query:
            uri += "?" + query.decode("utf-8", "replace")
        headers = {
            k.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
            for k, values in request.requestHeaders.getAllRawHeaders()
        }
        content = request.content
        body_file = None
        body = b""
        if isinstance(content, LiveRequestBody):
            body_file = content  # (arriving: plain or streamed, decided in _forward)
        elif content is not None:
            content.seek(0, 2)
            size = content.tell()
            content.seek(0)
            if size > STREAM_ABOVE and hasattr(supervisor, "streams"):
                body_file = content  # streamed to the module as it reads it
            else:
                body = content.read()
        d = ensureDeferred(
            self._forward(request, supervisor, method, uri, headers, body or None, body_file)
        )
        d.addErrback(lambda f: self.log.failure("proxying to {m} failed", f, m=module_id))
        return NOT_DONE_YET

    def _after_hold(self, request: Request, segments: list[str]) -> None:
        """
        The module a request waited for runs (or gave up): serve it now.
        """
        if request.finished or getattr(request, "_disconnected", False):
            return
        body = self._serve(request, segments, hold=False)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    async def _forward(
        self,
        request: Request,
        supervisor: Any,
        method: str,
        uri: str,
        headers: dict[str, str],
        body: bytes | None,
        body_file: Any = None,
    ) -> None:
        finished: list[object] = []
        request.notifyFinish().addBoth(lambda result: finished.append(result))
        if isinstance(body_file, LiveRequestBody):
            try:
                arrived = await body_file.wanted(hasattr(supervisor, "streams"))
            except Exception:
                return  # (the request ended first: nobody waits for an answer)
            if arrived is not None:
                body, body_file = arrived or None, None
        try:
            if body_file is not None:
                response = await supervisor.requests.http(
                    method, uri, headers, None, body_file=body_file
                )
            else:
                response = await supervisor.requests.http(method, uri, headers, body)
        except Exception as e:
            if not finished:
                request.write(self._json(request, 502, {"error": str(e)}))
                request.finish()
            return
        relay = None
        if getattr(response, "stream_id", None) is not None:
            relay = supervisor.streams.take_relay(response.request_id)
        if finished:
            if relay is not None and relay.receiver is not None:
                relay.receiver.cancel("the HTTP client went away")
            return
        request.setResponseCode(response.status_code)
        for name, value in response.headers.items():
            if name.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        if relay is not None:
            # Streamed: relayed with chunked transfer encoding, acked as the client reads.
            relay.attach(request)
            return
        if response.body:
            request.write(response.body)
        request.finish()

    def _json(self, request: Request, code: int, body: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body, indent=2).encode() + b"\n"

    def _index(self, request: Request) -> bytes:
        rows = []
        for module_id, supervisor in sorted(self._modules().items()):
            info = supervisor.describe()
            endpoints = "<br>".join(
                html.escape(f"{' '.join(e['methods'])} {e['path']}")
                + (
                    f' <a href="/{module_id}{html.escape(e["path"])}">open</a>'
                    if "GET" in e["methods"] and ":" not in e["path"]
                    else ""
                )
                for e in info["endpoints"]
            )
            channels = ", ".join(f"{k}: {v}" for k, v in info["channels"].items())
            rows.append(
                "<tr>"
                f"<td>{html.escape(module_id)}</td><td>{html.escape(info['status'])}</td>"
                f"<td>{info['pid'] or ''}</td><td>{info['restarts']}</td>"
                f"<td>{html.escape(info['listen'] or '')}</td><td>{endpoints}</td>"
                f"<td>{html.escape(channels)}</td>"
                "</tr>"
            )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        page = f"""<!doctype html>
<html><head><title>pywatt dev</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4em;vertical-align:top}}</style></head>
<body><h1>pywatt dev</h1>
<p>Requests to <code>/&lt;module id&gt;/&lt;path&gt;</code> go to that module.
Live dashboard: <a href="/_pywatt/">/_pywatt/</a>;
JSON: <a href="/_pywatt/modules">/_pywatt/modules</a></p>
<table><tr><th>module</th><th>state</th><th>pid</th><th>restarts</th><th>listen</th>
<th>endpoints</th><th>channels</th></tr>
{"".join(rows)}
</table></body></html>
"""
        return page.encode()
