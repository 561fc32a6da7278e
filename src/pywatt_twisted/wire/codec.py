# -*- test-case-name: tests.wire.test_codec -*-
"""
JSON encoding and decoding of every PyWatt message.

Rules (PROTOCOL.md sections 2-6, summarised in C{docs/protocol.md}):

  - B{Emit the Rust form}: compact JSON, fields in Rust declaration order, C{Option}
    fields omitted or C{null} exactly as serde does, bytes as arrays of integers, uuids
    lowercase and hyphenated, non-ASCII left as UTF-8.
  - B{Accept the Rust and the Python forms}: bare or enveloped messages, flat or nested
    (C{{"op": "secret", "secret": {...}}}) ops, explicit C{null}s, C{"Custom(x)"} service
    types, C{{host, port}} channel configs, C{{"Unix": path}} listen addresses, strings
    where bytes are expected (read as UTF-8 text).
  - B{Never fail on an unknown op}: it decodes as L{UnknownMessage}.
  - Anything else that is invalid raises L{ProtocolError} naming the field and the
    reason, e.g. C{"http_request.headers: expected an object of strings, got array"}.
    Messages never quote string values (they may be secrets), only their type.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypeVar

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire import _json
from pywatt_twisted.wire._routed_in import id_and_json_payload, with_fast_path
from pywatt_twisted.wire._value import unfrozen
from pywatt_twisted.wire.init import (
    InitBlob,
    IpcChannelConfig,
    SecurityLevel,
    TcpChannelConfig,
    parse_host_port,
    parse_listen,
)
from pywatt_twisted.wire.messages import (
    PAYLOAD_FORMATS,
    Announce,
    DiscoverServiceProviders,
    DiscoverServiceProvidersResponse,
    EncodedPayload,
    Endpoint,
    Envelope,
    GetSecret,
    Heartbeat,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    Identify,
    Init,
    Message,
    Metadata,
    ModuleMessage,
    OrchestratorMessage,
    PortRequest,
    PortResponse,
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    Rotated,
    RotationAck,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
    SecretMessage,
    ServiceOperation,
    ServiceOperationResult,
    ServiceProviderInfo,
    ServiceRequest,
    ServiceResponse,
    ServiceType,
    Shutdown,
    StreamAck,
    StreamCancel,
    StreamChunk,
    UnknownMessage,
)


class _B64Decode(Protocol):
    def __call__(self, s: str | bytes, *, validate: bool) -> bytes: ...


class _B64Encode(Protocol):
    def __call__(self, s: bytes, /) -> bytes: ...


# The part of the two base64 modules' APIs this codec uses (their full signatures differ).
_b64decode: _B64Decode
_b64encode: _B64Encode
try:
    # SIMD base64 (about 40x the stdlib's speed): a streamed body is base64 in JSON
    # (X1), so this is most of the per-byte cost of a stream_chunk.
    from pybase64 import b64decode as _b64decode
    from pybase64 import b64encode as _b64encode
except ImportError:  # pragma: no cover - pybase64 is a dependency; stdlib as a fallback
    from base64 import b64decode as _b64decode
    from base64 import b64encode as _b64encode

__all__ = [
    "JSON_BACKEND",
    "MODULE_OPS",
    "ORCHESTRATOR_OPS",
    "decode_envelope_from_module",
    "decode_envelope_from_orchestrator",
    "decode_from_module",
    "decode_from_orchestrator",
    "decode_init",
    "decode_json_object",
    "encode",
    "encode_envelope",
    "encode_init",
    "encode_line",
    "encode_stdout_http_response",
    "encode_stream_chunk_parts",
    "to_json_object",
]

JSON_BACKEND: Final = _json.BACKEND
"""C{"orjson"} or C{"json"}: the JSON library in use."""

_Obj = Mapping[str, Any]
_T = TypeVar("_T")
_MISSING: Final[Any] = object()


# ---------------------------------------------------------------------------------------
# Field readers. `ctx` is the dotted path of the object being read ("http_request").


def _describe(value: object) -> str:
    if value is _MISSING:
        return "nothing (the key is missing)"
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _path(ctx: str, key: str) -> str:
    return f"{ctx}.{key}" if ctx else key


def _bad(ctx: str, key: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(f"expected {expected}, got {_describe(value)}", field=_path(ctx, key))


def _str(obj: _Obj, key: str, ctx: str) -> str:
    value = obj.get(key, _MISSING)
    if type(value) is str:
        return value
    raise _bad(ctx, key, "a string", value)


def _opt_str(obj: _Obj, key: str, ctx: str) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise _bad(ctx, key, "a string or null", value)


def _bool(obj: _Obj, key: str, ctx: str) -> bool:
    value = obj.get(key, _MISSING)
    if value is True or value is False:
        return value
    raise _bad(ctx, key, "true or false", value)


def _bool_default(obj: _Obj, key: str, ctx: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if value is True or value is False:
        return value
    raise _bad(ctx, key, "true or false", value)


def _opt_bool(obj: _Obj, key: str, ctx: str) -> bool | None:
    value = obj.get(key)
    if value is None or value is True or value is False:
        return value
    raise _bad(ctx, key, "true, false or null", value)


def _uint(obj: _Obj, key: str, ctx: str, maximum: int) -> int:
    value = obj.get(key, _MISSING)
    if type(value) is int and 0 <= value <= maximum:
        return value
    raise _bad(ctx, key, f"an integer from 0 to {maximum}", value)


def _opt_uint(obj: _Obj, key: str, ctx: str, maximum: int) -> int | None:
    value = obj.get(key)
    if value is None or (type(value) is int and 0 <= value <= maximum):
        return value
    raise _bad(ctx, key, f"an integer from 0 to {maximum} or null", value)


def _str_map_value(value: object, path: str) -> dict[str, str]:
    if isinstance(value, Mapping):
        if type(value) is not dict:
            value = dict(value)
        for item in value.values():
            if type(item) is not str:
                raise ProtocolError(
                    f"expected an object of strings, got an object holding {_describe(item)}",
                    field=path,
                )
        return value
    raise ProtocolError(f"expected an object of strings, got {_describe(value)}", field=path)


def _str_map(obj: _Obj, key: str, ctx: str) -> dict[str, str]:
    return _str_map_value(obj.get(key, _MISSING), _path(ctx, key))


def _opt_str_map(obj: _Obj, key: str, ctx: str) -> dict[str, str] | None:
    value = obj.get(key)
    if value is None:
        return None
    return _str_map_value(value, _path(ctx, key))


def _str_list(obj: _Obj, key: str, ctx: str) -> tuple[str, ...]:
    value = obj.get(key, _MISSING)
    if type(value) is list:
        for item in value:
            if type(item) is not str:
                raise ProtocolError(
                    f"expected an array of strings, got an array holding {_describe(item)}",
                    field=_path(ctx, key),
                )
        return tuple(value)
    raise _bad(ctx, key, "an array of strings", value)


def _bytes_value(value: object, path: str) -> bytes:
    if type(value) is list:
        try:
            # bytearray() reads a list of ints in C at half the cost of bytes() (per
            # int, one index conversion instead of three calls; 1 KiB: 36 k instructions
            # against 78 k), and the copy into bytes is one memcpy
            return bytes(bytearray(value))
        except (ValueError, TypeError):
            raise ProtocolError(
                "expected an array of integers from 0 to 255, got an array holding something else",
                field=path,
            )
    if type(value) is str:
        # Python SDK (pydantic v2) writes bytes as a UTF-8 string; read it back the same way.
        return value.encode("utf-8", "surrogatepass")
    raise ProtocolError(
        f"expected an array of integers from 0 to 255 (or a string), got {_describe(value)}",
        field=path,
    )


def _opt_bytes(obj: _Obj, key: str, ctx: str) -> bytes | None:
    value = obj.get(key)
    if value is None:
        return None
    return _bytes_value(value, _path(ctx, key))


def _opt_object(obj: _Obj, key: str, ctx: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None or type(value) is dict:
        return value
    raise _bad(ctx, key, "an object or null", value)


def _base64(obj: _Obj, key: str, ctx: str) -> bytes:
    value = obj.get(key, _MISSING)
    if type(value) is _RawBase64:
        value = value.raw
    elif type(value) is not str:
        raise _bad(ctx, key, "a base64 string", value)
    try:
        return _b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "expected a base64 string (RFC 4648, with padding), got invalid base64",
            field=_path(ctx, key),
        ) from None


_UUID: Final = uuid.UUID
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown
# The hot decoders build a few immutable values as unfrozen twins whose class is then
# switched (wire._value.unfrozen): the same object as the constructor makes (none of
# these has a validator or converter to skip), at about a third of the cost of a frozen
# __init__. A request id is a uuid.UUID as uuid.UUID(int=...) makes it.
_UnfrozenUUID: Final = unfrozen(_UUID)
_UnfrozenPayload: Final = unfrozen(EncodedPayload)
_UnfrozenResponse: Final = unfrozen(RoutedModuleResponse)


def _uuid_of(number: int) -> uuid.UUID:
    """
    C{uuid.UUID(int=number)} for a C{number} known to fit in 128 bits, without the
    constructor's checks.
    """
    parsed = _UnfrozenUUID()
    parsed.int = number
    parsed.is_safe = _SAFE_UNKNOWN
    parsed.__class__ = _UUID
    return parsed  # type: ignore[no-any-return]


def _uuid_value(value: object, path: str) -> uuid.UUID:
    if type(value) is str:
        if len(value) == 36 and value[8] == value[13] == value[18] == value[23] == "-":
            # The canonical form, as every peer writes it: what uuid.UUID(value) does
            # for it (drop the hyphens, 32 hex digits, int), without the checks for the
            # other forms it accepts (urn:, braces): about 3x cheaper. Anything else
            # takes the full parser below.
            digits = value.replace("-", "")
            if len(digits) == 32:
                try:
                    number = int(digits, 16)
                except ValueError:
                    pass
                else:
                    return _uuid_of(number)
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
        raise ProtocolError(
            "expected a UUID string such as '3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f', "
            "got a string that is not a UUID",
            field=path,
        )
    raise ProtocolError(f"expected a UUID string, got {_describe(value)}", field=path)


def _uuid(obj: _Obj, key: str, ctx: str) -> uuid.UUID:
    value = obj.get(key, _MISSING)
    if type(value) is str and len(value) == 36 and value[8] == value[13] == value[18] == "-":
        # The canonical form (see _uuid_value), inline: this runs for every routed
        # message and reply, and the error path is built only when it is needed.
        digits = value.replace("-", "")
        if len(digits) == 32 and value[23] == "-":
            try:
                number = int(digits, 16)
            except ValueError:
                pass
            else:
                return _uuid_of(number)
    return _uuid_value(value, _path(ctx, key))


def _object(value: object, path: str) -> _Obj:
    if isinstance(value, Mapping):
        return value
    raise ProtocolError(f"expected an object, got {_describe(value)}", field=path)


def _required(obj: _Obj, key: str, ctx: str) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise _bad(ctx, key, "a JSON value", value)
    return value


_BUILTIN_SERVICE_TYPES: Final = {
    "database": ServiceType.DATABASE,
    "cache": ServiceType.CACHE,
    "jwt": ServiceType.JWT,
}


def _service_type_value(value: object, path: str) -> ServiceType:
    if type(value) is str:
        builtin = _BUILTIN_SERVICE_TYPES.get(value.lower())
        if builtin is not None:
            return builtin
        if value.startswith("Custom(") and value.endswith(")"):
            return ServiceType.custom(value[7:-1])
        if value.startswith("custom:"):
            return ServiceType.custom(value[7:])
    elif isinstance(value, Mapping) and len(value) == 1:
        name = value.get("Custom")
        if type(name) is str:
            return ServiceType.custom(name)
    raise ProtocolError(
        'expected "Database", "Cache", "Jwt", {"Custom": name} or "Custom(name)", got '
        + (f"{value[:40]!r}" if type(value) is str else _describe(value)),
        field=path,
    )


def _service_type(obj: _Obj, key: str, ctx: str) -> ServiceType:
    return _service_type_value(obj.get(key, _MISSING), _path(ctx, key))


_PAYLOAD_FORMAT_NAMES: Final = {name.lower(): name for name in PAYLOAD_FORMATS}


def _payload(obj: _Obj, key: str, ctx: str) -> EncodedPayload:
    value = obj.get(key, _MISSING)
    if type(value) is dict:
        # The common shape, checked without building the error paths up front.
        data = value.get("data", _MISSING)
        fmt = value.get("format", "Json")
        if type(data) is list and type(fmt) is str:
            name = _PAYLOAD_FORMAT_NAMES.get(fmt.lower())
            if name is not None:
                try:
                    raw = bytes(data)
                except (ValueError, TypeError):
                    pass  # not all bytes: the full reader below says which field
                else:
                    payload = _UnfrozenPayload()  # EncodedPayload(raw, name)
                    payload.data = raw
                    payload.format = name
                    payload.__class__ = EncodedPayload
                    return payload  # type: ignore[no-any-return]
    path = _path(ctx, key)
    value = _object(value, path)
    data = _bytes_value(value.get("data", _MISSING), f"{path}.data")
    fmt = value.get("format", "Json")
    if type(fmt) is str:
        name = _PAYLOAD_FORMAT_NAMES.get(fmt.lower())
        if name is not None:
            return EncodedPayload(data, name)
    raise ProtocolError(
        'expected "Json", "Binary", "Base64" or "Auto", got '
        + (f"{fmt[:40]!r}" if type(fmt) is str else _describe(fmt)),
        field=f"{path}.format",
    )


# ---------------------------------------------------------------------------------------
# Init blob


def _tcp_channel(value: object, path: str) -> TcpChannelConfig:
    obj = _object(value, path)
    tls = _bool_default(obj, "tls_enabled", path, False)
    required = _bool_default(obj, "required", path, False)
    address = obj.get("address")
    if address is not None:
        if type(address) is not str:
            raise _bad(path, "address", "an 'ip:port' string", address)
        host, port = parse_host_port(address, f"{path}.address")
        return TcpChannelConfig(host, port, tls, required)
    host_value = obj.get("host", _MISSING)
    if host_value is _MISSING:
        raise ProtocolError(
            "expected 'address' (\"ip:port\") or 'host' and 'port', got neither", field=path
        )
    if type(host_value) is not str or not host_value:
        raise _bad(path, "host", "a non-empty string", host_value)
    port = _uint(obj, "port", path, 65535)
    host = host_value
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return TcpChannelConfig(host, port, tls, required)


def _ipc_channel(value: object, path: str) -> IpcChannelConfig:
    obj = _object(value, path)
    socket_path = _str(obj, "socket_path", path)
    return IpcChannelConfig(socket_path, _bool_default(obj, "required", path, False))


_SECURITY_LEVELS: Final = {level.value: level for level in SecurityLevel}


def _init_blob(obj: _Obj, ctx: str) -> InitBlob:
    env_value = obj.get("env")
    env = {} if env_value is None else _str_map_value(env_value, _path(ctx, "env"))
    listen_value = obj.get("listen")
    listen = None if listen_value is None else parse_listen(listen_value, _path(ctx, "listen"))
    tcp_value = obj.get("tcp_channel")
    tcp = None if tcp_value is None else _tcp_channel(tcp_value, _path(ctx, "tcp_channel"))
    ipc_value = obj.get("ipc_channel")
    ipc = None if ipc_value is None else _ipc_channel(ipc_value, _path(ctx, "ipc_channel"))
    level_value = obj.get("security_level")
    if level_value is None:
        level = SecurityLevel.NONE
    else:
        found = _SECURITY_LEVELS.get(level_value) if type(level_value) is str else None
        if found is None:
            raise ProtocolError(
                'expected "None", "Token" or "Mtls", got '
                + (f"{level_value[:40]!r}" if type(level_value) is str else _describe(level_value)),
                field=_path(ctx, "security_level"),
            )
        level = found
    return InitBlob(
        orchestrator_api=_str(obj, "orchestrator_api", ctx),
        module_id=_str(obj, "module_id", ctx),
        env=env,
        listen=listen,
        tcp_channel=tcp,
        ipc_channel=ipc,
        auth_token=_opt_str(obj, "auth_token", ctx),
        security_level=level,
        debug_mode=_bool_default(obj, "debug_mode", ctx, False),
        log_level=_opt_str(obj, "log_level", ctx),
        extensions=_opt_object(obj, "extensions", ctx),
        ipc_only=_bool_default(obj, "ipc_only", ctx, False),
    )


class _RawBase64:
    """
    The base64 text of a C{stream_chunk}'s C{data}, as a view of the message's bytes
    (L{_chunk_object}): decoded by L{_base64} without becoming a Python string or
    being copied out of the message.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes | memoryview) -> None:
        self.raw = raw


