# -*- test-case-name: tests.dev.test_dev_orchestrator -*-
"""
The orchestrator side of one module process in C{pywatt dev}: spawn it exactly as a real
orchestrator would, speak its stdio protocol, watch it with heartbeats, restart it when
it dies, and stop it gracefully.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted.errors import LineTooLong, PyWattError, RequestTimeout
from pywatt_twisted.orchestrator.providers import ISecretProvider
from pywatt_twisted.runtime.correlation import CorrelationTable
from pywatt_twisted.wire.codec import decode_from_module, encode_init, encode_line
from pywatt_twisted.wire.init import InitBlob, IpcChannelConfig, TcpChannelConfig, TcpListen
from pywatt_twisted.wire.lines import LineDecoder
from pywatt_twisted.wire.messages import (
    Announce,
    DiscoverServiceProviders,
    DiscoverServiceProvidersResponse,
    EncodedPayload,
    Endpoint,
    GetSecret,
    Heartbeat,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    Identify,
    PortRequest,
    PortResponse,
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    Rotated,
    RotationAck,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
    SecretMessage,
    ServiceOperation,
    ServiceOperationResult,
    ServiceRequest,
    ServiceResponse,
    Shutdown,
)

STARTING = "starting"
RUNNING = "running"
RESTARTING = "restarting"
STOPPING = "stopping"
STOPPED = "stopped"
CRASHED = "crashed"

#: log levels whose lines (with any line carrying a traceback) a failed start repeats at
#: each restart: the console collapses them
_ERROR_LEVELS = frozenset({"error", "critical"})


def free_port(host: str = "127.0.0.1") -> int:
    """
    A TCP port that is free right now on C{host}.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def module_command(module: str) -> list[str]:
    """
    The command a real orchestrator would run: C{twistd -n pywatt --module=...}, with the
    twistd of this Python environment.
    """
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [twistd, "-n", "pywatt", f"--module={module}"]


class Console:
    """
    Where C{pywatt dev} tells a person what happens (stdout of the dev command).
    """

    def __init__(self, write: Callable[[str], object] | None = None) -> None:
        self._write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))

    def say(self, source: str, text: str, level: str = "info") -> None:
        label = level.upper().ljust(5)
        for line in text.splitlines() or [""]:
            self._write(f"[{source}] {label} {line}\n")

    def module_log(self, module_id: str, raw: bytes) -> None:
        """
        Show one stderr line of a module: JSON log lines in a readable form, anything else
        as it is.
        """
        parsed = parse_module_log(raw)
        if parsed is not None:
            self.say(module_id, parsed[1], parsed[0])


def parse_module_log(raw: bytes) -> tuple[str, str] | None:
    """
    One stderr line of a module as C{(level, text)}: a JSON log line's level and its
    message (followed by its traceback, if any); anything else as level C{log}, as it is.
    C{None} for an empty line.
    """
    text = raw.decode("utf-8", "replace").rstrip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return ("log", text)
    if not isinstance(record, dict):
        return ("log", text)
    message = str(record.get("message", ""))
    if record.get("traceback"):
        message += "\n" + str(record["traceback"])
    return (str(record.get("level", "info")), message)


class _ChildProtocol(ProcessProtocol):
    def __init__(self, supervisor: ModuleSupervisor) -> None:
        self.supervisor = supervisor
        self._out = LineDecoder()
        self._err = b""
        self.ended: Deferred[int | None] = Deferred()

    def connectionMade(self) -> None:
        self.supervisor._child_started(self)

    def outReceived(self, data: bytes) -> None:
        for line in self._out.feed(data):
            if isinstance(line, LineTooLong):
                self.supervisor.console.say(self.supervisor.module_id, str(line), "warn")
                continue
            self.supervisor._line_from_module(line)

    def errReceived(self, data: bytes) -> None:
        self._err += data
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            self.supervisor._module_log(self, line)

    def processEnded(self, reason: Failure) -> None:
        if self._err:
            self.supervisor._module_log(self, self._err)
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        self.supervisor._child_ended(self, code, signal)
        self.ended.callback(code)

    def send(self, message: Any) -> None:
        if self.transport is not None:
            self.transport.write(encode_line(message))


