"""
How the handler side answers on a channel connection (L{routed_handlers._Answers}): a
handler's plain value is spliced into its reply frame from its JSON text, with no
payload value, unless something would change or stop the reply (tracing, replies
off); every other answer goes through C{reply}.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import tracing
from pywatt_twisted._runtime import routed_handlers
from pywatt_twisted._runtime.routed_handlers import RoutedHandlers
from pywatt_twisted._transport.channel import ChannelProtocol, ChannelSettings
from pywatt_twisted.wire.envelope import encode_channel_frame
from pywatt_twisted.wire.framing import FrameDecoder
from pywatt_twisted.wire.messages import EncodedPayload, RoutedModuleMessage, RoutedModuleReply
from tests.transport.fakes import RecordingListener


def _blank_ids(data: bytes) -> list[bytes]:
    """
    The payloads of the frames in C{data}, their envelope ids blanked.
    """
    out = []
    for item in FrameDecoder(1 << 30).feed(data):
        payload = item.payload  # type: ignore[union-attr]
        out.append(payload[:7] + b"?" * 36 + payload[43:])
    return out


def _connection() -> ChannelProtocol:
    protocol = ChannelProtocol(
        ChannelSettings("tcp", "a", "demo", identify=False), RecordingListener(), Clock()
    )
    transport = StringTransportWithDisconnection()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    transport.clear()
    return protocol


class PlainResultTests(SynchronousTestCase):
    """
    L{routed_handlers._Answers.result} on a channel connection that is up.
    """

    def setUp(self) -> None:
        self.handlers = RoutedHandlers(module_id="inv", clock=Clock())
        self.link = _connection()
        self.message = RoutedModuleMessage("orders", uuid.uuid4(), EncodedPayload(b"1", "Json"))

    def expected(self, payload: EncodedPayload) -> list[bytes]:
        reply = RoutedModuleReply("inv", self.message.original_request_id, "orders", payload)
        return _blank_ids(encode_channel_frame(reply, 1 << 20))

    def written(self) -> list[bytes]:
        return _blank_ids(self.link.transport.value())  # type: ignore[attr-defined]

    def test_spliced_without_a_payload(self) -> None:
        """
        A plain value's reply frame is the encoder's, built from the value's JSON text:
        no payload value is made for it.
        """

        def no_payload(data: bytes) -> EncodedPayload:
            raise AssertionError("a payload was built")

        self.patch(routed_handlers, "json_payload_of", no_payload)
        self.handlers.answers.result(self.message, self.link, False, "get", {"sku": "A1"})
        self.assertEqual(self.written(), self.expected(EncodedPayload.from_json({"sku": "A1"})))
        self.assertEqual(self.link.counters.frames_out, 1)

    def test_tracing_goes_through_reply(self) -> None:
        """
        With tracing on, the payload goes through the tracing hook (the handler span's
        context) before it is written.
        """
        wrapped = EncodedPayload.from_json({"wrapped": True})
        seen: list[EncodedPayload] = []

        def reply_payload(payload: EncodedPayload) -> EncodedPayload:
            seen.append(payload)
            return wrapped

        self.patch(tracing.switch, "on", True)
        self.patch(tracing, "reply_payload", reply_payload)
        self.handlers.answers.result(self.message, self.link, False, "get", [1, 2])
        self.assertEqual(seen, [EncodedPayload.from_json([1, 2])])
        self.assertEqual(self.written(), self.expected(wrapped))

    def test_replies_off(self) -> None:
        """
        With the reply extension off, nothing is written.
        """
        self.handlers.replies = False
        self.handlers.answers.result(self.message, self.link, False, "get", {"n": 1})
        self.assertEqual(self.link.transport.value(), b"")  # type: ignore[attr-defined]

    def test_too_large_for_the_handlers_cap(self) -> None:
        """
        A value that may not fit the handlers' frame cap takes the general path, which
        answers C{bad_reply} when it does not.
        """
        self.handlers.max_frame_length = 6000
        self.handlers.answers.result(self.message, self.link, False, "get", "x" * 3000)
        [frame] = self.written()
        self.assertIn(b'"op":"routed_module_response"', frame)
        self.assertEqual(self.handlers.error_replies_sent, 1)

    def test_other_payloads_are_sent(self) -> None:
        """
        A reply whose payload is not C{"Json"} is sent as its value: the encoder's frame.
        """
        payload = EncodedPayload(b"\x00\x01", "Binary")
        self.handlers.answers.reply(self.link, self.message, payload)
        self.assertEqual(self.written(), self.expected(payload))

    def test_not_a_channel(self) -> None:
        """
        A link that is not a channel connection is sent the reply value.
        """
        sent: list[Any] = []

        class Link:
            name = "stdio"
            send = sent.append

        self.handlers.answers.result(self.message, Link(), False, "get", {"n": 1})
        self.assertEqual(
            sent,
            [
                RoutedModuleReply(
                    "inv",
                    self.message.original_request_id,
                    "orders",
                    EncodedPayload.from_json({"n": 1}),
                )
            ],
        )
