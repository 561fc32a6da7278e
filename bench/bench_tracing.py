"""
Request throughput with tracing off, with the OpenTelemetry API only, and with the SDK
exporting (issue 16).

Run: C{.venv/bin/python -m bench tracing} (add C{--quick} for a short run).

Each request is an HTTP-over-IPC C{GET /items/:id} through L{HttpBridge} into a Klein
route (the same site as the C{bridge} bench), carrying a C{traceparent} header, so every
request makes a SERVER span when tracing records. After every 50 requests the bench
turns the reactor once (C{runUntilCurrent}), as a running module's reactor does: that
is where the reactor drops the cancelled timeout timer of each finished request; a
bench that never turned it kept one dead timer per request in the heap, which every
full garbage collection walked, and penalised most the mode with the most collections
(the SDK's). After the warm-up the bench freezes its heap as a module process does
once it has announced (L{pywatt_twisted._runtime.heap}), for every mode. Modes,
measured in turns (off, api, sdk, off, ...) so that machine noise hits each alike; the
median of the turns counts:

  - C{off}: no recording provider: the default install without the SDK, or
    C{PYWATT_TRACING=off}; every hook is one flag check (the baseline);
  - C{api}: the API's no-op tracer provider handed to L{tracing.use_provider}, as
    with the API alone: the library sees that nothing records and keeps its hooks to
    the flag check; target within 3% of off;
  - C{sdk}: what a module with C{OTEL_EXPORTER_OTLP_ENDPOINT} set runs: the SDK's
    C{TracerProvider} with a C{BatchSpanProcessor} (configured by the C{OTEL_BSP_*}
    variables, defaults otherwise) and the OTLP/HTTP exporter
    L{tracing.configure_from_environment} installs (L{pywatt_twisted._otlp}'s: the SDK's,
    with a cheaper encoder of the same bytes) sending every span to a receiver in a child
    process; the bench checks that every span was exported (none
    dropped at the queue bound); target within 15% of off.

Besides requests per second (wall clock, the target rows), it prints the CPU time per
request of the whole process (C{process_time}: the exporter's thread included) and,
unless C{--quick}, where the SDK path's CPU goes: two more modes that are not targets,
C{sdk-spans} (SDK spans, no processor: what making and ending the span costs, our hooks
included) and C{sdk-queue} (the batch processor with an exporter that drops the spans:
what queueing them costs, mostly the garbage collector walking spans that live until
their batch leaves), so that C{sdk} minus C{sdk-queue} is the export (OTLP encoding and
the HTTP post, on the exporter's thread).
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.bench_bridge import _collect, build_site
from bench.record import row
from pywatt_twisted import tracing
from pywatt_twisted._runtime.heap import freeze_start_up_heap
from pywatt_twisted.web.bridge import HttpBridge
from pywatt_twisted.wire.messages import HttpRequest

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# A minimal OTLP/HTTP sink in a child process: reads each POST and answers 200 with an
# empty ExportTraceServiceResponse (an empty protobuf message is zero bytes).
_SINK = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def measure(bridge: HttpBridge, seconds: float) -> tuple[float, float, int]:
    """
    Run requests for about C{seconds}; return requests per second (wall clock), CPU
    microseconds per request (the whole process) and the number of requests.
    """
    headers = {"host": "module", "traceparent": TRACEPARENT}
    reactor = bridge.reactor
    count = 0
    cpu = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            response = _collect(
                bridge.handle(
                    HttpRequest(
                        request_id=f"r{count}", method="GET", uri="/items/42", headers=headers
                    )
                )
            )
            if response.status_code != 200:
                raise RuntimeError(f"bridge answered {response.status_code}")
            count += 1
        reactor.runUntilCurrent()
    wall = time.perf_counter() - started
    return count / wall, (time.process_time() - cpu) / count * 1e6, count


class _Counted:
    """
    An exporter that counts the spans it was given and passes them on.
    """

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        self.spans = 0

    def export(self, spans: Any) -> Any:
        self.spans += len(spans)
        return self.exporter.export(spans)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _Dropping:
    """
    An exporter that drops every span (the C{sdk-queue} breakdown mode only).
    """

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def sdk_provider(exporter: Any) -> Any:
    """
    A provider as L{tracing.configure_from_environment} makes it: a batch span
    processor configured by the C{OTEL_BSP_*} variables, around C{exporter}.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    seconds = 0.3 if quick else 1.0
    turns = 3 if quick else 7
    from opentelemetry.trace import NoOpTracerProvider
    from twisted.internet.epollreactor import EPollReactor

    clock = EPollReactor()
    bridge = HttpBridge(build_site(clock), reactor=clock, max_concurrent=10**6)
    sink = subprocess.Popen([sys.executable, "-c", _SINK], stdout=subprocess.PIPE, text=True)
    counted = None
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        modes: dict[str, Any] = {"off": None, "api": NoOpTracerProvider()}
        try:
            # (the exporter configure_from_environment installs)
            from pywatt_twisted._otlp import OTLPSpanExporter

            counted = _Counted(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
            modes["sdk"] = sdk_provider(counted)
            if not quick:
                modes["sdk-spans"] = sdk_provider(None)
                modes["sdk-queue"] = sdk_provider(_Dropping())
        except ImportError:
            print("the SDK is not installed (pip install '.[otel]'): measuring off and api only")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
        sdk_requests = 0
        measure(bridge, seconds / 3)  # warm up
        # (as a module process does once it has announced, whatever its tracing: the
        # start-up heap is frozen, so full collections skip it)
        freeze_start_up_heap()
        for _ in range(turns):
            for name, provider in modes.items():
                tracing.use_provider(provider)
                gc.collect()
                rate, cpu, count = measure(bridge, seconds)
                results[name].append((rate, cpu))
                if name == "sdk":
                    sdk_requests += count
                    provider.force_flush()  # (this turn's spans leave before the next turn)
        tracing.use_provider(None)
        for name, provider in modes.items():
            if name.startswith("sdk"):
                provider.shutdown()
    finally:
        sink.terminate()
        sink.wait()
    if counted is not None and counted.spans != sdk_requests:
        raise RuntimeError(
            f"the sdk mode exported {counted.spans} spans for {sdk_requests} requests: spans "
            "were dropped at the batch processor's queue bound, so it did not measure the "
            "SDK exporting every span (raise OTEL_BSP_MAX_QUEUE_SIZE)"
        )

    def median(name: str, i: int) -> float:
        return statistics.median(r[i] for r in results[name])

    off, off_cpu = median("off", 0), median("off", 1)
    print(
        f"requests/s (median of {turns} turns of {seconds:g} s); ratio = mode / off; "
        "CPU = process CPU per request (all threads)"
    )
    print(f"{'mode':<10} {'req/s':>9} {'ratio':>6} {'CPU us':>7} {'ratio':>6}  target")
    print(f"{'off':<10} {off:>9.0f} {1:>6.2f} {off_cpu:>7.1f} {1:>6.2f}")
    targets = {"api": (">= 0.97", 0.97), "sdk": (">= 0.85", 0.85)}
    for name in modes:
        if name == "off":
            continue
        value, cpu = median(name, 0), median(name, 1)
        line = f"{name:<10} {value:>9.0f} {value / off:>6.2f} {cpu:>7.1f} {off_cpu / cpu:>6.2f}"
        if name not in targets:
            print(f"{line}  (breakdown, not a target)")
            continue
        target, bound = targets[name]
        verdict = "meets" if value / off >= bound else "MISSES"
        print(f"{line}  {target} ({verdict})")
        row(
            "tracing",
            f"HTTP over IPC with tracing {name} vs off",
            value,
            off,
            unit="req/s",
            target=target,
        )
    if counted is not None:
        print(f"sdk: {counted.spans} spans exported for {sdk_requests} requests (none dropped)")
    if "sdk-queue" in modes:
        spans_cpu = median("sdk-spans", 1) - off_cpu
        queue_cpu = median("sdk-queue", 1) - median("sdk-spans", 1)
        export_cpu = median("sdk", 1) - median("sdk-queue", 1)
        print(
            f"SDK path, CPU per request over off: making and ending the span {spans_cpu:.1f} us, "
            f"queueing it {queue_cpu:.1f} us, exporting it {export_cpu:.1f} us"
        )
    return 0