#: Messages at least this long are checked for the L{_chunk_object} fast path.
_CHUNK_FAST_PATH_MIN: Final = 16384
_DATA_KEY: Final = b'"data":"'


def _chunk_object(data: bytes) -> _Obj | None:
    """
    A large C{stream_chunk} (bare, or as an envelope's C{content}) parsed without
    parsing its C{data} string, which is most of its bytes: the one C{"data":"}
    in the text is found, the JSON around it is parsed with an empty string in its
    place, and the base64 text is kept as bytes (L{_RawBase64}). C{None} when that
    cannot be done surely (a JSON escape anywhere, no such key or more than one, the
    key not the chunk's own): the caller parses it all.

    Why it is sure: with no backslash in the text there is no escape, so every C{"}
    opens or closes a string and a key can only be spelled one way; a C{"data":"} is
    then a key and the start of its string value, the next C{"} ends it, and when the
    rest holds no other C{"data"} (C{"data" : ""} with spaces, or C{"d\\u0061ta"},
    would be a second key, which the full parse keeps instead) it is the only one.
    """
    if data.find(b"\\") != -1:
        return None
    start = data.find(_DATA_KEY)
    if start <= 0:
        return None
    value_start = start + len(_DATA_KEY)
    value_end = data.find(b'"', value_start)
    if value_end < 0:
        return None
    rest = data[:value_start] + data[value_end:]  # (short: all but the base64)
    if rest.count(b'"data"') != 1:
        return None
    try:
        obj = _json.loads(rest)
    except _json.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    target = obj
    if obj.get("op") != "stream_chunk":
        content = obj.get("content")
        if type(content) is not dict or content.get("op") != "stream_chunk":
            return None
        target = content
    if target.get("data") != "":
        return None
    # (a view, not a slice: the base64 is read where it is, never copied)
    target["data"] = _RawBase64(memoryview(data)[value_start:value_end])
    return obj


