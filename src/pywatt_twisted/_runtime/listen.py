# -*- test-case-name: tests.runtime.test_service -*-
"""
Binding the module's listen address: the endpoint for the init blob's C{listen}
(C{ip:port}, C{[v6]:port}, a Unix socket path, or a port asked of the orchestrator),
and the bound address as C{announce.listen} renders it.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory

from pywatt_twisted.errors import BootstrapError
from pywatt_twisted.wire.init import ListenAddress, TcpListen, UnixListen

__all__ = ["describe_address", "listen"]


def describe_address(address: object) -> str:
    """
    Render a bound address the way the orchestrator expects it in C{announce.listen}:
    C{ip:port}, C{[v6]:port}, or the socket path.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode() if isinstance(name, bytes) else str(name)
    return str(address)


async def listen(
    where: ListenAddress | None,
    factory: Factory[Any],
    reactor: Any,
    request_port: Callable[[], Awaitable[int]],
) -> IListeningPort:
    """
    Bind C{factory} on C{where}; with no address, on the port C{request_port} gets from
    the orchestrator (PROTOCOL.md 6.6), never on one made up when it does not answer.

    @raise BootstrapError: the address cannot be bound.
    """
    endpoint: TCP4ServerEndpoint | TCP6ServerEndpoint | UNIXServerEndpoint
    if isinstance(where, TcpListen):
        endpoint_class = TCP6ServerEndpoint if ":" in where.host else TCP4ServerEndpoint
        endpoint = endpoint_class(reactor, where.port, interface=where.host)
    elif isinstance(where, UnixListen):
        _remove_stale_socket(where.path)
        endpoint = UNIXServerEndpoint(reactor, where.path)
    else:
        port = await request_port()
        where = TcpListen("127.0.0.1", port)
        endpoint = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    try:
        return await endpoint.listen(factory)
    except Exception as e:
        raise BootstrapError(f"cannot listen on {where}: {e}") from e


def _remove_stale_socket(path: str) -> None:
    """
    Remove a Unix socket left behind by a process that is gone; refuse to take over
    one a live process still listens on.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
    else:
        raise BootstrapError(f"another process is already listening on {path}")
    finally:
        probe.close()
