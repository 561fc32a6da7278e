# -*- test-case-name: tests.dev.test_dev_orchestrator -*-
"""
The orchestrator side of one module process in C{pywatt dev}: spawn it exactly as a real
orchestrator would, speak its stdio protocol, watch it with heartbeats, restart it when
it dies, and stop it gracefully.

The concerns live in private modules, and their public names are re-exported here: the
process and its command in L{pywatt_twisted._dev._child}, the console in
L{pywatt_twisted._dev._console}, crash-loop accounting in
L{pywatt_twisted._dev._restarts}, the answers to the module's requests in
L{pywatt_twisted._dev._answers}, the heartbeats in L{pywatt_twisted._dev._heartbeats},
the module's framed channels and the choice between them in
L{pywatt_twisted._dev._links}, and what pywatt dev asks of the module (HTTP requests,
rotations) in L{pywatt_twisted._dev._requests}. This class holds the process's life and
the dispatch of what the module sends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger

from pywatt_twisted._dev._answers import ModuleAnswers, routing_error
from pywatt_twisted._dev._child import _ChildProtocol, free_port, module_command
from pywatt_twisted._dev._console import Console, parse_module_log
from pywatt_twisted._dev._heartbeats import Heartbeats
from pywatt_twisted._dev._links import ModuleLinks
from pywatt_twisted._dev._requests import ModuleRequests
from pywatt_twisted._dev._restarts import RestartPolicy, RunErrors
from pywatt_twisted._dev._status import SupervisorStatus, check_transition
from pywatt_twisted._dev._streaming import DevStreams
from pywatt_twisted.errors import PyWattError
from pywatt_twisted.orchestrator._providers import ISecretProvider
from pywatt_twisted.wire._forward import RoutingHeader
from pywatt_twisted.wire.codec import decode_from_module, encode_init
from pywatt_twisted.wire.init import InitBlob, IpcChannelConfig, TcpChannelConfig, TcpListen
from pywatt_twisted.wire.messages import (
    Announce,
    DiscoverServiceProviders,
    Endpoint,
    GetSecret,
    HeartbeatAck,
    HttpResponse,
    Identify,
    PortRequest,
    RegisterServiceProvider,
    RotationAck,
    RoutedModuleReply,
    RouteToModule,
    ServiceOperation,
    ServiceRequest,
    Shutdown,
)
from pywatt_twisted.wire.stream import StreamOptions

__all__ = [
    "CRASHED",
    "RESTARTING",
    "RUNNING",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "Console",
    "ModuleSupervisor",
    "SupervisorStatus",
    "free_port",
    "module_command",
    "parse_module_log",
    "routing_error",
]

STARTING = SupervisorStatus.STARTING
RUNNING = SupervisorStatus.RUNNING
RESTARTING = SupervisorStatus.RESTARTING
STOPPING = SupervisorStatus.STOPPING
STOPPED = SupervisorStatus.STOPPED
CRASHED = SupervisorStatus.CRASHED


#: The streaming pywatt dev enables in the init blob (EXTENSIONS.md X0): 256 KiB
#: chunks rather than the X0 default of 64 KiB, because the cost of a chunk (a
#: frame, a JSON parse, an ack round trip) is mostly per chunk, not per byte;
#: window 8 keeps what each side buffers at 2 MiB (docs/streaming.md).
STREAM_OPTIONS = StreamOptions(256 * 1024, 8)


def init_blob(module_id: str, links: ModuleLinks) -> InitBlob:
    """
    The init blob pywatt dev gives a module: its channels' addresses, a free HTTP
    port, the streaming it enables.
    """
    return InitBlob(
        orchestrator_api="http://127.0.0.1:0",
        module_id=module_id,
        env={},
        listen=TcpListen("127.0.0.1", free_port()),
        tcp_channel=(
            None
            if links.tcp_address is None
            else TcpChannelConfig(
                host=links.tcp_address.rpartition(":")[0],
                port=int(links.tcp_address.rpartition(":")[2]),
            )
        ),
        ipc_channel=None if links.ipc_path is None else IpcChannelConfig(links.ipc_path),
        extensions={
            "streaming": {
                "chunk_size": STREAM_OPTIONS.chunk_size,
                "window": STREAM_OPTIONS.window,
            }
        },
    )


class ModuleSupervisor:
    """
    Runs and watches one module.

    @ivar module: the C{--module} value.
    @ivar module_id: the id given in its init blob.
    @ivar status: a L{SupervisorStatus} (a string enum: C{starting}, C{running},
        C{restarting}, C{stopping}, C{stopped} or C{crashed}; crashed means it failed
        C{crash_limit} times within C{crash_window} seconds and is not restarted until
        L{start} is called again). Every change is checked against the table in
        L{pywatt_twisted._dev._status}.
    @ivar last_error: the first line of the last error the module logged before it
        exited, or C{None}.
    @ivar endpoints: what its last announce listed.
    @ivar listen: the address its last announce gave.
    @ivar restarts: how many times it was restarted.
    @ivar reloading: a L{restart} is under way (the old process is finishing its
        requests or stopping; the new one is not started yet).
    @ivar last_exit: how its last process ended (C{{"how": "status 0", "at": seconds,
        "wanted": bool}}), or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        module: str,
        module_id: str,
        *,
        reactor: Any,
        secrets: ISecretProvider,
        console: Console,
        env: Mapping[str, str] | None = None,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 15.0,
        stop_deadline: float = 10.0,
        request_timeout: float = 30.0,
        restart_initial: float = 0.5,
        restart_max: float = 30.0,
        crash_limit: int = 5,
        crash_window: float = 30.0,
        command: Callable[[str], list[str]] = module_command,
        on_announce: Callable[[ModuleSupervisor], object] | None = None,
    ) -> None:
        self.module = module
        self.module_id = module_id
        self.reactor = reactor
        self.secrets = secrets
        self.console = console
        self.env = dict(env or {})
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.stop_deadline = stop_deadline
        self.request_timeout = request_timeout
        self._restart_policy = RestartPolicy(
            restart_initial, restart_max, crash_limit, crash_window
        )
        self._command = command
        self._on_announce = on_announce
        self._status = STOPPED
        self.endpoints: tuple[Endpoint, ...] = ()
        self.listen: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.reloading = False
        self.last_exit: dict[str, Any] | None = None
        self.used_secrets: set[str] = set()
        self.last_ack: float | None = None
        self._child: _ChildProtocol | None = None
        self._announced: list[Deferred[ModuleSupervisor]] = []
        self._heartbeats = Heartbeats(self)
        self._restart_call: Any = None
        self._wanted = False
        self._started_at = 0.0
        self._run_errors = RunErrors()
        self._answers = ModuleAnswers(self)
        #: the module's framed channels (pywatt dev serves them, the module connects)
        self.links = ModuleLinks(reactor, module_id, self._from_module, self._answers.forward)
        self.channels = self.links.channels
        #: the HTTP requests and rotations sent to the module, waiting for its answer
        self.requests = ModuleRequests(self)
        self.streams = DevStreams(reactor, STREAM_OPTIONS)
        #: C{router(supervisor, message, reply)} for module-to-module messages; set by
        #: the orchestrator.
        self.router: Callable[[ModuleSupervisor, Any, Callable[[Any], None]], None] | None = None
        #: C{forwarder(supervisor, header, connection)} for module-to-module messages
        #: read from a channel with their payload undecoded (L{RoutingHeader}); set by
        #: the orchestrator (without it they are decoded and go to C{router}).
        self.forwarder: Callable[[ModuleSupervisor, RoutingHeader, Any], None] | None = None
        #: called with this supervisor whenever its process ends
        self.on_exit: Callable[[ModuleSupervisor], object] | None = None
        #: the L{ServiceHost <pywatt_twisted.orchestrator._services.ServiceHost>} answering
        #: the module's proxied-service requests (None: they are refused)
        self.services: Any = None
        #: C{discovery(supervisor, message, reply)} for service registration and
        #: discovery; set by the orchestrator.
        self.discovery: Callable[[ModuleSupervisor, Any, Callable[[Any], None]], None] | None = None

    # -- life ---------------------------------------------------------------------------------

    @property
    def status(self) -> SupervisorStatus:
        return self._status

    @status.setter
    def status(self, new: SupervisorStatus) -> None:
        check_transition(self.module_id, self._status, new)
        self._status = new

    def start(self) -> None:
        """
        Spawn the module (and keep it running until L{stop}).
        """
        self._wanted = True
        self._restart_policy.reset()
        self._spawn()

    def _spawn(self) -> None:
        self._restart_call = None
        self.status = STARTING if self.restarts == 0 else RESTARTING
        self.listen = None
        self.endpoints = ()
        argv = self._command(self.module)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATT_SECRET_")}
        # Like `python -m`, make modules in the current directory importable.
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.getcwd() + (os.pathsep + path if path else "")
        env.update(self.env)
        env["PYWATT_MODULE_ID"] = self.module_id
        protocol = _ChildProtocol(self)
        self._child = protocol
        self._run_errors.new_run()
        self.reactor.spawnProcess(
            protocol, argv[0], argv, env=env, childFDs={0: "w", 1: "r", 2: "r"}
        )

    def _child_started(self, child: _ChildProtocol) -> None:
        self.pid = getattr(child.transport, "pid", None)
        self._started_at = self.reactor.seconds()
        assert child.transport is not None
        child.transport.write(encode_init(init_blob(self.module_id, self.links)) + b"\n")
        self.console.say("pywatt-dev", f"started {self.module_id} ({self.module}) pid {self.pid}")

    def _child_ended(self, child: _ChildProtocol, code: int | None, signal: int | None) -> None:
        if child is not self._child:
            return
        self._child = None
        if self.on_exit is not None:
            self.on_exit(self)
        self.pid = None
        self._heartbeats.stop()
        self.requests.pending_http.fail_all(
            lambda *_: PyWattError(f"module {self.module_id} exited before answering")
        )
        how = f"signal {signal}" if signal else f"status {code}"
        self.last_exit = {"how": how, "at": self.reactor.seconds(), "wanted": not self._wanted}
        if not self._wanted:
            self.status = STOPPED
            self.console.say("pywatt-dev", f"{self.module_id} stopped ({how})")
            return
        self._run_errors.run_failed(lambda text: self.console.say(self.module_id, text, "error"))
        # It died on its own: restart with backoff (reset after a stable run), unless it
        # keeps failing (a crash loop).
        delay = self._restart_policy.exited(self.reactor.seconds(), self._started_at)
        if delay is None:
            self.status = CRASHED
            error = self.last_error or f"it exited with {how}"
            self.console.say(
                "pywatt-dev", self._restart_policy.crashed_message(self.module_id, error), "error"
            )
            return
        self.restarts += 1
        self.status = RESTARTING
        self.console.say(
            "pywatt-dev", f"{self.module_id} exited ({how}); restarting in {delay:g} s", "warn"
        )
        self._restart_call = self.reactor.callLater(delay, self._spawn)

    def _module_log(self, child: _ChildProtocol, raw: bytes) -> None:
        """
        Show one stderr line of C{child}. Before it announced, an error line that the
        previous failed run logged too is not shown again: the run's end shows one
        "same error as before" line instead.
        """
        parsed = parse_module_log(raw)
        if parsed is None:
            return
        level, text = parsed
        if child is self._child and self.status != RUNNING and self._run_errors.hide(level, text):
            return
        self.console.say(self.module_id, text, level)

    @property
    def last_error(self) -> str | None:
        """
        The first line of the last error the module logged before it exited, or C{None}.
        """
        return self._run_errors.last_error

    def stop(self) -> Deferred[None]:
        """
        Stop gracefully: C{shutdown}, then after the deadline a kill of this child only.
        """
        self.reloading = False
        self._wanted = False
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
            self._restart_call = None
        child = self._child
        if child is None:
            self.status = STOPPED
            return succeed(None)
        self.status = STOPPING
        child.send(Shutdown())
        ended = child.ended

        def kill() -> None:
            if self._child is child and child.transport is not None:
                self.console.say(
                    "pywatt-dev",
                    f"{self.module_id} still running {self.stop_deadline:g} s after shutdown; "
                    "killing it",
                    "warn",
                )
                try:
                    child.transport.signalProcess("KILL")
                except ProcessExitedAlready:
                    pass

        timer = self.reactor.callLater(self.stop_deadline, kill)

        def done(_: object) -> None:
            if timer.active():
                timer.cancel()

        return ended.addBoth(done)

    def restart(self) -> Deferred[None]:
        """
        Start a new process in place of this one (C{pywatt dev --reload}): the requests
        sent to the running process are answered first (each within C{request_timeout}),
        then it stops gracefully and a new one starts. Not a failure: the crash window
        starts afresh, and a crashed module starts again. L{reloading} is true until the
        new process is spawned; a L{stop} meanwhile cancels the new start.
        """
        self.reloading = True
        pending = self.requests.pending_http
        waits = [
            pending.join(key, self.request_timeout, "in-flight request")[0] for key in list(pending)
        ]
        d: Deferred[Any] = DeferredList(waits, consumeErrors=True)

        def stop(_: object) -> Deferred[None]:
            if not self.reloading:
                return succeed(None)
            stopped = self.stop()
            self.reloading = True
            return stopped

        def again(_: object) -> None:
            if not self.reloading:
                return
            self.reloading = False
            self.restarts += 1
            self.start()

        d.addCallback(stop)
        d.addCallback(again)
        return d

    def kill(self, signal: str = "KILL") -> None:
        """
        Send C{signal} to the module process (it will be restarted).
        """
        if self._child is not None and self._child.transport is not None:
            self._child.transport.signalProcess(signal)

    def when_announced(self) -> Deferred[ModuleSupervisor]:
        """
        Fires at the module's next announce (at once if it is running).
        """
        if self.status == RUNNING:
            return succeed(self)
        d: Deferred[ModuleSupervisor] = Deferred()
        self._announced.append(d)
        return d

    # -- protocol -------------------------------------------------------------------------------

    def _line_from_module(self, line: bytes) -> None:
        try:
            message = decode_from_module(line)
        except PyWattError as e:
            self.console.say(self.module_id, f"invalid protocol line on stdout: {e}", "warn")
            return
        self.links.count("stdio")
        self._from_module(message, self._send_stdio)

    def _send_stdio(self, message: Any) -> None:
        if self._child is not None:
            self._child.send(message)

    def _from_module(self, message: Any, reply: Callable[[Any], None], link: str = "stdio") -> None:
        """
        Handle one message from the module; C{reply} answers on the link it came on.
        """
        if self.streams.received(message, link, reply):
            return
        if isinstance(message, HttpResponse) and message.stream_id is not None:
            self.streams.response_started(message, link, reply)
        if isinstance(message, GetSecret):
            self._answers.secret(message.name, reply)
        elif isinstance(message, Identify):
            self.console.say(
                "pywatt-dev", f"{self.module_id} identified as {message.module_id!r} on {link}"
            )
        elif isinstance(message, RouteToModule | RoutedModuleReply):
            self._answers.route(message, reply)
        elif isinstance(message, RegisterServiceProvider | DiscoverServiceProviders):
            self._answers.discover(message, reply)
        elif isinstance(message, PortRequest):
            self._answers.port(message, reply)
        elif isinstance(message, ServiceRequest | ServiceOperation):
            if self.services is not None:
                self.services.handle(self.module_id, message, reply)
            else:
                self._answers.refuse_service(message, reply)
        elif isinstance(message, Announce):
            self._on_announced(message)
        elif isinstance(message, HeartbeatAck):
            self.last_ack = self.reactor.seconds()
        elif isinstance(message, HttpResponse):
            self.requests.http_answered(message)
        elif isinstance(message, RotationAck):
            self.requests.rotation_acked(message)
        else:
            self.console.say(
                "pywatt-dev",
                f"{self.module_id} sent {type(message).__name__}, which pywatt dev does not serve",
                "warn",
            )

    def _on_announced(self, message: Announce) -> None:
        self.listen = message.listen
        self.endpoints = tuple(message.endpoints)
        self.status = RUNNING
        self.last_ack = self.reactor.seconds()
        self._heartbeats.start()
        paths = ", ".join(
            f"{'|'.join(e.methods)} {e.path}" + (f" (auth {e.auth})" if e.auth else "")
            for e in self.endpoints
        )
        self.console.say("pywatt-dev", f"{self.module_id} announced {self.listen}: {paths}")
        waiters, self._announced = self._announced, []
        for announced in waiters:
            announced.callback(self)
        if self._on_announce is not None:
            self._on_announce(self)

    def send(self, message: Any) -> None:
        if self._child is None:
            raise PyWattError(f"module {self.module_id} is not running")
        self._child.send(message)

    def send_preferred(self, message: Any, prefer: tuple[str, ...] = ("ipc", "tcp")) -> str:
        """
        Send on a channel when one is up (Unix socket first), else on stdin. Returns the
        link used.
        """
        connection = self.links.connection(prefer)
        if connection is not None:
            connection.send(message)
            return str(connection.listener)
        self.send(message)
        return "stdio"

    # -- status ------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """
        What the status page shows.
        """
        return {
            "module_id": self.module_id,
            "module": self.module,
            "status": self.status,
            "pid": self.pid,
            "restarts": self.restarts,
            "reloading": self.reloading,
            "uptime": (
                round(self.reactor.seconds() - self._started_at, 3)
                if self._child is not None
                else None
            ),
            "last_exit": self.last_exit,
            "error": self.last_error if self.status == CRASHED else None,
            "listen": self.listen,
            "endpoints": [
                {"path": e.path, "methods": list(e.methods), "auth": e.auth} for e in self.endpoints
            ],
            "channels": {
                "stdio": "up" if self._child is not None else "down",
                "tcp": self.links.state("tcp"),
                "ipc": self.links.state("ipc"),
            },
            "channel_preference": list(self.links.preferred()),
            "messages_in": dict(self.links.messages_in),
            "routed_in": dict(self.links.routed_in),
            "secrets": sorted(self.used_secrets),
            "last_heartbeat_ack": self.last_ack,
            "rotation_acks": self.requests.describe_acks(),
        }