def decode_json_object(data: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> _Obj:
    """
    Parse C{data} as one JSON object (a mapping is returned as is).

    @raise ProtocolError: if it is not JSON, or not an object.
    """
    if type(data) is not bytes and isinstance(data, Mapping):
        return data
    if type(data) is bytes and len(data) >= _CHUNK_FAST_PATH_MIN:
        chunk = _chunk_object(data)
        if chunk is not None:
            return chunk
    try:
        value = _json.loads(data)
    except _json.JSONDecodeError as e:
        raise ProtocolError(f"expected one JSON object, got invalid JSON ({e})") from None
    if type(value) is not dict:
        raise ProtocolError(f"expected one JSON object, got {_describe(value)}")
    return value


def decode_init(data: bytes | str | Mapping[str, Any]) -> InitBlob:
    """
    Decode the init line (the first stdin line): a bare C{InitBlob}, also accepted with
    C{"op": "init"}, and in the Python SDK's shapes. Unknown keys are ignored.

    @raise ProtocolError: naming the field, on invalid input.
    """
    obj = decode_json_object(data)
    op = obj.get("op")
    if op is not None:
        if op != "init":
            raise ProtocolError(
                'expected the init blob (optionally tagged "op": "init"), got a message '
                + (f"with op {op[:40]!r}" if type(op) is str else f"whose op is {_describe(op)}"),
                field="op",
            )
        nested = obj.get("init")
        if type(nested) is dict:
            obj = nested
    return _init_blob(obj, "")


def _init_to_obj(blob: InitBlob) -> dict[str, Any]:
    out: dict[str, Any] = {
        "orchestrator_api": blob.orchestrator_api,
        "module_id": blob.module_id,
        "env": _plain_map(blob.env),
    }
    if blob.listen is not None:
        out["listen"] = str(blob.listen)
    tcp = blob.tcp_channel
    if tcp is not None:
        out["tcp_channel"] = {
            "address": tcp.address,
            "tls_enabled": tcp.tls_enabled,
            "required": tcp.required,
        }
    ipc = blob.ipc_channel
    if ipc is not None:
        out["ipc_channel"] = {"socket_path": ipc.socket_path, "required": ipc.required}
    if blob.auth_token is not None:
        out["auth_token"] = blob.auth_token
    out["security_level"] = blob.security_level.value
    # Python-SDK extensions, ignored by Rust; written only when set, so that a blob
    # round-trips without changing the Rust form of ordinary blobs.
    if blob.debug_mode:
        out["debug_mode"] = True
    if blob.log_level is not None:
        out["log_level"] = blob.log_level
    if blob.extensions is not None:
        out["extensions"] = _plain_json(blob.extensions)
    # pywatt_twisted extension (IPC-only mode), likewise only when set.
    if blob.ipc_only:
        out["ipc_only"] = True
    return out


def encode_init(blob: InitBlob) -> bytes:
    """
    Encode an init blob in the Rust form (bare, no C{op}), without the trailing newline.

    C{listen} is omitted when C{None}; C{debug_mode} and C{log_level} (Python-SDK
    extensions that Rust ignores) only when set.
    """
    return _json.dumps(_init_to_obj(blob))


# ---------------------------------------------------------------------------------------
# Orchestrator -> module decoders


def _d_init(obj: _Obj, ctx: str) -> Init:
    return Init(_init_blob(obj, ctx))


def _d_secret(obj: _Obj, ctx: str) -> SecretMessage:
    return SecretMessage(
        _str(obj, "name", ctx), _str(obj, "value", ctx), _opt_str(obj, "rotation_id", ctx)
    )


def _d_rotated(obj: _Obj, ctx: str) -> Rotated:
    return Rotated(_str_list(obj, "keys", ctx), _str(obj, "rotation_id", ctx))


def _d_shutdown(obj: _Obj, ctx: str) -> Shutdown:
    return Shutdown()


_HEARTBEAT: Final = Heartbeat()  # frozen and field-less: one instance serves
_BARE_HEARTBEAT: Final = b'{"op":"heartbeat"}'


def _d_heartbeat(obj: _Obj, ctx: str) -> Heartbeat:
    return _HEARTBEAT


def _d_register_response(obj: _Obj, ctx: str) -> RegisterServiceProviderResponse:
    return RegisterServiceProviderResponse(
        _bool(obj, "success", ctx), _opt_str(obj, "provider_id", ctx), _opt_str(obj, "error", ctx)
    )


def _provider(value: object, path: str) -> ServiceProviderInfo:
    obj = _object(value, path)
    metadata = _opt_str_map(obj, "metadata", path)
    return ServiceProviderInfo(
        provider_id=_str(obj, "provider_id", path),
        module_id=_str(obj, "module_id", path),
        service_type=_service_type(obj, "service_type", path),
        name=_str(obj, "name", path),
        version=_opt_str(obj, "version", path),
        address=_str(obj, "address", path),
        metadata={} if metadata is None else metadata,
        is_healthy=_bool(obj, "is_healthy", path),
    )


def _d_discover_response(obj: _Obj, ctx: str) -> DiscoverServiceProvidersResponse:
    providers = obj.get("providers", _MISSING)
    if providers is None:
        providers = []
    if type(providers) is not list:
        raise _bad(ctx, "providers", "an array of providers", providers)
    path = _path(ctx, "providers")
    return DiscoverServiceProvidersResponse(
        _bool(obj, "success", ctx),
        tuple(_provider(p, f"{path}[{i}]") for i, p in enumerate(providers)),
        _opt_str(obj, "error", ctx),
    )


def _d_service_response(obj: _Obj, ctx: str) -> ServiceResponse:
    return ServiceResponse(
        _str(obj, "id", ctx),
        _service_type(obj, "service_type", ctx),
        _bool(obj, "success", ctx),
        _opt_str(obj, "error", ctx),
        _opt_str(obj, "connection_id", ctx),
        _extension_object(obj, "error_info"),
    )


def _d_service_operation_result(obj: _Obj, ctx: str) -> ServiceOperationResult:
    params_value = obj.get("params")
    params: ServiceOperation | None = None
    if type(params_value) is dict:
        # Only an echo that parses as the original operation counts (as in Rust).
        try:
            params = _d_service_operation(params_value, _path(ctx, "params"))
        except ProtocolError:
            params = None
    return ServiceOperationResult(
        _bool(obj, "success", ctx),
        obj.get("result"),
        _opt_str(obj, "error", ctx),
        params,
        _extension_object(obj, "error_info"),
    )


def _extension_object(obj: _Obj, key: str) -> dict[str, Any] | None:
    """
    An optional extension object: anything but a JSON object counts as absent.
    """
    value = obj.get(key)
    return value if type(value) is dict else None


def _d_http_request(obj: _Obj, ctx: str) -> HttpRequest:
    return HttpRequest(
        _str(obj, "request_id", ctx),
        _str(obj, "method", ctx),
        _str(obj, "uri", ctx),
        _str_map(obj, "headers", ctx),
        _opt_bytes(obj, "body", ctx),
        _opt_str(obj, "stream_id", ctx),
    )


_U64: Final = 2**64 - 1
_U32: Final = 2**32 - 1


def _d_stream_chunk(obj: _Obj, ctx: str) -> StreamChunk:
    return StreamChunk(
        _str(obj, "stream_id", ctx),
        _uint(obj, "sequence", ctx, _U64),
        _base64(obj, "data", ctx),
        _bool_default(obj, "compressed", ctx, False),
        _uint(obj, "checksum", ctx, _U32),
        _bool_default(obj, "is_final", ctx, False),
    )


def _d_stream_ack(obj: _Obj, ctx: str) -> StreamAck:
    return StreamAck(
        _str(obj, "stream_id", ctx),
        _uint(obj, "sequence", ctx, _U64),
        _bool_default(obj, "success", ctx, True),
        _opt_str(obj, "error", ctx),
    )


def _d_stream_cancel(obj: _Obj, ctx: str) -> StreamCancel:
    reason = _opt_str(obj, "reason", ctx)
    return StreamCancel(_str(obj, "stream_id", ctx), reason if reason is not None else "")


def _d_port_response(obj: _Obj, ctx: str) -> PortResponse:
    return PortResponse(
        _str(obj, "request_id", ctx),
        _bool(obj, "success", ctx),
        _uint(obj, "port", ctx, 65535),
        _opt_str(obj, "error_message", ctx),
    )


def _d_routed_message(obj: _Obj, ctx: str) -> RoutedModuleMessage:
    return RoutedModuleMessage(
        _str(obj, "source_module_id", ctx),
        _uuid(obj, "original_request_id", ctx),
        _payload(obj, "payload", ctx),
        _opt_str(obj, "target_endpoint", ctx),
    )


def _d_routed_response(obj: _Obj, ctx: str) -> RoutedModuleResponse:
    source = obj.get("source_module_id", _MISSING)  # _str, inline (once per reply)
    if type(source) is not str:
        raise _bad(ctx, "source_module_id", "a string", source)
    value = obj.get("request_id")
    body = obj.get("payload")
    if type(value) is str and len(value) == 36 and type(body) is dict:
        # Every reply as peers write it (a canonical id, a Json payload given as a list
        # of ints), read with _uuid and _payload inline: one call per reply instead of
        # three. Anything else, or any check that fails, takes the readers below.
        # (Where the four hyphens are is not checked: 36 characters of which four are
        # hyphens and the rest hex is read by uuid.UUID, _uuid's fallback, as the
        # same number, wherever the hyphens are.)
        digits = value.replace("-", "")
        data = body.get("data")
        fmt = body.get("format", "Json")
        if len(digits) == 32 and type(data) is list and fmt == "Json":
            read = id_and_json_payload(digits, data)
            if read is not None:
                response = _UnfrozenResponse()
                response.source_module_id = source
                response.request_id, response.payload = read
                response.__class__ = RoutedModuleResponse
                return response  # type: ignore[no-any-return]
    request_id = _uuid(obj, "request_id", ctx)
    payload = _payload(obj, "payload", ctx)
    response = _UnfrozenResponse()  # RoutedModuleResponse(...), see above
    response.source_module_id = source
    response.request_id = request_id
    response.payload = payload
    response.__class__ = RoutedModuleResponse
    return response  # type: ignore[no-any-return]


_ORCHESTRATOR_DECODERS: Final[dict[str, Callable[[_Obj, str], OrchestratorMessage]]] = {
    "init": _d_init,
    "secret": _d_secret,
    "rotated": _d_rotated,
    "shutdown": _d_shutdown,
    "register_service_provider_response": _d_register_response,
    "discover_service_providers_response": _d_discover_response,
    "service_response": _d_service_response,
    "service_operation_result": _d_service_operation_result,
    "http_request": _d_http_request,
    "port_response": _d_port_response,
    "routed_module_message": with_fast_path(_d_routed_message),  # (the common shape inline)
    "routed_module_response": _d_routed_response,
    "heartbeat": _d_heartbeat,
    "stream_chunk": _d_stream_chunk,
    "stream_ack": _d_stream_ack,
    "stream_cancel": _d_stream_cancel,
}

ORCHESTRATOR_OPS: Final = frozenset(_ORCHESTRATOR_DECODERS)
"""The ops this version decodes in the orchestrator -> module direction."""


# ---------------------------------------------------------------------------------------
# Module -> orchestrator decoders


def _d_endpoint(value: object, path: str) -> Endpoint:
    obj = _object(value, path)
    return Endpoint(
        _str(obj, "path", path), _str_list(obj, "methods", path), _opt_str(obj, "auth", path)
    )


def _d_announce(obj: _Obj, ctx: str) -> Announce:
    endpoints = obj.get("endpoints", _MISSING)
    if type(endpoints) is not list:
        raise _bad(ctx, "endpoints", "an array of endpoints", endpoints)
    path = _path(ctx, "endpoints")
    return Announce(
        _str(obj, "listen", ctx),
        tuple(_d_endpoint(e, f"{path}[{i}]") for i, e in enumerate(endpoints)),
    )


def _d_get_secret(obj: _Obj, ctx: str) -> GetSecret:
    return GetSecret(_str(obj, "name", ctx))


def _d_rotation_ack(obj: _Obj, ctx: str) -> RotationAck:
    return RotationAck(
        _str(obj, "rotation_id", ctx), _str(obj, "status", ctx), _opt_str(obj, "message", ctx)
    )


def _d_register(obj: _Obj, ctx: str) -> RegisterServiceProvider:
    return RegisterServiceProvider(
        _service_type(obj, "service_type", ctx),
        _str(obj, "name", ctx),
        _opt_str(obj, "version", ctx),
        _str(obj, "address", ctx),
        _opt_str_map(obj, "metadata", ctx),
    )


def _d_discover(obj: _Obj, ctx: str) -> DiscoverServiceProviders:
    return DiscoverServiceProviders(
        _service_type(obj, "service_type", ctx), _opt_bool(obj, "all_providers", ctx)
    )


def _d_service_request(obj: _Obj, ctx: str) -> ServiceRequest:
    return ServiceRequest(
        _str(obj, "id", ctx), _service_type(obj, "service_type", ctx), obj.get("config")
    )


def _d_service_operation(obj: _Obj, ctx: str) -> ServiceOperation:
    return ServiceOperation(
        _str(obj, "connection_id", ctx),
        _service_type(obj, "service_type", ctx),
        _str(obj, "operation", ctx),
        _required(obj, "params", ctx),
        _opt_str(obj, "id", ctx),
    )


def _d_http_response(obj: _Obj, ctx: str) -> HttpResponse:
    return HttpResponse(
        _str(obj, "request_id", ctx),
        _uint(obj, "status_code", ctx, 65535),
        _str_map(obj, "headers", ctx),
        _opt_bytes(obj, "body", ctx),
        _opt_str(obj, "stream_id", ctx),
    )


def _d_port_request(obj: _Obj, ctx: str) -> PortRequest:
    return PortRequest(_str(obj, "request_id", ctx), _opt_uint(obj, "specific_port", ctx, 65535))


def _d_route_to_module(obj: _Obj, ctx: str) -> RouteToModule:
    return RouteToModule(
        _str(obj, "target_module_id", ctx),
        _str(obj, "target_endpoint", ctx),
        _uuid(obj, "request_id", ctx),
        _payload(obj, "payload", ctx),
    )


def _d_heartbeat_ack(obj: _Obj, ctx: str) -> HeartbeatAck:
    return HeartbeatAck()


def _d_identify(obj: _Obj, ctx: str) -> Identify:
    module_id = obj.get("module_id")
    if type(module_id) is str:
        return Identify(module_id)
    return Identify(_str(obj, "identify", ctx))


def _d_routed_reply(obj: _Obj, ctx: str) -> RoutedModuleReply:
    return RoutedModuleReply(
        _str(obj, "source_module_id", ctx),
        _uuid(obj, "request_id", ctx),
        _str(obj, "target_module_id", ctx),
        _payload(obj, "payload", ctx),
    )


_MODULE_DECODERS: Final[dict[str, Callable[[_Obj, str], ModuleMessage]]] = {
    "announce": _d_announce,
    "get_secret": _d_get_secret,
    "rotation_ack": _d_rotation_ack,
    "register_service_provider": _d_register,
    "discover_service_providers": _d_discover,
    "service_request": _d_service_request,
    "service_operation": _d_service_operation,
    "http_response": _d_http_response,
    "port_request": _d_port_request,
    "route_to_module": _d_route_to_module,
    "heartbeat_ack": _d_heartbeat_ack,
    "identify": _d_identify,
    "routed_module_response": _d_routed_reply,
    "stream_chunk": _d_stream_chunk,
    "stream_ack": _d_stream_ack,
    "stream_cancel": _d_stream_cancel,
}

MODULE_OPS: Final = frozenset(_MODULE_DECODERS)
"""The ops this version decodes in the module -> orchestrator direction."""


# ---------------------------------------------------------------------------------------
# Message and envelope decoding


def _decode_op(obj: _Obj, decoders: Mapping[str, Callable[[_Obj, str], _T]]) -> _T | UnknownMessage:
    op = obj["op"]
    if type(op) is not str:
        raise ProtocolError(f"expected a string, got {_describe(op)}", field="op")
    decoder = decoders.get(op)
    if decoder is None:
        return UnknownMessage(op, {k: v for k, v in obj.items() if k != "op"})
    nested = obj.get(op)
    if type(nested) is dict:
        # Python SDK shape: {"op": "secret", "secret": {...}, "announce": null, ...}
        obj = nested
    return decoder(obj, op)


def _metadata(value: object) -> Metadata:
    if value is None:
        return Metadata()
    obj = _object(value, "metadata")
    if not obj:
        return Metadata()
    timestamp = obj.get("timestamp")
    if timestamp is not None:
        if type(timestamp) is float:
            timestamp = int(timestamp)
        elif type(timestamp) is not int:
            raise _bad("metadata", "timestamp", "an integer (Unix seconds) or null", timestamp)
    properties = obj.get("properties")
    if properties is not None and type(properties) is not dict:
        raise _bad("metadata", "properties", "an object or null", properties)
    return Metadata(
        id=_opt_str(obj, "id", "metadata"),
        timestamp=timestamp,
        source=_opt_str(obj, "source", "metadata"),
        destination=_opt_str(obj, "destination", "metadata"),
        properties=properties,
    )


def _envelope_id(obj: _Obj) -> uuid.UUID | None:
    value = obj.get("id")
    if value is None:
        return None
    return _uuid_value(value, "id")


_NOT_A_MESSAGE: Final = (
    "expected a message with an 'op' key, or an envelope "
    '{"id": uuid, "content": {"op": ...}, "metadata": {...}}'
)


def decode_envelope_from_orchestrator(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any],
) -> Envelope:
    """
    Decode one orchestrator -> module message, bare or enveloped.

    A bare message gives C{Envelope(id=None, content=msg, metadata=Metadata())}.

    @raise ProtocolError: on invalid input (never for an unknown op).
    """
    obj = decode_json_object(data)
    if "op" in obj:
        return Envelope(None, _decode_op(obj, _ORCHESTRATOR_DECODERS), Metadata())
    content = obj.get("content")
    if type(content) is dict and "op" in content:
        message = _decode_op(content, _ORCHESTRATOR_DECODERS)
        return Envelope(_envelope_id(obj), message, _metadata(obj.get("metadata")))
    raise ProtocolError(_NOT_A_MESSAGE)


