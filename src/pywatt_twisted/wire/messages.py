# -*- test-case-name: tests.wire.test_codec -*-
"""
Value classes for every message of the PyWatt protocol, both directions.

These are plain attrs values: no I/O, no validation beyond what the types say (the
decoders in L{pywatt_twisted.wire.codec} validate what comes off the wire). Sequences are
stored as tuples (a list given to the constructor is converted); maps are plain dicts,
to be treated as read-only.

Each class has an C{op} class attribute: the C{"op"} string it carries on the wire.

  - module -> orchestrator: L{ModuleMessage}
  - orchestrator -> module: L{OrchestratorMessage}
  - either direction, an op this version does not know: L{UnknownMessage}
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

from attrs import field, frozen

from pywatt_twisted.wire import _json
from pywatt_twisted.wire._value import Value
from pywatt_twisted.wire.init import InitBlob

__all__ = [
    "PAYLOAD_FORMATS",
    "Announce",
    "AnnouncedEndpoint",
    "DiscoverServiceProviders",
    "DiscoverServiceProvidersResponse",
    "EncodedPayload",
    "Endpoint",
    "Envelope",
    "GetSecret",
    "Heartbeat",
    "HeartbeatAck",
    "HttpRequest",
    "HttpResponse",
    "Identify",
    "Init",
    "Message",
    "Metadata",
    "ModuleMessage",
    "OrchestratorMessage",
    "OversizedHttpRequest",
    "PortRequest",
    "PortResponse",
    "RegisterServiceProvider",
    "RegisterServiceProviderResponse",
    "Rotated",
    "RotationAck",
    "RouteToModule",
    "RoutedModuleMessage",
    "RoutedModuleReply",
    "RoutedModuleResponse",
    "SecretMessage",
    "ServiceOperation",
    "ServiceOperationResult",
    "ServiceProviderInfo",
    "ServiceRequest",
    "ServiceResponse",
    "ServiceType",
    "Shutdown",
    "StreamAck",
    "StreamCancel",
    "StreamChunk",
    "UnknownMessage",
]


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return value if type(value) is tuple else tuple(value)


def _str_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return value if type(value) is dict else dict(value)


# ---------------------------------------------------------------------------------------
# Shared values


PAYLOAD_FORMATS: Final = ("Json", "Binary", "Base64", "Auto")
"""The C{EncodedPayload.format} names (serde variant names of C{EncodingFormat})."""


@frozen(eq=False, repr=False)
class EncodedPayload(Value):
    """
    An opaque payload routed between modules (Rust C{EncodedMessage}):
    C{{"data": [bytes as ints], "format": "Json"}}.

    @ivar data: the payload bytes.
    @ivar format: one of L{PAYLOAD_FORMATS}; C{"Json"} for everything this library sends.
    """

    data: bytes
    format: str = "Json"

    @classmethod
    def from_json(cls, obj: object) -> EncodedPayload:
        """
        Encode C{obj} as compact JSON (UTF-8, serde style) into a C{"Json"} payload.
        """
        return cls(_json.dumps(obj), "Json")

    def json(self) -> Any:
        """
        Decode C{data} as JSON (after base64-decoding it when C{format} is C{"Base64"}).

        @raise ValueError: if the data is not JSON.
        """
        data = self.data
        if self.format == "Base64":
            import base64

            data = base64.b64decode(data, validate=True)
        return _json.loads(data)


@frozen(eq=False, repr=False)
class Metadata(Value):
    """
    The C{metadata} of an envelope. Every field is omitted on the wire when C{None}.

    @ivar timestamp: Unix seconds (the protocol leaves the unit open; seconds is what the
        Rust docs use).
    """

    id: str | None = None
    timestamp: int | None = None
    source: str | None = None
    destination: str | None = None
    properties: Mapping[str, object] | None = None


@frozen(eq=False, repr=False)
class ServiceType(Value):
    """
    The kind of a proxied or discovered service: C{Database}, C{Cache}, C{Jwt} or
    C{Custom(name)}.

    Use the constants L{DATABASE}, L{CACHE}, L{JWT} and L{custom}. On the wire (Rust
    form): C{"Database"}, C{"Cache"}, C{"Jwt"}, C{{"Custom": name}}.

    @ivar kind: C{"Database"}, C{"Cache"}, C{"Jwt"} or C{"Custom"}.
    @ivar name: the custom name, C{None} for the built-in kinds.
    """

    kind: str
    name: str | None = None

    DATABASE: ClassVar[ServiceType]
    CACHE: ClassVar[ServiceType]
    JWT: ClassVar[ServiceType]

    @classmethod
    def custom(cls, name: str) -> ServiceType:
        """
        A C{Custom(name)} service type.
        """
        return cls("Custom", name)

    def to_json(self) -> str | dict[str, str]:
        """
        The Rust (serde) JSON form.
        """
        if self.kind == "Custom":
            return {"Custom": self.name or ""}
        return self.kind

    def __str__(self) -> str:
        if self.kind == "Custom":
            return f"Custom({self.name})"
        return self.kind


ServiceType.DATABASE = ServiceType("Database")
ServiceType.CACHE = ServiceType("Cache")
ServiceType.JWT = ServiceType("Jwt")


@frozen(eq=False, repr=False)
class ServiceProviderInfo(Value):
    """
    One provider in a C{discover_service_providers_response}.
    """

    provider_id: str
    module_id: str
    service_type: ServiceType
    name: str
    version: str | None
    address: str
    metadata: Mapping[str, str] = field(factory=dict, converter=_str_map)
    is_healthy: bool = True


# ---------------------------------------------------------------------------------------
# Module -> orchestrator


@frozen(eq=False, repr=False)
class Endpoint(Value):
    """
    One HTTP endpoint in an C{announce}: C{{"path", "methods", "auth"?}}.

    @ivar methods: upper-case HTTP methods (a list is accepted and stored as a tuple).
    @ivar auth: C{"jwt"} for guarded routes, C{None} (omitted on the wire) otherwise.
    """

    path: str
    methods: tuple[str, ...] = field(converter=_str_tuple)
    auth: str | None = None


AnnouncedEndpoint = Endpoint


def _endpoint_tuple(value: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return value if type(value) is tuple else tuple(value)


@frozen(eq=False, repr=False)
class Announce(Value):
    """
    C{announce}: where the module serves HTTP and which endpoints it has.
    """

    op: ClassVar[str] = "announce"
    listen: str
    endpoints: tuple[Endpoint, ...] = field(converter=_endpoint_tuple)


@frozen(eq=False, repr=False)
class GetSecret(Value):
    """
    C{get_secret}: ask for the value of one secret.
    """

    op: ClassVar[str] = "get_secret"
    name: str


@frozen(eq=False, repr=False)
class RotationAck(Value):
    """
    C{rotation_ack}: a rotation was handled. C{status} is C{"success"} or C{"error"}.
    """

    op: ClassVar[str] = "rotation_ack"
    rotation_id: str
    status: str
    message: str | None = None


@frozen(eq=False, repr=False)
class RegisterServiceProvider(Value):
    """
    C{register_service_provider}: offer a service to other modules.
    """

    op: ClassVar[str] = "register_service_provider"
    service_type: ServiceType
    name: str
    version: str | None
    address: str
    metadata: Mapping[str, str] | None = None


@frozen(eq=False, repr=False)
class DiscoverServiceProviders(Value):
    """
    C{discover_service_providers}: find providers of a service type.
    """

    op: ClassVar[str] = "discover_service_providers"
    service_type: ServiceType
    all_providers: bool | None = None


@frozen(eq=False, repr=False)
class ServiceRequest(Value):
    """
    C{service_request}: ask the orchestrator for a proxied connection.

    @ivar config: any JSON value (C{None} is sent as C{null}).
    """

    op: ClassVar[str] = "service_request"
    id: str
    service_type: ServiceType
    config: object = None


@frozen(eq=False, repr=False)
class ServiceOperation(Value):
    """
    C{service_operation}: run one operation on a proxied connection.

    @ivar params: any JSON value (required on the wire; C{None} is C{null}).
    @ivar id: this library's correlation id for the operation (an extension, emitted
        only when set): an orchestrator that echoes the operation as the result's
        C{params} echoes it too, so results may come back in any order.
    """

    op: ClassVar[str] = "service_operation"
    connection_id: str
    service_type: ServiceType
    operation: str
    params: object = None
    id: str | None = None


@frozen(eq=False, repr=False)
class HttpResponse(Value):
    """
    C{http_response}: the reply to an L{HttpRequest}.

    @ivar headers: single-valued header map (join repeated headers with C{", "}).
    @ivar body: the body bytes, or C{None} (C{null}).
    @ivar stream_id: set when the body follows as L{StreamChunk}s (EXTENSIONS.md
        X1); then C{body} is empty.
    """

    op: ClassVar[str] = "http_response"
    request_id: str
    status_code: int
    headers: Mapping[str, str] = field(converter=_str_map)
    body: bytes | None = None
    stream_id: str | None = None


@frozen(eq=False, repr=False)
class PortRequest(Value):
    """
    C{port_request}: ask the orchestrator for a port (C{specific_port} or any).
    """

    op: ClassVar[str] = "port_request"
    request_id: str
    specific_port: int | None = None


@frozen(eq=False, repr=False)
class RouteToModule(Value):
    """
    C{route_to_module}: send a request to another module through the orchestrator.

    @ivar payload: by convention the JSON of an envelope C{{"id","content","metadata"}}.
    """

    op: ClassVar[str] = "route_to_module"
    target_module_id: str
    target_endpoint: str
    request_id: uuid.UUID
    payload: EncodedPayload


@frozen(eq=False, repr=False)
class HeartbeatAck(Value):
    """
    C{heartbeat_ack}: the reply to a L{Heartbeat}.
    """

    op: ClassVar[str] = "heartbeat_ack"


@frozen(eq=False, repr=False)
class Identify(Value):
    """
    C{identify}: name this module on a freshly connected channel.

    Encoded as C{{"op":"identify","identify":id,"module_id":id}} (PROTOCOL.md 2.5: the
    Rust SDK cannot serialize its own C{Identify}; this carries the id under both
    plausible keys).
    """

    op: ClassVar[str] = "identify"
    module_id: str


@frozen(eq=False, repr=False)
class RoutedModuleReply(Value):
    """
    The reply of a module to a L{RoutedModuleMessage}: op C{"routed_module_response"}
    sent module -> orchestrator. A non-standard extension (PROTOCOL.md 10, A3).

    @ivar source_module_id: this (replying) module.
    @ivar request_id: the C{original_request_id} of the request.
    @ivar target_module_id: the module that sent the request.
    @ivar payload: the bare reply JSON.
    """

    op: ClassVar[str] = "routed_module_response"
    source_module_id: str
    request_id: uuid.UUID
    target_module_id: str
    payload: EncodedPayload


# ---------------------------------------------------------------------------------------
# Orchestrator -> module


@frozen(eq=False, repr=False)
class Init(Value):
    """
    C{init}: the init blob as an op (C{{"op":"init", ...blob fields}}).
    """

    op: ClassVar[str] = "init"
    blob: InitBlob


@frozen(eq=False, repr=False)
class SecretMessage(Value):
    """
    C{secret}: the value of a secret (a reply to L{GetSecret}, or pushed after a rotation).
    """

    op: ClassVar[str] = "secret"
    name: str
    value: str = field(repr=False)
    rotation_id: str | None = None


@frozen(eq=False, repr=False)
class Rotated(Value):
    """
    C{rotated}: these secrets were rotated; drop them from caches and re-fetch.
    """

    op: ClassVar[str] = "rotated"
    keys: tuple[str, ...] = field(converter=_str_tuple)
    rotation_id: str


@frozen(eq=False, repr=False)
class Shutdown(Value):
    """
    C{shutdown}: stop gracefully.
    """

    op: ClassVar[str] = "shutdown"


@frozen(eq=False, repr=False)
class RegisterServiceProviderResponse(Value):
    """
    C{register_service_provider_response}.
    """

    op: ClassVar[str] = "register_service_provider_response"
    success: bool
    provider_id: str | None = None
    error: str | None = None


def _provider_tuple(value: Iterable[ServiceProviderInfo]) -> tuple[ServiceProviderInfo, ...]:
    return value if type(value) is tuple else tuple(value)


@frozen(eq=False, repr=False)
class DiscoverServiceProvidersResponse(Value):
    """
    C{discover_service_providers_response}.
    """

    op: ClassVar[str] = "discover_service_providers_response"
    success: bool
    providers: tuple[ServiceProviderInfo, ...] = field(converter=_provider_tuple)
    error: str | None = None


@frozen(eq=False, repr=False)
class ServiceResponse(Value):
    """
    C{service_response}: the reply to a L{ServiceRequest}, correlated by C{id}.

    @ivar error_info: for a refusal, a JSON object C{{"kind": K, ...}} (an extension,
        emitted only when set; e.g. C{"unknown_service"}).
    """

    op: ClassVar[str] = "service_response"
    id: str
    service_type: ServiceType
    success: bool
    error: str | None = None
    connection_id: str | None = None
    error_info: object = None


@frozen(eq=False, repr=False)
class ServiceOperationResult(Value):
    """
    C{service_operation_result}: the reply to a L{ServiceOperation}.

    @ivar result: any JSON value.
    @ivar params: the original operation, when the orchestrator echoes it (the only way to
        correlate; emitted only when not C{None}).
    @ivar error_info: for a failure, a JSON object C{{"kind": K, ...}} naming the error's
        type and its fields (an extension, emitted only when set), so the module raises
        the same typed error a direct connection would.
    """

    op: ClassVar[str] = "service_operation_result"
    success: bool
    result: object = None
    error: str | None = None
    params: ServiceOperation | None = None
    error_info: object = None


@frozen(eq=False, repr=False)
class HttpRequest(Value):
    """
    C{http_request}: an HTTP request proxied to the module.

    @ivar uri: path plus query string.
    @ivar headers: single-valued header map.
    @ivar body: the body bytes or C{None}.
    @ivar stream_id: set when the body follows as L{StreamChunk}s (EXTENSIONS.md
        X1); then C{body} is C{None}.
    """

    op: ClassVar[str] = "http_request"
    request_id: str
    method: str
    uri: str
    headers: Mapping[str, str] = field(converter=_str_map)
    body: bytes | None = None
    stream_id: str | None = None


@frozen(eq=False, repr=False)
class OversizedHttpRequest(Value):
    """
    Not a wire message: what the stdio reader hands on in place of an C{http_request}
    line longer than its cap, which it discarded unparsed but whose C{request_id} it
    read from the line's first bytes, so the request is still answered (413).

    @ivar length_limit: the line cap the request exceeded, in bytes.
    """

    op: ClassVar[str] = "http_request"
    request_id: str
    length_limit: int


@frozen(eq=False, repr=False)
class PortResponse(Value):
    """
    C{port_response}: the reply to a L{PortRequest}.
    """

    op: ClassVar[str] = "port_response"
    request_id: str
    success: bool
    port: int
    error_message: str | None = None


@frozen(eq=False, repr=False)
class RoutedModuleMessage(Value):
    """
    C{routed_module_message}: a request from another module, delivered by the orchestrator.

    @ivar target_endpoint: not in the Rust type; accepted when present (and emitted only
        when not C{None}).
    """

    op: ClassVar[str] = "routed_module_message"
    source_module_id: str
    original_request_id: uuid.UUID
    payload: EncodedPayload
    target_endpoint: str | None = None


@frozen(eq=False, repr=False)
class RoutedModuleResponse(Value):
    """
    C{routed_module_response}: the reply to this module's L{RouteToModule}.
    """

    op: ClassVar[str] = "routed_module_response"
    source_module_id: str
    request_id: uuid.UUID
    payload: EncodedPayload


@frozen(eq=False, repr=False)
class Heartbeat(Value):
    """
    C{heartbeat}: answer with L{HeartbeatAck} on the same transport.
    """

    op: ClassVar[str] = "heartbeat"


@frozen(eq=False, repr=False)
class UnknownMessage(Value):
    """
    A message whose C{op} this version does not know (or that belongs to the other
    direction). Decoding never fails just because of an unknown op.

    @ivar op: the C{op} string.
    @ivar fields: every other top-level key.
    """

    op: str
    fields: Mapping[str, object] = field(factory=dict)


@frozen(eq=False, repr=False)
class StreamChunk(Value):
    """
    C{stream_chunk} (EXTENSIONS.md X1, both directions): one piece of a streamed body.
    Build and open them with L{pywatt_twisted.wire.stream.make_chunk} and
    L{pywatt_twisted.wire.stream.open_chunk}.

    @ivar data: the bytes as carried (the gzip of the piece when C{compressed}); base64
        on the wire.
    @ivar checksum: CRC-32 of the uncompressed bytes, unsigned.
    @ivar is_final: the last chunk of the body (its data may be empty).
    """

    op: ClassVar[str] = "stream_chunk"
    stream_id: str
    sequence: int
    data: bytes
    compressed: bool = False
    checksum: int = 0
    is_final: bool = False


@frozen(eq=False, repr=False)
class StreamAck(Value):
    """
    C{stream_ack} (X1, both directions): the receiver consumed the chunks up to
    C{sequence} (acks are cumulative), or, with C{success} false, refuses chunk
    C{sequence} for C{error}.
    """

    op: ClassVar[str] = "stream_ack"
    stream_id: str
    sequence: int
    success: bool = True
    error: str | None = None


@frozen(eq=False, repr=False)
class StreamCancel(Value):
    """
    C{stream_cancel} (X1, both directions): either side ends the stream now.
    """

    op: ClassVar[str] = "stream_cancel"
    stream_id: str
    reason: str


ModuleMessage = (
    Announce
    | GetSecret
    | RotationAck
    | RegisterServiceProvider
    | DiscoverServiceProviders
    | ServiceRequest
    | ServiceOperation
    | HttpResponse
    | PortRequest
    | RouteToModule
    | HeartbeatAck
    | Identify
    | RoutedModuleReply
    | StreamChunk
    | StreamAck
    | StreamCancel
    | UnknownMessage
)
"""A message a module sends to the orchestrator."""

OrchestratorMessage = (
    Init
    | SecretMessage
    | Rotated
    | Shutdown
    | RegisterServiceProviderResponse
    | DiscoverServiceProvidersResponse
    | ServiceResponse
    | ServiceOperationResult
    | HttpRequest
    | PortResponse
    | RoutedModuleMessage
    | RoutedModuleResponse
    | Heartbeat
    | StreamChunk
    | StreamAck
    | StreamCancel
    | UnknownMessage
)
"""A message the orchestrator sends to a module."""

Message = ModuleMessage | OrchestratorMessage
"""Any protocol message."""


@frozen(eq=False, repr=False)
class Envelope(Value):
    """
    The C{Message<T>} envelope of the framed channels: C{{"id","content","metadata"}}.

    @ivar id: the envelope's uuid; C{None} when the input had none (bare messages, the
        stdout C{http_response} wrapper).
    """

    id: uuid.UUID | None
    content: Message
    metadata: Metadata = field(factory=Metadata)
