"""
The spec's test vectors (a verbatim copy in C{tests/wire/vectors.json}) against the codec
and the framing: normative and accept-only ones must decode, normative (and recommended)
module -> orchestrator ones must encode byte for byte, do-not-emit shapes must never be
produced.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire._registration import (
    decode_http_tcp_request,
    decode_http_tcp_response,
    decode_registration_request,
    decode_registration_response,
    encode_http_tcp_request,
    encode_http_tcp_response,
    encode_registration_request,
    encode_registration_response,
)
from pywatt_twisted.wire.codec import (
    decode_envelope_from_module,
    decode_from_module,
    decode_from_orchestrator,
    decode_init,
    encode,
    encode_envelope,
    encode_init,
    encode_line,
    encode_stdout_http_response,
)
from pywatt_twisted.wire.framing import (
    FORMAT_BINARY,
    FORMAT_JSON,
    Frame,
    FrameDecoder,
    encode_frame,
    frame_json,
)
from pywatt_twisted.wire.init import (
    InitBlob,
    IpcChannelConfig,
    SecurityLevel,
    TcpChannelConfig,
    TcpListen,
    UnixListen,
)
from pywatt_twisted.wire.messages import (
    Announce,
    EncodedPayload,
    Endpoint,
    Envelope,
    Heartbeat,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    Identify,
    Metadata,
    RegisterServiceProvider,
    RouteToModule,
    SecretMessage,
    ServiceType,
)

VECTORS: list[dict[str, Any]] = json.loads(
    Path(__file__).with_name("vectors.json").read_text(encoding="utf-8")
)
BY_NAME = {v["name"]: v for v in VECTORS}


def compact(value: object) -> bytes:
    """
    serde_json's compact form of a vector's C{json}: what the vectors' hex was made from.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_frames(data: bytes) -> list[Frame]:
    frames = FrameDecoder().feed(data)
    for frame in frames:
        assert isinstance(frame, Frame), frame
    return frames  # type: ignore[return-value]


class VectorFileTests(SynchronousTestCase):
    def test_copy_is_complete(self) -> None:
        """
        The copy holds the 60 vectors the spec describes, each with the documented keys.
        """
        self.assertEqual(len(VECTORS), 60)
        for vector in VECTORS:
            self.assertLessEqual(
                {"name", "direction", "transport", "status", "description", "json"}, set(vector)
            )