def decode_from_orchestrator(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any],
) -> OrchestratorMessage:
    """
    Decode one orchestrator -> module message (bare or enveloped; the envelope is dropped).

    @raise ProtocolError: on invalid input (never for an unknown op).
    """
    if data == _BARE_HEARTBEAT:
        # The orchestrator's heartbeat, byte for byte as every peer sends it: the one
        # message that comes at a steady rate, and carries nothing to read.
        return _HEARTBEAT
    if type(data) is bytes:
        # The per-frame path: decode_json_object inline (a large stream_chunk without
        # parsing its data string, as there).
        chunk = _chunk_object(data) if len(data) >= _CHUNK_FAST_PATH_MIN else None
        if chunk is not None:
            obj = chunk
        else:
            try:
                obj = _json.backend_loads(data)
            except _json.BACKEND_DECODE_ERROR as e:
                raise ProtocolError(f"expected one JSON object, got invalid JSON ({e})") from None
            if type(obj) is not dict:
                raise ProtocolError(f"expected one JSON object, got {_describe(obj)}")
    else:
        obj = decode_json_object(data)
    op = obj.get("op", _MISSING)
    if op is not _MISSING:
        if type(op) is str:
            # _decode_op, inline for a bare message of a known op in the Rust shape.
            decoder = _ORCHESTRATOR_DECODERS.get(op)
            if decoder is not None and type(obj.get(op)) is not dict:
                return decoder(obj, op)
        return _decode_op(obj, _ORCHESTRATOR_DECODERS)
    content = obj.get("content")
    if type(content) is dict and "op" in content:
        _envelope_id(obj)
        return _decode_op(content, _ORCHESTRATOR_DECODERS)
    raise ProtocolError(_NOT_A_MESSAGE)


