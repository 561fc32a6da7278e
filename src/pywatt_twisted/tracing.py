# -*- test-case-name: tests.test_tracing -*-
"""
OpenTelemetry tracing: the one place the library talks to OpenTelemetry.

Every instrumented path (inbound HTTP, routed handlers, outgoing module-to-module
requests, database statements, cache operations, secrets, ports) calls one small hook
here, guarded by C{if tracing.switch.on:} so that with tracing off the cost is one
attribute read. Tracing is on when:

    - the process configured the OpenTelemetry SDK from the standard C{OTEL_*}
      variables (L{configure_from_environment}, called once the module id is known;
      needs the C{[otel]} extra), or
    - some other code installed a recording tracer provider before start-up (the
      C{opentelemetry-instrument} wrapper, a test), or
    - a test called L{use_provider} (the SDK's in-memory exporter).

Context is OpenTelemetry's own (C{contextvars}): a hook makes its span current while the
instrumented code runs synchronously; coroutines and C{inlineCallbacks} started then
keep it (Twisted copies the context for each), and L{defer_to_thread} carries it into a
thread. Plain callbacks added to a Deferred run in whatever context fires it, so start
child spans from a coroutine (or pass the span explicitly).

Propagation follows EXTENSIONS.md X3: W3C C{traceparent}/C{tracestate} in HTTP headers
and, for module-to-module requests, in the payload envelope's C{metadata.properties}.
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted import __version__
from pywatt_twisted.wire.envelope import routed_reply_payload, routed_request_properties

if TYPE_CHECKING:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate
    from opentelemetry import trace as otel_trace
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = [
    "current_ids",
    "defer_to_thread",
    "switch",
    "tracer",
    "use_provider",
]

T = TypeVar("T")

_log = Logger()

#: The instrumentation scope of the library's own spans.
SCOPE = "pywatt_twisted"

#: The API's variable naming a tracer provider to load (an entry point) when none is set.
_PROVIDER_VARIABLE = "OTEL_PYTHON_TRACER_PROVIDER"

#: The W3C trace-context keys carried in headers and in C{metadata.properties}.
TRACE_KEYS = ("traceparent", "tracestate")


class _Switch:
    """
    Whether the hooks record spans. Read on every hot path: keep it one attribute.
    """

    __slots__ = ("on", "owned")

    def __init__(self) -> None:
        self.on = False
        #: the SDK provider this module created (shut down at exit), or None
        self.owned: Any = None


#: The guard every hook checks first: C{if tracing.switch.on:}.
switch = _Switch()


# -- the OpenTelemetry API, imported on first use ------------------------------------------


class _Unloaded:
    """
    Stands for one of the OpenTelemetry names below until any of them is used: importing
    the API cost every module's start-up ~24 M instructions, and with tracing off (the
    default) nothing here touches it. The first attribute read or call of a stand-in
    imports it and puts the real objects in this module's globals (L{_load}).
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(_load()[self._name], attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _load()[self._name](*args, **kwargs)


def _load() -> dict[str, Any]:
    """
    Import the OpenTelemetry API (once) in place of the stand-ins; return the globals.
    """
    names = globals()
    if isinstance(names["otel_trace"], _Unloaded):
        from opentelemetry import context, propagate, trace

        names.update(
            otel_context=context,
            propagate=propagate,
            otel_trace=trace,
            Span=trace.Span,
            SpanKind=trace.SpanKind,
            Status=trace.Status,
            StatusCode=trace.StatusCode,
            _NO_CONTEXT=context.Context(),
        )
        if isinstance(names["_tracer"], _Unloaded):
            names["_tracer"] = trace.get_tracer(SCOPE, __version__)
    return names


if not TYPE_CHECKING:
    otel_context = _Unloaded("otel_context")
    propagate = _Unloaded("propagate")
    otel_trace = _Unloaded("otel_trace")
    Span = _Unloaded("Span")
    SpanKind = _Unloaded("SpanKind")
    Status = _Unloaded("Status")
    StatusCode = _Unloaded("StatusCode")

    class Getter:
        """
        The base of the two getters below: the API's C{Getter} is an abstract class
        the propagators never check for (they call C{get} and C{keys}).
        """

        def __class_getitem__(cls, item: Any) -> type:
            return cls


#: the library's tracer (the API's no-op one while tracing is off)
_tracer: otel_trace.Tracer = _Unloaded("_tracer")  # type: ignore[assignment]


def tracer() -> otel_trace.Tracer:
    """
    The tracer the library's spans come from (the no-op one while tracing is off).
    """
    _load()
    return _tracer


def use_provider(provider: otel_trace.TracerProvider | None) -> None:
    """
    Record the library's spans with C{provider} (for tests: a C{TracerProvider} with
    the SDK's C{InMemorySpanExporter}), or stop recording them with C{None}. The
    API's own no-op providers record nothing, so they turn the hooks off too.

    Unlike C{opentelemetry.trace.set_tracer_provider} this can be called again (each
    test its own provider); spans that module code starts from the global tracer
    provider still go there.
    """
    global _tracer
    if provider is None or isinstance(
        provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider
    ):
        # (the API alone records nothing: the hooks stay one flag check)
        _tracer = otel_trace.get_tracer(SCOPE, __version__)
        switch.on = False
        return
    _tracer = provider.get_tracer(SCOPE, __version__)
    switch.on = True


def _global_provider_records() -> bool:
    if "opentelemetry.trace" not in sys.modules and _PROVIDER_VARIABLE not in os.environ:
        # Nothing can have set a provider before the API was imported, and without this
        # variable the API would give its default, which records nothing.
        return False
    provider = otel_trace.get_tracer_provider()
    return not isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider)


