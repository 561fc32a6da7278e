"""
Tests for L{pywatt_twisted.wire.codec} and L{pywatt_twisted.wire.messages}.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.testing.strategies import (
    json_values,
    module_envelopes,
    module_messages,
    orchestrator_envelopes,
    orchestrator_messages,
)
from pywatt_twisted.wire import _json
from pywatt_twisted.wire.codec import (
    MODULE_OPS,
    ORCHESTRATOR_OPS,
    decode_envelope_from_module,
    decode_envelope_from_orchestrator,
    decode_from_module,
    decode_from_orchestrator,
    encode,
    encode_envelope,
    encode_line,
    encode_stdout_http_response,
)
from pywatt_twisted.wire.messages import (
    AnnouncedEndpoint,
    DiscoverServiceProviders,
    EncodedPayload,
    Endpoint,
    Envelope,
    GetSecret,
    Heartbeat,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    Metadata,
    ModuleMessage,
    OrchestratorMessage,
    PortRequest,
    Rotated,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    SecretMessage,
    ServiceOperation,
    ServiceOperationResult,
    ServiceRequest,
    ServiceType,
    UnknownMessage,
)

RID = uuid.UUID("9b2e4f10-1c3d-4e5f-8a7b-6c5d4e3f2a1b")


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


class RoundTripTests(SynchronousTestCase):
    @settings(deadline=None)
    @given(orchestrator_messages())
    def test_orchestrator_messages(self, message: OrchestratorMessage) -> None:
        """
        Every orchestrator -> module message survives encode/decode, as a line too.
        """
        self.assertEqual(decode_from_orchestrator(encode(message)), message)
        encoded = encode_line(message)
        self.assertEqual(encoded.count(b"\n"), 1)
        self.assertTrue(encoded.endswith(b"\n"))
        self.assertEqual(decode_from_orchestrator(encoded), message)

    @settings(deadline=None)
    @given(module_messages())
    def test_module_messages(self, message: ModuleMessage) -> None:
        """
        Every module -> orchestrator message survives encode/decode.
        """
        self.assertEqual(decode_from_module(encode(message)), message)
        self.assertEqual(encode_line(message).count(b"\n"), 1)

    @settings(deadline=None)
    @given(module_envelopes())
    def test_module_envelopes(self, envelope: Envelope) -> None:
        """
        Enveloped module messages keep their id and metadata.
        """
        self.assertEqual(decode_envelope_from_module(encode(envelope)), envelope)

    @settings(deadline=None)
    @given(orchestrator_envelopes())
    def test_orchestrator_envelopes(self, envelope: Envelope) -> None:
        """
        Enveloped orchestrator messages are accepted (PROTOCOL.md 4.4 N) and keep
        their id and metadata.
        """
        self.assertEqual(decode_envelope_from_orchestrator(encode(envelope)), envelope)
        self.assertEqual(decode_from_orchestrator(encode(envelope)), envelope.content)

    @settings(max_examples=50, deadline=None)
    @given(orchestrator_messages())
    def test_stdlib_backend(self, message: OrchestratorMessage) -> None:
        """
        The standard-library fallback backend writes the same JSON as the default one
        (byte for byte except float exponents: C{1.5e-07} there, C{1.5e-7} in orjson and
        serde).
        """
        fast = encode(message)
        saved = _json.dumps, _json.loads, _json.backend_loads, _json.BACKEND_DECODE_ERROR
        _json.dumps, _json.loads = _json._std_dumps, _json._std_loads
        _json.backend_loads, _json.BACKEND_DECODE_ERROR = _json._std_loads, _json.JSONDecodeError
        try:
            slow = encode(message)
            decoded = decode_from_orchestrator(slow)
        finally:
            (_json.dumps, _json.loads, _json.backend_loads, _json.BACKEND_DECODE_ERROR) = saved
        self.assertEqual(json.loads(slow), json.loads(fast))
        # Small floats: 1e-05 in the stdlib, 0.00001 (or 1e-7) in orjson.
        if b"e-" not in fast and b"e-" not in slow:
            self.assertEqual(slow, fast)
        self.assertEqual(decoded, message)


class FuzzTests(SynchronousTestCase):
    @settings(deadline=None)
    @given(st.binary(max_size=200))
    def test_bytes_only_protocol_errors(self, data: bytes) -> None:
        """
        Arbitrary bytes either decode or raise L{ProtocolError}; nothing else escapes.
        """
        for decode in (decode_from_orchestrator, decode_from_module):
            try:
                decode(data)
            except ProtocolError:
                pass

    @settings(deadline=None)
    @given(json_values(max_leaves=20), st.sampled_from(sorted(ORCHESTRATOR_OPS | MODULE_OPS)))
    def test_json_with_known_op(self, value: Any, op: str) -> None:
        """
        Any JSON, with any known op and random fields, decodes or raises
        L{ProtocolError}.
        """
        obj = value if isinstance(value, dict) else {"x": value}
        obj["op"] = op
        data = json.dumps(obj).encode()
        for decode in (decode_from_orchestrator, decode_from_module):
            try:
                decode(data)
            except ProtocolError as e:
                self.assertTrue(str(e))


class DecodeTests(SynchronousTestCase):
    def test_unknown_op(self) -> None:
        """
        An unknown op (or one of the other direction) never raises.
        """
        self.assertEqual(
            decode_from_orchestrator(b'{"op":"future_thing","a":[1],"b":null}'),
            UnknownMessage("future_thing", {"a": [1], "b": None}),
        )
        self.assertEqual(
            decode_from_orchestrator(b'{"op":"get_secret","name":"X"}'),
            UnknownMessage("get_secret", {"name": "X"}),
        )
        self.assertEqual(
            decode_from_module(b'{"op":"secret","name":"X","value":"v"}'),
            UnknownMessage("secret", {"name": "X", "value": "v"}),
        )

    def test_unknown_op_round_trip(self) -> None:
        """
        An unknown message is re-encoded as it came.
        """
        data = b'{"op":"future_thing","a":[1],"b":null}'
        self.assertEqual(encode(decode_from_orchestrator(data)), data)

    def test_op_errors(self) -> None:
        """
        No op, a non-string op, or a non-object input are clear errors.
        """
        error = self.assertRaises(ProtocolError, decode_from_orchestrator, b'{"op":5}')
        self.assertEqual(error.field, "op")
        self.assertIn("got number", str(error))
        error = self.assertRaises(ProtocolError, decode_from_orchestrator, b'{"name":"x"}')
        self.assertIn("'op'", str(error))
        error = self.assertRaises(ProtocolError, decode_from_module, b'"heartbeat"')
        self.assertIn("expected one JSON object, got string", str(error))
        error = self.assertRaises(ProtocolError, decode_from_module, b'{"op":"x"} trailing')
        self.assertIn("invalid JSON", str(error))

    def test_field_errors(self) -> None:
        """
        Bad fields name the op, the field and the reason.
        """
        cases: list[tuple[dict[str, Any], str, str]] = [
            (
                {
                    "op": "http_request",
                    "request_id": "r",
                    "method": "GET",
                    "uri": "/",
                    "headers": [],
                    "body": None,
                },
                "http_request.headers",
                "expected an object of strings, got array",
            ),
            (
                {
                    "op": "http_request",
                    "request_id": "r",
                    "method": "GET",
                    "uri": "/",
                    "body": None,
                },
                "http_request.headers",
                "missing",
            ),
            (
                {
                    "op": "http_request",
                    "request_id": "r",
                    "method": "GET",
                    "uri": "/",
                    "headers": {"a": 1},
                },
                "http_request.headers",
                "object holding number",
            ),
            (
                {
                    "op": "http_request",
                    "request_id": "r",
                    "method": "GET",
                    "uri": "/",
                    "headers": {},
                    "body": [1, 256],
                },
                "http_request.body",
                "integers from 0 to 255",
            ),
            (
                {
                    "op": "http_request",
                    "request_id": "r",
                    "method": "GET",
                    "uri": "/",
                    "headers": {},
                    "body": [1.5],
                },
                "http_request.body",
                "integers from 0 to 255",
            ),
            (
                {
                    "op": "http_request",
                    "request_id": "r",
                    "method": "GET",
                    "uri": "/",
                    "headers": {},
                    "body": {},
                },
                "http_request.body",
                "got object",
            ),
            (
                {"op": "port_response", "request_id": "r", "success": True, "port": 70000},
                "port_response.port",
                "0 to 65535",
            ),
            (
                {"op": "port_response", "request_id": "r", "success": 1, "port": 1},
                "port_response.success",
                "true or false",
            ),
            (
                {
                    "op": "routed_module_message",
                    "source_module_id": "a",
                    "original_request_id": "req-1",
                    "payload": {"data": [], "format": "Json"},
                },
                "routed_module_message.original_request_id",
                "UUID",
            ),
            (
                {
                    "op": "routed_module_response",
                    "source_module_id": "a",
                    "request_id": str(RID),
                    "payload": {"data": [], "format": "Msgpack"},
                },
                "routed_module_response.payload.format",
                "'Msgpack'",
            ),
            (
                {
                    "op": "routed_module_response",
                    "source_module_id": "a",
                    "request_id": str(RID),
                    "payload": None,
                },
                "routed_module_response.payload",
                "expected an object, got null",
            ),
            (
                {"op": "rotated", "keys": ["a", 1], "rotation_id": "r"},
                "rotated.keys",
                "array of strings",
            ),
            (
                {"op": "service_response", "id": "i", "service_type": "Queue", "success": True},
                "service_response.service_type",
                "'Queue'",
            ),
            (
                {
                    "op": "discover_service_providers_response",
                    "success": True,
                    "providers": [{"provider_id": "p"}],
                },
                "discover_service_providers_response.providers[0].module_id",
                "missing",
            ),
            (
                {"op": "secret", "name": "N", "value": 5},
                "secret.value",
                "expected a string, got number",
            ),
        ]
        for obj, field, words in cases:
            with self.subTest(field):
                error = self.assertRaises(ProtocolError, decode_from_orchestrator, line(obj))
                self.assertEqual(error.field, field)
                self.assertIn(words, str(error))
        module_cases: list[tuple[dict[str, Any], str, str]] = [
            ({"op": "announce", "listen": "x", "endpoints": {}}, "announce.endpoints", "array"),
            (
                {"op": "announce", "listen": "x", "endpoints": [{"path": "/", "methods": "GET"}]},
                "announce.endpoints[0].methods",
                "array of strings",
            ),
            (
                {
                    "op": "service_operation",
                    "connection_id": "c",
                    "service_type": "Cache",
                    "operation": "get",
                },
                "service_operation.params",
                "missing",
            ),
            (
                {"op": "http_response", "request_id": "r", "status_code": -1, "headers": {}},
                "http_response.status_code",
                "0 to 65535",
            ),
            (
                {
                    "op": "route_to_module",
                    "target_module_id": "t",
                    "target_endpoint": "e",
                    "request_id": 5,
                    "payload": {"data": []},
                },
                "route_to_module.request_id",
                "UUID string, got number",
            ),
        ]
        for obj, field, words in module_cases:
            with self.subTest(field):
                error = self.assertRaises(ProtocolError, decode_from_module, line(obj))
                self.assertEqual(error.field, field)
                self.assertIn(words, str(error))

    def test_errors_do_not_quote_values(self) -> None:
        """
        A secret value in a bad message never appears in the error.
        """
        error = self.assertRaises(
            ProtocolError,
            decode_from_orchestrator,
            b'{"op":"secret","name":["hunter2"],"value":"hunter2"}',
        )
        self.assertNotIn("hunter2", str(error))
        error = self.assertRaises(
            ProtocolError,
            decode_from_orchestrator,
            b'{"op":"routed_module_response","source_module_id":"a","request_id":"hunter2"}',
        )
        self.assertNotIn("hunter2", str(error))

    def test_nested_python_shapes(self) -> None:
        """
        The Python SDK nests fields under the op's name and pads with nulls.
        """
        self.assertEqual(
            decode_from_module(
                b'{"op":"get_secret","get_secret":{"name":"K"},"announce":null,"identify":null}'
            ),
            GetSecret("K"),
        )
        self.assertEqual(
            decode_from_orchestrator(
                b'{"op":"rotated","rotated":{"keys":["A"],"rotation_id":"r"},"secret":null}'
            ),
            Rotated(["A"], "r"),
        )

    def test_unit_ops_tolerate_extra_keys(self) -> None:
        """
        C{heartbeat} with extra keys is still a heartbeat.
        """
        self.assertEqual(decode_from_orchestrator(b'{"op":"heartbeat","seq":4}'), Heartbeat())

    def test_envelopes(self) -> None:
        """
        An enveloped orchestrator message is unwrapped; its metadata may carry nulls
        (Python) or be missing; a non-UUID id is an error.
        """
        data = line(
            {
                "id": str(RID).upper(),
                "content": {"op": "heartbeat"},
                "metadata": {
                    "id": None,
                    "timestamp": 1700000000.5,
                    "source": "orch",
                    "destination": None,
                    "properties": None,
                },
            }
        )
        self.assertEqual(
            decode_envelope_from_orchestrator(data),
            Envelope(RID, Heartbeat(), Metadata(timestamp=1700000000, source="orch")),
        )
        self.assertEqual(
            decode_envelope_from_orchestrator(b'{"content":{"op":"shutdown"}}'),
            Envelope(None, decode_from_orchestrator(b'{"op":"shutdown"}'), Metadata()),
        )
        error = self.assertRaises(
            ProtocolError,
            decode_envelope_from_orchestrator,
            b'{"id":"nope","content":{"op":"heartbeat"},"metadata":{}}',
        )
        self.assertEqual(error.field, "id")
        self.assertRaises(
            ProtocolError, decode_from_orchestrator, b'{"id":"nope","content":{"op":"heartbeat"}}'
        )
        error = self.assertRaises(
            ProtocolError,
            decode_envelope_from_module,
            b'{"id":null,"content":{"op":"heartbeat_ack"},"metadata":{"timestamp":"now"}}',
        )
        self.assertEqual(error.field, "metadata.timestamp")
        error = self.assertRaises(
            ProtocolError,
            decode_envelope_from_module,
            b'{"content":{"op":"heartbeat_ack"},"metadata":[]}',
        )
        self.assertEqual(error.field, "metadata")

    def test_bare_gets_empty_envelope(self) -> None:
        """
        A bare message decodes to an envelope with no id and empty metadata.
        """
        self.assertEqual(
            decode_envelope_from_orchestrator(b'{"op":"heartbeat"}'),
            Envelope(None, Heartbeat(), Metadata()),
        )

    def test_uuid_forms(self) -> None:
        """
        uuid's other accepted forms (simple, braced, urn, upper case) parse; we always
        emit the lowercase hyphenated form.
        """
        for form in (RID.hex, "{" + str(RID) + "}", RID.urn, str(RID).upper()):
            with self.subTest(form):
                message = decode_from_orchestrator(
                    line(
                        {
                            "op": "routed_module_response",
                            "source_module_id": "a",
                            "request_id": form,
                            "payload": {"data": [], "format": "Json"},
                        }
                    )
                )
                self.assertEqual(message, RoutedModuleResponse("a", RID, EncodedPayload(b"")))
                self.assertIn(str(RID).encode(), encode(message))

    def test_bytes_as_string(self) -> None:
        """
        A string where bytes are expected is read as UTF-8 text (pydantic's form).
        """
        message = decode_from_orchestrator(
            line(
                {
                    "op": "http_request",
                    "request_id": "r",
                    "method": "POST",
                    "uri": "/",
                    "headers": {},
                    "body": "héllo",
                }
            )
        )
        self.assertEqual(message.body, "héllo".encode())  # type: ignore[union-attr]
        self.assertIn(b'"body":[104,195,169,108,108,111]', encode(message))

    def test_service_types(self) -> None:
        """
        Rust and Python spellings of service types are accepted; Rust's is emitted.
        """
        for spelled, expected in [
            ("Cache", ServiceType.CACHE),
            ("database", ServiceType.DATABASE),
            ("Jwt", ServiceType.JWT),
            ({"Custom": "search"}, ServiceType.custom("search")),
            ("Custom(search)", ServiceType.custom("search")),
            ("custom:search", ServiceType.custom("search")),
        ]:
            with self.subTest(spelled):
                message = decode_from_module(
                    line({"op": "discover_service_providers", "service_type": spelled})
                )
                self.assertEqual(message, DiscoverServiceProviders(expected, None))
        self.assertEqual(
            encode(DiscoverServiceProviders(ServiceType.custom("search"))),
            b'{"op":"discover_service_providers","service_type":{"Custom":"search"},'
            b'"all_providers":null}',
        )
        self.assertEqual(str(ServiceType.custom("x")), "Custom(x)")
        self.assertEqual(str(ServiceType.CACHE), "Cache")

    def test_payload_format_spelling(self) -> None:
        """
        Lower-case format names (Python SDK) are normalised; missing means Json.
        """
        message = decode_from_orchestrator(
            line(
                {
                    "op": "routed_module_response",
                    "source_module_id": "a",
                    "request_id": str(RID),
                    "payload": {"data": [123, 125], "format": "json"},
                }
            )
        )
        self.assertEqual(message.payload, EncodedPayload(b"{}", "Json"))  # type: ignore[union-attr]
        message = decode_from_orchestrator(
            line(
                {
                    "op": "routed_module_response",
                    "source_module_id": "a",
                    "request_id": str(RID),
                    "payload": {"data": [123, 125]},
                }
            )
        )
        self.assertEqual(message.payload.format, "Json")  # type: ignore[union-attr]

    def test_service_operation_result_params(self) -> None:
        """
        An echoed C{params} that parses as the operation is kept; anything else is
        ignored, as Rust does.
        """
        echoed = decode_from_orchestrator(
            line(
                {
                    "op": "service_operation_result",
                    "success": True,
                    "result": 1,
                    "error": None,
                    "params": {
                        "connection_id": "c",
                        "service_type": "Cache",
                        "operation": "get",
                        "params": {"key": "k"},
                    },
                }
            )
        )
        self.assertEqual(
            echoed,
            ServiceOperationResult(
                True, 1, None, ServiceOperation("c", ServiceType.CACHE, "get", {"key": "k"})
            ),
        )
        other = decode_from_orchestrator(
            line({"op": "service_operation_result", "success": False, "params": {"key": "k"}})
        )
        self.assertEqual(other, ServiceOperationResult(False))

    def test_routed_target_endpoint(self) -> None:
        """
        A top-level C{target_endpoint} on a routed message is kept (architecture choice)
        and only emitted when set.
        """
        data = {
            "op": "routed_module_message",
            "source_module_id": "orders",
            "original_request_id": str(RID),
            "payload": {"data": [], "format": "Json"},
        }
        plain = decode_from_orchestrator(line(data))
        self.assertEqual(plain, RoutedModuleMessage("orders", RID, EncodedPayload(b"")))
        self.assertNotIn(b"target_endpoint", encode(plain))
        with_target = decode_from_orchestrator(line({**data, "target_endpoint": "get_stock"}))
        self.assertEqual(with_target.target_endpoint, "get_stock")  # type: ignore[union-attr]

    def test_stdout_http_wrapper_decodes(self) -> None:
        """
        The orchestrator side reads the stdout http_response wrapper as an
        L{HttpResponse}.
        """
        response = HttpResponse("r", 404, {"b": "2", "a": "1"}, None)
        data = encode_stdout_http_response(response, "demo", RID)
        self.assertEqual(
            decode_from_module(data), HttpResponse("r", 404, {"a": "1", "b": "2"}, b"")
        )


class EncodeTests(SynchronousTestCase):
    def test_optional_fields(self) -> None:
        """
        Options without skip are null; options with skip are omitted (5.1).
        """
        self.assertEqual(
            encode(PortRequest("p")), b'{"op":"port_request","request_id":"p","specific_port":null}'
        )
        self.assertEqual(encode(SecretMessage("n", "v")), b'{"op":"secret","name":"n","value":"v"}')
        self.assertEqual(
            encode(HttpRequest("r", "GET", "/", {}, None)),
            b'{"op":"http_request","request_id":"r","method":"GET","uri":"/","headers":{},'
            b'"body":null}',
        )
        self.assertEqual(
            encode(ServiceRequest("i", ServiceType.JWT)),
            b'{"op":"service_request","id":"i","service_type":"Jwt","config":null}',
        )

    def test_non_ascii_and_newlines(self) -> None:
        """
        Non-ASCII is UTF-8 (not escaped); a newline inside a string is escaped so the
        line stays one line.
        """
        out = encode_line(GetSecret("ключ\nnext"))
        self.assertEqual(out, '{"op":"get_secret","name":"ключ\\nnext"}\n'.encode())

    def test_envelope_fresh_id(self) -> None:
        """
        Without an id, each envelope gets a fresh uuid4; no metadata is C{{}}.
        """
        first = json.loads(encode_envelope(HeartbeatAck()))
        second = json.loads(encode_envelope(HeartbeatAck()))
        self.assertNotEqual(first["id"], second["id"])
        self.assertEqual(uuid.UUID(first["id"]).version, 4)
        self.assertEqual(first["metadata"], {})
        self.assertEqual(list(first), ["id", "content", "metadata"])

    def test_envelope_metadata_order(self) -> None:
        """
        Metadata fields come in Rust order and only when set.
        """
        out = encode_envelope(
            HeartbeatAck(),
            RID,
            Metadata(properties={"k": [1]}, destination="d", source="s", timestamp=5, id="i"),
        )
        self.assertTrue(
            out.endswith(
                b'"metadata":{"id":"i","timestamp":5,"source":"s","destination":"d",'
                b'"properties":{"k":[1]}}}'
            )
        )

    def test_stdout_wrapper(self) -> None:
        """
        The stdout HTTP wrapper sorts keys everywhere, always has a body array and a
        fresh metadata id when none is given.
        """
        out = encode_stdout_http_response(HttpResponse("r", 204, {"z": "1", "a": "2"}, None), "m")
        obj = json.loads(out)
        self.assertEqual(obj["content"]["body"], [])
        self.assertEqual(list(obj["content"]["headers"]), ["a", "z"])
        self.assertEqual(list(obj["content"]), ["body", "headers", "request_id", "status_code"])
        self.assertEqual(list(obj["metadata"]), ["id", "properties", "source"])
        self.assertEqual(obj["metadata"]["properties"], {"correlation_id": "r"})
        uuid.UUID(obj["metadata"]["id"])

    def test_big_integers(self) -> None:
        """
        Integers over 64 bits (any-JSON fields) are written exactly, via the fallback.
        """
        out = encode(ServiceOperation("c", ServiceType.CACHE, "incr", {"n": 2**70}))
        self.assertIn(str(2**70).encode(), out)

    def test_not_a_message(self) -> None:
        """
        Encoding something else is a programming error: C{TypeError}.
        """
        self.assertRaises(TypeError, encode, {"op": "heartbeat"})  # type: ignore[arg-type]

    def test_routed_reply(self) -> None:
        """
        The A3 reply extension: op routed_module_response, module -> orchestrator, with
        the target module id.
        """
        reply = RoutedModuleReply("inventory", RID, "orders", EncodedPayload.from_json({"n": 1}))
        self.assertEqual(
            encode(reply),
            b'{"op":"routed_module_response","source_module_id":"inventory",'
            b'"request_id":"9b2e4f10-1c3d-4e5f-8a7b-6c5d4e3f2a1b","target_module_id":"orders",'
            b'"payload":{"data":[123,34,110,34,58,49,125],"format":"Json"}}',
        )
        self.assertEqual(decode_from_module(encode(reply)), reply)


class MessageValueTests(SynchronousTestCase):
    def test_lists_become_tuples(self) -> None:
        """
        Lists given to the constructors are stored as tuples, so values compare equal
        whichever was given.
        """
        endpoint = Endpoint("/x", ["GET"])
        self.assertEqual(endpoint.methods, ("GET",))
        self.assertEqual(endpoint, Endpoint("/x", ("GET",)))
        self.assertIs(AnnouncedEndpoint, Endpoint)
        self.assertEqual(Rotated(["a"], "r").keys, ("a",))

    def test_payload_json(self) -> None:
        """
        L{EncodedPayload.from_json} writes compact JSON; L{EncodedPayload.json} reads it
        back, base64-decoding first for the Base64 format.
        """
        payload = EncodedPayload.from_json({"a": [1, "é"]})
        self.assertEqual(payload.data, '{"a":[1,"é"]}'.encode())
        self.assertEqual(payload.json(), {"a": [1, "é"]})
        self.assertEqual(EncodedPayload(b"eyJhIjoxfQ==", "Base64").json(), {"a": 1})
        self.assertRaises(ValueError, EncodedPayload(b"{", "Json").json)

    def test_secret_value_not_in_repr(self) -> None:
        """
        A secret's value never shows in its repr.
        """
        self.assertNotIn("hunter2", repr(SecretMessage("DB", "hunter2")))


def _routed_reply(request_id: object, payload: object) -> bytes:
    return json.dumps(
        {
            "op": "routed_module_response",
            "source_module_id": "m",
            "request_id": request_id,
            "payload": payload,
        }
    ).encode()


def _outcome(data: bytes) -> tuple[str, object]:
    try:
        message = decode_from_orchestrator(data)
    except ProtocolError as e:
        return ("error", e.field)
    return ("ok", message)


_HEX = "0123456789abcdefABCDEF"


class FastPathTests(SynchronousTestCase):
    """
    The decoder's fast paths for the common shapes (a canonical UUID string, a payload
    object of bytes, the bare heartbeat) give exactly what the full readers give, for
    any input.
    """

    def test_heartbeat(self) -> None:
        for data in (b'{"op":"heartbeat"}', b'{ "op": "heartbeat" }', '{"op":"heartbeat"}'):
            self.assertEqual(decode_from_orchestrator(data), Heartbeat())
        self.assertIsInstance(decode_from_orchestrator(b'{"op":"heartbeats"}'), UnknownMessage)
        self.assertRaises(ProtocolError, decode_from_orchestrator, b'{"op":"heartbeat"')

    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(
            st.uuids().map(str),
            st.uuids().map(lambda u: str(u).upper()),
            st.text(alphabet=_HEX + "-{}:urnid_+ x", min_size=30, max_size=40),
            st.lists(st.sampled_from(_HEX + "-_+ "), min_size=36, max_size=36).map("".join),
        )
    )
    def test_uuid_same_as_uuid_module(self, text: str) -> None:
        kind, value = _outcome(_routed_reply(text, {"data": [1], "format": "Json"}))
        try:
            expected: object = uuid.UUID(text)
        except ValueError:
            self.assertEqual((kind, value), ("error", "routed_module_response.request_id"))
            return
        self.assertEqual(kind, "ok")
        parsed = value.request_id  # type: ignore[attr-defined]
        self.assertEqual(parsed, expected)
        self.assertEqual((str(parsed), hash(parsed)), (str(expected), hash(expected)))
        self.assertEqual(parsed.is_safe, uuid.SafeUUID.unknown)

    @settings(max_examples=200, deadline=None)
    @given(
        st.one_of(
            st.lists(st.integers(-2, 300), max_size=5),
            st.lists(st.one_of(st.integers(0, 255), st.text(max_size=1)), max_size=3),
            st.text(max_size=5),
            st.none(),
        ),
        st.sampled_from(["Json", "json", "Binary", "BASE64", "auto", "Yaml", 3, None]),
    )
    def test_payload_same_as_full_reader(self, data: object, fmt: object) -> None:
        payload: dict[str, object] = {"data": data}
        if fmt is not None:
            payload["format"] = fmt
        kind, value = _outcome(_routed_reply(str(uuid.UUID(int=7)), payload))
        if type(data) is list and all(type(i) is int and 0 <= i <= 255 for i in data):
            expected_data: bytes | None = bytes(data)
        elif type(data) is str:
            expected_data = data.encode("utf-8", "surrogatepass")
        else:
            expected_data = None
        names = {"json": "Json", "binary": "Binary", "base64": "Base64", "auto": "Auto"}
        name = names.get(str(fmt).lower()) if fmt is None or type(fmt) is str else None
        if fmt is None:
            name = "Json"
        if expected_data is None:
            self.assertEqual((kind, value), ("error", "routed_module_response.payload.data"))
        elif name is None:
            self.assertEqual((kind, value), ("error", "routed_module_response.payload.format"))
        else:
            self.assertEqual(kind, "ok")
            self.assertEqual(value.payload, EncodedPayload(expected_data, name))  # type: ignore[attr-defined]
