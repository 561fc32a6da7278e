# -*- test-case-name: tests.testing.test_fake_orchestrator -*-
"""
L{FakeOrchestrator}: run a module definition in the test's own process, with no sockets
and no subprocess, and play the orchestrator's part: the init line, secrets, heartbeats,
HTTP-over-IPC, rotation and shutdown. Everything the module sends is recorded.

Like treq's C{StubTreq}, it uses the real code paths: the module's stdio protocol, its
bootstrap and its HTTP bridge all run for real; only the bytes stay in memory.

L{FakeOrchestrator} is the toolkit's documented facade and stays one class; what a test
does with a started module (L{FakeModule}) is in L{pywatt_twisted.testing._module}, the
HTTP pieces (L{FakeResponse}, the in-memory agent's plumbing) in
L{pywatt_twisted.testing._http}, the in-memory channels in
L{pywatt_twisted.testing._memory_channels}.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactor, MemoryReactorClock, StringTransport
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.correlation import CorrelationTable, Pending
from pywatt_twisted._runtime.messaging import error_payload
from pywatt_twisted._runtime.module import ModuleDefinition, pywatt_module
from pywatt_twisted._runtime.redaction import Redactor
from pywatt_twisted._runtime.service import ModuleService
from pywatt_twisted._runtime.state import AppState
from pywatt_twisted.errors import PyWattError, RemoteError
from pywatt_twisted.orchestrator._channel_server import ChannelServer, ModuleConnection
from pywatt_twisted.orchestrator._providers import ISecretProvider, MemorySecretProvider
from pywatt_twisted.orchestrator._services import ServiceHost
from pywatt_twisted.streaming import StreamReceiver, StreamSender, StreamTable
from pywatt_twisted.testing._http import BytesProducer, CollectedBody, FakeResponse, OneEndpoint
from pywatt_twisted.testing._memory_channels import MemoryChannelEndpoint, MemoryStreamEndpoint
from pywatt_twisted.testing._module import FakeModule
from pywatt_twisted.wire.codec import decode_from_module, encode_init, encode_line
from pywatt_twisted.wire.envelope import error_object, routed_reply_content
from pywatt_twisted.wire.init import (
    InitBlob,
    IpcChannelConfig,
    ListenAddress,
    TcpChannelConfig,
    parse_listen,
)
from pywatt_twisted.wire.lines import LineDecoder
from pywatt_twisted.wire.messages import (
    Announce,
    EncodedPayload,
    GetSecret,
    Heartbeat,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    Rotated,
    RotationAck,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
    SecretMessage,
    ServiceOperation,
    ServiceRequest,
    Shutdown,
    StreamAck,
    StreamCancel,
    StreamChunk,
)
from pywatt_twisted.wire.stream import StreamOptions


class _OrchestratorSide(StringTransport):
    """
    The module's stdout, read by the fake orchestrator as it is written.
    """

    def __init__(self, orchestrator: FakeOrchestrator) -> None:
        super().__init__()
        self._orchestrator = orchestrator
        # (runtime lines may be as long as a frame)
        self._decoder = LineDecoder(orchestrator.config.max_frame_length)
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        super().write(data)
        for line in self._decoder.feed(data):
            if isinstance(line, bytes):
                self._orchestrator._received(decode_from_module(line))

    def loseWriteConnection(self) -> None:
        self.disconnecting = True
        protocol = self.protocol
        if protocol is not None:
            protocol.writeConnectionLost()


class FakeOrchestrator:
    """
    An in-memory orchestrator for trial tests.

    @param secrets: secret values to serve (a mapping or an L{ISecretProvider}).
    @param reactor: the module's reactor: a L{MemoryReactorClock} by default (advance it
        to move time), or the real reactor. Listening always happens on a memory reactor:
        no real port is opened.
    @param module_id: the id in the init blob.
    @param env: the init blob's C{env}.
    @param listen: the init blob's listen address.
    @param auto_secrets: answer C{get_secret} at once from C{secrets} (default). Turn it
        off to script replies with L{answer_secret}.
    @param channels: framed channels to offer in the init blob, C{"tcp"} and/or C{"ipc"};
        the module connects to them in memory (see L{connection}, L{drop_channel}).
    @param streaming: enable streamed bodies (and gzip when its C{gzip} is set) in the
        init blob's C{extensions} (X0) with these options; C{None}: not enabled (the
        module then never streams a response, but still reads streamed requests).
    @param services: databases and caches to provide by name to C{state.service(name)}
        (name -> a L{Database <pywatt_twisted.data.Database>} or a cache such as
        L{MemoryCache <pywatt_twisted.data.MemoryCache>}); the test closes them. Without
        it (and before L{provide}), C{service_request} and C{service_operation} are only
        recorded in L{sent}, for a test to answer with L{send}.

    @ivar sent: every message the module sent, decoded, in order.
    @ivar announcement: the module's L{Announce} (C{None} before it).
    @ivar acks: every L{RotationAck} it sent.
    @ivar secret_requests: names of every C{get_secret} it sent.
    @ivar heartbeat_acks: how many heartbeat acks it sent.
    @ivar exit_codes: exit statuses the module asked for (0 after shutdown).
    @ivar calls: the routed calls of L{FakeModule.call} waiting for their reply.
    @ivar services: the L{ServiceHost} answering proxied-service requests, or None.
    @ivar routed_requests: every C{route_to_module} the module sent (its own requests
        to other modules), oldest first; answer them with L{answer_routed}.
    @ivar max_unacked_chunks: the most chunks of one streamed response the module had
        unacknowledged at once, as counted here (for window checks). Stream messages
        are not recorded in C{sent}.
    @ivar uploads: the sender of each streamed request body (C{request(...,
        stream=True)}), oldest first: its C{unacked}, C{sent_bytes} and
        C{max_unacked} show how the module's acks paced it.
    """

    def __init__(
        self,
        secrets: Mapping[str, str] | ISecretProvider | None = None,
        *,
        reactor: Any = None,
        module_id: str = "test-module",
        env: Mapping[str, str] | None = None,
        listen: str | ListenAddress = "127.0.0.1:0",
        config: RuntimeConfig | None = None,
        auto_secrets: bool = True,
        channels: Sequence[str] = (),
        streaming: StreamOptions | None = None,
        services: Mapping[str, Any] | None = None,
    ) -> None:
        if secrets is None or isinstance(secrets, Mapping):
            self.secrets: ISecretProvider = MemorySecretProvider(dict(secrets or {}))
        else:
            self.secrets = secrets
        self.reactor = reactor if reactor is not None else MemoryReactorClock()
        self.listen_reactor = MemoryReactor()
        self.module_id = module_id
        self.env = dict(env or {})
        self.listen = parse_listen(listen) if isinstance(listen, str) else listen
        self.config = config or RuntimeConfig()
        self.auto_secrets = auto_secrets
        self.redactor = Redactor()
        self.sent: list[Any] = []
        self.announcement: Announce | None = None
        self.acks: list[RotationAck] = []
        self.secret_requests: list[str] = []
        self.heartbeat_acks = 0
        self.exit_codes: list[int] = []
        self.module: FakeModule | None = None
        self._http: dict[str, Deferred[FakeResponse]] = {}
        self._acks: dict[str, Deferred[RotationAck]] = {}
        self._heartbeats: list[Deferred[None]] = []
        self.routed_requests: list[RouteToModule] = []
        self._routed_links: dict[uuid.UUID, Callable[[Any], None]] = {}
        self.calls: CorrelationTable[uuid.UUID] = CorrelationTable(self.reactor)
        self.streaming = streaming
        self.max_unacked_chunks = 0
        self.uploads: list[StreamSender] = []
        self._stream_tables: dict[Any, StreamTable] = {}
        self._unacked: dict[str, int] = {}
        self._reading_paused = False
        self.services: ServiceHost | None = None if services is None else ServiceHost(services)
        self._transport: _OrchestratorSide | None = None
        unknown = set(channels) - {"tcp", "ipc"}
        if unknown:
            raise ValueError(f"channels are 'tcp' and 'ipc', got {sorted(unknown)}")
        # The orchestrator side caps frames as the module does (one setting, both ends).
        self.channel_server = ChannelServer(
            self.reactor,
            on_message=self._from_channel,
            max_frame_length=self.config.max_frame_length,
        )
        addresses = {"tcp": "127.0.0.1:9901", "ipc": f"/fake/pywatt-{module_id}.sock"}
        self.endpoints = {
            kind: MemoryChannelEndpoint(self.channel_server, kind, addresses[kind])
            for kind in channels
        }

    # -- starting ---------------------------------------------------------------------------

    def init_blob(self) -> InitBlob:
        tcp = self.endpoints.get("tcp")
        ipc = self.endpoints.get("ipc")
        return InitBlob(
            orchestrator_api="http://127.0.0.1:9900",
            module_id=self.module_id,
            env=self.env,
            listen=self.listen,
            tcp_channel=None if tcp is None else TcpChannelConfig("127.0.0.1", 9901),
            ipc_channel=None if ipc is None else IpcChannelConfig(ipc.address),
            extensions=self._extensions(),
        )

    def _extensions(self) -> dict[str, Any] | None:
        options = self.streaming
        if options is None:
            return None
        out: dict[str, Any] = {
            "streaming": {"chunk_size": options.chunk_size, "window": options.window}
        }
        if options.gzip:
            out["compression"] = ["gzip"]
        return out

    def start(self, module: ModuleDefinition | Callable[[AppState], Any]) -> Deferred[FakeModule]:
        """
        Start C{module} (a definition, or a bare C{create_app} function): the init line,
        its secrets, its announce. Fires with a L{FakeModule} once it has announced.
        """
        definition = module if isinstance(module, ModuleDefinition) else pywatt_module(module)
        if self.module is not None:
            raise PyWattError("this FakeOrchestrator already runs a module; make another one")
        transport = self._transport = _OrchestratorSide(self)

        def connect(protocol: Any) -> None:
            transport.protocol = protocol
            protocol.makeConnection(transport)

        service = ModuleService(
            definition,
            reactor=self.reactor,
            connect_stdio=connect,
            stop_process=self.exit_codes.append,
            config=self.config,
            redactor=self.redactor,
            listen_reactor=self.listen_reactor,
            channel_endpoints=lambda spec, tls: self.endpoints[spec.name],
        )
        self.module = FakeModule(self, service)
        service.startService()
        ready = service.whenReady()
        self.send_line(encode_init(self.init_blob()))
        fake = self.module
        return ready.addCallback(lambda _: fake)

    def provide(self, name: str, service: Any) -> None:
        """
        Provide a database or cache to C{state.service(name)} from now on (see the
        C{services} parameter).
        """
        if self.services is None:
            self.services = ServiceHost()
        self.services.provide(name, service)

    # -- orchestrator -> module ------------------------------------------------------------------

    def send(self, message: Any, via: str = "stdio") -> None:
        """
        Send an orchestrator-to-module message on the module's stdin (or on its C{"tcp"}
        / C{"ipc"} channel with C{via}).
        """
        if via == "stdio":
            self.send_line(encode_line(message).rstrip(b"\n"))
            return
        connection = self.connection(via)
        if connection is None:
            raise PyWattError(f"the module has no {via} channel connected")
        connection.send(message)

    # -- channels ---------------------------------------------------------------------------

    def connection(self, kind: str) -> ModuleConnection | None:
        """
        The module's open channel connection of C{kind} (C{"tcp"} or C{"ipc"}), if any.
        """
        endpoint = self.endpoints.get(kind)
        if endpoint is None:
            return None
        live = [c for c in endpoint.connections if not c.lost]
        return live[-1] if live else None

    def drop_channel(self, kind: str, *, refuse: bool = False) -> None:
        """
        Close the module's C{kind} channel, as an orchestrator restart would. With
        C{refuse}, reconnects are refused until L{restore_channel} (to test failover).
        The module reconnects with its backoff: advance the clock to let it.
        """
        endpoint = self.endpoints[kind]
        endpoint.blocked = refuse
        connection = self.connection(kind)
        if connection is not None:
            connection.drop()

    def refuse_channel(self, kind: str) -> None:
        """
        Refuse the module's connects on C{kind} from now on, without closing the live
        connection (it stays up until L{drop_channel}); L{restore_channel} accepts them
        again.
        """
        self.endpoints[kind].blocked = True

    def restore_channel(self, kind: str) -> None:
        """
        Accept connects on C{kind} again.
        """
        self.endpoints[kind].blocked = False

    def routing_link(self) -> str:
        """
        Where a real orchestrator delivers routed messages: the TCP channel if one is
        connected, else the Unix socket, else stdin (C{"tcp"}, C{"ipc"} or C{"stdio"}).
        """
        for kind in ("tcp", "ipc"):
            if self.connection(kind) is not None:
                return kind
        return "stdio"

    def _from_channel(self, connection: ModuleConnection, envelope: Any) -> bool:
        self._received(envelope.content, connection.send)
        return True

    # -- streamed bodies -------------------------------------------------------------------

    def _link(self, via: str) -> tuple[Any, Callable[[Any], None]]:
        if via == "stdio":
            return "stdio", self.send
        connection = self.connection(via)
        if connection is None:
            raise PyWattError(f"the module has no {via} channel connected")
        return connection, connection.send

    def _table(self, key: Any, send: Callable[[Any], None]) -> StreamTable:
        table = self._stream_tables.get(key)
        if table is None:
            table = self._stream_tables[key] = StreamTable(self._counting(send))
        return table

    def _counting(self, send: Callable[[Any], None]) -> Callable[[Any], None]:
        def counted(message: Any) -> None:
            if isinstance(message, StreamAck) and message.success:
                self._unacked.pop(message.stream_id, None)
            send(message)

        return counted

    def _upload(
        self,
        request_id: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | Any,
        via: str,
    ) -> None:
        key, send = self._link(via)
        table = self._table(key, send)
        stream_id = f"o-{uuid.uuid4().hex}"
        sender = StreamSender(
            stream_id, send, self.streaming or StreamOptions(), self.reactor, stall_timeout=None
        )
        table.add_sender(sender)
        self.uploads.append(sender)
        sender.done.addErrback(lambda f: None)  # (the response says how it ended)
        send(HttpRequest(request_id, method, path, headers, None, stream_id))
        sender.write(bytes(body))
        sender.finish()

    def pause_reading(self) -> None:
        """
        Stop acknowledging the chunks of streamed responses (a slow reader): the module
        must stop after its window.
        """
        self._reading_paused = True
        for table in self._stream_tables.values():
            for receiver in table.receivers.values():
                receiver.pauseProducing()

    def resume_reading(self) -> None:
        """
        Acknowledge streamed responses again (see L{pause_reading}).
        """
        self._reading_paused = False
        for table in list(self._stream_tables.values()):
            for receiver in list(table.receivers.values()):
                receiver.resumeProducing()

    def _stream_message(self, message: Any, key: Any, send: Callable[[Any], None]) -> None:
        if isinstance(message, StreamChunk):
            count = self._unacked.get(message.stream_id, 0) + 1
            self._unacked[message.stream_id] = count
            self.max_unacked_chunks = max(self.max_unacked_chunks, count)
        self._table(key, send).received(message)

    def _streamed_response(
        self, message: HttpResponse, key: Any, send: Callable[[Any], None]
    ) -> None:
        waiter = self._http.pop(message.request_id, None)
        sink = CollectedBody(message, waiter)
        assert message.stream_id is not None
        receiver = StreamReceiver(
            message.stream_id,
            self._counting(send),
            sink,
            self.reactor,
            max_size=2**62,
            stall_timeout=None,
        )
        if self._reading_paused:
            receiver.pauseProducing()
        self._table(key, send).add_receiver(receiver)

    def send_line(self, line: bytes) -> None:
        """
        Write raw bytes (plus a newline) to the module's stdin.
        """
        if self.module is None or self.module.service.stdio is None:
            raise PyWattError("no module is running; call start() first")
        self.module.service.stdio.dataReceived(line + b"\n")

    def answer_secret(self, name: str, value: str, rotation_id: str | None = None) -> None:
        """
        Send a C{secret} message (for tests that script secret replies).
        """
        self.send(SecretMessage(name=name, value=value, rotation_id=rotation_id))

    def answer_routed(
        self,
        value: Any = None,
        *,
        error: tuple[str, str] | None = None,
        request: RouteToModule | None = None,
    ) -> None:
        """
        Answer one of the module's own requests to another module, as that module would
        through the orchestrator: a C{routed_module_response} from the target, on the link
        the request came on. C{value} is the reply (any JSON value); or C{error=(kind,
        message)} for an error reply (C{"target_exited"}, C{"unknown_module"}, or a kind
        of the target's own). C{request} is one of L{routed_requests}: the newest
        unanswered one by default.
        """
        if request is None:
            waiting = [r for r in self.routed_requests if r.request_id in self._routed_links]
            if not waiting:
                raise PyWattError("the module sent no route_to_module that is still unanswered")
            request = waiting[-1]
        send = self._routed_links.pop(request.request_id, None)
        if send is None:
            raise PyWattError(f"request {request.request_id} was answered already, or never sent")
        payload = EncodedPayload.from_json(value) if error is None else error_payload(*error)
        send(RoutedModuleResponse(request.target_module_id, request.request_id, payload))

    def heartbeat(self, via: str = "stdio") -> Deferred[None]:
        """
        Send a heartbeat (on stdin, or on a channel with C{via}); fires when the module
        acknowledged it.
        """
        d: Deferred[None] = Deferred()
        self._heartbeats.append(d)
        self.send(Heartbeat(), via=via)
        return d

    def rotate(
        self, values: Mapping[str, str], rotation_id: str | None = None
    ) -> Deferred[RotationAck]:
        """
        Change secret values and send C{rotated} for them; the module re-fetches what it
        uses and acknowledges. Fires with its L{RotationAck} (also appended to L{acks}).
        """
        if isinstance(self.secrets, MemorySecretProvider):
            self.secrets.update(values)
        rotation_id = rotation_id or f"rot-{uuid.uuid4().hex[:8]}"
        d: Deferred[RotationAck] = Deferred()
        self._acks[rotation_id] = d
        self.send(Rotated(keys=tuple(values), rotation_id=rotation_id))
        return d

    def shutdown(self) -> Deferred[None]:
        """
        Send C{shutdown} and stop the module's service; fires when it has stopped.
        """
        if self.module is None:
            return succeed(None)
        self.send(Shutdown())
        service = self.module.service
        if not service.running:
            return succeed(None)
        stopped = service.stopService().addCallback(lambda _: self.channel_server.stop())
        return stopped.addCallback(lambda _: self._stopped())

    def _stopped(self) -> None:
        self.calls.stop("the fake orchestrator shut the module down")
        if self.services is not None:
            self.services.module_gone(self.module_id)

    # -- module -> orchestrator ------------------------------------------------------------------

    def _direct_http(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> Deferred[FakeResponse]:
        servers = [*self.listen_reactor.tcpServers, *self.listen_reactor.unixServers]
        if not servers:
            raise PyWattError(
                "the module listens on no HTTP address (IPC-only?): send the request "
                "over stdin or a channel instead of via='http'"
            )
        endpoint = MemoryStreamEndpoint(servers[-1][1])
        agent = Agent.usingEndpointFactory(MemoryReactorClock(), OneEndpoint(endpoint))
        request_headers = Headers({name: [value] for name, value in headers.items()})
        if not path.startswith("/"):
            raise ValueError(f"the path must start with '/', got {path!r}")
        d = agent.request(
            method.encode("ascii"),
            b"http://127.0.0.1:8080" + path.encode("ascii"),
            request_headers,
            None if body is None else BytesProducer(body),
        )
        endpoint.flush()

        def read(response: Any) -> Deferred[FakeResponse]:
            return readBody(response).addCallback(
                lambda content: FakeResponse(
                    code=response.code,
                    headers={
                        name.decode("latin-1").lower(): b", ".join(values).decode("latin-1")
                        for name, values in response.headers.getAllRawHeaders()
                    },
                    body=content,
                )
            )

        return d.addCallback(read)

    def _expect_http(self, request_id: str) -> Deferred[FakeResponse]:
        d: Deferred[FakeResponse] = Deferred()
        self._http[request_id] = d
        return d

    def _received(self, message: Any, reply: Callable[[Any], None] | None = None) -> None:
        # (the link a stream message came on: the channel connection whose send is
        # the reply, or stdio)
        link: Any = getattr(reply, "__self__", None) or "stdio"
        if isinstance(message, StreamChunk | StreamAck | StreamCancel):
            self._stream_message(message, link, reply or self.send)
            return
        if isinstance(message, HttpResponse) and message.stream_id is not None:
            self.sent.append(message)
            self._streamed_response(message, link, reply or self.send)
            return
        self.sent.append(message)
        if isinstance(message, GetSecret):
            self.secret_requests.append(message.name)
            if self.auto_secrets:
                value = self.secrets.get(message.name)
                if value is not None:
                    answer = SecretMessage(name=message.name, value=value)
                    (reply or self.send)(answer)
        elif isinstance(message, Announce):
            self.announcement = message
        elif isinstance(message, ServiceRequest | ServiceOperation):
            if self.services is not None:
                self.services.handle(self.module_id, message, reply or self.send)
        elif isinstance(message, RotationAck):
            self.acks.append(message)
            waiter = self._acks.pop(message.rotation_id, None)
            if waiter is not None:
                waiter.callback(message)
        elif isinstance(message, HeartbeatAck):
            self.heartbeat_acks += 1
            if self._heartbeats:
                self._heartbeats.pop(0).callback(None)
        elif isinstance(message, RoutedModuleReply):
            call = self.calls.pop(message.request_id)
            if call is not None:
                self._answer_call(call, message)
        elif isinstance(message, RouteToModule):
            self.routed_requests.append(message)
            self._routed_links[message.request_id] = reply or self.send
        elif isinstance(message, HttpResponse):
            waiter_http = self._http.pop(message.request_id, None)
            if waiter_http is not None:
                waiter_http.callback(
                    FakeResponse(
                        code=message.status_code,
                        headers=dict(message.headers),
                        body=message.body or b"",
                    )
                )

    def _answer_call(self, call: Pending, reply: RoutedModuleReply) -> None:
        value = routed_reply_content(reply.payload)
        error = error_object(value)
        if error is None:
            call.callback(value)
            return
        kind, text = error
        call.errback(
            RemoteError.from_kind(kind, f"{self.module_id}/{call.context} failed ({kind}): {text}")
        )