class OrchestratorToModuleVectorTests(SynchronousTestCase):
    def vectors(self) -> list[dict[str, Any]]:
        return [
            v
            for v in VECTORS
            if v["direction"] == "orchestrator->module"
            and v["status"] in ("normative", "accept-only")
        ]

    def test_every_vector_decodes(self) -> None:
        """
        Every normative and accept-only orchestrator -> module vector decodes with the
        decoder for its transport.
        """
        seen = 0
        for v in self.vectors():
            with self.subTest(v["name"]):
                if v["name"].startswith("init_"):
                    self.assertIsInstance(decode_init(v["wire_text"]), InitBlob)
                elif v["transport"] == "registration-frame":
                    if v["name"].startswith("http_tcp"):
                        decode_http_tcp_request(compact(v["json"]))
                    else:
                        decode_registration_response(compact(v["json"]))
                else:
                    text = v.get("wire_text", compact(v["json"]))
                    message = decode_from_orchestrator(text)
                    self.assertEqual(type(message).op, v["json"]["op"])
                seen += 1
        self.assertEqual(seen, 33)

    def test_frames_decode(self) -> None:
        """
        Vectors with a frame decode through L{FrameDecoder} and L{frame_json} to the
        vector's message, whatever the (accepted) format byte.
        """
        names = [
            "shutdown_channel",
            "heartbeat_channel",
            "frame_base64_json",
            "frame_binary_carrying_json",
        ]
        for name in names:
            v = BY_NAME[name]
            with self.subTest(name):
                [frame] = decode_frames(bytes.fromhex(v["frame_hex"]))
                self.assertEqual(
                    decode_from_orchestrator(frame_json(frame)), decode_from_orchestrator(v["json"])
                )
        self.assertEqual(decode_frames(bytes.fromhex(BY_NAME[names[2]]["frame_hex"]))[0].format, 3)

    def test_normative_encode_byte_for_byte(self) -> None:
        """
        Our encoding of each normative orchestrator -> module message (used by the dev
        orchestrator and the fake one) is exactly the vector's bytes.
        """
        for v in self.vectors():
            if v["status"] != "normative" or v["transport"] == "registration-frame":
                continue
            with self.subTest(v["name"]):
                if v["name"].startswith("init_"):
                    self.assertEqual(
                        encode_init(decode_init(v["wire_text"])) + b"\n", v["wire_text"].encode()
                    )
                    continue
                expected = v["wire_text"].encode() if "wire_text" in v else compact(v["json"])
                message = decode_from_orchestrator(expected)
                self.assertEqual(encode(message) + (b"\n" if "wire_text" in v else b""), expected)
                if "frame_hex" in v:
                    self.assertEqual(encode_frame(encode(message)), bytes.fromhex(v["frame_hex"]))

    def test_init_values(self) -> None:
        """
        The init vectors decode to the values they spell, in all their shapes.
        """
        self.assertEqual(
            decode_init(BY_NAME["init_minimal"]["wire_text"]),
            InitBlob("http://127.0.0.1:9900", "demo", {}, TcpListen("127.0.0.1", 4102)),
        )
        full = decode_init(BY_NAME["init_full_channels"]["wire_text"])
        self.assertEqual(full.tcp_channel, TcpChannelConfig("127.0.0.1", 9901, False, False))
        self.assertEqual(full.ipc_channel, IpcChannelConfig("/tmp/wattson_demo.sock", False))
        self.assertEqual(full.auth_token, "tok-123")
        self.assertEqual(full.security_level, SecurityLevel.TOKEN)
        self.assertEqual(full.env, {"DATABASE_URL": "postgres://db/demo"})
        self.assertEqual(
            decode_init(BY_NAME["init_unix_listen"]["wire_text"]).listen,
            UnixListen("/tmp/demo-http.sock"),
        )
        self.assertEqual(
            decode_init(BY_NAME["init_ipv6_listen"]["wire_text"]).listen, TcpListen("::1", 4102)
        )
        python = decode_init(BY_NAME["init_python_sdk_form"]["wire_text"])
        self.assertEqual(python.tcp_channel, TcpChannelConfig("127.0.0.1", 9901))
        self.assertIsNone(python.auth_token)
        self.assertTrue(python.debug_mode)
        self.assertEqual(python.log_level, "debug")
        self.assertEqual(
            decode_init(BY_NAME["init_python_unix_listen_object"]["wire_text"]).listen,
            UnixListen("/tmp/demo-http.sock"),
        )
        self.assertEqual(
            decode_init(BY_NAME["init_with_op_tag"]["wire_text"]),
            decode_init(BY_NAME["init_minimal"]["wire_text"]),
        )

    def test_accept_only_init_emitted_in_rust_form(self) -> None:
        """
        A Python-shaped init blob is re-emitted in the Rust form: C{address}, no nulls.
        """
        out = encode_init(decode_init(BY_NAME["init_python_sdk_form"]["wire_text"]))
        self.assertIn(b'"tcp_channel":{"address":"127.0.0.1:9901"', out)
        self.assertNotIn(b"null", out)
        self.assertNotIn(b'"host"', out)
        unix = encode_init(decode_init(BY_NAME["init_python_unix_listen_object"]["wire_text"]))
        self.assertIn(b'"listen":"/tmp/demo-http.sock"', unix)
        self.assertNotIn(
            b'"op"', encode_init(decode_init(BY_NAME["init_with_op_tag"]["wire_text"]))
        )

    def test_http_request_body(self) -> None:
        """
        Bodies arrive as int arrays and come out as bytes; a null body is C{None}.
        """
        self.assertEqual(
            decode_from_orchestrator(BY_NAME["http_request_stdin"]["wire_text"]),
            HttpRequest(
                "req-1",
                "POST",
                "/api/v1/items?dry_run=1",
                {"content-type": "application/json"},
                b'{"sku":"A1"}',
            ),
        )
        self.assertIsNone(
            decode_from_orchestrator(BY_NAME["http_request_no_body"]["wire_text"]).body
        )  # type: ignore[union-attr]

    def test_routed_payloads(self) -> None:
        """
        Routed payload bytes are the UTF-8 text the vectors give.
        """
        for name in ("routed_module_message", "routed_module_response"):
            v = BY_NAME[name]
            message = decode_from_orchestrator(v["json"])
            self.assertEqual(message.payload.data.decode("utf-8"), v["payload_data_utf8"])  # type: ignore[union-attr]
            self.assertEqual(message.payload.format, "Json")  # type: ignore[union-attr]

    def test_python_nested_secret(self) -> None:
        """
        The Python SDK's nested shape decodes like the flat one and is re-emitted flat.
        """
        nested = decode_from_orchestrator(BY_NAME["python_nested_secret"]["wire_text"])
        self.assertEqual(nested, SecretMessage("DATABASE_URL", "postgres://db/demo"))
        self.assertEqual(encode_line(nested), BY_NAME["secret"]["wire_text"].encode())

    def test_bincode_is_not_json(self) -> None:
        """
        The informational bincode frame decodes as a format-2 frame whose payload is not
        JSON: the codec rejects it with a L{ProtocolError} (the caller drops it).
        """
        v = BY_NAME["bincode_message_string_empty_metadata"]
        [frame] = decode_frames(bytes.fromhex(v["frame_hex"]))
        self.assertEqual(frame, Frame(FORMAT_BINARY, bytes.fromhex(v["payload_hex"])))
        self.assertRaises(ProtocolError, decode_from_orchestrator, frame_json(frame))


