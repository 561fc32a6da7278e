# -*- test-case-name: tests.dev.test_routing -*-
"""
The framed channels of one module in C{pywatt dev}: the TCP and Unix-socket listeners
the module connects to, the per-link counters, the channel preference the module
stated in its identify, and the choice of the connection to deliver on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.orchestrator._channel_server import ChannelServer
from pywatt_twisted.wire._forward import LastShape, RoutingHeader, read_routing
from pywatt_twisted.wire.framing import FORMAT_JSON
from pywatt_twisted.wire.messages import Identify, RoutedModuleReply, RouteToModule

#: where a module's messages go: C{on_message(message, reply, link)}
OnMessage = Callable[[Any, Callable[[Any], None], str], None]

#: where a module's module-to-module messages go undecoded:
#: C{on_routed(header, connection, link)} (the connection's C{send} answers, its
#: C{send_raw} writes frames)
OnRouted = Callable[[RoutingHeader, Any, str], None]

#: the delivery order when the module stated no preference: the Unix socket, then TCP
DEFAULT_ORDER = ("ipc", "tcp")


class ModuleLinks:
    """
    The module's channels, served by pywatt dev (the module connects).

    @ivar channels: the L{ChannelServer} holding the listeners and connections.
    @ivar tcp_address: C{host:port} of the TCP listener once L{listen} ran.
    @ivar ipc_path: the Unix socket's path once L{listen} ran.
    @ivar routed_in: module-to-module messages (requests and replies) the module sent,
        per channel.
    @ivar last_routed_on: the channel the module last sent a module-to-module message on.
    @ivar channel_preference: the order the module stated in its identify, or C{None}.
    """

    def __init__(
        self,
        reactor: Any,
        module_id: str,
        on_message: OnMessage,
        on_routed: OnRouted | None = None,
    ) -> None:
        """
        @param on_routed: where C{route_to_module} and C{routed_module_response} frames
            in the plain shape go with their payload undecoded (L{read_routing}); without
            it they are decoded in full and go to C{on_message} like the rest.
        """
        self._module_id = module_id
        self._on_message = on_message
        self._on_routed = on_routed
        self.channels = ChannelServer(
            reactor,
            on_message=self.received,
            on_json=None if on_routed is None else self.json_received,
            record=False,
        )
        self.tcp_address: str | None = None
        self.ipc_path: str | None = None
        self._socket_dir: str | None = None
        # The messages that are not module-to-module ones, per link: a module-to-module
        # message is counted once, in routed_in, and messages_in adds the two up (one
        # count per forwarded frame instead of two: ~2k of 80k instructions per round
        # trip).
        self._other_in: dict[str, int] = {"stdio": 0, "tcp": 0, "ipc": 0}
        self.routed_in: dict[str, int] = {"tcp": 0, "ipc": 0}
        self.last_routed_on: str | None = None
        self.channel_preference: tuple[str, ...] | None = None
        # the shape of the module's last module-to-module frame (see read_routing)
        self._last_shape: LastShape = [None]
        # what delivery() chose, and what it chose from (see there)
        self._chosen: tuple[Any, str | None, list[Any], Any] | None = None

    @property
    def messages_in(self) -> dict[str, int]:
        """
        The messages the module sent, per link (stdio, tcp, ipc): a fresh dict.
        """
        counts = dict(self._other_in)
        for link, routed in self.routed_in.items():
            counts[link] = counts.get(link, 0) + routed
        return counts

    def count(self, link: str) -> None:
        """
        Count a message the module sent on C{link} that is not a module-to-module one
        (L{received} and L{json_received} count what comes on the channels).
        """
        self._other_in[link] = self._other_in.get(link, 0) + 1

    async def listen(self) -> None:
        """
        Listen on the module's TCP and Unix-socket channels (before the first spawn).
        """
        self.tcp_address = await self.channels.listen_tcp(0, "127.0.0.1")
        # AF_UNIX paths are short: keep the socket in a fresh directory under /tmp.
        self._socket_dir = tempfile.mkdtemp(prefix="pywatt-dev-")
        self.ipc_path = await self.channels.listen_unix(
            os.path.join(self._socket_dir, f"{self._module_id}.sock")
        )

    async def close(self) -> None:
        await self.channels.stop()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def received(self, connection: Any, envelope: Any) -> bool:
        """
        One envelope from the module on a channel: count it, learn the preference an
        identify states, and hand the message on with a reply on the same connection.
        """
        link = str(connection.listener)
        content = envelope.content
        if isinstance(content, RouteToModule | RoutedModuleReply):
            self.last_routed_on = link
            self.routed_in[link] = self.routed_in.get(link, 0) + 1
        else:
            self.count(link)
            if isinstance(content, Identify):
                self._learn_preference(envelope)
        self._on_message(content, connection.send, link)
        return True

    def frame_received(self, connection: Any, frame: Any) -> bool:
        """
        One frame from the module, before it is decoded: a module-to-module message in
        the plain shape is counted as L{received} counts it and goes to C{on_routed}
        with its payload undecoded (the module it goes to decodes it); anything else is
        decoded in full (C{False}).
        """
        if frame.format != FORMAT_JSON:
            return False
        return self.json_received(connection, frame.payload)

    def json_received(self, connection: Any, payload: bytes) -> bool:
        """
        L{frame_received} for a JSON frame's payload (what the channels hand over: no
        frame object is made for it).
        """
        try:
            header = read_routing(payload, self._last_shape)
        except ProtocolError as e:
            connection.bad_frames.append(e)  # as the full decode would
            return True
        if header is None:
            return False
        link = connection.listener
        self.last_routed_on = link
        routed_in = self.routed_in
        routed_in[link] = routed_in.get(link, 0) + 1
        assert self._on_routed is not None
        self._on_routed(header, connection, link)
        return True

    def _learn_preference(self, envelope: Any) -> None:
        properties = envelope.metadata.properties or {}
        stated = properties.get("channel_preference")
        if isinstance(stated, list) and all(n in ("auto", "tcp", "ipc") for n in stated):
            self.channel_preference = tuple(stated)

    def preferred(self) -> tuple[str, ...]:
        """
        The order to deliver to the module in: the preference it stated in its identify
        (under C{auto}, the channel it last sent a module-to-module message on first),
        else its default (the Unix socket, then TCP).
        """
        stated = self.channel_preference
        if not stated:
            return DEFAULT_ORDER
        if stated[0] == "auto":
            rest = tuple(n for n in stated[1:] if n != "auto") or DEFAULT_ORDER
            first = self.last_routed_on
            if first in ("tcp", "ipc"):
                return (first, *(n for n in rest if n != first))
            return rest
        return stated

    def connection(self, prefer: tuple[str, ...] = DEFAULT_ORDER) -> Any:
        """
        An open channel connection of the module (the first kind in C{prefer} that is
        connected), or C{None}.
        """
        for kind in prefer:
            for connection in reversed(self.channels.connections):
                if connection.listener == kind and not connection.lost:
                    return connection
        return None

    def delivery(self) -> Any:
        """
        C{connection(preferred())}: the connection to deliver to the module on, or
        C{None}.

        The choice is remembered with what it was made from: the preference stated,
        the channel the module last sent a module-to-module message on, and the list
        of connections (a copy, compared element by element); it is made again when
        any of these changed or the chosen connection was lost. A connection's
        C{listener} is set before it is listed and a lost connection stays lost, so
        nothing else can change the choice (another connection's loss only removes one
        that was not chosen). Choosing anew was ~3k instructions, a few percent of
        forwarding a module-to-module message, which asks it for every request and
        reply; a remembered choice is ~1k, the call included.
        """
        chosen = self._chosen
        if (
            chosen is not None
            and chosen[0] is self.channel_preference
            and chosen[1] == self.last_routed_on
            and not chosen[3].lost
            and chosen[2] == self.channels.connections
        ):
            return chosen[3]
        connection = self.connection(self.preferred())
        self._chosen = (
            None
            if connection is None
            else (
                self.channel_preference,
                self.last_routed_on,
                list(self.channels.connections),
                connection,
            )
        )
        return connection

    def state(self, kind: str) -> str:
        """
        C{off}, C{up (address)} or C{down (address)} for the C{tcp} or C{ipc} channel.
        """
        address = self.tcp_address if kind == "tcp" else self.ipc_path
        if address is None:
            return "off"
        connected = any(c.listener == kind and not c.lost for c in self.channels.connections)
        return f"up ({address})" if connected else f"down ({address})"