def _decode_module_obj(obj: _Obj) -> tuple[ModuleMessage, uuid.UUID | None, Metadata]:
    if "op" in obj:
        return _decode_op(obj, _MODULE_DECODERS), None, Metadata()
    content = obj.get("content")
    if type(content) is dict:
        if "op" in content:
            message = _decode_op(content, _MODULE_DECODERS)
            return message, _envelope_id(obj), _metadata(obj.get("metadata"))
        if "request_id" in content and "status_code" in content:
            # The stdout http_response wrapper (PROTOCOL.md 6.5): no op, no top-level id.
            message = _d_http_response(content, "content")
            return message, _envelope_id(obj), _metadata(obj.get("metadata"))
    if "listen" in obj and "endpoints" in obj:
        # The Python SDK's bare AnnounceBlob (no op).
        return _d_announce(obj, "announce"), None, Metadata()
    raise ProtocolError(_NOT_A_MESSAGE)


def decode_envelope_from_module(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any],
) -> Envelope:
    """
    Decode one module -> orchestrator message: bare, enveloped, or the stdout
    C{http_response} wrapper (then C{id} is C{None} and the wrapper's metadata is kept).

    @raise ProtocolError: on invalid input (never for an unknown op).
    """
    message, envelope_id, metadata = _decode_module_obj(decode_json_object(data))
    return Envelope(envelope_id, message, metadata)