class ModuleToOrchestratorVectorTests(SynchronousTestCase):
    def vectors(self, *statuses: str) -> list[dict[str, Any]]:
        return [
            v
            for v in VECTORS
            if v["direction"] == "module->orchestrator" and v["status"] in statuses
        ]

    def test_normative_decode(self) -> None:
        """
        Every normative module -> orchestrator vector decodes (the orchestrator side).
        """
        count = 0
        for v in self.vectors("normative"):
            with self.subTest(v["name"]):
                if v["transport"] == "registration-frame":
                    if v["name"].startswith("http_tcp"):
                        decode_http_tcp_response(compact(v["json"]))
                    else:
                        decode_registration_request(compact(v["json"]))
                else:
                    decode_from_module(v.get("wire_text", compact(v["json"])))
                count += 1
        self.assertEqual(count, 20)

    def test_normative_encode_byte_for_byte(self) -> None:
        """
        Every normative (and recommended) module -> orchestrator vector is produced byte
        for byte: stdout lines equal C{wire_text}, channel envelopes (with the vector's
        uuid and metadata) equal the compact JSON and, where given, C{frame_hex}.
        """
        count = 0
        for v in self.vectors("normative", "recommended"):
            if v["transport"] == "registration-frame":
                continue
            with self.subTest(v["name"]):
                if v["transport"] == "stdout-line":
                    expected = v["wire_text"].encode("utf-8")
                    envelope = decode_envelope_from_module(expected)
                    if v["name"] == "http_response_stdout_wrapper":
                        assert isinstance(envelope.content, HttpResponse)
                        assert envelope.metadata.id is not None
                        assert envelope.metadata.source is not None
                        out = encode_stdout_http_response(
                            envelope.content,
                            source=envelope.metadata.source,
                            message_id=uuid.UUID(envelope.metadata.id),
                        )
                        self.assertEqual(out + b"\n", expected)
                    else:
                        self.assertIsNone(envelope.id)
                        self.assertEqual(encode_line(envelope.content), expected)
                else:
                    expected = compact(v["json"])
                    envelope = decode_envelope_from_module(expected)
                    self.assertEqual(str(envelope.id), v["json"]["id"])
                    out = encode_envelope(envelope.content, envelope.id, envelope.metadata)
                    self.assertEqual(out, expected)
                    self.assertEqual(encode(envelope), expected)
                    if "frame_hex" in v:
                        self.assertEqual(encode_frame(out), bytes.fromhex(v["frame_hex"]))
                count += 1
        self.assertEqual(count, 17)

    def test_built_messages_encode_byte_for_byte(self) -> None:
        """
        Messages built by hand (as the runtime builds them) give the vectors' bytes.
        """
        vid = uuid.UUID("3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f")
        announce = Announce(
            "127.0.0.1:4102",
            [Endpoint("/api/v1/items", ["GET", "POST"], "jwt"), Endpoint("/health", ["GET"])],
        )
        self.assertEqual(encode_line(announce), BY_NAME["announce"]["wire_text"].encode())
        self.assertEqual(
            encode_frame(encode_envelope(Identify("demo"), vid, Metadata(source="demo"))),
            bytes.fromhex(BY_NAME["identify_recommended_tcp"]["frame_hex"]),
        )
        self.assertEqual(
            encode_frame(encode_envelope(HeartbeatAck(), vid)),
            bytes.fromhex(BY_NAME["heartbeat_ack_channel"]["frame_hex"]),
        )
        response = HttpResponse("req-1", 200, {"content-type": "application/json"}, b'{"ok":true}')
        self.assertEqual(
            encode_frame(
                encode_envelope(response, uuid.UUID("0d9e8f7a-6b5c-4d3e-9f1a-2b3c4d5e6f70"))
            ),
            bytes.fromhex(BY_NAME["http_response_channel"]["frame_hex"]),
        )
        self.assertEqual(
            encode_stdout_http_response(
                response, "demo", uuid.UUID("c0ffee00-1234-4abc-8def-0123456789ab")
            )
            + b"\n",
            BY_NAME["http_response_stdout_wrapper"]["wire_text"].encode(),
        )
        route = BY_NAME["route_to_module_channel"]
        built = RouteToModule(
            "inventory",
            "get_stock",
            uuid.UUID("9b2e4f10-1c3d-4e5f-8a7b-6c5d4e3f2a1b"),
            EncodedPayload(route["payload_data_utf8"].encode("utf-8")),
        )
        self.assertEqual(
            encode_envelope(built, uuid.UUID("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d")),
            compact(route["json"]),
        )
        custom = RegisterServiceProvider(
            ServiceType.custom("search"), "es", "8.1", "127.0.0.1:9200", {"region": "local"}
        )
        self.assertEqual(
            encode_envelope(custom, vid, Metadata(id="c0ffee00-1234-4abc-8def-0123456789ab")),
            compact(BY_NAME["register_service_provider_custom_type"]["json"]),
        )

    def test_registration_vectors_byte_for_byte(self) -> None:
        """
        Registration and HTTP-over-TCP vectors re-encode to their compact JSON (requests
        and module-side responses enveloped; orchestrator responses bare).
        """
        for v in VECTORS:
            if v["transport"] != "registration-frame":
                continue
            with self.subTest(v["name"]):
                expected = compact(v["json"])
                if v["name"] == "http_tcp_request":
                    out = encode_http_tcp_request(
                        decode_http_tcp_request(expected), uuid.UUID(v["json"]["id"])
                    )
                elif v["name"] == "http_tcp_response":
                    out = encode_http_tcp_response(
                        decode_http_tcp_response(expected), uuid.UUID(v["json"]["id"])
                    )
                elif v["direction"] == "module->orchestrator":
                    out = encode_registration_request(
                        decode_registration_request(expected),
                        uuid.UUID(v["json"]["id"]),
                        v["json"]["metadata"]["id"],
                    )
                else:
                    out = encode_registration_response(decode_registration_response(expected))
                self.assertEqual(out, expected)
                if "frame_hex" in v:
                    self.assertEqual(encode_frame(out), bytes.fromhex(v["frame_hex"]))

    def test_do_not_emit_announce(self) -> None:
        """
        The Python SDK's bare announce is accepted, but we re-emit it with C{op} and
        without C{"auth": null}.
        """
        v = BY_NAME["announce_python_sdk_bare"]
        message = decode_from_module(v["wire_text"])
        self.assertEqual(message, Announce("127.0.0.1:8080", [Endpoint("/health", ["GET"])]))
        line = encode_line(message)
        self.assertNotEqual(line, v["wire_text"].encode())
        self.assertTrue(line.startswith(b'{"op":"announce",'))
        self.assertNotIn(b"null", line)

    def test_do_not_emit_format_zero(self) -> None:
        """
        A Python-SDK frame with format byte 0 is read leniently, but our frames always
        carry format 1.
        """
        v = BY_NAME["frame_python_sdk_json_byte0"]
        [frame] = decode_frames(bytes.fromhex(v["frame_hex"]))
        self.assertEqual(frame.format, 0)
        self.assertEqual(decode_from_orchestrator(frame_json(frame)), Heartbeat())
        ours = encode_frame(encode(Heartbeat()))
        self.assertNotEqual(ours, bytes.fromhex(v["frame_hex"]))
        self.assertEqual(ours[4], FORMAT_JSON)
        self.assertEqual(ours[5:], bytes.fromhex(v["frame_hex"])[5:])

    def test_historical_identify(self) -> None:
        """
        The Python SDK's old identify (null padded) is understood; ours carries the id
        under both keys and no nulls.
        """
        v = BY_NAME["identify_python_7083a43"]
        message = decode_from_module(v["wire_text"])
        self.assertEqual(message, Identify("demo"))
        line = encode_line(message)
        self.assertEqual(line, b'{"op":"identify","identify":"demo","module_id":"demo"}\n')
        self.assertNotIn(b"null", line)

    def test_no_emitted_line_is_null_padded(self) -> None:
        """
        None of our encodings of the module -> orchestrator vectors carries a key that
        the vector does not (no Python-style null padding).
        """
        for v in self.vectors("normative", "recommended"):
            if v["transport"] == "registration-frame" or v["json"] is None:
                continue
            with self.subTest(v["name"]):
                text = v.get("wire_text", compact(v["json"]))
                envelope = decode_envelope_from_module(text)
                if v["name"] == "http_response_stdout_wrapper":
                    continue
                ours = json.loads(encode(envelope.content))
                theirs = v["json"].get("content", v["json"])
                self.assertEqual(list(ours), list(theirs))

    def test_envelope_metadata(self) -> None:
        """
        Envelopes keep their metadata; the stdout wrapper has no envelope id.
        """
        v = BY_NAME["register_service_provider"]
        envelope = decode_envelope_from_module(v["json"])
        self.assertEqual(envelope.metadata, Metadata(id="c0ffee00-1234-4abc-8def-0123456789ab"))
        wrapper = decode_envelope_from_module(BY_NAME["http_response_stdout_wrapper"]["wire_text"])
        self.assertEqual(
            wrapper,
            Envelope(
                None,
                HttpResponse("req-1", 200, {"content-type": "application/json"}, b'{"ok":true}'),
                Metadata(
                    id="c0ffee00-1234-4abc-8def-0123456789ab",
                    source="demo",
                    properties={"correlation_id": "req-1"},
                ),
            ),
        )
