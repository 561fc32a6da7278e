"""
Request throughput with tracing off, with the OpenTelemetry API only, and with the SDK
exporting (issue 16).

Run: C{.venv/bin/python -m bench tracing} (add C{--quick} for a short run).

Each request is an HTTP-over-IPC C{GET /items/:id} through L{HttpBridge} into a Klein
route (the same site as the C{bridge} bench), carrying a C{traceparent} header, so every
request makes a SERVER span when tracing records. Modes, measured in turns (off, api,
sdk, off, ...) so that machine noise hits each alike; the median of the turns counts:

  - C{off}: no recording provider: the default install without the SDK, or
    C{PYWATT_TRACING=off}; every hook is one flag check (the baseline);
  - C{api}: the API's no-op tracer provider handed to L{tracing.use_provider}, as
    with the API alone: the library sees that nothing records and keeps its hooks to
    the flag check; target within 3% of off;
  - C{sdk}: the SDK's C{TracerProvider} with a C{BatchSpanProcessor} and the OTLP/HTTP
    exporter sending to a receiver in a child process; target within 15% of off.
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


def measure(bridge: HttpBridge, seconds: float) -> float:
    headers = {"host": "module", "traceparent": TRACEPARENT}
    count = 0
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
    return count / (time.perf_counter() - started)


def sdk_provider(port: int) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    return provider


def main(argv: list[str]) -> int:
    seconds = 0.3 if "--quick" in argv else 1.0
    turns = 3 if "--quick" in argv else 7
    from opentelemetry.trace import NoOpTracerProvider
    from twisted.internet.epollreactor import EPollReactor

    clock = EPollReactor()
    bridge = HttpBridge(build_site(clock), reactor=clock, max_concurrent=10**6)
    sink = subprocess.Popen([sys.executable, "-c", _SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        try:
            sdk = sdk_provider(port)
        except ImportError:
            print("the SDK is not installed (pip install '.[otel]'): measuring off and api only")
            sdk = None
        modes: dict[str, Any] = {"off": None, "api": NoOpTracerProvider()}
        if sdk is not None:
            modes["sdk"] = sdk
        results: dict[str, list[float]] = {name: [] for name in modes}
        measure(bridge, seconds / 3)  # warm up
        for _ in range(turns):
            for name, provider in modes.items():
                tracing.use_provider(provider)
                gc.collect()
                results[name].append(measure(bridge, seconds))
        tracing.use_provider(None)
        if sdk is not None:
            sdk.shutdown()
    finally:
        sink.terminate()
        sink.wait()
    off = statistics.median(results["off"])
    print(f"requests/s (median of {turns} turns of {seconds:g} s); ratio = mode / off")
    print(f"{'mode':<6} {'req/s':>9} {'ratio':>6}  target")
    print(f"{'off':<6} {off:>9.0f} {1:>6.2f}")
    targets = {"api": (">= 0.97", 0.97), "sdk": (">= 0.85", 0.85)}
    for name in modes:
        if name == "off":
            continue
        value = statistics.median(results[name])
        target, bound = targets[name]
        verdict = "meets" if value / off >= bound else "MISSES"
        print(f"{name:<6} {value:>9.0f} {value / off:>6.2f}  {target} ({verdict})")
        row(
            "tracing",
            f"HTTP over IPC with tracing {name} vs off",
            value,
            off,
            unit="req/s",
            target=target,
        )
    return 0
