# -*- test-case-name: tests.wire.test_registration -*-
"""
The optional "registration" protocol (PROTOCOL.md 6.10) and HTTP-over-TCP (6.11).

Both run over framed TCP connections (L{pywatt_twisted.wire.framing}). Requests go out
enveloped (C{{"id", "content", "metadata": {"id": uuid-string}}}); registration responses
come back bare. HTTP-over-TCP is enveloped both ways.

Nothing in the stdio bootstrap uses these; they exist for orchestrators that serve them.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final

from attrs import field, frozen

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire import _json
from pywatt_twisted.wire.codec import (
    _bad,
    _bool,
    _describe,
    _object,
    _opt_bytes,
    _opt_str,
    _opt_str_map,
    _path,
    _plain_json,
    _plain_map,
    _str,
    _str_list,
    _str_map,
    _uint,
    _uuid,
    _uuid_value,
    decode_json_object,
)

__all__ = [
    "Capabilities",
    "CapabilitiesRequest",
    "CapabilitiesResponse",
    "EndpointInfo",
    "HealthStatus",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "HttpTcpRequest",
    "HttpTcpResponse",
    "ModuleInfo",
    "RegisterRequest",
    "RegisterResponse",
    "RegisteredModule",
    "RegistrationRequest",
    "RegistrationResponse",
    "UnregisterRequest",
    "UnregisterResponse",
    "decode_http_tcp_request",
    "decode_http_tcp_response",
    "decode_registration_request",
    "decode_registration_response",
    "encode_http_tcp_request",
    "encode_http_tcp_response",
    "encode_registration_request",
    "encode_registration_response",
]


class HealthStatus(enum.Enum):
    """
    A module's health in registration heartbeats.
    """

    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return value if type(value) is tuple else tuple(value)


def _opt_str_tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else _str_tuple(value)


@frozen
class ModuleInfo:
    """
    What a module says about itself when registering.
    """

    name: str
    version: str
    description: str
    id: uuid.UUID | None = None
    metadata: Mapping[str, str] | None = None


@frozen
class RegisteredModule:
    """
    The orchestrator's answer to a successful registration.
    """

    info: ModuleInfo
    id: uuid.UUID
    token: str = field(repr=False)
    orchestrator_host: str
    orchestrator_port: int
    env: Mapping[str, str] | None = None
    additional_data: Mapping[str, object] | None = None


@frozen
class EndpointInfo:
    """
    One endpoint in a capabilities advertisement.
    """

    path: str
    methods: tuple[str, ...] = field(converter=_str_tuple)
    auth: str | None = None
    metadata: Mapping[str, str] | None = None


def _endpoint_tuple(value: Iterable[EndpointInfo]) -> tuple[EndpointInfo, ...]:
    return value if type(value) is tuple else tuple(value)


@frozen
class Capabilities:
    """
    What a registered module offers.
    """

    endpoints: tuple[EndpointInfo, ...] = field(converter=_endpoint_tuple)
    message_types: tuple[str, ...] | None = field(default=None, converter=_opt_str_tuple)
    additional_capabilities: Mapping[str, object] | None = None


@frozen
class RegisterRequest:
    """
    C{request_type: "register"}.
    """

    request_type: ClassVar[str] = "register"
    module_info: ModuleInfo


@frozen
class HeartbeatRequest:
    """
    C{request_type: "heartbeat"}.
    """

    request_type: ClassVar[str] = "heartbeat"
    module_id: uuid.UUID
    token: str = field(repr=False)
    status: HealthStatus
    details: Mapping[str, str] | None = None


@frozen
class CapabilitiesRequest:
    """
    C{request_type: "capabilities"}.
    """

    request_type: ClassVar[str] = "capabilities"
    module_id: uuid.UUID
    token: str = field(repr=False)
    capabilities: Capabilities


@frozen
class UnregisterRequest:
    """
    C{request_type: "unregister"}.
    """

    request_type: ClassVar[str] = "unregister"
    module_id: uuid.UUID
    token: str = field(repr=False)


@frozen
class RegisterResponse:
    """
    C{response_type: "register"}. A success without C{module} counts as a rejection.
    """

    response_type: ClassVar[str] = "register"
    success: bool
    error: str | None = None
    module: RegisteredModule | None = None


@frozen
class HeartbeatResponse:
    """
    C{response_type: "heartbeat"}.
    """

    response_type: ClassVar[str] = "heartbeat"
    success: bool
    status: HealthStatus
    error: str | None = None
    context: Mapping[str, str] | None = None


@frozen
class CapabilitiesResponse:
    """
    C{response_type: "capabilities"}.
    """

    response_type: ClassVar[str] = "capabilities"
    success: bool
    error: str | None = None


@frozen
class UnregisterResponse:
    """
    C{response_type: "unregister"}.
    """

    response_type: ClassVar[str] = "unregister"
    success: bool
    error: str | None = None


RegistrationRequest = RegisterRequest | HeartbeatRequest | CapabilitiesRequest | UnregisterRequest
RegistrationResponse = (
    RegisterResponse | HeartbeatResponse | CapabilitiesResponse | UnregisterResponse
)


@frozen
class HttpTcpRequest:
    """
    An HTTP request over the HTTP-over-TCP protocol (always enveloped).
    """

    request_id: str
    method: str
    uri: str
    headers: Mapping[str, str]
    body: bytes | None = None


@frozen
class HttpTcpResponse:
    """
    The reply to an L{HttpTcpRequest} (always enveloped).
    """

    request_id: str
    status_code: int
    headers: Mapping[str, str]
    body: bytes | None = None


# ---------------------------------------------------------------------------------------
# Encoding


def _module_info_out(info: ModuleInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": info.name,
        "version": info.version,
        "description": info.description,
    }
    if info.id is not None:
        out["id"] = str(info.id)
    if info.metadata is not None:
        out["metadata"] = _plain_map(info.metadata)
    return out


def _request_out(request: RegistrationRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"request_type": request.request_type}
    if isinstance(request, RegisterRequest):
        out["module_info"] = _module_info_out(request.module_info)
        return out
    out["module_id"] = str(request.module_id)
    out["token"] = request.token
    if isinstance(request, HeartbeatRequest):
        out["status"] = request.status.value
        if request.details is not None:
            out["details"] = _plain_map(request.details)
    elif isinstance(request, CapabilitiesRequest):
        caps = request.capabilities
        endpoints = []
        for e in caps.endpoints:
            item: dict[str, Any] = {"path": e.path, "methods": list(e.methods)}
            if e.auth is not None:
                item["auth"] = e.auth
            if e.metadata is not None:
                item["metadata"] = _plain_map(e.metadata)
            endpoints.append(item)
        caps_out: dict[str, Any] = {"endpoints": endpoints}
        if caps.message_types is not None:
            caps_out["message_types"] = list(caps.message_types)
        if caps.additional_capabilities is not None:
            caps_out["additional_capabilities"] = _plain_json(caps.additional_capabilities)
        out["capabilities"] = caps_out
    return out


def _envelope(content: dict[str, Any], id: uuid.UUID | None, metadata: dict[str, Any]) -> bytes:
    return _json.dumps(
        {"id": str(uuid.uuid4() if id is None else id), "content": content, "metadata": metadata}
    )


def encode_registration_request(
    request: RegistrationRequest,
    id: uuid.UUID | None = None,
    metadata_id: uuid.UUID | str | None = None,
) -> bytes:
    """
    Encode a registration request in its envelope, with C{metadata.id} set as the Rust
    client does.

    @param id: the envelope id (fresh uuid4 when C{None}).
    @param metadata_id: C{metadata.id} (fresh uuid4 string when C{None}).
    """
    meta = str(uuid.uuid4() if metadata_id is None else metadata_id)
    return _envelope(_request_out(request), id, {"id": meta})


def _response_out(response: RegistrationResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"response_type": response.response_type, "success": response.success}
    if response.error is not None:
        out["error"] = response.error
    if isinstance(response, RegisterResponse):
        module = response.module
        if module is not None:
            m: dict[str, Any] = {
                "info": _module_info_out(module.info),
                "id": str(module.id),
                "token": module.token,
                "orchestrator_host": module.orchestrator_host,
                "orchestrator_port": module.orchestrator_port,
            }
            if module.env is not None:
                m["env"] = _plain_map(module.env)
            if module.additional_data is not None:
                m["additional_data"] = _plain_json(module.additional_data)
            out["module"] = m
    elif isinstance(response, HeartbeatResponse):
        out["status"] = response.status.value
        if response.context is not None:
            out["context"] = _plain_map(response.context)
    return out


def encode_registration_response(response: RegistrationResponse) -> bytes:
    """
    Encode a registration response, bare (the orchestrator side; used by test fakes).
    """
    return _json.dumps(_response_out(response))


def _http_out(message: HttpTcpRequest | HttpTcpResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"request_id": message.request_id}
    if isinstance(message, HttpTcpRequest):
        out["method"] = message.method
        out["uri"] = message.uri
    else:
        out["status_code"] = message.status_code
    out["headers"] = _plain_map(message.headers)
    if message.body is not None:
        out["body"] = list(message.body)
    return out


def encode_http_tcp_request(request: HttpTcpRequest, id: uuid.UUID | None = None) -> bytes:
    """
    Encode an HTTP-over-TCP request envelope (C{body} omitted when C{None}).
    """
    return _envelope(_http_out(request), id, {})


def encode_http_tcp_response(response: HttpTcpResponse, id: uuid.UUID | None = None) -> bytes:
    """
    Encode an HTTP-over-TCP response envelope (C{body} omitted when C{None}).
    """
    return _envelope(_http_out(response), id, {})


# ---------------------------------------------------------------------------------------
# Decoding


def _health(obj: Mapping[str, Any], key: str, ctx: str) -> HealthStatus:
    value = obj.get(key)
    for status in HealthStatus:
        if value == status.value:
            return status
    raise ProtocolError(
        'expected "Healthy", "Degraded" or "Unhealthy", got '
        + (f"{value[:40]!r}" if type(value) is str else _describe(value)),
        field=_path(ctx, key),
    )


def _opt_uuid(obj: Mapping[str, Any], key: str, ctx: str) -> uuid.UUID | None:
    value = obj.get(key)
    return None if value is None else _uuid_value(value, _path(ctx, key))


def _opt_object(obj: Mapping[str, Any], key: str, ctx: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not dict:
        raise _bad(ctx, key, "an object or null", value)
    return value


def _module_info(value: object, path: str) -> ModuleInfo:
    obj = _object(value, path)
    return ModuleInfo(
        _str(obj, "name", path),
        _str(obj, "version", path),
        _str(obj, "description", path),
        _opt_uuid(obj, "id", path),
        _opt_str_map(obj, "metadata", path),
    )


def _capabilities(value: object, path: str) -> Capabilities:
    obj = _object(value, path)
    endpoints_value = obj.get("endpoints")
    if type(endpoints_value) is not list:
        raise _bad(path, "endpoints", "an array of endpoints", endpoints_value)
    endpoints = []
    for i, item in enumerate(endpoints_value):
        item_path = f"{path}.endpoints[{i}]"
        e = _object(item, item_path)
        endpoints.append(
            EndpointInfo(
                _str(e, "path", item_path),
                _str_list(e, "methods", item_path),
                _opt_str(e, "auth", item_path),
                _opt_str_map(e, "metadata", item_path),
            )
        )
    message_types = (
        None if obj.get("message_types") is None else _str_list(obj, "message_types", path)
    )
    return Capabilities(
        tuple(endpoints), message_types, _opt_object(obj, "additional_capabilities", path)
    )


def _d_register(obj: Mapping[str, Any], ctx: str) -> RegisterRequest:
    return RegisterRequest(_module_info(obj.get("module_info"), _path(ctx, "module_info")))


def _d_heartbeat(obj: Mapping[str, Any], ctx: str) -> HeartbeatRequest:
    return HeartbeatRequest(
        _uuid(obj, "module_id", ctx),
        _str(obj, "token", ctx),
        _health(obj, "status", ctx),
        _opt_str_map(obj, "details", ctx),
    )


def _d_capabilities(obj: Mapping[str, Any], ctx: str) -> CapabilitiesRequest:
    return CapabilitiesRequest(
        _uuid(obj, "module_id", ctx),
        _str(obj, "token", ctx),
        _capabilities(obj.get("capabilities"), _path(ctx, "capabilities")),
    )


def _d_unregister(obj: Mapping[str, Any], ctx: str) -> UnregisterRequest:
    return UnregisterRequest(_uuid(obj, "module_id", ctx), _str(obj, "token", ctx))


_REQUEST_DECODERS: Final[dict[str, Callable[[Mapping[str, Any], str], RegistrationRequest]]] = {
    "register": _d_register,
    "heartbeat": _d_heartbeat,
    "capabilities": _d_capabilities,
    "unregister": _d_unregister,
}


def _unwrap(obj: Mapping[str, Any], tag: str) -> Mapping[str, Any]:
    if tag not in obj:
        content = obj.get("content")
        if type(content) is dict:
            if "id" in obj and obj["id"] is not None:
                _uuid_value(obj["id"], "id")
            return content
    return obj


def decode_registration_request(
    data: bytes | str | Mapping[str, Any],
) -> RegistrationRequest:
    """
    Decode a registration request (enveloped, or bare).

    @raise ProtocolError: on invalid input or an unknown C{request_type}.
    """
    obj = _unwrap(decode_json_object(data), "request_type")
    kind = obj.get("request_type")
    decoder = _REQUEST_DECODERS.get(kind) if type(kind) is str else None
    if decoder is None:
        raise ProtocolError(
            'expected "register", "heartbeat", "capabilities" or "unregister", got '
            + (f"{kind[:40]!r}" if type(kind) is str else _describe(kind)),
            field="request_type",
        )
    return decoder(obj, str(kind))


def decode_registration_response(
    data: bytes | str | Mapping[str, Any],
) -> RegistrationResponse:
    """
    Decode a registration response (bare, or enveloped leniently).

    @raise ProtocolError: on invalid input or an unknown C{response_type}.
    """
    obj = _unwrap(decode_json_object(data), "response_type")
    kind = obj.get("response_type")
    ctx = kind if type(kind) is str else "response"
    if kind == "register":
        module_value = obj.get("module")
        module = None
        if module_value is not None:
            path = "register.module"
            m = _object(module_value, path)
            module = RegisteredModule(
                _module_info(m.get("info"), f"{path}.info"),
                _uuid(m, "id", path),
                _str(m, "token", path),
                _str(m, "orchestrator_host", path),
                _uint(m, "orchestrator_port", path, 65535),
                _opt_str_map(m, "env", path),
                _opt_object(m, "additional_data", path),
            )
        return RegisterResponse(_bool(obj, "success", ctx), _opt_str(obj, "error", ctx), module)
    if kind == "heartbeat":
        return HeartbeatResponse(
            _bool(obj, "success", ctx),
            _health(obj, "status", ctx),
            _opt_str(obj, "error", ctx),
            _opt_str_map(obj, "context", ctx),
        )
    if kind == "capabilities":
        return CapabilitiesResponse(_bool(obj, "success", ctx), _opt_str(obj, "error", ctx))
    if kind == "unregister":
        return UnregisterResponse(_bool(obj, "success", ctx), _opt_str(obj, "error", ctx))
    raise ProtocolError(
        'expected "register", "heartbeat", "capabilities" or "unregister", got '
        + (f"{kind[:40]!r}" if type(kind) is str else _describe(kind)),
        field="response_type",
    )


def _http_content(data: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    obj = decode_json_object(data)
    _uuid(obj, "id", "")
    return _object(obj.get("content"), "content")


def decode_http_tcp_request(data: bytes | str | Mapping[str, Any]) -> HttpTcpRequest:
    """
    Decode an HTTP-over-TCP request envelope (its C{id} must be a UUID, as in Rust).
    """
    content = _http_content(data)
    return HttpTcpRequest(
        _str(content, "request_id", "content"),
        _str(content, "method", "content"),
        _str(content, "uri", "content"),
        _str_map(content, "headers", "content"),
        _opt_bytes(content, "body", "content"),
    )


def decode_http_tcp_response(data: bytes | str | Mapping[str, Any]) -> HttpTcpResponse:
    """
    Decode an HTTP-over-TCP response envelope.
    """
    content = _http_content(data)
    return HttpTcpResponse(
        _str(content, "request_id", "content"),
        _uint(content, "status_code", "content", 65535),
        _str_map(content, "headers", "content"),
        _opt_bytes(content, "body", "content"),
    )
