"""
L{pywatt_twisted.tracing} imports the OpenTelemetry API on first use (issue 20): a module
with tracing off never loads it; the first use loads all of it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase


def _run(code: str, **environ: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    ).stdout.strip()


_LOADED = "import sys; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"


class LazyOpenTelemetryTests(SynchronousTestCase):
    def test_tracing_off_loads_nothing(self) -> None:
        """
        Importing the runtime, turning tracing on from an environment without C{OTEL_*}
        variables (it stays off) and logging a line import no OpenTelemetry module.
        """
        out = _run(
            "import io, pywatt_twisted._tap, pywatt_twisted._runtime.process\n"
            "from twisted.logger import Logger\n"
            "from pywatt_twisted import tracing\n"
            "from pywatt_twisted._runtime.logging import JsonLinesObserver\n"
            "assert tracing.configure_from_environment('m', environ={}) is False\n"
            "assert not tracing.switch.on\n"
            "Logger(observer=JsonLinesObserver(io.StringIO())).info('hello')\n" + _LOADED
        )
        self.assertEqual(out, "[]")

    def test_provider_variable_is_honoured(self) -> None:
        """
        With C{OTEL_PYTHON_TRACER_PROVIDER} set, the API is asked for its provider even
        though nothing imported it yet (it loads the one the variable names).
        """
        try:
            import opentelemetry.sdk.trace  # noqa: F401
        except ImportError:  # pragma: no cover
            raise SkipTest("needs the OpenTelemetry SDK")
        out = _run(
            "from pywatt_twisted import tracing\n"
            "print(tracing.configure_from_environment('m', environ={}), tracing.switch.on)",
            OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider",
        )
        self.assertEqual(out, "True True")

    def test_first_use_loads_everything(self) -> None:
        """
        The first use of any stand-in (here a call of C{Status}) imports the API and
        replaces every stand-in with the real object.
        """
        out = _run(
            "from pywatt_twisted import tracing\n"
            "import sys\n"
            "assert 'opentelemetry.trace' not in sys.modules\n"
            "status = tracing.Status(tracing.StatusCode.ERROR, 'x')\n"
            "from opentelemetry import context, propagate, trace\n"
            "assert type(status) is trace.Status and status.description == 'x'\n"
            "assert tracing.otel_trace is trace and tracing.propagate is propagate\n"
            "assert tracing.otel_context is context\n"
            "assert tracing.SpanKind is trace.SpanKind and tracing.Span is trace.Span\n"
            "assert type(tracing._NO_CONTEXT) is context.Context\n"
            "assert isinstance(tracing._tracer, trace.Tracer)\n"
            "assert tracing.tracer() is tracing._tracer\n"
            "print('ok')"
        )
        self.assertEqual(out, "ok")

    def test_tracer_loads(self) -> None:
        """
        L{tracing.tracer} gives the API's tracer, never a stand-in.
        """
        out = _run(
            "from pywatt_twisted import tracing\n"
            "from opentelemetry import trace\n"
            "print(isinstance(tracing.tracer(), trace.Tracer))"
        )
        self.assertEqual(out, "True")

    def test_propagation_without_a_provider(self) -> None:
        """
        A span hook used before anything loaded the API (tracing off, as a test may
        call it) still works: the stand-ins load it on the way.
        """
        out = _run(
            "from pywatt_twisted import tracing\n"
            "span = tracing.internal_span('x')\n"
            "print(tracing.properties_to_send(span), span.is_recording())"
        )
        self.assertEqual(out, "{} False")
