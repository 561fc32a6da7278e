"""
The codec's fast paths for the routed request path (issue 20): a C{route_to_module}
or C{routed_module_response} (module reply) enveloped with its content JSON from one
backend call (L{codec._CONTENT_JSON}), and a C{routed_module_response} (issue 20) or
C{routed_module_message} (issue 17) read with its id and payload readers inline. Each
gives exactly what the general path gives, on valid and odd inputs, and falls back to it
when it cannot be sure.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import MessageTooLarge, ProtocolError
from pywatt_twisted.wire import _json, codec, envelope
from pywatt_twisted.wire.codec import decode_from_orchestrator, to_json_object
from pywatt_twisted.wire.envelope import encode_channel_frame, random_uuid4
from pywatt_twisted.wire.framing import FORMAT_JSON, Frame, FrameDecoder
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    HeartbeatAck,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)

ORJSON = _json.BACKEND == "orjson"


def general_frame_payload(message: object, envelope_id: str) -> bytes:
    """
    The envelope the general path builds for C{message} with id C{envelope_id}.
    """
    return _json.dumps({"id": envelope_id, "content": to_json_object(message), "metadata": {}})  # type: ignore[arg-type]


def frame_payload(frame: bytes) -> bytes:
    [item] = FrameDecoder(1 << 30).feed(frame)
    assert isinstance(item, Frame) and item.format == FORMAT_JSON
    return item.payload


class UUIDSubclass(uuid.UUID):
    pass


class ContentJsonTests(SynchronousTestCase):
    """
    L{codec._CONTENT_JSON} and L{encode_channel_frame}'s use of it.
    """

    def assertSameAsGeneral(self, message: object) -> None:
        payload = frame_payload(encode_channel_frame(message, 1 << 30))
        envelope_id = json.loads(payload)["id"]
        self.assertEqual(payload, general_frame_payload(message, envelope_id))

    def test_table(self) -> None:
        """
        With orjson, the route_to_module and the module's reply have a fast encoder;
        without it there is none (the standard library cannot write a UUID).
        """
        if ORJSON:
            self.assertEqual(set(codec._CONTENT_JSON), {RouteToModule, RoutedModuleReply})
        else:
            self.assertEqual(codec._CONTENT_JSON, {})

    def test_route_to_module(self) -> None:
        message = RouteToModule("inv", "get", uuid.uuid4(), EncodedPayload(b'{"a":1}'))
        self.assertSameAsGeneral(message)
        if ORJSON:
            fast = codec._CONTENT_JSON[RouteToModule](message)
            self.assertEqual(fast, _json.dumps(to_json_object(message)))

    def test_routed_reply(self) -> None:
        message = RoutedModuleReply(
            "me", random_uuid4(), "caller", EncodedPayload(b"\x00\xff", "Binary")
        )
        self.assertSameAsGeneral(message)
        if ORJSON:
            fast = codec._CONTENT_JSON[RoutedModuleReply](message)
            self.assertEqual(fast, _json.dumps(to_json_object(message)))

    def test_id_not_a_uuid_falls_back(self) -> None:
        """
        A request id that is not exactly a L{uuid.UUID} (a string, a subclass) is
        written by the general path (C{str()} of it), not by orjson.
        """
        for request_id in ("not-a-uuid", UUIDSubclass(int=5)):
            message = RouteToModule("inv", "get", request_id, EncodedPayload(b"{}"))  # type: ignore[arg-type]
            if ORJSON:
                self.assertIsNone(codec._CONTENT_JSON[RouteToModule](message))
            self.assertSameAsGeneral(message)
            reply = RoutedModuleReply("a", request_id, "b", EncodedPayload(b"{}"))  # type: ignore[arg-type]
            if ORJSON:
                self.assertIsNone(codec._CONTENT_JSON[RoutedModuleReply](reply))
            self.assertSameAsGeneral(reply)

    def test_payload_not_an_encoded_payload_falls_back(self) -> None:
        class Duck:
            data = b"[1]"
            format = "Json"

        message = RouteToModule("inv", "get", uuid.uuid4(), Duck())  # type: ignore[arg-type]
        if ORJSON:
            self.assertIsNone(codec._CONTENT_JSON[RouteToModule](message))
        self.assertSameAsGeneral(message)

    def test_value_orjson_refuses_falls_back(self) -> None:
        """
        A value orjson refuses (an integer over 64 bits) goes to the general path,
        which writes it with the standard library.
        """
        message = RouteToModule(2**70, "get", uuid.uuid4(), EncodedPayload(b"{}"))  # type: ignore[arg-type]
        if ORJSON:
            self.assertIsNone(codec._CONTENT_JSON[RouteToModule](message))
        payload = frame_payload(encode_channel_frame(message, 1 << 30))
        self.assertIn(b'"target_module_id":1180591620717411303424,', payload)
        self.assertSameAsGeneral(message)

    def test_metadata_takes_the_general_path(self) -> None:
        message = RouteToModule("inv", "get", uuid.uuid4(), EncodedPayload(b"{}"))
        payload = frame_payload(encode_channel_frame(message, 1 << 30, {"source": "m"}))
        value = json.loads(payload)
        self.assertEqual(value["metadata"], {"source": "m"})
        self.assertEqual(value["content"], to_json_object(message))

    def test_frame_length_limit(self) -> None:
        """
        The length checked against the cap (and written in the header) is the
        payload's: a frame of exactly the cap passes, one byte more does not, on the
        fast and the general path.
        """
        for message in (
            RouteToModule("inv", "get", uuid.uuid4(), EncodedPayload(b"{}")),
            RouteToModule("inv", "get", "id", EncodedPayload(b"{}")),  # type: ignore[arg-type]
            HeartbeatAck(),
        ):
            length = len(frame_payload(encode_channel_frame(message, 1 << 30)))
            frame = encode_channel_frame(message, length)
            self.assertEqual(len(frame), 5 + length)
            self.assertEqual(len(frame_payload(frame)), length)
            self.assertRaises(MessageTooLarge, encode_channel_frame, message, length - 1)

    @settings(max_examples=200)
    @given(
        target=st.text(max_size=20),
        endpoint=st.text(max_size=20),
        data=st.binary(max_size=64),
        fmt=st.sampled_from(["Json", "Binary", "Base64", "Auto", "other"]),
        number=st.integers(min_value=0, max_value=2**128 - 1),
    )
    def test_same_as_general(
        self, target: str, endpoint: str, data: bytes, fmt: str, number: int
    ) -> None:
        request_id = uuid.UUID(int=number)
        self.assertSameAsGeneral(
            RouteToModule(target, endpoint, request_id, EncodedPayload(data, fmt))
        )
        self.assertSameAsGeneral(
            RoutedModuleReply(target, request_id, endpoint, EncodedPayload(data, fmt))
        )


def reference_response(obj: dict[str, Any]) -> RoutedModuleResponse:
    """
    What the general readers make of a routed_module_response object.
    """
    ctx = "routed_module_response"
    source = codec._str(obj, "source_module_id", ctx)
    return RoutedModuleResponse(
        source, codec._uuid(obj, "request_id", ctx), codec._payload(obj, "payload", ctx)
    )


def outcome(f: Any, obj: dict[str, Any]) -> Any:
    try:
        return ("ok", f(obj))
    except ProtocolError as e:
        return ("error", e.field)


class RoutedResponseDecodeTests(SynchronousTestCase):
    """
    C{routed_module_response} decoded with its readers inline.
    """

    def assertSameAsGeneral(self, obj: dict[str, Any]) -> None:
        fast = outcome(lambda o: codec._d_routed_response(o, "routed_module_response"), obj)
        self.assertEqual(fast, outcome(reference_response, obj))
        if fast[0] == "ok":
            message = fast[1]
            self.assertIs(type(message), RoutedModuleResponse)
            self.assertIs(type(message.request_id), uuid.UUID)
            self.assertIs(type(message.payload), EncodedPayload)
            # built as unfrozen twins: frozen again, all the way down
            self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, message, "payload", 1)
            self.assertRaises(
                attrs.exceptions.FrozenInstanceError, setattr, message.payload, "data", b""
            )
            self.assertRaises(TypeError, setattr, message.request_id, "int", 1)
            self.assertEqual(decode_from_orchestrator(_json.dumps(obj)), message)

    def reply(self, **changes: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "op": "routed_module_response",
            "source_module_id": "inv",
            "request_id": "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f",
            "payload": {"data": list(b'{"a":1}'), "format": "Json"},
        }
        obj.update(changes)
        return obj

    def test_canonical(self) -> None:
        obj = self.reply()
        message = decode_from_orchestrator(_json.dumps(obj))
        self.assertEqual(
            message,
            RoutedModuleResponse(
                "inv", uuid.UUID("3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f"), EncodedPayload(b'{"a":1}')
            ),
        )
        self.assertSameAsGeneral(obj)

    def test_odd_ids(self) -> None:
        for request_id in [
            "3F2C8A6E-5B1D-4C7A-9E2F-0A1B2C3D4E5F",  # uppercase
            "+f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f",  # what int() and uuid.UUID accept
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5g",  # not hex
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e-f",  # a fifth hyphen
            "3f2c8a6e5-b1d-4c7a-9e2f-0a1b2c3d4e5f",  # four hyphens, one misplaced
            "-3f2c8a6e5b1d-4c7a-9e2f0a1b2c3d4e5f-",  # four hyphens, at the ends too
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e_f",  # an underscore
            "3f2c8a6e5b1d4c7a9e2f0a1b2c3d4e5f",  # no hyphens
            "{3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f}",
            "",
            5,
            None,
        ]:
            self.assertSameAsGeneral(self.reply(request_id=request_id))
        del_id = self.reply()
        del del_id["request_id"]
        self.assertSameAsGeneral(del_id)

    def test_odd_payloads(self) -> None:
        for payload in [
            {"data": [], "format": "Json"},
            {"data": [0, 255]},  # no format: Json
            {"data": [1, 2], "format": "json"},  # lower case: named Json by the reader
            {"data": [1, 2], "format": "Binary"},
            {"data": [1, 256], "format": "Json"},  # not a byte
            {"data": [1, -1], "format": "Json"},
            {"data": [1, "a"], "format": "Json"},
            {"data": [True], "format": "Json"},
            {"data": "AQI=", "format": "Json"},
            {"data": [1], "format": "Yaml"},
            {"data": [1], "format": 3},
            {"format": "Json"},
            [1, 2],
            None,
        ]:
            self.assertSameAsGeneral(self.reply(payload=payload))

    @settings(max_examples=300)
    @given(
        source=st.one_of(st.text(max_size=8), st.integers()),
        request_id=st.one_of(
            st.uuids().map(str),
            st.uuids().map(lambda u: str(u).upper()),
            st.text(alphabet="0123456789abcdef-+_ ", min_size=30, max_size=40),
            st.integers(),
        ),
        data=st.one_of(
            st.binary(max_size=20).map(list),
            st.lists(st.integers(min_value=-2, max_value=300), max_size=5),
            st.text(max_size=5),
        ),
        fmt=st.one_of(
            st.sampled_from(["Json", "json", "Binary", "Base64", "Auto", "x"]), st.none()
        ),
    )
    def test_same_as_general(self, source: Any, request_id: Any, data: Any, fmt: Any) -> None:
        payload: dict[str, Any] = {"data": data}
        if fmt is not None:
            payload["format"] = fmt
        self.assertSameAsGeneral(
            self.reply(source_module_id=source, request_id=request_id, payload=payload)
        )


def reference_message(obj: dict[str, Any]) -> RoutedModuleMessage:
    """
    What the general decoder makes of a routed_module_message object.
    """
    return codec._d_routed_message(obj, "routed_module_message")


class RoutedMessageDecodeTests(SynchronousTestCase):
    """
    C{routed_module_message} (the request a module answers) read inline
    (L{pywatt_twisted.wire._routed_in}): what the general decoder gives, or the same
    error naming the same field.
    """

    def assertSameAsGeneral(self, obj: dict[str, Any]) -> None:
        decoder = codec._ORCHESTRATOR_DECODERS["routed_module_message"]
        self.assertIsNot(decoder, codec._d_routed_message)
        fast = outcome(lambda o: decoder(o, "routed_module_message"), obj)
        self.assertEqual(fast, outcome(reference_message, obj))
        if fast[0] == "ok":
            message = fast[1]
            self.assertIs(type(message), RoutedModuleMessage)
            self.assertIs(type(message.original_request_id), uuid.UUID)
            self.assertIs(type(message.payload), EncodedPayload)
            self.assertIs(type(message.payload.data), bytes)
            self.assertEqual(decode_from_orchestrator(_json.dumps(obj)), message)

    def request(self, **changes: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "op": "routed_module_message",
            "source_module_id": "orders",
            "original_request_id": "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f",
            "payload": {"data": list(b'{"a":1}'), "format": "Json"},
            "target_endpoint": "get",
        }
        obj.update(changes)
        return obj

    def test_canonical(self) -> None:
        obj = self.request()
        message = decode_from_orchestrator(_json.dumps(obj))
        self.assertEqual(
            message,
            RoutedModuleMessage(
                "orders",
                uuid.UUID("3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f"),
                EncodedPayload(b'{"a":1}'),
                "get",
            ),
        )
        self.assertSameAsGeneral(obj)
        no_endpoint = self.request()
        del no_endpoint["target_endpoint"]
        self.assertSameAsGeneral(no_endpoint)
        self.assertSameAsGeneral(self.request(target_endpoint=None))

    def test_odd_fields(self) -> None:
        for changes in [
            {"source_module_id": 5},
            {"source_module_id": None},
            {"target_endpoint": 3},
            {"target_endpoint": ["get"]},
            {"target_endpoint": ""},
        ]:
            self.assertSameAsGeneral(self.request(**changes))
        for key in ["source_module_id", "original_request_id", "payload"]:
            missing = self.request()
            del missing[key]
            self.assertSameAsGeneral(missing)

    def test_odd_ids(self) -> None:
        for request_id in [
            "3F2C8A6E-5B1D-4C7A-9E2F-0A1B2C3D4E5F",
            "+f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f",
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5g",
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e-f",
            "3f2c8a6e5-b1d-4c7a-9e2f-0a1b2c3d4e5f",
            "-3f2c8a6e5b1d-4c7a-9e2f0a1b2c3d4e5f-",
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e_f",
            "3f2c8a6e5b1d4c7a9e2f0a1b2c3d4e5f",
            "{3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f}",
            # (the hyphens' places are not checked by the fast path: uuid.UUID, the
            # general reader's fallback, reads these as the same numbers or refuses them)
            "3f2c-8a6e5b1d4c7a9e2f-0a1b2c3d-4e5f",
            "----3f2c8a6e5b1d4c7a9e2f0a1b2c3d4e5f",
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5 ",
            " 3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5",
            "0x2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f",
            "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f-",
            "",
            5,
            None,
        ]:
            self.assertSameAsGeneral(self.request(original_request_id=request_id))

    def test_odd_payloads(self) -> None:
        for payload in [
            {"data": [], "format": "Json"},
            {"data": [0, 255]},
            {"data": [1, 2], "format": "json"},
            {"data": [1, 2], "format": "Binary"},
            {"data": [1, 256], "format": "Json"},
            {"data": [1, -1], "format": "Json"},
            {"data": [1, 2**70], "format": "Json"},
            {"data": [1, "a"], "format": "Json"},
            {"data": [1.0], "format": "Json"},
            {"data": [True], "format": "Json"},
            {"data": [None], "format": "Json"},
            {"data": "AQI=", "format": "Json"},
            {"data": [1], "format": "Yaml"},
            {"data": [1], "format": 3},
            {"format": "Json"},
            [1, 2],
            None,
        ]:
            self.assertSameAsGeneral(self.request(payload=payload))

    def test_str_subclass(self) -> None:
        """
        Values that compare equal to the expected strings but are not C{str} (from a
        mapping handed to the decoder, not from JSON) are left to the general decoder.
        """

        class Text(str):
            pass

        self.assertSameAsGeneral(self.request(source_module_id=Text("orders")))
        self.assertSameAsGeneral(self.request(target_endpoint=Text("get")))
        self.assertSameAsGeneral(self.request(payload={"data": [1], "format": Text("Json")}))

    @settings(max_examples=300)
    @given(
        source=st.one_of(st.text(max_size=8), st.integers(), st.none()),
        request_id=st.one_of(
            st.uuids().map(str),
            st.uuids().map(lambda u: str(u).upper()),
            st.text(alphabet="0123456789abcdef-+_ ", min_size=30, max_size=40),
            st.integers(),
        ),
        data=st.one_of(
            st.binary(max_size=20).map(list),
            st.lists(st.integers(min_value=-2, max_value=300), max_size=5),
            st.text(max_size=5),
        ),
        fmt=st.one_of(
            st.sampled_from(["Json", "json", "Binary", "Base64", "Auto", "x"]), st.none()
        ),
        endpoint=st.one_of(st.none(), st.text(max_size=5), st.integers()),
    )
    def test_same_as_general(
        self, source: Any, request_id: Any, data: Any, fmt: Any, endpoint: Any
    ) -> None:
        payload: dict[str, Any] = {"data": data}
        if fmt is not None:
            payload["format"] = fmt
        self.assertSameAsGeneral(
            self.request(
                source_module_id=source,
                original_request_id=request_id,
                payload=payload,
                target_endpoint=endpoint,
            )
        )


class RandomUUIDPoolTests(SynchronousTestCase):
    """
    L{random_uuid4}'s pool: numbers popped without a lock, refilled under it.
    """

    def test_refill_when_empty(self) -> None:
        envelope._pool.clear()
        value = random_uuid4()
        self.assertEqual((value.version, value.variant), (4, uuid.RFC_4122))
        self.assertEqual(len(envelope._pool), 255)

    def test_pool_emptied_by_others_meanwhile(self) -> None:
        """
        When the pool is empty again between the refill and the pop (other threads
        took the 256), it is refilled again.
        """
        envelope._pool.clear()
        real = envelope._pool_pop
        misses = [1]

        def pop() -> int:
            if misses:
                misses.pop()
                envelope._pool.clear()  # someone else took them all
                raise IndexError("pop from empty list")
            return real()

        self.patch(envelope, "_pool_pop", pop)
        value = random_uuid4()
        self.assertEqual((value.version, value.variant), (4, uuid.RFC_4122))
        self.assertEqual(misses, [])
        self.assertEqual(len(envelope._pool), 255)

    def test_threads_get_distinct_ids(self) -> None:
        import threading

        out: list[list[uuid.UUID]] = [[] for _ in range(4)]

        def draw(into: list[uuid.UUID]) -> None:
            for _ in range(2000):
                into.append(random_uuid4())

        threads = [threading.Thread(target=draw, args=(o,)) for o in out]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        values = [v for o in out for v in o]
        self.assertEqual(len(values), 8000)
        self.assertEqual(len(set(values)), 8000)


class JsonPayloadTests(SynchronousTestCase):
    """
    L{envelope.json_payload} (and the payload builder it shares with the routed request
    payloads): the very value C{EncodedPayload.from_json} makes.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        value=st.recursive(
            st.none() | st.booleans() | st.integers(-(1 << 63), 1 << 63) | st.text(),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=12,
        )
    )
    def test_same_as_from_json(self, value: Any) -> None:
        payload = envelope.json_payload(value)
        expected = EncodedPayload.from_json(value)
        self.assertIs(type(payload), EncodedPayload)
        self.assertEqual(payload, expected)
        self.assertEqual((payload.data, payload.format), (expected.data, expected.format))
        self.assertEqual(hash(payload), hash(expected))
        self.assertEqual(repr(payload), repr(expected))
        # frozen, as the constructor's value is
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, payload, "data", b"1")
        self.assertEqual(attrs.evolve(payload, format="Binary").format, "Binary")

    def test_request_payload(self) -> None:
        """
        A routed request's payload is the constructor's C{"Json"} payload of its text.
        """
        payload = envelope.routed_request_payload({"sku": "A1"}, "get", "orders")
        self.assertIs(type(payload), EncodedPayload)
        self.assertEqual(payload, EncodedPayload(payload.data, "Json"))
        self.assertEqual(json.loads(payload.data)["content"], {"sku": "A1"})
