# -*- test-case-name: tests.wire.test_codec -*-
"""
Hypothesis strategies for the PyWatt wire protocol, for property tests of modules,
orchestrators and tools built on pywatt_twisted.

Every message these strategies produce survives an encode/decode round trip through
L{pywatt_twisted.wire.codec} unchanged, so they double as a test of any other codec::

    from hypothesis import given
    from pywatt_twisted.testing.strategies import orchestrator_messages
    from pywatt_twisted.wire.codec import decode_from_orchestrator, encode

    @given(orchestrator_messages())
    def test_round_trip(message):
        assert decode_from_orchestrator(encode(message)) == message

Hypothesis is a test dependency (the C{test} extra), not a runtime one.
"""

from __future__ import annotations

import itertools
import string
from typing import Any

from hypothesis import strategies as st

from pywatt_twisted.wire.codec import MODULE_OPS, ORCHESTRATOR_OPS
from pywatt_twisted.wire.framing import (
    FORMAT_AUTO,
    FORMAT_BASE64,
    FORMAT_BINARY,
    FORMAT_JSON,
    Frame,
)
from pywatt_twisted.wire.init import (
    InitBlob,
    IpcChannelConfig,
    ListenAddress,
    SecurityLevel,
    TcpChannelConfig,
    TcpListen,
    UnixListen,
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
    UnknownMessage,
)

__all__ = [
    "chunkings",
    "encoded_payloads",
    "frame_streams",
    "frames",
    "init_blobs",
    "json_values",
    "listen_addresses",
    "metadata",
    "module_envelopes",
    "module_messages",
    "orchestrator_envelopes",
    "orchestrator_messages",
    "service_types",
    "texts",
]

_U16 = st.integers(0, 65535)
_I64 = st.integers(-(2**63), 2**63 - 1)