def decode_from_module(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any],
) -> ModuleMessage:
    """
    Decode one module -> orchestrator message (see L{decode_envelope_from_module}).
    """
    return _decode_module_obj(decode_json_object(data))[0]


# ---------------------------------------------------------------------------------------
# Encoding


def _plain_map(value: Mapping[str, Any]) -> dict[str, Any]:
    return value if type(value) is dict else dict(value)


def _plain_json(value: object) -> object:
    if isinstance(value, Mapping) and type(value) is not dict:
        return {k: _plain_json(v) for k, v in value.items()}
    return value


def _bytes_out(value: bytes | None) -> list[int] | None:
    return None if value is None else list(value)


def _payload_out(payload: EncodedPayload) -> dict[str, Any]:
    return {"data": list(payload.data), "format": payload.format}


def _e_announce(m: Announce) -> dict[str, Any]:
    endpoints = []
    for e in m.endpoints:
        item: dict[str, Any] = {"path": e.path, "methods": list(e.methods)}
        if e.auth is not None:
            item["auth"] = e.auth
        endpoints.append(item)
    return {"op": "announce", "listen": m.listen, "endpoints": endpoints}


def _e_get_secret(m: GetSecret) -> dict[str, Any]:
    return {"op": "get_secret", "name": m.name}


def _e_rotation_ack(m: RotationAck) -> dict[str, Any]:
    out = {"op": "rotation_ack", "rotation_id": m.rotation_id, "status": m.status}
    if m.message is not None:
        out["message"] = m.message
    return out


def _e_register(m: RegisterServiceProvider) -> dict[str, Any]:
    return {
        "op": "register_service_provider",
        "service_type": m.service_type.to_json(),
        "name": m.name,
        "version": m.version,
        "address": m.address,
        "metadata": None if m.metadata is None else _plain_map(m.metadata),
    }


def _e_discover(m: DiscoverServiceProviders) -> dict[str, Any]:
    return {
        "op": "discover_service_providers",
        "service_type": m.service_type.to_json(),
        "all_providers": m.all_providers,
    }


def _e_service_request(m: ServiceRequest) -> dict[str, Any]:
    return {
        "op": "service_request",
        "id": m.id,
        "service_type": m.service_type.to_json(),
        "config": _plain_json(m.config),
    }


