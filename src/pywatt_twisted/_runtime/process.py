# -*- test-case-name: tests.integration.test_stderr_process -*-
"""
Wiring a L{ModuleService} into a real process: stdout claimed for the protocol, JSON logs
on stderr (written without blocking, see L{StderrWriter}), C{StandardIO}, signal handling
and the exit status. Used by C{twistd pywatt}
(L{pywatt_twisted._tap}) and C{python -m pywatt_twisted}.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any

from twisted.application.service import IServiceCollection, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, Logger, LogLevel

from pywatt_twisted import tracing
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.heap import freeze_after_ready
from pywatt_twisted._runtime.logging import (
    JsonLinesObserver,
    StderrWriter,
    bridge_stdlib_logging,
    dropped_lines_event,
    filtered,
)
from pywatt_twisted._runtime.module import ModuleDefinition
from pywatt_twisted._runtime.service import ModuleService
from pywatt_twisted._transport.stdio import claim_stdout

log = Logger()


class ProcessService(MultiService):
    """
    The top service of a module process. When twistd attaches it to its application it
    also installs the JSON log observer as the application's L{ILogObserver}, so twistd's
    own start-up lines are JSON on stderr too.
    """

    def __init__(self, module: ModuleService, observer: ILogObserver) -> None:
        super().__init__()
        self.module = module
        self.observer = observer
        module.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        set_component = getattr(parent, "setComponent", None)
        if set_component is not None:
            set_component(ILogObserver, self.observer)
        super().setServiceParent(IServiceCollection(parent))


def build_process_service(
    definition: ModuleDefinition,
    *,
    level: LogLevel,
    config: RuntimeConfig,
    reactor: Any = None,
) -> ProcessService:
    """
    Build the service tree of a module process. Claims stdout at once.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    protocol_fd = claim_stdout()
    log_writer = StderrWriter.for_stderr(reactor, config.log_buffer_bytes)
    json_observer = JsonLinesObserver(log_writer)
    log_writer.notice = lambda count: json_observer.render(
        dropped_lines_event(count, config.log_buffer_bytes, reactor.seconds())
    )
    # Logging goes on after the reactor stopped (twistd's last lines): what is still
    # buffered at exit gets a bounded last chance.
    atexit.register(log_writer.flush_final)
    observer = filtered(json_observer, level)
    bridge_stdlib_logging(level)

    def connect_stdio(protocol: Protocol) -> None:
        from twisted.internet.stdio import StandardIO

        # (mypy reads the Windows signature of StandardIO)
        StandardIO(protocol, stdin=0, stdout=protocol_fd, reactor=reactor)  # type: ignore[call-arg]

    def set_module_id(module_id: str) -> None:
        json_observer.module_id = module_id
        os.environ.setdefault("PYWATT_MODULE_ID", module_id)
        if tracing.configure_from_environment(module_id, enabled=config.tracing != "off"):
            reactor.addSystemEventTrigger("before", "shutdown", _flush_spans, reactor)

    shutdown_code: list[int] = []

    def stop_process(code: int) -> None:
        if not shutdown_code:
            shutdown_code.append(code)
            if code != 0:
                reactor.addSystemEventTrigger("after", "shutdown", _exit_now, code, log_writer)
        if reactor.running:
            try:
                reactor.stop()
            except ReactorNotRunning:
                # Already stopping (a failed start, then stdin closing at shutdown).
                pass
        else:
            reactor.callWhenRunning(reactor.stop)

    module = ModuleService(
        definition,
        reactor=reactor,
        connect_stdio=connect_stdio,
        stop_process=stop_process,
        config=config,
        on_module_id=set_module_id,
    )
    module.metrics.watch_log_drops(lambda: log_writer.dropped_total)
    module.access_log = level is LogLevel.debug

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(_signalled, module, signum)

    def install_signal_handlers() -> None:
        # Replaces the reactor's own handlers: a SIGTERM is a graceful stop with exit
        # status 0, not a re-raised signal.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    reactor.callWhenRunning(install_signal_handlers)
    if config.gc_freeze:
        freeze_after_ready(module, reactor)
    return ProcessService(module, observer)


def _flush_spans(reactor: Any) -> Deferred[None]:
    # The batch processor's last spans, in a thread (the exporter blocks), bounded.
    d: Deferred[None] = deferToThread(tracing.flush, 2.0)
    d.addTimeout(_FLUSH_SPANS_TIMEOUT, reactor)
    d.addErrback(lambda f: log.warn("spans not exported at exit: {error}", error=f.value))
    return d


#: Seconds the exit waits for the last spans to be exported.
_FLUSH_SPANS_TIMEOUT = 5.0


def _signalled(module: ModuleService, signum: int) -> None:
    log.info("received signal {signal}; stopping gracefully", signal=signal.Signals(signum).name)
    module.request_stop()


def _exit_now(code: int, log_writer: StderrWriter) -> None:
    # os._exit skips atexit: flush the logs here.
    log_writer.flush_final()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)