def texts(max_size: int = 20) -> st.SearchStrategy[str]:
    """
    Any Unicode text that can be written as UTF-8 (no lone surrogates), control
    characters and newlines included.
    """
    return st.text(st.characters(codec="utf-8"), max_size=max_size)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """
    Any JSON value as Python data: C{None}, booleans, 64-bit integers, finite floats,
    text, and lists and dicts of those.
    """
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        _I64,
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(texts(10), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _json_objects() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(texts(10), json_values(), max_size=4)


def _str_maps() -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(texts(12), texts(), max_size=4)


def service_types() -> st.SearchStrategy[ServiceType]:
    """
    C{Database}, C{Cache}, C{Jwt} or C{Custom(any text)}.
    """
    return st.one_of(
        st.sampled_from([ServiceType.DATABASE, ServiceType.CACHE, ServiceType.JWT]),
        texts().map(ServiceType.custom),
    )


def encoded_payloads() -> st.SearchStrategy[EncodedPayload]:
    """
    Routed-message payloads: arbitrary bytes, or the JSON of an arbitrary value, in any
    of the four format names.
    """
    data = st.one_of(
        st.binary(max_size=64), json_values().map(lambda v: EncodedPayload.from_json(v).data)
    )
    return st.builds(EncodedPayload, data, st.sampled_from(PAYLOAD_FORMATS))


def metadata() -> st.SearchStrategy[Metadata]:
    """
    Envelope metadata, with any subset of its fields set.
    """
    return st.builds(
        Metadata,
        id=st.none() | texts(),
        timestamp=st.none() | _I64,
        source=st.none() | texts(),
        destination=st.none() | texts(),
        properties=st.none() | _json_objects(),
    )


def _ip_hosts() -> st.SearchStrategy[str]:
    return st.ip_addresses().map(str)


def listen_addresses() -> st.SearchStrategy[ListenAddress]:
    """
    TCP listen addresses (IPv4 and IPv6 literals, any port) and Unix socket paths
    (including C{"localhost:8080"}-like strings, which are paths by the protocol's rules).
    """
    unix_paths = st.one_of(
        texts().map(lambda t: "/tmp/" + t),
        st.from_regex(r"[a-z][a-z0-9-]{0,12}:[0-9]{1,5}", fullmatch=True),
    )
    return st.one_of(st.builds(TcpListen, _ip_hosts(), _U16), st.builds(UnixListen, unix_paths))


def _hostnames() -> st.SearchStrategy[str]:
    # A host name label never ends with a hyphen (RFC 1123), and the decoder says so.
    return st.from_regex(r"[a-z]([a-z0-9-]{0,11}[a-z0-9])?(\.[a-z]{2,6})?", fullmatch=True)


def init_blobs() -> st.SearchStrategy[InitBlob]:
    """
    Init blobs with every optional part present or absent.
    """
    tcp = st.builds(
        TcpChannelConfig, st.one_of(_ip_hosts(), _hostnames()), _U16, st.booleans(), st.booleans()
    )
    ipc = st.builds(IpcChannelConfig, texts().map(lambda t: "/tmp/" + t), st.booleans())
    return st.builds(
        InitBlob,
        orchestrator_api=texts(),
        module_id=texts(),
        env=_str_maps(),
        listen=st.none() | listen_addresses(),
        tcp_channel=st.none() | tcp,
        ipc_channel=st.none() | ipc,
        auth_token=st.none() | texts(),
        security_level=st.sampled_from(SecurityLevel),
        debug_mode=st.booleans(),
        log_level=st.none() | st.sampled_from(["debug", "info", "warning", "error"]),
        ipc_only=st.booleans(),
    )


def _unknown(known: frozenset[str]) -> st.SearchStrategy[UnknownMessage]:
    ops = st.text(string.ascii_lowercase + "_", min_size=1, max_size=24).filter(
        lambda op: op not in known
    )
    fields = st.dictionaries(texts(10).filter(lambda k: k != "op"), json_values(), max_size=4)
    return st.builds(UnknownMessage, ops, fields)


def _service_operations() -> st.SearchStrategy[ServiceOperation]:
    return st.builds(ServiceOperation, texts(), service_types(), texts(), json_values())


def orchestrator_messages() -> st.SearchStrategy[OrchestratorMessage]:
    """
    Every orchestrator -> module message type, including L{UnknownMessage} with an op
    outside L{ORCHESTRATOR_OPS<pywatt_twisted.wire.codec.ORCHESTRATOR_OPS>}.
    """
    opt_text = st.none() | texts()
    provider = st.builds(
        ServiceProviderInfo,
        texts(),
        texts(),
        service_types(),
        texts(),
        opt_text,
        texts(),
        _str_maps(),
        st.booleans(),
    )
    return st.one_of(
        st.builds(Init, init_blobs()),
        st.builds(SecretMessage, texts(), texts(), opt_text),
        st.builds(Rotated, st.lists(texts(), max_size=4), texts()),
        st.just(Shutdown()),
        st.just(Heartbeat()),
        st.builds(RegisterServiceProviderResponse, st.booleans(), opt_text, opt_text),
        st.builds(
            DiscoverServiceProvidersResponse,
            st.booleans(),
            st.lists(provider, max_size=3),
            opt_text,
        ),
        st.builds(ServiceResponse, texts(), service_types(), st.booleans(), opt_text, opt_text),
        st.builds(
            ServiceOperationResult,
            st.booleans(),
            json_values(),
            opt_text,
            st.none() | _service_operations(),
        ),
        st.builds(
            HttpRequest,
            texts(),
            texts(10),
            texts(),
            _str_maps(),
            st.none() | st.binary(max_size=64),
        ),
        st.builds(PortResponse, texts(), st.booleans(), _U16, opt_text),
        st.builds(RoutedModuleMessage, texts(), st.uuids(), encoded_payloads(), opt_text),
        st.builds(RoutedModuleResponse, texts(), st.uuids(), encoded_payloads()),
        _unknown(ORCHESTRATOR_OPS),
    )


def module_messages() -> st.SearchStrategy[ModuleMessage]:
    """
    Every module -> orchestrator message type, including L{UnknownMessage} with an op
    outside L{MODULE_OPS<pywatt_twisted.wire.codec.MODULE_OPS>}.
    """
    opt_text = st.none() | texts()
    endpoint = st.builds(Endpoint, texts(), st.lists(texts(8), max_size=3), opt_text)
    return st.one_of(
        st.builds(Announce, texts(), st.lists(endpoint, max_size=3)),
        st.builds(GetSecret, texts()),
        st.builds(RotationAck, texts(), st.sampled_from(["success", "error"]), opt_text),
        st.builds(
            RegisterServiceProvider,
            service_types(),
            texts(),
            opt_text,
            texts(),
            st.none() | _str_maps(),
        ),
        st.builds(DiscoverServiceProviders, service_types(), st.none() | st.booleans()),
        st.builds(ServiceRequest, texts(), service_types(), json_values()),
        _service_operations(),
        st.builds(HttpResponse, texts(), _U16, _str_maps(), st.none() | st.binary(max_size=64)),
        st.builds(PortRequest, texts(), st.none() | _U16),
        st.builds(RouteToModule, texts(), texts(), st.uuids(), encoded_payloads()),
        st.just(HeartbeatAck()),
        st.builds(Identify, texts()),
        st.builds(RoutedModuleReply, texts(), st.uuids(), texts(), encoded_payloads()),
        _unknown(MODULE_OPS),
    )


def module_envelopes() -> st.SearchStrategy[Envelope]:
    """
    Enveloped module -> orchestrator messages (a uuid id and any metadata).
    """
    return st.builds(Envelope, st.uuids(), module_messages(), metadata())


def orchestrator_envelopes() -> st.SearchStrategy[Envelope]:
    """
    Enveloped orchestrator -> module messages (a uuid id and any metadata).
    """
    return st.builds(Envelope, st.uuids(), orchestrator_messages(), metadata())


def frames(
    max_payload: int = 256,
    formats: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[Frame]:
    """
    Frames with any payload of up to C{max_payload} bytes.

    @param formats: the format bytes to use; by default the four valid ones (0-3).
    """
    if formats is None:
        formats = st.sampled_from([FORMAT_AUTO, FORMAT_JSON, FORMAT_BINARY, FORMAT_BASE64])
    return st.builds(Frame, formats, st.binary(max_size=max_payload))


def frame_streams(max_frames: int = 8, max_payload: int = 256) -> st.SearchStrategy[list[Frame]]:
    """
    Lists of frames to concatenate into one stream.
    """
    return st.lists(frames(max_payload), max_size=max_frames)


@st.composite
def _random_chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    if not data:
        return draw(st.sampled_from([[], [b""]]))
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=min(len(data), 16), unique=True))
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """
    Ways a transport might deliver C{data}: lists of chunks (empty chunks included)
    whose concatenation is C{data}, from one chunk to one byte at a time.
    """
    one_by_one = [data[i : i + 1] for i in range(len(data))]
    return st.one_of(st.just([data]), st.just(one_by_one), _random_chunkings(data))