def _service_operation_fields(m: ServiceOperation) -> dict[str, Any]:
    out = {
        "connection_id": m.connection_id,
        "service_type": m.service_type.to_json(),
        "operation": m.operation,
        "params": _plain_json(m.params),
    }
    if m.id is not None:
        out["id"] = m.id
    return out


def _e_service_operation(m: ServiceOperation) -> dict[str, Any]:
    return {"op": "service_operation", **_service_operation_fields(m)}


def _e_http_response(m: HttpResponse) -> dict[str, Any]:
    out = {
        "op": "http_response",
        "request_id": m.request_id,
        "status_code": m.status_code,
        "headers": _plain_map(m.headers),
        "body": _bytes_out(m.body),
    }
    if m.stream_id is not None:
        out["stream_id"] = m.stream_id
    return out


def _e_port_request(m: PortRequest) -> dict[str, Any]:
    return {"op": "port_request", "request_id": m.request_id, "specific_port": m.specific_port}


def _e_route_to_module(m: RouteToModule) -> dict[str, Any]:
    return {
        "op": "route_to_module",
        "target_module_id": m.target_module_id,
        "target_endpoint": m.target_endpoint,
        "request_id": str(m.request_id),
        "payload": _payload_out(m.payload),
    }


def _e_heartbeat_ack(m: HeartbeatAck) -> dict[str, Any]:
    return {"op": "heartbeat_ack"}


def _e_identify(m: Identify) -> dict[str, Any]:
    return {"op": "identify", "identify": m.module_id, "module_id": m.module_id}


def _e_routed_reply(m: RoutedModuleReply) -> dict[str, Any]:
    return {
        "op": "routed_module_response",
        "source_module_id": m.source_module_id,
        "request_id": str(m.request_id),
        "target_module_id": m.target_module_id,
        "payload": _payload_out(m.payload),
    }


def _e_init(m: Init) -> dict[str, Any]:
    return {"op": "init", **_init_to_obj(m.blob)}


def _e_secret(m: SecretMessage) -> dict[str, Any]:
    out = {"op": "secret", "name": m.name, "value": m.value}
    if m.rotation_id is not None:
        out["rotation_id"] = m.rotation_id
    return out


def _e_rotated(m: Rotated) -> dict[str, Any]:
    return {"op": "rotated", "keys": list(m.keys), "rotation_id": m.rotation_id}


def _e_shutdown(m: Shutdown) -> dict[str, Any]:
    return {"op": "shutdown"}


def _e_heartbeat(m: Heartbeat) -> dict[str, Any]:
    return {"op": "heartbeat"}


def _e_register_response(m: RegisterServiceProviderResponse) -> dict[str, Any]:
    return {
        "op": "register_service_provider_response",
        "success": m.success,
        "provider_id": m.provider_id,
        "error": m.error,
    }


def _provider_out(p: ServiceProviderInfo) -> dict[str, Any]:
    return {
        "provider_id": p.provider_id,
        "module_id": p.module_id,
        "service_type": p.service_type.to_json(),
        "name": p.name,
        "version": p.version,
        "address": p.address,
        "metadata": _plain_map(p.metadata),
        "is_healthy": p.is_healthy,
    }


def _e_discover_response(m: DiscoverServiceProvidersResponse) -> dict[str, Any]:
    return {
        "op": "discover_service_providers_response",
        "success": m.success,
        "providers": [_provider_out(p) for p in m.providers],
        "error": m.error,
    }


def _e_service_response(m: ServiceResponse) -> dict[str, Any]:
    out: dict[str, Any] = {
        "op": "service_response",
        "id": m.id,
        "service_type": m.service_type.to_json(),
        "success": m.success,
        "error": m.error,
        "connection_id": m.connection_id,
    }
    if m.error_info is not None:
        out["error_info"] = _plain_json(m.error_info)
    return out


def _e_service_operation_result(m: ServiceOperationResult) -> dict[str, Any]:
    out = {
        "op": "service_operation_result",
        "success": m.success,
        "result": _plain_json(m.result),
        "error": m.error,
    }
    if m.params is not None:
        out["params"] = _service_operation_fields(m.params)
    if m.error_info is not None:
        out["error_info"] = _plain_json(m.error_info)
    return out


def _e_http_request(m: HttpRequest) -> dict[str, Any]:
    out = {
        "op": "http_request",
        "request_id": m.request_id,
        "method": m.method,
        "uri": m.uri,
        "headers": _plain_map(m.headers),
        "body": _bytes_out(m.body),
    }
    if m.stream_id is not None:
        out["stream_id"] = m.stream_id
    return out


def _e_stream_chunk_head(m: StreamChunk) -> dict[str, Any]:
    # (L{_e_stream_chunk} with an empty data string: L{encode_stream_chunk_parts})
    return {
        "op": "stream_chunk",
        "stream_id": m.stream_id,
        "sequence": m.sequence,
        "data": "",
        "compressed": m.compressed,
        "checksum": m.checksum,
        "is_final": m.is_final,
    }


def _e_stream_chunk(m: StreamChunk) -> dict[str, Any]:
    return {
        "op": "stream_chunk",
        "stream_id": m.stream_id,
        "sequence": m.sequence,
        "data": _b64encode(m.data).decode("ascii"),
        "compressed": m.compressed,
        "checksum": m.checksum,
        "is_final": m.is_final,
    }


def _e_stream_ack(m: StreamAck) -> dict[str, Any]:
    return {
        "op": "stream_ack",
        "stream_id": m.stream_id,
        "sequence": m.sequence,
        "success": m.success,
        "error": m.error,
    }


def _e_stream_cancel(m: StreamCancel) -> dict[str, Any]:
    return {"op": "stream_cancel", "stream_id": m.stream_id, "reason": m.reason}


def _e_port_response(m: PortResponse) -> dict[str, Any]:
    return {
        "op": "port_response",
        "request_id": m.request_id,
        "success": m.success,
        "port": m.port,
        "error_message": m.error_message,
    }


def _e_routed_message(m: RoutedModuleMessage) -> dict[str, Any]:
    out = {
        "op": "routed_module_message",
        "source_module_id": m.source_module_id,
        "original_request_id": str(m.original_request_id),
        "payload": _payload_out(m.payload),
    }
    if m.target_endpoint is not None:
        out["target_endpoint"] = m.target_endpoint
    return out


def _e_routed_response(m: RoutedModuleResponse) -> dict[str, Any]:
    return {
        "op": "routed_module_response",
        "source_module_id": m.source_module_id,
        "request_id": str(m.request_id),
        "payload": _payload_out(m.payload),
    }


def _e_unknown(m: UnknownMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"op": m.op}
    for key, value in m.fields.items():
        if key != "op":
            out[key] = _plain_json(value)
    return out


