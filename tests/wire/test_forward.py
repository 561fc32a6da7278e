"""
Tests for L{pywatt_twisted.wire._forward}: a module-to-module message's routing header
read without decoding its payload, and the frames that splice the payload back in,
against the full decoder and encoder.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import MessageTooLarge, ProtocolError
from pywatt_twisted.wire import _forward
from pywatt_twisted.wire._forward import (
    MAX_READ_SIZE,
    ROUTE_TO_MODULE,
    ROUTED_REPLY,
    read_routing,
    routed_message_frame,
    routed_reply_frame,
    routed_response_frame,
)
from pywatt_twisted.wire.codec import decode_envelope_from_module, decode_from_orchestrator, encode
from pywatt_twisted.wire.envelope import encode_channel_frame, routed_request_payload
from pywatt_twisted.wire.framing import FORMAT_JSON, encode_frame
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)

REQUEST_ID = uuid.UUID("58dae9c5-3442-4c6f-a277-50e4d8371c5d")
REQUEST_ID_TEXT = b"58dae9c5-3442-4c6f-a277-50e4d8371c5d"


def request(payload: EncodedPayload | None = None, target: str = "inventory") -> RouteToModule:
    if payload is None:
        payload = routed_request_payload({"sku": "A1"}, "get_stock", "orders", False, 1, 2)
    return RouteToModule(target, "get_stock", REQUEST_ID, payload)


def body(message: object) -> bytes:
    """
    The JSON text of C{message}'s channel frame, as a module sends it.
    """
    return encode_channel_frame(message, 1 << 24)[5:]


class ReadRoutingTests(SynchronousTestCase):
    def test_request(self) -> None:
        """
        The header of a C{route_to_module} holds its routing fields as the full decode
        gives them, and the payload object's JSON text; decoded, it is the payload.
        """
        message = request()
        data = body(message)
        header = read_routing(data)
        assert header is not None
        self.assertEqual(header.op, ROUTE_TO_MODULE)
        self.assertEqual(
            (header.target_module_id, header.target_endpoint, header.source_module_id),
            ("inventory", "get_stock", None),
        )
        self.assertEqual(header.request_id, REQUEST_ID_TEXT)
        self.assertEqual(header.request_uuid(), REQUEST_ID)
        self.assertTrue(header.payload_json.startswith(b'{"data":[123,'))
        self.assertEqual(header.payload(), message.payload)
        self.assertEqual(header.message(), decode_envelope_from_module(data).content)

    def test_request_id_forms(self) -> None:
        """
        A request id in any form the full decoder accepts is read as its canonical
        lowercase text (the key a relay correlates by, and what the forwarded frame
        carries, as the encoder writes it); one it refuses raises its error.
        """
        plain = body(request())
        text = str(REQUEST_ID)
        for value in (text.upper(), "{" + text + "}", "urn:uuid:" + text, REQUEST_ID.hex):
            data = plain.replace(text.encode(), value.encode())
            header = read_routing(data)
            assert header is not None
            self.assertEqual(header.request_id, REQUEST_ID_TEXT, value)
            self.assertEqual(header.message(), decode_envelope_from_module(data).content)
        for value in ("é" + text[1:], text[:-1] + "g"):
            data = plain.replace(text.encode(), value.encode())
            expected = self.assertRaises(ProtocolError, decode_envelope_from_module, data)
            error = self.assertRaises(ProtocolError, read_routing, data)
            self.assertEqual(str(error), str(expected))

    def test_large_frames_are_decoded_in_full(self) -> None:
        """
        A frame over L{MAX_READ_SIZE} (a stream chunk, a large routed body) is left to the
        full decode, which reads it as before; a frame under it is read.
        """
        under = body(request(EncodedPayload(b"7" * ((MAX_READ_SIZE - 1000) // 3))))
        over = body(request(EncodedPayload(b"7" * (MAX_READ_SIZE // 3 + 10))))
        self.assertLess(len(under), MAX_READ_SIZE)
        self.assertGreater(len(over), MAX_READ_SIZE)
        header = read_routing(under)
        assert header is not None
        self.assertEqual(header.message(), decode_envelope_from_module(under).content)
        self.assertIsNone(read_routing(over))
        self.assertEqual(
            decode_envelope_from_module(over).content.payload,
            EncodedPayload(b"7" * (MAX_READ_SIZE // 3 + 10)),
        )

    def test_reply(self) -> None:
        message = RoutedModuleReply(
            "inventory", REQUEST_ID, "orders", EncodedPayload.from_json({"in_stock": 7})
        )
        data = body(message)
        header = read_routing(data)
        assert header is not None
        self.assertEqual(header.op, ROUTED_REPLY)
        self.assertEqual(
            (header.source_module_id, header.target_module_id, header.target_endpoint),
            ("inventory", "orders", None),
        )
        self.assertEqual(header.message(), decode_envelope_from_module(data).content)

    def test_empty_and_other_formats(self) -> None:
        """
        An empty payload, and each format in its encoders' spelling, are read.
        """
        for payload in (
            EncodedPayload(b"", "Json"),
            EncodedPayload(b"\x00\xff", "Binary"),
            EncodedPayload(b"AA==", "Base64"),
            EncodedPayload(b"1", "Auto"),
        ):
            header = read_routing(body(request(payload)))
            assert header is not None
            self.assertEqual(header.payload(), payload)

    def test_other_shapes_are_not_read(self) -> None:
        """
        Anything but the plain shape gives C{None}: the full decode handles it.
        """
        plain = body(request())
        cases = {
            "another op": body(RoutedModuleMessage("a", REQUEST_ID, EncodedPayload(b"1"), "e")),
            "a bare message": encode(request()),
            "an escape in a field": plain.replace(b'"get_stock"', b'"get\\u005fstock"'),
            "an escaped second payload key": plain.replace(
                b'"metadata":{}', b'"metadata":{"p\\u0061yload":1}'
            ),
            "an escaped duplicate payload key": plain.replace(
                b'"format":"Json"}', b'"format":"Json"},"p\\u0061yload":0'
            ),
            "a second payload key": plain.replace(b'"metadata":{}', b'"metadata":{"payload":1}'),
            "a payload key before it": plain.replace(
                b'"op":"route_to_module",', b'"op":"route_to_module","payload":1,'
            ),
            "a payload key right after it": plain.replace(
                b'"format":"Json"}', b'"format":"Json"},"payload":0'
            ),
            "a space": plain.replace(b'"payload":{', b'"payload": {'),
            "another format spelling": plain.replace(b'"format":"Json"', b'"format":"json"'),
            "another key order": plain.replace(b'"payload":{"data"', b'"payload":{"dat"'),
            "a value that is not a number": plain.replace(b'"data":[123,', b'"data":["x",'),
            "a negative value": plain.replace(b'"data":[123,', b'"data":[-1,'),
            "a fraction": plain.replace(b'"data":[123,', b'"data":[1.5,'),
            "a key after the format": plain.replace(
                b'"format":"Json"}', b'"format":"Json","data":[1]}'
            ),
            "payload outside the content": plain.replace(b'"payload"', b'"other"').replace(
                b'"metadata":{}', b'"metadata":{},"payload":{"data":[1],"format":"Json"}'
            ),
            "not JSON": plain[:-1],
            "not an object": b"[" + plain + b"]",
            "the nested shape": plain.replace(
                b'"op":"route_to_module",', b'"op":"route_to_module","route_to_module":{},'
            ),
        }
        for name, data in cases.items():
            self.assertIsNone(read_routing(data), name)

    def test_invalid_routing_fields(self) -> None:
        """
        An invalid routing field, envelope id or metadata raises the full decoder's
        error.
        """
        plain = body(request())
        cases = [
            plain.replace(str(REQUEST_ID).encode(), b"not-a-uuid"),
            plain.replace(b'"target_module_id":"inventory"', b'"target_module_id":7'),
            plain.replace(b'"target_endpoint":"get_stock"', b'"target_endpoint":null'),
            plain.replace(b'"metadata":{}', b'"metadata":5'),
            plain.replace(b'"metadata":{}', b'"metadata":{"timestamp":"x"}'),
            b'{"id":"nope"' + plain[plain.index(b',"content"') :],
        ]
        for data in cases:
            expected = self.assertRaises(ProtocolError, decode_envelope_from_module, data)
            error = self.assertRaises(ProtocolError, read_routing, data)
            self.assertEqual(str(error), str(expected))

    def test_envelope_ids(self) -> None:
        """
        The envelope's id is accepted and refused exactly as the full decoder does: the
        canonical form (either case) without parsing, any other form through the full
        decoder's check.
        """
        plain = body(request())
        envelope_id = plain[plain.index(b'"id":"') + 6 : plain.index(b'"id":"') + 42]
        accepted = [
            envelope_id.upper(),
            b"{" + envelope_id + b"}",
            b"urn:uuid:" + envelope_id,
            envelope_id.replace(b"-", b""),
        ]
        for value in accepted:
            data = plain.replace(envelope_id, value, 1)
            decode_envelope_from_module(data)
            self.assertIsNotNone(read_routing(data), value)
        refused = [b"g" + envelope_id[1:], envelope_id[:-1], envelope_id + b"0", b""]
        for value in refused:
            data = plain.replace(envelope_id, value, 1)
            expected = self.assertRaises(ProtocolError, decode_envelope_from_module, data)
            error = self.assertRaises(ProtocolError, read_routing, data)
            self.assertEqual(str(error), str(expected))
        for value in (b"7", b"null", b"[]"):
            data = plain.replace(b'"' + envelope_id + b'"', value, 1)
            try:
                decode_envelope_from_module(data)
            except ProtocolError as e:
                error = self.assertRaises(ProtocolError, read_routing, data)
                self.assertEqual(str(error), str(e))
            else:
                self.assertIsNotNone(read_routing(data))

    def test_values_that_are_not_bytes(self) -> None:
        """
        Byte values are not decoded: an array of digits and commas that is not bytes is
        read (the full decoder refuses it), and refused where it is decoded: by
        L{RoutingHeader.payload}, and by the module the forwarded frame goes to.
        """
        plain = body(request())
        for values in (b"[256,1]", b"[01]", b"[1,,2]", b"[,]"):
            data = plain.replace(plain[plain.index(b"[") : plain.index(b"]") + 1], values)
            self.assertRaises(ProtocolError, decode_envelope_from_module, data)
            header = read_routing(data)
            assert header is not None
            self.assertRaises(ProtocolError, header.payload)
            frame = routed_message_frame("orders", header.request_id, header.payload_json, "e")
            self.assertRaises((ProtocolError, ValueError), decode_from_orchestrator, frame[5:])


class FrameTests(SynchronousTestCase):
    def test_routed_message_frame(self) -> None:
        """
        The spliced frame is byte for byte the encoded message, with and without an
        endpoint, and with names that need escaping.
        """
        payload = EncodedPayload.from_json({"a": [1, "é"]})
        header = read_routing(body(request(payload)))
        assert header is not None
        for source, endpoint in (("orders", "get_stock"), ('o"r\\d', None), ("ünï", "ç/é")):
            expected = encode_frame(
                encode(RoutedModuleMessage(source, REQUEST_ID, payload, endpoint)),
                FORMAT_JSON,
                1 << 32,
            )
            self.assertEqual(
                routed_message_frame(source, REQUEST_ID_TEXT, header.payload_json, endpoint),
                expected,
            )

    def test_routed_response_frame(self) -> None:
        payload = EncodedPayload.from_json({"in_stock": 7})
        reply = RoutedModuleReply("inventory", REQUEST_ID, "orders", payload)
        header = read_routing(body(reply))
        assert header is not None
        expected = encode_frame(
            encode(RoutedModuleResponse("inventory", REQUEST_ID, payload)), FORMAT_JSON, 1 << 32
        )
        self.assertEqual(
            routed_response_frame("inventory", REQUEST_ID_TEXT, header.payload_json), expected
        )
        self.assertEqual(
            decode_from_orchestrator(expected[5:]),
            RoutedModuleResponse("inventory", REQUEST_ID, payload),
        )

    def test_many_names(self) -> None:
        """
        The frames' starts are kept per module id and endpoint, a bounded number of
        them: made-up names keep giving the encoder's bytes.
        """
        payload = EncodedPayload.from_json({"n": 1})
        header = read_routing(body(request(payload)))
        assert header is not None
        for i in range(_forward._HEADS_LIMIT + 10):
            source = f"m{i}"
            expected = encode_frame(
                encode(RoutedModuleMessage(source, REQUEST_ID, payload, f"e{i}")),
                FORMAT_JSON,
                1 << 32,
            )
            self.assertEqual(
                routed_message_frame(source, REQUEST_ID_TEXT, header.payload_json, f"e{i}"),
                expected,
            )
            expected = encode_frame(
                encode(RoutedModuleResponse(source, REQUEST_ID, payload)), FORMAT_JSON, 1 << 32
            )
            self.assertEqual(
                routed_response_frame(source, REQUEST_ID_TEXT, header.payload_json), expected
            )
        self.assertLessEqual(len(_forward._message_heads), _forward._HEADS_LIMIT)
        self.assertLessEqual(len(_forward._response_heads), _forward._HEADS_LIMIT)


def without_envelope_id(frame: bytes) -> bytes:
    """
    C{frame} (a module's enveloped frame) with its 36-character envelope id blanked:
    each frame gets a fresh one.
    """
    at = 5 + len(b'{"id":"')
    return frame[:at] + b"?" * 36 + frame[at + 36 :]


class ReplyFrameTests(SynchronousTestCase):
    """
    L{routed_reply_frame}: a module's C{routed_module_response} spliced, against the
    encoder's frame of the same L{RoutedModuleReply}.
    """

    def encoded(self, reply: RoutedModuleReply, limit: int = 1 << 24) -> bytes:
        return without_envelope_id(encode_channel_frame(reply, limit))

    @settings(max_examples=300, deadline=None)
    @given(
        source=st.text(max_size=20),
        target=st.text(max_size=20),
        number=st.integers(0, (1 << 128) - 1),
        data=st.binary(max_size=300),
    )
    def test_encoder_bytes(self, source: str, target: str, number: int, data: bytes) -> None:
        """
        Any module ids (quotes, backslashes, non-ASCII, lone surrogates), request id
        and payload bytes give the encoder's frame.
        """
        request_id = uuid.UUID(int=number)
        payload = EncodedPayload(data, "Json")
        frame = routed_reply_frame(source, request_id, target, data, 1 << 24)
        assert frame is not None
        reply = RoutedModuleReply(source, request_id, target, payload)
        self.assertEqual(without_envelope_id(frame), self.encoded(reply))
        # a fresh envelope id each time, as the encoder gives
        again = routed_reply_frame(source, request_id, target, data, 1 << 24)
        self.assertNotEqual(frame, again)

    def test_envelope_ids_across_counter_blocks(self) -> None:
        """
        The envelope ids of spliced replies go on across the end of a counter block
        as the encoder's do (see
        L{tests.wire.test_envelope.ChannelEnvelopeTests.test_envelope_ids_across_counter_blocks}),
        and the frames stay the encoder's.
        """
        import itertools
        import json

        from pywatt_twisted.wire import envelope

        self.addCleanup(envelope._reseed_ids)
        envelope._start_block(0x8000)
        self.patch(envelope, "_next_low", itertools.count(envelope._LOW_END - 1).__next__)
        payload = EncodedPayload.from_json({"n": 1})
        ids = []
        for _ in range(3):
            frame = routed_reply_frame("inventory", REQUEST_ID, "orders", payload.data, 1 << 20)
            assert frame is not None
            reply = RoutedModuleReply("inventory", REQUEST_ID, "orders", payload)
            self.assertEqual(without_envelope_id(frame), self.encoded(reply))
            ids.append(json.loads(frame[5:])["id"])
        self.assertEqual(ids[0][19:], "8000-ffffffffffff")
        # (the encoder's frames take ids from the same counter in between)
        self.assertEqual(ids[1][19:], "8001-100000000001")
        self.assertEqual(ids[2][19:], "8001-100000000003")
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual({i[:19] for i in ids}, {envelope._id_prefix.decode()})

    def test_frame_cap(self) -> None:
        """
        A frame of exactly the cap is given; one byte over, C{None}, where the encoder
        raises L{MessageTooLarge}.
        """
        request_id = uuid.uuid4()
        payload = EncodedPayload.from_json({"n": "x" * 100})
        reply = RoutedModuleReply("inventory", request_id, "orders", payload)
        length = len(encode_channel_frame(reply, 1 << 24)) - 5
        frame = routed_reply_frame("inventory", request_id, "orders", payload.data, length)
        assert frame is not None
        self.assertEqual(without_envelope_id(frame), self.encoded(reply, length))
        self.assertIsNone(
            routed_reply_frame("inventory", request_id, "orders", payload.data, length - 1)
        )
        self.assertRaises(MessageTooLarge, encode_channel_frame, reply, length - 1)

    def test_other_shapes(self) -> None:
        """
        A request id that is not exactly a L{uuid.UUID}: C{None} (the encoder's general
        path writes those).
        """

        class Id(uuid.UUID):
            pass

        request_id = uuid.uuid4()
        self.assertIsNone(routed_reply_frame("a", Id(int=request_id.int), "b", b"1", 1 << 20))

    def test_many_names(self) -> None:
        """
        The starts kept per module id are bounded: made-up names keep giving the
        encoder's bytes.
        """
        payload = EncodedPayload.from_json({"n": 1})
        for i in range(_forward._HEADS_LIMIT + 10):
            reply = RoutedModuleReply(f"s{i}", REQUEST_ID, f"t{i}", payload)
            frame = routed_reply_frame(f"s{i}", REQUEST_ID, f"t{i}", payload.data, 1 << 20)
            assert frame is not None
            self.assertEqual(without_envelope_id(frame), self.encoded(reply))
        self.assertLessEqual(len(_forward._reply_heads), _forward._HEADS_LIMIT)
        self.assertLessEqual(len(_forward._reply_middles), _forward._HEADS_LIMIT)


def fields(data: bytes, read: Any = read_routing) -> object:
    """
    What C{read} makes of C{data}: the header's fields, C{None}, or the error's text.
    """
    try:
        header = read(data)
    except ProtocolError as e:
        return f"error: {e}"
    if header is None:
        return None
    return (
        header.op,
        header.target_module_id,
        header.target_endpoint,
        header.source_module_id,
        header.request_id,
        header.payload_json,
    )


class KnownShapeTests(SynchronousTestCase):
    """
    A frame whose shape was read before is read from what that gave, checking only its
    ids and byte values (C{_read_known}): the result is always the one of reading it
    in full (C{_read_plain}).
    """

    def setUp(self) -> None:
        _forward._shapes.clear()

    def test_same_result(self) -> None:
        """
        Requests and replies, with each payload format and names that need no escape,
        read the same the first time (the shape learnt) and the next (known).
        """
        messages: list[object] = [
            request(),
            request(EncodedPayload(b"", "Json")),
            request(EncodedPayload(b"\x00\xff", "Binary")),
            request(target="ünï/ç"),
            RoutedModuleReply("inventory", REQUEST_ID, "orders", EncodedPayload(b"[1]")),
        ]
        for message in messages:
            data = body(message)
            expected = fields(data, _forward._read_plain)
            self.assertIsInstance(expected, tuple, message)
            self.assertEqual(fields(data), expected)
            self.assertEqual(fields(data), expected)
            other = data.replace(str(REQUEST_ID).encode(), b"0123abcd-ef45-4678-9abc-def012345678")
            self.assertEqual(fields(other), fields(other, _forward._read_plain))
        known = _forward._read_known(body(request()), None)
        assert known is not None
        self.assertEqual(known.request_id, REQUEST_ID_TEXT)

    def test_another_request_id_key_first(self) -> None:
        """
        A C{"request_id"} key before the content's own is not taken for it: the shape
        reads another request id than the sample's, so it is not known.
        """
        other = b"0123abcd-ef45-4678-9abc-def012345678"
        data = body(request()).replace(
            b'"target_endpoint":"get_stock",',
            b'"target_endpoint":"get_stock","x":{"request_id":"' + other + b'"},',
        )
        for _ in range(2):
            self.assertIsNone(_forward._read_known(data, None))
            header = read_routing(data)
            assert header is not None
            self.assertEqual(header.request_id, REQUEST_ID_TEXT)

    def test_errors_are_not_known(self) -> None:
        """
        A shape the full read refuses raises its error every time.
        """
        data = body(request()).replace(b'"target_endpoint":"get_stock"', b'"target_endpoint":7')
        expected = self.assertRaises(ProtocolError, decode_envelope_from_module, data)
        for _ in range(2):
            error = self.assertRaises(ProtocolError, read_routing, data)
            self.assertEqual(str(error), str(expected))

    def test_mutations(self) -> None:
        """
        Any one byte of a request or a reply changed (to one that matters to JSON or to
        the shape), and the frame read again after that: the result is the full read's.
        """
        rng = random.Random(17)
        plains = [
            body(request(EncodedPayload.from_json([1, 2]))),
            body(RoutedModuleReply("inventory", REQUEST_ID, "orders", EncodedPayload(b"12"))),
        ]
        lasts: list[_forward.LastShape] = []
        for plain in plains:
            last: _forward.LastShape = [None]
            fields(plain, lambda data: read_routing(data, last))  # noqa: B023
            self.assertIsNotNone(last[0])
            lasts.append(last)
        for _ in range(3000):
            kind = rng.randrange(len(plains))
            plain = plains[kind]
            at = rng.randrange(len(plain))
            data = (
                plain[:at]
                + rng.choice(b'"\\,:{}[]0aA-_ x\x00\xc3').to_bytes(1, "big")
                + plain[at + 1 :]
            )
            expected = fields(data, _forward._read_plain)
            self.assertEqual(fields(data), expected, data)
            self.assertEqual(fields(data), expected, data)
            # ... and with the unchanged frame's shape as the sender's last one
            last = list(lasts[kind])
            self.assertEqual(fields(data, lambda data: read_routing(data, last)), expected)  # noqa: B023

    def test_every_byte_in_the_values(self) -> None:
        """
        Each of the 256 byte values, in place of or next to a digit of a known frame's
        byte values: read as the full read reads it (only digits and commas are
        forwarded undecoded).
        """
        plain = body(request(EncodedPayload.from_json([1, 2])))
        last: _forward.LastShape = [None]
        self.assertIsNotNone(read_routing(plain, last))
        at = plain.index(b'"data":[') + len(b'"data":[') + 1
        for value in range(256):
            byte = bytes([value])
            for data in (plain[:at] + byte + plain[at + 1 :], plain[:at] + byte + plain[at:]):
                expected = fields(data, _forward._read_plain)
                if value in b"0123456789,":
                    self.assertIsInstance(expected, tuple)
                self.assertEqual(fields(data, lambda d: read_routing(d, list(last))), expected)
                self.assertEqual(fields(data), expected)

    def test_every_byte_in_the_start_and_ids(self) -> None:
        """
        Each of the 256 byte values in place of each byte of a known frame's start, its
        envelope id, the text up to its request id and that id (read together, in one
        translation, when the frame has the sender's last shape): read as the full read
        reads it.
        """
        reply = RoutedModuleReply("inventory", REQUEST_ID, "orders", EncodedPayload(b"12"))
        plain = body(reply)
        last: _forward.LastShape = [None]
        self.assertIsNotNone(read_routing(plain, last))
        end = plain.index(REQUEST_ID_TEXT) + len(REQUEST_ID_TEXT)
        for at in range(end):
            for value in range(256):
                data = plain[:at] + bytes([value]) + plain[at + 1 :]
                expected = fields(data, _forward._read_plain)
                self.assertEqual(
                    fields(data, lambda d: read_routing(d, list(last))), expected, (at, value)
                )

    def test_last_shape(self) -> None:
        """
        The sender's last shape is kept in C{last} and followed while frames have it;
        a frame of another shape is read all the same, and its shape kept instead.
        """
        last: _forward.LastShape = [None]
        reply = RoutedModuleReply("inventory", REQUEST_ID, "orders", EncodedPayload(b"[1]"))
        frames = [body(request()), body(request(target="other")), body(reply)]
        for data in frames + frames:
            self.assertEqual(
                fields(data, lambda data: read_routing(data, last)),
                fields(data, _forward._read_plain),
            )
            shape = last[0]
            assert shape is not None
            self.assertEqual(fields(data, _forward._read_plain)[0], shape[2][0])  # type: ignore[index]
            self.assertIn(shape[0], data)
        self.assertIsNone(read_routing(b"{}", last))

    def test_bounded(self) -> None:
        """
        The shapes are kept up to a bound: made-up names keep being read right.
        """
        for i in range(_forward._HEADS_LIMIT + 10):
            data = body(request(target=f"m{i}"))
            self.assertEqual(fields(data), fields(data, _forward._read_plain))
        self.assertLessEqual(len(_forward._shapes), _forward._HEADS_LIMIT)