class ModuleSupervisor:
    """
    Runs and watches one module.

    @ivar module: the C{--module} value.
    @ivar module_id: the id given in its init blob.
    @ivar status: C{starting}, C{running}, C{restarting}, C{stopping}, C{stopped} or
        C{crashed} (it failed C{crash_limit} times within C{crash_window} seconds and is
        not restarted until L{start} is called again).
    @ivar last_error: the first line of the last error the module logged before it
        exited, or C{None}.
    @ivar endpoints: what its last announce listed.
    @ivar listen: the address its last announce gave.
    @ivar restarts: how many times it was restarted.
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
        self.restart_initial = restart_initial
        self.restart_max = restart_max
        self.crash_limit = crash_limit
        self.crash_window = crash_window
        self._command = command
        self._on_announce = on_announce
        self.status = STOPPED
        self.endpoints: tuple[Endpoint, ...] = ()
        self.listen: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.used_secrets: set[str] = set()
        self.last_ack: float | None = None
        self.acks: list[RotationAck] = []
        self._child: _ChildProtocol | None = None
        # request id -> the caller of http(); rotation id -> the caller of rotate()
        self._pending_http: CorrelationTable[str] = CorrelationTable(reactor)
        self._pending_rotations: CorrelationTable[str] = CorrelationTable(reactor)
        self._announced: list[Deferred[ModuleSupervisor]] = []
        self._ack_waiters: list[Deferred[RotationAck]] = []
        self._heartbeat: LoopingCall | None = None
        self._restart_delay = restart_initial
        self._restart_call: Any = None
        self._wanted = False
        self._started_at = 0.0
        # Crash-loop detection: when the recent unwanted exits happened.
        self._failures: list[float] = []
        self.last_error: str | None = None
        # Error lines of the current run, those of the previous failed run, and how many
        # runs in a row repeated them.
        self._run_errors: list[str] = []
        self._run_error: str | None = None
        self._run_repeated = False
        self._previous_errors: frozenset[str] = frozenset()
        self._repeats = 0
        # The module's framed channels: the orchestrator serves them, the module connects.
        from pywatt_twisted.orchestrator.channel_server import ChannelServer

        self.channels = ChannelServer(reactor, on_message=self._from_channel)
        self.tcp_address: str | None = None
        self.ipc_path: str | None = None
        self._socket_dir: str | None = None
        #: C{router(supervisor, message, reply)} for module-to-module messages; set by
        #: the orchestrator.
        self.router: Callable[[ModuleSupervisor, Any, Callable[[Any], None]], None] | None = None
        #: called with this supervisor whenever its process ends
        self.on_exit: Callable[[ModuleSupervisor], object] | None = None
        #: C{discovery(supervisor, message, reply)} for service registration and
        #: discovery; set by the orchestrator.
        self.discovery: Callable[[ModuleSupervisor, Any, Callable[[Any], None]], None] | None = None

    async def prepare(self) -> None:
        """
        Listen on the module's TCP and Unix-socket channels (before the first spawn).
        """
        import tempfile

        self.tcp_address = await self.channels.listen_tcp(0, "127.0.0.1")
        # AF_UNIX paths are short: keep the socket in a fresh directory under /tmp.
        self._socket_dir = tempfile.mkdtemp(prefix="pywatt-dev-")
        self.ipc_path = await self.channels.listen_unix(
            os.path.join(self._socket_dir, f"{self.module_id}.sock")
        )

    async def close_channels(self) -> None:
        await self.channels.stop()
        if self._socket_dir is not None:
            import shutil

            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        """
        Spawn the module (and keep it running until L{stop}).
        """
        self._wanted = True
        self._failures = []
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
        self._run_errors = []
        self._run_error = None
        self._run_repeated = False
        self.reactor.spawnProcess(
            protocol, argv[0], argv, env=env, childFDs={0: "w", 1: "r", 2: "r"}
        )

    def init_blob(self) -> InitBlob:
        return InitBlob(
            orchestrator_api="http://127.0.0.1:0",
            module_id=self.module_id,
            env={},
            listen=TcpListen("127.0.0.1", free_port()),
            tcp_channel=(
                None
                if self.tcp_address is None
                else TcpChannelConfig(
                    host=self.tcp_address.rpartition(":")[0],
                    port=int(self.tcp_address.rpartition(":")[2]),
                )
            ),
            ipc_channel=None if self.ipc_path is None else IpcChannelConfig(self.ipc_path),
        )

    def _child_started(self, child: _ChildProtocol) -> None:
        self.pid = getattr(child.transport, "pid", None)
        self._started_at = self.reactor.seconds()
        assert child.transport is not None
        child.transport.write(encode_init(self.init_blob()) + b"\n")
        self.console.say("pywatt-dev", f"started {self.module_id} ({self.module}) pid {self.pid}")

    def _child_ended(self, child: _ChildProtocol, code: int | None, signal: int | None) -> None:
        if child is not self._child:
            return
        self._child = None
        if self.on_exit is not None:
            self.on_exit(self)
        self.pid = None
        self._stop_heartbeats()
        self._pending_http.fail_all(
            lambda *_: PyWattError(f"module {self.module_id} exited before answering")
        )
        how = f"signal {signal}" if signal else f"status {code}"
        if not self._wanted:
            self.status = STOPPED
            self.console.say("pywatt-dev", f"{self.module_id} stopped ({how})")
            return
        self._note_errors()
        # It died on its own: restart with backoff (reset after a stable run), unless it
        # keeps failing (a crash loop).
        now = self.reactor.seconds()
        if now - self._started_at > 30:
            self._restart_delay = self.restart_initial
        if now - self._started_at > self.crash_window:
            # It ran for a while: this is not a crash loop.
            self._failures = []
        self._failures = [t for t in self._failures if now - t <= self.crash_window]
        self._failures.append(now)
        if len(self._failures) >= self.crash_limit:
            self._crashed(how)
            return
        delay = self._restart_delay
        self._restart_delay = min(self._restart_delay * 2, self.restart_max)
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
        failing = level in _ERROR_LEVELS or "\nTraceback (most recent call last)" in text
        if child is self._child and self.status != RUNNING and failing:
            self._run_errors.append(text)
            if level in _ERROR_LEVELS:
                self._run_error = text.splitlines()[0]
            if text in self._previous_errors:
                self._run_repeated = True
                return
        self.console.say(self.module_id, text, level)

    def _note_errors(self) -> None:
        """
        At the end of a failed run: remember its errors, and tell once that they repeat
        those of the previous run.
        """
        errors, self._run_errors = self._run_errors, []
        if not errors:
            self._previous_errors = frozenset()
            self._repeats = 0
            return
        self.last_error = self._run_error or errors[-1].splitlines()[0]
        if self._run_repeated:
            self._repeats += 1
            self.console.say(self.module_id, f"same error as before, x{self._repeats}", "error")
        else:
            self._repeats = 1
        self._previous_errors = frozenset(errors)

    def _crashed(self, how: str) -> None:
        self.status = CRASHED
        self._failures = []
        error = self.last_error or f"it exited with {how}"
        self.console.say(
            "pywatt-dev",
            f"{self.module_id} crashed: it failed {self.crash_limit} times within "
            f"{self.crash_window:g} s, so it is not restarted.\n"
            f"error: {error}\n"
            "hint: fix the error, then restart pywatt dev (Ctrl-C stops it); the limit is "
            f"--crash-limit={self.crash_limit} --crash-window={self.crash_window:g}",
            "error",
        )

    def stop(self) -> Deferred[None]:
        """
        Stop gracefully: C{shutdown}, then after the deadline a kill of this child only.
        """
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

    def kill(self, signal: str = "KILL") -> None:
        """
        Send C{signal} to the module process (it will be restarted).
        """
        if self._child is not None and self._child.transport is not None:
            self._child.transport.signalProcess(signal)

    def when_rotation_acked(self) -> Deferred[RotationAck]:
        """
        Fires with the module's next C{rotation_ack}.
        """
        d: Deferred[RotationAck] = Deferred()
        self._ack_waiters.append(d)
        return d

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
        self._from_module(message, self._send_stdio)

    def _send_stdio(self, message: Any) -> None:
        if self._child is not None:
            self._child.send(message)

    def _from_channel(self, connection: Any, envelope: Any) -> bool:
        self._from_module(envelope.content, connection.send, connection.listener)
        return True

    def _from_module(self, message: Any, reply: Callable[[Any], None], link: str = "stdio") -> None:
        """
        Handle one message from the module; C{reply} answers on the link it came on.
        """
        if isinstance(message, GetSecret):
            self._answer_secret(message.name, reply)
        elif isinstance(message, Identify):
            self.console.say(
                "pywatt-dev", f"{self.module_id} identified as {message.module_id!r} on {link}"
            )
        elif isinstance(message, RouteToModule | RoutedModuleReply):
            self._route(message, reply)
        elif isinstance(message, RegisterServiceProvider | DiscoverServiceProviders):
            self._discover(message, reply)
        elif isinstance(message, PortRequest):
            self._answer_port(message, reply)
        elif isinstance(message, ServiceRequest | ServiceOperation):
            self._refuse_service(message, reply)
        elif isinstance(message, Announce):
            self._on_announced(message)
        elif isinstance(message, HeartbeatAck):
            self.last_ack = self.reactor.seconds()
        elif isinstance(message, HttpResponse):
            self._on_http_response(message)
        elif isinstance(message, RotationAck):
            self._on_rotation_ack(message)
        else:
            self.console.say(
                "pywatt-dev",
                f"{self.module_id} sent {type(message).__name__}, which pywatt dev does not serve",
                "warn",
            )

    def _route(
        self, message: RouteToModule | RoutedModuleReply, reply: Callable[[Any], None]
    ) -> None:
        if self.router is None:
            if isinstance(message, RouteToModule):
                reply(
                    routing_error(
                        message.target_module_id,
                        message.request_id,
                        "unavailable",
                        "module-to-module routing is off",
                    )
                )
            return
        self.router(self, message, reply)

    def _discover(
        self,
        message: RegisterServiceProvider | DiscoverServiceProviders,
        reply: Callable[[Any], None],
    ) -> None:
        if self.discovery is not None:
            self.discovery(self, message, reply)
        elif isinstance(message, RegisterServiceProvider):
            reply(RegisterServiceProviderResponse(False, None, "service discovery is off"))
        else:
            reply(DiscoverServiceProvidersResponse(False, (), "service discovery is off"))

    def _refuse_service(
        self, message: ServiceRequest | ServiceOperation, reply: Callable[[Any], None]
    ) -> None:
        """
        pywatt dev proxies no services: refuse, saying so.
        """
        if isinstance(message, ServiceOperation):
            reply(
                ServiceOperationResult(
                    False, None, "pywatt dev does not proxy services", params=message
                )
            )
            return
        self.console.say(
            "pywatt-dev",
            f"{self.module_id} asked for a proxied {message.service_type} service; "
            "pywatt dev does not proxy services (refused)",
            "warn",
        )
        reply(
            ServiceResponse(
                message.id,
                message.service_type,
                False,
                "pywatt dev does not proxy services; connect to the service directly",
                None,
            )
        )

    def _on_announced(self, message: Announce) -> None:
        self.listen = message.listen
        self.endpoints = tuple(message.endpoints)
        self.status = RUNNING
        self.last_ack = self.reactor.seconds()
        self._start_heartbeats()
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

    def _on_http_response(self, message: HttpResponse) -> None:
        if not self._pending_http.resolve(message.request_id, message):
            self.console.say(
                self.module_id, f"response to unknown request {message.request_id}", "warn"
            )

    def _on_rotation_ack(self, message: RotationAck) -> None:
        self.acks.append(message)
        text = f"rotation {message.rotation_id} acknowledged: {message.status}"
        if message.message:
            text += f" ({message.message})"
        self.console.say(
            "pywatt-dev",
            f"{self.module_id} {text}",
            "info" if message.status == "success" else "warn",
        )
        self._pending_rotations.resolve(message.rotation_id, message)
        ack_waiters, self._ack_waiters = self._ack_waiters, []
        for ack_waiter in ack_waiters:
            ack_waiter.callback(message)

    def _answer_secret(self, name: str, reply: Callable[[Any], None]) -> None:
        self.used_secrets.add(name)
        value = self.secrets.get(name)
        if value is None:
            self.console.say(
                "pywatt-dev",
                f"{self.module_id} asked for secret {name!r}, which is neither in the secrets "
                f"file nor in PYWATT_SECRET_{name}; it will time out",
                "warn",
            )
            return
        reply(SecretMessage(name=name, value=value))

    def _answer_port(self, message: PortRequest, reply: Callable[[Any], None]) -> None:
        """
        Allocate a free loopback port (the one asked for when it is free).
        """
        wanted = message.specific_port
        port: int | None = None
        if wanted:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", wanted))
                    port = wanted
                except OSError:
                    port = None
            if port is None:
                reply(PortResponse(message.request_id, False, 0, f"port {wanted} is in use"))
                return
        else:
            port = free_port()
        self.console.say("pywatt-dev", f"{self.module_id} was given port {port}")
        reply(PortResponse(message.request_id, True, port))

    def send(self, message: Any) -> None:
        if self._child is None:
            raise PyWattError(f"module {self.module_id} is not running")
        self._child.send(message)

    def channel(self, prefer: tuple[str, ...] = ("ipc", "tcp")) -> Any:
        """
        An open channel connection of the module (the first kind in C{prefer} that is
        connected), or C{None}.
        """
        for kind in prefer:
            for connection in reversed(self.channels.connections):
                if connection.listener == kind and not connection.lost:
                    return connection
        return None

    def send_preferred(self, message: Any, prefer: tuple[str, ...] = ("ipc", "tcp")) -> str:
        """
        Send on a channel when one is up (Unix socket first), else on stdin. Returns the
        link used.
        """
        connection = self.channel(prefer)
        if connection is not None:
            connection.send(message)
            return str(connection.listener)
        self.send(message)
        return "stdio"

    def http(
        self, method: str, uri: str, headers: Mapping[str, str], body: bytes | None
    ) -> Deferred[HttpResponse]:
        """
        Send an C{http_request} to the module (on its Unix-socket or TCP channel when
        connected, else on stdin); fires with its C{HttpResponse}.
        """
        request_id = f"dev-{uuid.uuid4()}"
        d: Deferred[HttpResponse] = self._pending_http.add(
            request_id,
            self.request_timeout,
            f"module {self.module_id} did not answer within {self.request_timeout:g} s",
        )
        try:
            self.send_preferred(
                HttpRequest(
                    request_id=request_id, method=method, uri=uri, headers=dict(headers), body=body
                )
            )
        except PyWattError as e:
            self._pending_http.fail(request_id, e)
        return d

    def rotate(
        self, names: frozenset[str], rotation_id: str | None = None
    ) -> Deferred[RotationAck | None] | None:
        """
        Tell the module that C{names} rotated, if it uses any of them. Fires with its ack,
        or with C{None} when none came within C{request_timeout} seconds (said on the
        console).
        """
        used = sorted(names & self.used_secrets)
        if not used or self._child is None:
            return None
        rotation_id = rotation_id or f"rot-{uuid.uuid4().hex[:8]}"
        d: Deferred[RotationAck | None] = self._pending_rotations.add(
            rotation_id,
            self.request_timeout,
            f"{self.module_id} did not acknowledge rotation {rotation_id} within "
            f"{self.request_timeout:g} s",
        )
        d.addErrback(self._rotation_unacked)
        self.console.say(
            "pywatt-dev", f"rotating {', '.join(used)} in {self.module_id} ({rotation_id})"
        )
        self._child.send(Rotated(keys=tuple(used), rotation_id=rotation_id))
        return d

    def _rotation_unacked(self, failure: Failure) -> None:
        failure.trap(RequestTimeout)
        self.console.say("pywatt-dev", str(failure.value), "warn")

    # -- heartbeats -------------------------------------------------------------------------------

    def _start_heartbeats(self) -> None:
        self._stop_heartbeats()
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(self.heartbeat_interval, now=False)

    def _stop_heartbeats(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def _beat(self) -> None:
        if self._child is None:
            return
        now = self.reactor.seconds()
        if self.last_ack is not None and now - self.last_ack > self.heartbeat_timeout:
            self.console.say(
                "pywatt-dev",
                f"{self.module_id} answered no heartbeat for {now - self.last_ack:.0f} s; "
                "killing it",
                "warn",
            )
            self._stop_heartbeats()
            self.kill("KILL")
            return
        # Every link gets a heartbeat; an ack on any of them shows the module is alive.
        self._child.send(Heartbeat())
        for connection in list(self.channels.connections):
            if not connection.lost:
                connection.send(Heartbeat())

    def _channel_state(self, kind: str, address: str | None) -> str:
        if address is None:
            return "off"
        connected = any(c.listener == kind and not c.lost for c in self.channels.connections)
        return f"up ({address})" if connected else f"down ({address})"

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
            "error": self.last_error if self.status == CRASHED else None,
            "listen": self.listen,
            "endpoints": [
                {"path": e.path, "methods": list(e.methods), "auth": e.auth} for e in self.endpoints
            ],
            "channels": {
                "stdio": "up" if self._child is not None else "down",
                "tcp": self._channel_state("tcp", self.tcp_address),
                "ipc": self._channel_state("ipc", self.ipc_path),
            },
            "secrets": sorted(self.used_secrets),
            "last_heartbeat_ack": self.last_ack,
            "rotation_acks": [
                {"rotation_id": a.rotation_id, "status": a.status, "message": a.message}
                for a in self.acks[-10:]
            ],
        }


def routing_error(
    target_module_id: str, request_id: uuid.UUID, kind: str, message: str
) -> RoutedModuleResponse:
    """
    The reply to a C{route_to_module} the orchestrator could not deliver: a
    C{routed_module_response} whose payload is C{{"error": {"kind", "message"}}}.
    """
    return RoutedModuleResponse(
        source_module_id=target_module_id,
        request_id=request_id,
        payload=EncodedPayload.from_json({"error": {"kind": kind, "message": message}}),
    )