_ENCODERS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    Announce: _e_announce,
    GetSecret: _e_get_secret,
    RotationAck: _e_rotation_ack,
    RegisterServiceProvider: _e_register,
    DiscoverServiceProviders: _e_discover,
    ServiceRequest: _e_service_request,
    ServiceOperation: _e_service_operation,
    HttpResponse: _e_http_response,
    PortRequest: _e_port_request,
    RouteToModule: _e_route_to_module,
    HeartbeatAck: _e_heartbeat_ack,
    Identify: _e_identify,
    RoutedModuleReply: _e_routed_reply,
    Init: _e_init,
    SecretMessage: _e_secret,
    Rotated: _e_rotated,
    Shutdown: _e_shutdown,
    RegisterServiceProviderResponse: _e_register_response,
    DiscoverServiceProvidersResponse: _e_discover_response,
    ServiceResponse: _e_service_response,
    ServiceOperationResult: _e_service_operation_result,
    HttpRequest: _e_http_request,
    PortResponse: _e_port_response,
    RoutedModuleMessage: _e_routed_message,
    RoutedModuleResponse: _e_routed_response,
    Heartbeat: _e_heartbeat,
    StreamChunk: _e_stream_chunk,
    StreamAck: _e_stream_ack,
    StreamCancel: _e_stream_cancel,
    UnknownMessage: _e_unknown,
}


# The content JSON of the hot outgoing messages, in one backend call: with orjson, a
# uuid.UUID is written natively (the same lowercase hyphenated form as str(uuid)), so
# the request id need not be formatted in Python first (issue 20: about a third of the
# cost of enveloping a route_to_module). Each returns the bytes
# _backend_dumps(to_json_object(m)) gives, or None when it cannot say so cheaply (an
# id that is not exactly a uuid.UUID, a value orjson refuses): then the caller takes
# the general path.


def _j_routed(m: RouteToModule | RoutedModuleReply) -> bytes | None:
    request_id = m.request_id
    payload = m.payload
    if type(request_id) is not _UUID or type(payload) is not EncodedPayload:
        return None
    body = {"data": list(payload.data), "format": payload.format}
    # (the keys in to_json_object's order: the bytes must be the general path's)
    if isinstance(m, RouteToModule):
        content = {
            "op": "route_to_module",
            "target_module_id": m.target_module_id,
            "target_endpoint": m.target_endpoint,
            "request_id": request_id,
            "payload": body,
        }
    else:
        content = {
            "op": "routed_module_response",
            "source_module_id": m.source_module_id,
            "request_id": request_id,
            "target_module_id": m.target_module_id,
            "payload": body,
        }
    try:
        return _backend_dumps(content)
    except TypeError:
        return None


_backend_dumps = _json.backend_dumps
_CONTENT_JSON: Final[dict[type, Callable[[Any], bytes | None]]] = (
    {RouteToModule: _j_routed, RoutedModuleReply: _j_routed} if _json.BACKEND == "orjson" else {}
)
"""
Fast content encoders by message type (see above): C{_CONTENT_JSON[type(m)](m)} is the
JSON of C{to_json_object(m)}, or C{None} (use the general path). Empty without orjson.
"""


def to_json_object(message: Message) -> dict[str, Any]:
    """
    The JSON object (a dict, in Rust field order) of a bare message.

    @raise TypeError: if C{message} is not a protocol message.
    """
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise TypeError(f"expected a pywatt_twisted.wire message, got {type(message).__name__}")
    return encoder(message)


def _metadata_out(metadata: Metadata | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if metadata is None:
        return out
    if metadata.id is not None:
        out["id"] = metadata.id
    if metadata.timestamp is not None:
        out["timestamp"] = metadata.timestamp
    if metadata.source is not None:
        out["source"] = metadata.source
    if metadata.destination is not None:
        out["destination"] = metadata.destination
    if metadata.properties is not None:
        out["properties"] = _plain_json(metadata.properties)
    return out


def encode(message: Message | Envelope) -> bytes:
    """
    Encode a message, bare, in the Rust form (compact JSON, no trailing newline).

    An L{Envelope} is encoded as by L{encode_envelope} with its own id and metadata.

    @raise TypeError: if C{message} is not a protocol message.
    """
    if isinstance(message, Envelope):
        return encode_envelope(message.content, message.id, message.metadata)
    return _json.dumps(to_json_object(message))


_EMPTY_DATA: Final = b'"data":""'


def encode_stream_chunk_parts(chunk: StreamChunk) -> tuple[bytes, bytes, bytes]:
    """
    L{encode}C{(chunk)} in three pieces, C{head + data + tail}: C{data} is the base64
    of the chunk's bytes as it came from the encoder, never turned into a Python
    string nor copied into the JSON text, so a sender can write the frame as
    C{writeSequence([header, head, data, tail])} (for a 256 KiB chunk this saves the
    ASCII decode, the JSON encoder's scan and copy of 349 KB, and a concatenation).

    Exactly L{encode}'s bytes: the message is encoded with C{"data":""} and the base64
    goes between those quotes (its alphabet needs no JSON escape, and C{"data":""}
    cannot occur inside an encoded string, where every quote is escaped).
    """
    obj = _e_stream_chunk_head(chunk)
    text = _json.dumps(obj)
    cut = text.index(_EMPTY_DATA) + len(_EMPTY_DATA) - 1
    return text[:cut], _b64encode(chunk.data), text[cut:]


def encode_line(message: Message | Envelope) -> bytes:
    """
    L{encode} plus C{b"\\n"}: one stdio line (compact JSON never holds a raw newline).
    """
    return encode(message) + b"\n"


def encode_envelope(
    message: Message, id: uuid.UUID | None = None, metadata: Metadata | None = None
) -> bytes:
    """
    Encode C{{"id": uuid, "content": message, "metadata": {...}}}, the channel form of
    module -> orchestrator messages.

    @param id: the envelope id; a fresh uuid4 when C{None}.
    @param metadata: its C{None} fields are omitted; no metadata gives C{{}}.
    """
    return _json.dumps(
        {
            "id": str(uuid.uuid4() if id is None else id),
            "content": to_json_object(message),
            "metadata": _metadata_out(metadata),
        }
    )


def encode_stdout_http_response(
    response: HttpResponse, source: str, message_id: uuid.UUID | str | None = None
) -> bytes:
    """
    Encode the stdout form of an HTTP response (PROTOCOL.md 6.5), without the newline:

    C{{"content": {"body": [...], "headers": {...}, "request_id": ..., "status_code": ...},
    "metadata": {"id": uuid, "properties": {"correlation_id": request_id}, "source": ...}}}

    Keys are sorted (as serde_json's C{json!} writes them); C{body} is always an array.

    @param source: this module's id.
    @param message_id: C{metadata.id} (a L{uuid.UUID} or its string); a fresh uuid4
        when C{None}. The runtime passes an envelope id
        (L{pywatt_twisted.wire.envelope.envelope_id}), which costs a tenth of a uuid4.
    """
    content: dict[str, Any] = {
        "body": list(response.body or b""),
        "headers": _plain_map(response.headers),
        "request_id": response.request_id,
        "status_code": response.status_code,
    }
    if response.stream_id is not None:
        content["stream_id"] = response.stream_id
    return _json.dumps_sorted(
        {
            "content": content,
            "metadata": {
                "id": str(uuid.uuid4() if message_id is None else message_id),
                "properties": {"correlation_id": response.request_id},
                "source": source,
            },
        }
    )
