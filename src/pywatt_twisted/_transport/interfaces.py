"""
The boundary between transports (bytes <-> messages) and the runtime (messages ->
actions).
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface


class IOrchestratorLink(Interface):
    """
    One way of talking to the orchestrator: stdio, or a framed TCP / Unix-socket channel.
    Replies go back on the link the request came in on, in that link's shape.
    """

    name = Attribute("'stdio', 'tcp' or 'ipc'")

    def send(message: Any) -> None:
        """
        Send a module-to-orchestrator message in this link's shape (a bare line on stdout,
        an envelope in a frame on a channel).
        """

    def send_heartbeat_ack() -> None:
        """
        Acknowledge a heartbeat that came in on this link.
        """

    def send_http_response(response: Any) -> None:
        """
        Send the reply to an C{http_request} that came in on this link.

        @raise pywatt_twisted.errors.MessageTooLarge: if the link's frame cannot hold it
            (nothing was sent; the HTTP layer answers otherwise).
        """


class IMessageReceiver(Interface):
    """
    What a transport hands decoded messages to.
    """

    def init_received(blob: Any) -> None:
        """
        The init blob (the first stdin line) arrived and parsed.
        """

    def init_failed(reason: Exception) -> None:
        """
        The first stdin line was missing (EOF), too long or invalid.
        """

    def message_received(message: Any, link: IOrchestratorLink) -> None:
        """
        An orchestrator-to-module message arrived on C{link}.
        """

    def input_closed(link: IOrchestratorLink) -> None:
        """
        The orchestrator closed C{link}'s input (stdin EOF).
        """
