"""
Tests for L{pywatt_twisted.wire._registration} beyond the vectors (which
L{tests.wire.test_vectors} checks byte for byte).
"""

from __future__ import annotations

import json
import uuid

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire._registration import (
    Capabilities,
    CapabilitiesRequest,
    EndpointInfo,
    HealthStatus,
    HeartbeatRequest,
    HeartbeatResponse,
    HttpTcpRequest,
    HttpTcpResponse,
    ModuleInfo,
    RegisteredModule,
    RegisterRequest,
    RegisterResponse,
    UnregisterRequest,
    decode_http_tcp_request,
    decode_http_tcp_response,
    decode_registration_request,
    decode_registration_response,
    encode_http_tcp_request,
    encode_http_tcp_response,
    encode_registration_request,
    encode_registration_response,
)

MID = uuid.UUID("7e57ab1e-0000-4000-8000-000000000001")


class RegistrationTests(SynchronousTestCase):
    def test_requests_round_trip(self) -> None:
        """
        Every request type, with its optional parts, survives encode/decode.
        """
        for request in [
            RegisterRequest(ModuleInfo("demo", "1.0", "d", MID, {"k": "v"})),
            HeartbeatRequest(MID, "tok", HealthStatus.DEGRADED, {"load": "high"}),
            CapabilitiesRequest(
                MID,
                "tok",
                Capabilities(
                    [EndpointInfo("/x", ["GET"], "jwt", {"a": "b"})], ["m"], {"stream": True}
                ),
            ),
            UnregisterRequest(MID, "tok"),
        ]:
            with self.subTest(type(request).__name__):
                self.assertEqual(
                    decode_registration_request(encode_registration_request(request)), request
                )

    def test_responses_round_trip(self) -> None:
        """
        Every response type survives encode/decode.
        """
        info = ModuleInfo("demo", "1.0", "d")
        for response in [
            RegisterResponse(True, None, RegisteredModule(info, MID, "t", "127.0.0.1", 9901)),
            RegisterResponse(False, "denied"),
            HeartbeatResponse(True, HealthStatus.HEALTHY, None, {"x": "y"}),
        ]:
            with self.subTest(type(response).__name__):
                self.assertEqual(
                    decode_registration_response(encode_registration_response(response)), response
                )

    def test_request_envelope(self) -> None:
        """
        Requests are enveloped with C{metadata.id} a uuid string.
        """
        obj = json.loads(encode_registration_request(UnregisterRequest(MID, "tok")))
        self.assertEqual(list(obj), ["id", "content", "metadata"])
        uuid.UUID(obj["metadata"]["id"])
        self.assertEqual(obj["content"]["request_type"], "unregister")

    def test_token_not_in_repr(self) -> None:
        """
        Tokens stay out of reprs.
        """
        self.assertNotIn("sekrit", repr(UnregisterRequest(MID, "sekrit")))

    def test_errors(self) -> None:
        """
        Unknown types and bad fields are clear errors.
        """
        error = self.assertRaises(
            ProtocolError, decode_registration_response, b'{"response_type":"dance"}'
        )
        self.assertEqual(error.field, "response_type")
        error = self.assertRaises(
            ProtocolError,
            decode_registration_response,
            b'{"response_type":"heartbeat","success":true,"status":"Fine"}',
        )
        self.assertEqual(error.field, "heartbeat.status")
        error = self.assertRaises(
            ProtocolError,
            decode_registration_request,
            b'{"request_type":"unregister","module_id":"m","token":"t"}',
        )
        self.assertEqual(error.field, "unregister.module_id")


class HttpTcpTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        Requests and responses survive encode/decode; C{body} is omitted when None.
        """
        request = HttpTcpRequest("r", "GET", "/x", {"a": "b"})
        encoded = encode_http_tcp_request(request)
        self.assertNotIn(b"body", encoded)
        self.assertEqual(decode_http_tcp_request(encoded), request)
        response = HttpTcpResponse("r", 201, {}, b"ok")
        self.assertEqual(decode_http_tcp_response(encode_http_tcp_response(response)), response)

    def test_id_required(self) -> None:
        """
        The envelope id is required (Rust parses C{Message<T>}).
        """
        error = self.assertRaises(
            ProtocolError,
            decode_http_tcp_request,
            b'{"content":{"request_id":"r","method":"GET","uri":"/","headers":{}}}',
        )
        self.assertEqual(error.field, "id")
