# -*- test-case-name: tests.wire.test_init -*-
"""
The init blob: the first line the orchestrator writes to a module's stdin.

Value classes only; parsing and encoding live in L{pywatt_twisted.wire.codec}
(L{decode_init<pywatt_twisted.wire.codec.decode_init>},
L{encode_init<pywatt_twisted.wire.codec.encode_init>}). The listen-address and
channel-config parsers are here because they are small and also useful on their own.

See PROTOCOL.md section 2.3 (reproduced for module authors in C{docs/protocol.md}).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Final

from attrs import field, frozen

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire._value import Value

__all__ = [
    "InitBlob",
    "IpcChannelConfig",
    "ListenAddress",
    "SecurityLevel",
    "TcpChannelConfig",
    "TcpListen",
    "UnixListen",
    "format_host_port",
    "listen_warning",
    "parse_host_port",
    "parse_ip_socket_address",
    "parse_listen",
]


class SecurityLevel(enum.Enum):
    """
    C{InitBlob.security_level}: how the orchestrator wants channels secured.

    The original SDKs parse it and never act on it; see C{docs/protocol.md}.
    """

    NONE = "None"
    TOKEN = "Token"
    MTLS = "Mtls"


def format_host_port(host: str, port: int) -> str:
    """
    Render C{host} and C{port} the way Rust's C{SocketAddr} does: C{"127.0.0.1:4102"},
    and brackets around an IPv6 host, C{"[::1]:4102"}.
    """
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


@frozen(eq=False, repr=False)
class TcpListen(Value):
    """
    A TCP address (an IP literal and a port) to serve HTTP on.

    @ivar host: the IP literal, without brackets (C{"::1"}, not C{"[::1]"}).
    @ivar port: 0-65535; 0 asks the operating system for a free port.
    """

    host: str
    port: int

    def __str__(self) -> str:
        return format_host_port(self.host, self.port)


@frozen(eq=False, repr=False)
class UnixListen(Value):
    """
    A Unix socket path to serve HTTP on.
    """

    path: str

    def __str__(self) -> str:
        return self.path


ListenAddress = TcpListen | UnixListen
"""Where a module serves HTTP: C{TcpListen | UnixListen}."""

_PORT_RE: Final = re.compile(r"[0-9]{1,5}\Z")
_HOST_PORT_LIKE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]{1,5}\Z")
_HOSTNAME_RE: Final = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\Z")


def _parse_port(text: str) -> int | None:
    if _PORT_RE.match(text) is None:
        return None
    port = int(text)
    return port if port <= 65535 else None


def parse_ip_socket_address(text: str) -> tuple[str, int] | None:
    """
    Parse C{text} the way Rust's C{SocketAddr::from_str} does.

    Accepted: C{"a.b.c.d:port"} (no leading zeros in octets) and C{"[v6]:port"}, with an
    optional numeric scope (C{"[fe80::1%2]:80"}). Host names are not accepted.

    @return: C{(host, port)} with the host unbracketed, or C{None} if C{text} is not an
        IP socket address.
    """
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            return None
        host = text[1:close]
        port = _parse_port(text[close + 2 :])
        if port is None:
            return None
        address, _, scope = host.partition("%")
        if scope and not scope.isdigit():
            return None
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return None
        return host, port
    host, sep, port_text = text.rpartition(":")
    if not sep:
        return None
    port = _parse_port(port_text)
    if port is None:
        return None
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return None
    return host, port


def parse_host_port(text: str, field: str) -> tuple[str, int]:
    """
    Parse an C{"ip:port"}, C{"[v6]:port"} or C{"hostname:port"} address.

    This is more lenient than Rust (which wants an IP literal): a host name is accepted,
    since a module can still connect to it.

    @raise ProtocolError: naming C{field}, if C{text} is none of these.
    """
    parsed = parse_ip_socket_address(text)
    if parsed is not None:
        return parsed
    host, sep, port_text = text.rpartition(":")
    port = _parse_port(port_text) if sep else None
    if port is None or _HOSTNAME_RE.match(host) is None:
        raise ProtocolError(
            f"expected an address 'ip:port', '[ipv6]:port' or 'hostname:port', "
            f"got a string of {len(text)} characters that is none of these",
            field=field,
        )
    return host, port


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
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


def parse_listen(value: object, field: str = "listen") -> ListenAddress:
    """
    Parse the C{listen} value of an init blob.

      - A string that is an IP socket address (see L{parse_ip_socket_address}) is a
        L{TcpListen}; any other non-empty string is a L{UnixListen} (serde's untagged
        rule: C{"localhost:8080"} is a path; L{listen_warning} flags that case).
      - C{{"Tcp": "ip:port"}} and C{{"Unix": path}} (the Python SDK's shape) are accepted.

    @raise ProtocolError: naming C{field}, for anything else.
    """
    if isinstance(value, str):
        if not value:
            raise ProtocolError(
                "expected an 'ip:port' address or a Unix socket path, got an empty string",
                field=field,
            )
        parsed = parse_ip_socket_address(value)
        if parsed is not None:
            return TcpListen(parsed[0], parsed[1])
        return UnixListen(value)
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "Unix" and isinstance(inner, str) and inner:
            return UnixListen(inner)
        if key == "Tcp" and isinstance(inner, str):
            parsed = parse_ip_socket_address(inner)
            if parsed is not None:
                return TcpListen(parsed[0], parsed[1])
            raise ProtocolError(
                "expected an IP socket address such as '127.0.0.1:4102' or '[::1]:4102' "
                'inside {"Tcp": ...}',
                field=f"{field}.Tcp",
            )
    raise ProtocolError(
        "expected a string ('ip:port' or a Unix socket path) or {\"Unix\": path} or "
        f'{{"Tcp": "ip:port"}}, got {_type_name(value)}',
        field=field,
    )


def listen_warning(listen: ListenAddress | None) -> str | None:
    """
    Return a warning for a listen address that is probably a mistake, else C{None}.

    A string like C{"localhost:8080"} is a Unix socket path by the protocol's rules (host
    names are not IP literals); the caller should log this warning and carry on.
    """
    if isinstance(listen, UnixListen) and _HOST_PORT_LIKE_RE.match(listen.path):
        return (
            f"listen address {listen.path!r} looks like host:port but is not an IP literal; "
            "the protocol treats it as a Unix socket path. Use an IP address "
            "(e.g. '127.0.0.1:8080') for TCP."
        )
    return None


@frozen(eq=False, repr=False)
class TcpChannelConfig(Value):
    """
    C{InitBlob.tcp_channel}: where the module connects its framed TCP channel.

    Accepted as the Rust form C{{"address": "ip:port", "tls_enabled", "required"}} or the
    Python form C{{"host", "port", "tls_enabled", "required"}}; emitted in the Rust form.
    """

    host: str
    port: int
    tls_enabled: bool = False
    required: bool = False

    @property
    def address(self) -> str:
        """
        The C{"ip:port"} (or C{"[v6]:port"}) string.
        """
        return format_host_port(self.host, self.port)


@frozen(eq=False, repr=False)
class IpcChannelConfig(Value):
    """
    C{InitBlob.ipc_channel}: the Unix socket the module connects its framed channel to.
    """

    socket_path: str
    required: bool = False


def _env_converter(value: Mapping[str, str]) -> Mapping[str, str]:
    return value if type(value) is dict else dict(value)


@frozen(eq=False, repr=False)
class InitBlob(Value):
    """
    Everything the orchestrator tells a module at start-up (the first stdin line).

    @ivar orchestrator_api: the orchestrator's HTTP API base URL.
    @ivar module_id: this module's id.
    @ivar env: values the orchestrator already knows (not exported to the process env).
    @ivar listen: where to serve HTTP, or C{None} when the blob had none (then a port is
        negotiated with C{port_request}).
    @ivar tcp_channel: the TCP channel to connect, if any.
    @ivar ipc_channel: the Unix-socket channel to connect, if any.
    @ivar auth_token: an opaque token, kept for the application; never sent by default.
    @ivar security_level: see L{SecurityLevel}.
    @ivar debug_mode: Python-SDK extension, C{False} unless given.
    @ivar log_level: Python-SDK extension, C{None} unless given.
    @ivar extensions: the extensions the orchestrator enabled (EXTENSIONS.md X0), the
        JSON object as given, or C{None}; read it with
        L{pywatt_twisted.wire.stream.StreamOptions.from_extensions}.
    @ivar ipc_only: pywatt_twisted extension (docs/http-options.md), C{False} unless
        given: the module binds no listen socket and serves HTTP only over stdin and
        its channels, announcing C{"listen": ""}.
    """

    orchestrator_api: str
    module_id: str
    env: Mapping[str, str] = field(factory=dict, converter=_env_converter)
    listen: ListenAddress | None = None
    tcp_channel: TcpChannelConfig | None = None
    ipc_channel: IpcChannelConfig | None = None
    auth_token: str | None = field(default=None, repr=False)
    security_level: SecurityLevel = SecurityLevel.NONE
    debug_mode: bool = False
    log_level: str | None = None
    extensions: Mapping[str, Any] | None = None
    ipc_only: bool = False