# -- context ------------------------------------------------------------------------------


def attach(span: Span) -> object:
    """
    Make C{span} current; give the token to L{detach} when the synchronous part ends.
    """
    return otel_context.attach(otel_trace.set_span_in_context(span))


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def current_ids() -> tuple[str, str] | None:
    """
    C{(trace_id, span_id)} of the current span as lowercase hex (32 and 16 characters),
    or C{None} when no valid span is current. Cheap: no span is created.
    """
    context = otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def defer_to_thread(fn: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
    """
    C{twisted.internet.threads.deferToThread} that runs C{fn} in a copy of the caller's
    context, so spans started in the thread are children of the current span.
    """
    from twisted.internet.threads import deferToThread

    context = contextvars.copy_context()
    return deferToThread(context.run, fn, *args, **kw)


def end(result: T, span: Span) -> T:
    """
    A Deferred callback ending C{span} with C{result}: error status and the exception
    recorded on a L{Failure}. Passes C{result} through.
    """
    if isinstance(result, Failure):
        fail_span(span, result.value)
    span.end()
    return result


def fail_span(span: Span, error: BaseException) -> None:
    """
    Mark C{span} failed with C{error} (recorded as an exception event).
    """
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def error_reply(payload: Any) -> None:
    """
    The current (handler) span answers with an error reply: mark it failed with the
    reply's kind and message.
    """
    span = otel_trace.get_current_span()
    try:
        error = payload.json().get("error", {})
        text = f"{error.get('kind', 'error')}: {error.get('message', '')}"
    except Exception:
        text = "error reply"
    span.set_status(Status(StatusCode.ERROR, text))


def traced(span: Span | None, d: Deferred[T]) -> Deferred[T]:
    """
    End C{span} when C{d} fires (no-op for C{None}); returns C{d}.
    """
    if span is not None:
        d.addBoth(end, span)
    return d


# -- propagation --------------------------------------------------------------------------


def _latin1(values: list[Any]) -> list[str]:
    # (header values as text: raw bytes read as latin-1, which never fails)
    return [v.decode("latin-1") if isinstance(v, bytes) else v for v in values]


class _HeadersGetter(Getter[Any]):
    """Reads W3C keys from a C{twisted.web.http_headers.Headers}."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        # (by a bytes name: Twisted gives the raw bytes, read as latin-1 here; by a str
        # name it would decode them as UTF-8 and raise on any other byte)
        values = carrier.getRawHeaders(key.encode("latin-1"))
        if not values:
            return None
        return _latin1(values)

    def keys(self, carrier: Any) -> list[str]:
        return [
            (k.decode("latin-1") if isinstance(k, bytes) else k).lower()
            for k, _ in carrier.getAllRawHeaders()
        ]


class _PropertiesGetter(Getter[Mapping[str, object]]):
    """Reads W3C keys from an envelope's C{metadata.properties}; only string values."""

    def get(self, carrier: Mapping[str, object], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if type(value) is str else None

    def keys(self, carrier: Mapping[str, object]) -> list[str]:
        return [k for k in carrier if k in TRACE_KEYS]


_headers_getter = _HeadersGetter()

#: the context of a request without W3C headers: its span starts a trace
_NO_CONTEXT: otel_context.Context = _Unloaded("_NO_CONTEXT")  # type: ignore[assignment]

#: (the global propagator, the header names it reads), see L{_propagation_fields}
_fields_of: tuple[object, tuple[bytes, ...]] = (None, ())


def _propagation_fields() -> tuple[bytes, ...]:
    """
    The header names the global propagator reads (C{traceparent}, C{tracestate},
    C{baggage} by default; others under C{OTEL_PROPAGATORS}), so that a request with
    none of them skips the extraction: most requests at a front door carry no context.
    """
    global _fields_of
    textmap = propagate.get_global_textmap()
    cached, fields = _fields_of
    if cached is not textmap:
        fields = tuple(sorted(f.lower().encode("latin-1") for f in textmap.fields))
        _fields_of = (textmap, fields)
    return fields


_properties_getter = _PropertiesGetter()

#: (the global propagator, whether it is the default one), see L{_default_propagation}
_default_of: tuple[object, bool] = (None, False)
#: the SDK propagator's traceparent regex (its search), its length limits, and
#: TraceState.from_header, set by the first L{_default_propagation}
_w3c: tuple[Callable[[str], Any], int, int, Callable[[list[str]], Any]]


def _default_propagation() -> bool:
    """
    Whether the global propagator is the API's default (C{OTEL_PROPAGATORS} unset or
    C{tracecontext,baggage}; also C{tracecontext} alone): then L{_w3c_parent} reads
    C{traceparent} and C{tracestate} itself, with the same results as the propagators
    (which cost ~58 k instructions per request, most of the library's own share of a
    traced request). Any other propagator (b3, jaeger, a subclass, one set by
    C{set_global_textmap}) gets the general path.
    """
    global _default_of, _w3c
    textmap = propagate.get_global_textmap()
    cached, default = _default_of
    if cached is not textmap:
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        from opentelemetry.trace.span import _TRACECONTEXT_MAXIMUM_TRACESTATE_LENGTH, TraceState

        _w3c = (
            TraceContextTextMapPropagator._TRACEPARENT_HEADER_FORMAT_RE.search,
            TraceContextTextMapPropagator._TRACEPARENT_MAXIMUM_LENGTH,
            _TRACECONTEXT_MAXIMUM_TRACESTATE_LENGTH,
            TraceState.from_header,
        )
        kinds = tuple(type(p) for p in getattr(textmap, "_propagators", None) or ())
        default = type(textmap) is CompositePropagator and kinds in (
            (TraceContextTextMapPropagator,),
            (TraceContextTextMapPropagator, W3CBaggagePropagator),
        )
        _default_of = (textmap, default)
    return default


def _w3c_parent(traceparent: str, tracestate: list[str] | None) -> otel_context.Context | None:
    """
    The context C{TraceContextTextMapPropagator.extract} gives for a carrier with these
    values (and no C{baggage}), when it holds a remote span; C{None} when it would not
    (an invalid, oversized or all-zero C{traceparent}, an oversized C{tracestate}): the
    caller then runs the propagators, which ignore the values and log as they do.
    """
    search, traceparent_limit, tracestate_limit, trace_state = _w3c
    if len(traceparent) > traceparent_limit:
        return None
    match = search(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if (
        trace_id == "00000000000000000000000000000000"
        or span_id == "0000000000000000"
        or version == "ff"
        or (version == "00" and rest)
    ):
        return None
    state = None
    if tracestate is not None:
        if sum(len(value) for value in tracestate) + len(tracestate) - 1 > tracestate_limit:
            return None
        state = trace_state(tracestate)
    remote = otel_trace.SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        True,
        otel_trace.TraceFlags(int(flags, 16)),
        state,
    )
    return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(remote), _NO_CONTEXT)


def headers_parent(headers: Any) -> otel_context.Context:
    """
    The parent context of an inbound request with C{headers} (a Twisted C{Headers}):
    what the global propagator extracts, or an empty context when the request carries
    none of its headers (the span then starts a trace).
    """
    if _default_propagation():
        if not headers.hasHeader(b"baggage"):
            traceparent = headers.getRawHeaders(b"traceparent")
            if not traceparent:
                return _NO_CONTEXT
            tracestate = headers.getRawHeaders(b"tracestate")
            parent = _w3c_parent(
                _latin1(traceparent)[0], None if tracestate is None else _latin1(tracestate)
            )
            if parent is not None:
                return parent
        return propagate.extract(headers, getter=_headers_getter)
    for field in _propagation_fields():
        if headers.hasHeader(field):
            return propagate.extract(headers, getter=_headers_getter)
    return _NO_CONTEXT


def properties_parent(properties: Mapping[str, object]) -> otel_context.Context:
    """
    The parent context in a routed request's C{metadata.properties} (X3): what the
    global propagator extracts from them.
    """
    if _default_propagation() and "baggage" not in properties:
        traceparent = properties.get("traceparent")
        if type(traceparent) is not str:
            return _NO_CONTEXT
        tracestate = properties.get("tracestate")
        parent = _w3c_parent(traceparent, [tracestate] if type(tracestate) is str else None)
        if parent is not None:
            return parent
    return propagate.extract(properties, getter=_properties_getter)


def properties_to_send(span: Span) -> dict[str, object]:
    """
    The W3C keys for C{span}'s context, to put into C{metadata.properties} of an
    outgoing routed request (EXTENSIONS.md X3).
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=otel_trace.set_span_in_context(span))
    return {k: v for k, v in carrier.items() if k in TRACE_KEYS}


def reply_payload(payload: Any) -> Any:
    """
    Callee side of X3: the reply to a routed request, in an envelope whose
    C{metadata.properties} carry the current (handler) span's context, when the request
    carried the caller's (its span has a remote parent); else C{payload} as it is, so a
    caller that sent no context gets the bare reply it expects.
    """
    span = otel_trace.get_current_span()
    parent = getattr(span, "parent", None)
    if parent is None or not parent.is_remote or not span.is_recording():
        return payload
    properties = properties_to_send(span)
    if not properties:
        return payload
    return routed_reply_payload(payload, properties)


def reply_received(span: Span, payload: Any) -> None:
    """
    Caller side of X3: the reply to the request of client C{span} carried the callee's
    span context in its envelope; link the client span to it (a span link, so the
    backend can jump from the call to the handler that answered it, also when the
    callee started a trace of its own).
    """
    data = payload.data
    if b"traceparent" not in data:
        return
    properties = routed_request_properties(payload)
    if not properties:
        return
    callee = otel_trace.get_current_span(properties_parent(properties)).get_span_context()
    if callee.is_valid:
        span.add_link(callee, {"pywatt.link": "reply"})


# -- spans of each path -------------------------------------------------------------------


def http_server_span(request: Any, transport: str) -> Span:
    """
    The C{SERVER} span of an inbound HTTP request (direct, or HTTP-over-IPC with
    C{transport} C{"stdio"}, C{"tcp"} or C{"unix"}), a child of the request's
    C{traceparent} when it has one. Named C{METHOD} now; L{end_http_server_span}
    renames it C{METHOD route} once the route is known.
    """
    # (without a parent in the headers: a root span, never a child of what is current)
    parent = headers_parent(request.requestHeaders)
    method = request.method.decode("ascii", "replace").upper()
    path = request.path.decode("utf-8", "replace")
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path,
        "url.scheme": "https" if request.isSecure() else "http",
        "pywatt.transport": transport,
    }
    return _tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)


def end_http_server_span(result: T, span: Span, request: Any, route: str) -> T:
    """
    Finish the span of L{http_server_span} with the route and status (a 5xx or a lost
    connection is an error; 4xx is the client's and leaves the status unset, as the
    HTTP semantic conventions say for server spans).
    """
    method = request.method.decode("ascii", "replace").upper()
    span.update_name(f"{method} {route}")
    code = request.code
    span.set_attributes({"http.route": route, "http.response.status_code": code})
    if isinstance(result, Failure):
        span.set_status(Status(StatusCode.ERROR, "connection lost before the response"))
    elif code >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
    return result


def rpc_client_span(target: str, endpoint: str, notify: bool = False) -> Span:
    """
    The C{CLIENT} span of a module-to-module request (C{PRODUCER} for a notification
    that gets no reply), a child of the current span.
    """
    return _tracer.start_span(
        f"{target}/{endpoint}",
        kind=SpanKind.PRODUCER if notify else SpanKind.CLIENT,
        attributes={
            "rpc.system": "pywatt",
            "rpc.service": target,
            "rpc.method": endpoint,
        },
    )


def rpc_server_span(
    properties: Mapping[str, object] | None, module_id: str, endpoint: str | None, source: str
) -> Span:
    """
    The C{SERVER} span of a routed handler call: a child of the context in the
    request envelope's C{metadata.properties} when the caller sent one.
    """
    parent = properties_parent(properties) if properties else None
    name = endpoint or "unknown"
    return _tracer.start_span(
        f"{module_id}/{name}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "rpc.system": "pywatt",
            "rpc.service": module_id,
            "rpc.method": name,
            "pywatt.source_module": source,
        },
    )


def db_span(dialect: str, sql: str | None, database: str | None = None) -> Span:
    """
    The C{CLIENT} span of one database statement (C{sql}, never its parameters) or of
    a whole transaction (C{sql} None), a child of the current span.
    """
    attributes: dict[str, Any] = {"db.system.name": dialect}
    if database:
        attributes["db.namespace"] = database
    if sql is None:
        return _tracer.start_span("transaction", kind=SpanKind.CLIENT, attributes=attributes)
    operation = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "SQL"
    attributes["db.query.text"] = sql
    attributes["db.operation.name"] = operation
    return _tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=attributes)


def db_statement_span(dialect: str, sql: str) -> Span | None:
    """
    In a pool thread: the span of one statement of a transaction, a child of the
    transaction's span; C{None} when tracing is off or no span is current there (an
    async transaction's thread does not carry the caller's context).
    """
    if not switch.on or not otel_trace.get_current_span().get_span_context().is_valid:
        return None
    return db_span(dialect, sql)


def cache_span(system: str, operation: str, batch: int | None = None) -> Span:
    """
    The C{CLIENT} span of one cache operation (no key or value in attributes: keys can
    hold user data); C{batch}, for an operation on several keys, is how many
    (C{db.operation.batch.size}, set from 2 on as the conventions say).
    """
    attributes: dict[str, Any] = {"db.system.name": system, "db.operation.name": operation}
    if batch is not None and batch > 1:
        attributes["db.operation.batch.size"] = batch
    return _tracer.start_span(f"cache {operation}", kind=SpanKind.CLIENT, attributes=attributes)


def internal_span(name: str, **attributes: Any) -> Span:
    """
    An C{INTERNAL} span (secret fetches and rotations, port requests), a child of the
    current span.
    """
    return _tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)


# -- SDK set-up from OTEL_* ---------------------------------------------------------------

_EXPORTER_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def _wanted(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return any(environ.get(name, "").strip() for name in _EXPORTER_VARIABLES)


def _otlp_exporter() -> Any:
    """
    The SDK's OTLP/HTTP exporter sending the same bytes, encoded ~4x cheaper
    (L{pywatt_twisted._otlp}); the SDK's own exporter when this SDK's internals the
    fast encoder builds on are not there (a version that moved them).
    """
    try:
        from pywatt_twisted._otlp import OTLPSpanExporter
    except ImportError as e:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as SDKExporter,
        )

        _log.info(
            "tracing: the SDK's OTLP encoder is used ({error}); the faster one needs "
            "the SDK's internal encoding helpers",
            error=e,
        )
        return SDKExporter()
    return OTLPSpanExporter()


def _exporters(environ: Mapping[str, str]) -> Iterator[Any]:
    names = [
        n.strip().lower()
        for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if n.strip()
    ]
    for name in names or ["otlp"]:
        if name == "otlp":
            protocol = environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ).strip()
            if protocol != "http/protobuf":
                raise ValueError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: pywatt_twisted "
                    "exports traces with OTLP over HTTP (http/protobuf); point "
                    "OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (usually 4318)"
                )
            yield _otlp_exporter()
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            yield ConsoleSpanExporter()
        else:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER lists {name!r}; pywatt_twisted knows otlp, console and none"
            )


def configure_from_environment(
    module_id: str, environ: Mapping[str, str] | None = None, enabled: bool = True
) -> bool:
    """
    Turn tracing on for this process when the standard variables ask for it, once the
    module id is known; return whether it is on.

      - A recording tracer provider installed before (auto-instrumentation, a test's
        L{use_provider}) is used as it is.
      - Otherwise, when C{OTEL_TRACES_EXPORTER}, C{OTEL_EXPORTER_OTLP_ENDPOINT} or
        C{OTEL_EXPORTER_OTLP_TRACES_ENDPOINT} is set (and neither
        C{OTEL_SDK_DISABLED=true} nor C{OTEL_TRACES_EXPORTER=none}), build an SDK
        C{TracerProvider} with a batch span processor (C{OTEL_BSP_*} bound its queue:
        spans beyond C{OTEL_BSP_MAX_QUEUE_SIZE}, default 2048, are dropped and the SDK
        logs it) and the OTLP/HTTP exporter, with
        C{service.name} from C{OTEL_SERVICE_NAME} or else the module id, and the sampler
        from C{OTEL_TRACES_SAMPLER}. It becomes the global provider, so spans the module
        starts itself join the same traces.
      - When those variables are set and the C{[otel]} extra is missing, log a warning
        naming the extra; tracing stays off.

    @param enabled: C{False} (C{PYWATT_TRACING=off}) keeps tracing off whatever the
        variables say.
    """
    env = os.environ if environ is None else environ
    if not enabled:
        return False
    if switch.on:
        return True
    if _global_provider_records():
        use_provider(otel_trace.get_tracer_provider())
        return True
    if not _wanted(env):
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        _log.warn(
            "OpenTelemetry variables are set but the SDK is not installed: tracing stays "
            "off. Install it with: pip install 'pywatt_twisted[otel]'"
        )
        return False
    attributes: dict[str, Any] = {}
    named = env.get("OTEL_SERVICE_NAME", "").strip() or (
        "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    )
    if not named:
        attributes[SERVICE_NAME] = module_id
    attributes["service.instance.id"] = f"{module_id}-{os.getpid()}"
    try:
        exporters = list(_exporters(env))
    except (ValueError, ImportError) as e:
        _log.error("tracing stays off: {error}", error=str(e))
        return False
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    otel_trace.set_tracer_provider(provider)
    switch.owned = provider
    use_provider(provider)
    _log.info(
        "tracing on: exporting spans of service {service} ({exporters})",
        service=attributes.get(SERVICE_NAME, env.get("OTEL_SERVICE_NAME", "")),
        exporters=", ".join(type(e).__name__ for e in exporters),
    )
    return True


def flush(timeout: float = 3.0) -> None:
    """
    Export the spans still queued and stop the provider this process created (blocks
    at most about C{timeout} seconds; call it from a thread at exit).
    """
    provider = switch.owned
    if provider is None:
        return
    try:
        provider.force_flush(int(timeout * 1000))
    finally:
        provider.shutdown()
