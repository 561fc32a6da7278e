# -*- test-case-name: tests.dev.test_dev_orchestrator -*-
"""
C{pywatt dev}: run modules under the embedded development orchestrator.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from attrs import define

from pywatt_twisted._cliparse import Parser
from pywatt_twisted._dev.supervisor import Console
from pywatt_twisted._runtime.logging import LOG_LEVEL_VARIABLE
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.orchestrator._providers import FileSecretProvider


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pywatt dev",
        description=(
            "Run PyWatt modules locally under a development orchestrator: each module is "
            "spawned as 'twistd -n pywatt --module=...', served secrets, watched with "
            "heartbeats, restarted when it dies, and reachable through a front HTTP port at "
            "/<module id>/<path>."
        ),
    )
    _add_module_options(parser)
    _add_supervision_options(parser)
    _add_demo_options(parser)
    _add_service_options(parser)
    _add_workflow_options(parser)
    return parser


def _add_module_options(parser: argparse.ArgumentParser) -> None:
    """
    What to run and where: the modules, the front port, the secrets file.
    """
    parser.add_argument(
        "--module",
        "-m",
        action="append",
        required=True,
        metavar="[ID=]PKG.MOD[:ATTR]",
        help="a module to run (repeat for several); ID defaults to its last non-generic name",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="front HTTP port on 127.0.0.1 (0: any)"
    )
    parser.add_argument(
        "--secrets-file",
        metavar="FILE",
        help="JSON object of secret names to values; edits are rotated into the modules",
    )


def _add_supervision_options(parser: argparse.ArgumentParser) -> None:
    """
    How the modules are watched: heartbeats, the stop deadline, crash loops.
    """
    parser.add_argument(
        "--heartbeat-interval", type=float, default=5.0, help="seconds between heartbeats"
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=15.0,
        help="seconds without an ack before a restart",
    )
    parser.add_argument(
        "--stop-deadline",
        type=float,
        default=10.0,
        help="seconds to wait after shutdown before a kill",
    )
    parser.add_argument(
        "--crash-limit",
        type=_positive_int,
        default=5,
        metavar="N",
        help="a module that fails N times within --crash-window seconds is marked crashed "
        "and no longer restarted",
    )
    parser.add_argument(
        "--crash-window",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="the window of --crash-limit",
    )


def _add_demo_options(parser: argparse.ArgumentParser) -> None:
    """
    The log level and the demo runs.
    """
    parser.add_argument(
        "--debug",
        action="store_true",
        help="run the modules at log level debug (shows the traceback of a failed start)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="show a request, a rotation and its ack on the first module, then keep serving",
    )
    parser.add_argument("--demo-exit", action="store_true", help="like --demo, then stop")


def _add_service_options(parser: argparse.ArgumentParser) -> None:
    """
    The proxied services offered to the modules.
    """
    parser.add_argument(
        "--provide-database",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="offer the database at URL to the modules as proxied service NAME "
        "(state.service(NAME)); repeat for several",
    )
    parser.add_argument(
        "--provide-cache",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="offer the cache at URL (redis://, memcached://, memory://, file://) to the "
        "modules as proxied service NAME; repeat for several",
    )


def _add_workflow_options(parser: argparse.ArgumentParser) -> None:
    """
    The edit loop: reload on change, traces.
    """
    parser.add_argument(
        "--reload",
        action="store_true",
        help="watch each module's source directory (and the secrets file) and restart only "
        "the module whose files changed; the front port holds its requests meanwhile",
    )
    parser.add_argument(
        "--traces",
        action="store_true",
        help="receive the modules' OpenTelemetry spans (OTLP/HTTP on 127.0.0.1) and print "
        "each request's span tree; needs the [otel] extra",
    )
    parser.add_argument(
        "--reload-delay",
        type=_positive_float,
        default=0.3,
        metavar="SECONDS",
        help="with --reload, restart once no file changed for this long",
    )


def _named_urls(option: str, values: Sequence[str]) -> list[tuple[str, str]]:
    """
    C{NAME=URL} pairs of a C{--provide-*} option.

    @raise ConfigurationError: for a value without a name or a URL, or a name twice.
    """
    pairs: list[tuple[str, str]] = []
    for value in values:
        name, sep, url = value.partition("=")
        name = name.strip()
        if not sep or not name or not url.strip():
            raise ConfigurationError(
                f"{option} takes NAME=URL (e.g. {option} main=postgresql://127.0.0.1/app), "
                f"got {value!r}"
            )
        pairs.append((name, url.strip()))
    return pairs


def service_host(args: argparse.Namespace, reactor: Any, console: Console) -> Any:
    """
    The L{ServiceHost} of C{--provide-database} and C{--provide-cache} (None without
    them); it owns the databases and caches it opens.

    @raise ConfigurationError: for a bad option or URL (passwords redacted).
    """
    databases = _named_urls("--provide-database", args.provide_database)
    caches = _named_urls("--provide-cache", args.provide_cache)
    if not databases and not caches:
        return None
    names = [n for n, _ in databases + caches]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(f"service names must be unique, got {', '.join(twice)} twice")
    from pywatt_twisted.data import Cache, Database
    from pywatt_twisted.orchestrator._services import ServiceHost

    def say(text: str, level: str = "info") -> None:
        console.say("pywatt-dev", text, level)

    host = ServiceHost(owned=True, say=say)
    doing = ""
    try:
        for name, url in databases:
            doing = f"database {name!r} (--provide-database)"
            db = Database.from_url(url, reactor=reactor, name=name)
            host.provide(name, db)
            console.say("pywatt-dev", f"providing database {name!r}: {db.url_redacted}")
        for name, url in caches:
            doing = f"cache {name!r} (--provide-cache)"
            cache = Cache.from_url(url)
            host.provide(name, cache)
            console.say("pywatt-dev", f"providing cache {name!r}: {cache.health()['url']}")
    except Exception as e:
        # (the data layer's errors never include a password)
        host.close()
        raise ConfigurationError(f"cannot provide {doing}: {e}") from e
    return host


def secrets_file_provider(path: str, reactor: Any, console: Console) -> FileSecretProvider:
    """
    The provider of C{--secrets-file}: polled twice a second on C{reactor}; an edit that
    makes the file invalid is reported on the console (the file, the line and column,
    what is wrong) and the last good values stay.

    @raise ConfigurationError: the file is missing or invalid at start.
    """
    return FileSecretProvider(
        path,
        reactor,
        interval=0.5,
        # The dev console is where a person looks: the log is not shown there.
        report=lambda level, text: console.say("pywatt-dev", text, level),
    )


def _demo_copy(secrets_file: str, console: Console) -> tuple[str, str]:
    """
    The demo edits the secrets file to show a rotation: it works on a copy, in a
    temporary directory. Returns C{(directory, copy)}.
    """
    workdir = tempfile.mkdtemp(prefix="pywatt-demo-")
    copy = os.path.join(workdir, os.path.basename(secrets_file))
    shutil.copyfile(secrets_file, copy)
    console.say("pywatt-dev", f"demo: using a copy of the secrets file: {copy}")
    return workdir, copy


def _start_traces(reactor: Any, console: Console) -> tuple[Any, dict[str, str]] | None:
    """
    C{--traces}: listen for OTLP/HTTP on loopback and print trace trees; return the
    printer and the C{OTEL_*} variables that point the modules at it (C{None} and a
    message when the C{[otel]} extra is missing).
    """
    try:
        import opentelemetry.proto
        import opentelemetry.sdk  # noqa: F401

        from pywatt_twisted._dev._traces import TracePrinter, listen
    except ImportError:
        sys.stderr.write(
            "pywatt dev: --traces needs the OpenTelemetry SDK and protobuf definitions: "
            "pip install 'pywatt_twisted[otel]'\n"
        )
        return None
    printer = TracePrinter(reactor, lambda text: console.say("traces", text))
    port = listen(reactor, printer).getHost().port
    endpoint = f"http://127.0.0.1:{port}"
    console.say("pywatt-dev", f"traces: receiving OTLP/HTTP on {endpoint}")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        # export within a fifth of a second, so a tree shows right after its request
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    return printer, env


def _supervisor_options(
    args: argparse.Namespace, trace_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """
    The L{ModuleSupervisor} keyword arguments that C{pywatt dev}'s options set.
    """
    env: dict[str, str] = dict(trace_env or {})
    if args.debug:
        # --debug is the modules' own log-level setting, set the way they read it.
        env[LOG_LEVEL_VARIABLE] = "debug"
    return {
        "heartbeat_interval": args.heartbeat_interval,
        "heartbeat_timeout": args.heartbeat_timeout,
        "stop_deadline": args.stop_deadline,
        "crash_limit": args.crash_limit,
        "crash_window": args.crash_window,
        **({"env": env} if env else {}),
    }


@define
class _DevRun:
    """
    One C{pywatt dev} run on the reactor: start the orchestrator (and the demo), stop
    everything on a signal, a failed start or the end of C{--demo-exit}.

    @ivar status: the exit status of the run.
    """

    reactor: Any
    orchestrator: Any
    console: Console
    file_provider: FileSecretProvider | None
    demo: bool
    demo_exit: bool
    secrets_file: str | None
    reload_delay: float | None = None
    status: int = 0
    _stopping: bool = False
    _watcher: Any = None
    _reloader: Any = None

    def stop(self, code: int = 0) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.status = code
        self.console.say("pywatt-dev", "stopping every module")
        if self._watcher is not None:
            self._watcher.stop()
        if self._reloader is not None:
            self._reloader.stop()
        d = self.orchestrator.stopService()
        if self.file_provider is not None:
            self.file_provider.stop()
        d.addBoth(lambda _: self.reactor.stop())

    def _start_reload(self, delay: float) -> None:
        """
        C{--reload}: watch each module's source directory and the secrets file (which
        is then read on each change instead of polled).
        """
        from pywatt_twisted._dev._reload import Reloader, SourceWatcher, module_source_root

        roots = {}
        for module_id, supervisor in self.orchestrator.supervisors.items():
            root = module_source_root(supervisor.module)
            if root is None:
                self.console.say(
                    "pywatt-dev",
                    f"reload: cannot find the source of {supervisor.module}; "
                    f"{module_id} is not watched",
                    "warn",
                )
                continue
            roots[module_id] = root
            self.console.say("pywatt-dev", f"reload: watching {root} for {module_id}")
        say = lambda text, level: self.console.say("pywatt-dev", text, level)  # noqa: E731
        self._reloader = Reloader(
            self.reactor,
            self.orchestrator.supervisors,
            roots,
            say,
            debounce=delay,
            secrets_file=self.secrets_file if self.file_provider is not None else None,
            secrets_changed=None if self.file_provider is None else self.file_provider.check,
        )
        self._watcher = SourceWatcher(
            self.reactor,
            roots.values(),
            self._reloader.changed,
            files=[self.secrets_file]
            if self.file_provider is not None and self.secrets_file
            else [],
        )
        self._watcher.start()

    def on_signal(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.stop, 0)

    async def run(self) -> None:
        try:
            await self.orchestrator.start()
        except ConfigurationError as e:
            self.console.say("pywatt-dev", str(e), "error")
            self.stop(1)
            return
        if self.reload_delay is not None:
            self._start_reload(self.reload_delay)
        elif self.file_provider is not None:
            self.file_provider.start()
        if self.demo:
            from pywatt_twisted._dev.demo import run_demo

            try:
                await run_demo(self.orchestrator, self.console, self.secrets_file)
            except Exception as e:
                self.console.say("pywatt-dev", f"demo failed: {e}", "error")
                self.stop(1)
                return
            if self.demo_exit:
                self.stop(0)
                return
        self.console.say(
            "pywatt-dev", f"serving on {self.orchestrator.front_url}/ (Ctrl-C to stop)"
        )

    def started(self) -> None:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        from twisted.internet.defer import ensureDeferred

        ensureDeferred(self.run())


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    from twisted.internet import reactor

    from pywatt_twisted._dev._allocator import tune_allocator

    tune_allocator()  # (streamed bodies: fewer page faults; see its docstring)

    from pywatt_twisted._dev.orchestrator import DevOrchestrator
    from pywatt_twisted.orchestrator._providers import (
        ChainedSecretProvider,
        EnvironmentSecretProvider,
        ISecretProvider,
    )

    console = Console()
    traces = None
    if args.traces:
        traces = _start_traces(reactor, console)
        if traces is None:
            return 1
    demo = args.demo or args.demo_exit
    secrets_file = args.secrets_file
    workdir = None
    if demo and secrets_file:
        workdir, secrets_file = _demo_copy(secrets_file, console)
    providers: list[ISecretProvider] = []
    file_provider = None
    try:
        if secrets_file:
            file_provider = secrets_file_provider(secrets_file, reactor, console)
            providers.append(file_provider)
        providers.append(EnvironmentSecretProvider())
        orchestrator = DevOrchestrator(
            args.module,
            reactor=reactor,
            secrets=ChainedSecretProvider(providers),
            console=console,
            port=args.port,
            supervisor_options=_supervisor_options(args, None if traces is None else traces[1]),
            services=service_host(args, reactor, console),
            hold_requests=args.reload,
        )
    except ConfigurationError as e:
        sys.stderr.write(f"pywatt dev: {e}\n")
        return 1
    run = _DevRun(
        reactor,
        orchestrator,
        console,
        file_provider,
        demo,
        args.demo_exit,
        secrets_file,
        args.reload_delay if args.reload else None,
    )
    reactor.callWhenRunning(run.started)
    reactor.run()  # type: ignore[attr-defined]
    if traces is not None:
        traces[0].flush()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    return run.status


__all__ = ["build_parser", "main"]
