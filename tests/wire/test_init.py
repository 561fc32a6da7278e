"""
Tests for L{pywatt_twisted.wire.init} and the init-blob half of the codec.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.testing.strategies import init_blobs, listen_addresses
from pywatt_twisted.wire.codec import decode_from_orchestrator, decode_init, encode, encode_init
from pywatt_twisted.wire.init import (
    InitBlob,
    SecurityLevel,
    TcpChannelConfig,
    TcpListen,
    UnixListen,
    listen_warning,
    parse_ip_socket_address,
    parse_listen,
)
from pywatt_twisted.wire.messages import Init

BASE = {"orchestrator_api": "http://127.0.0.1:9900", "module_id": "demo", "env": {}}


def blob(**changes: object) -> bytes:
    obj = dict(BASE)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


class ListenTests(SynchronousTestCase):
    def test_ip_literals_are_tcp(self) -> None:
        """
        IPv4 and bracketed IPv6 literals with a port are TCP addresses.
        """
        self.assertEqual(parse_listen("127.0.0.1:4102"), TcpListen("127.0.0.1", 4102))
        self.assertEqual(parse_listen("[::1]:0"), TcpListen("::1", 0))
        self.assertEqual(parse_listen("[fe80::1%2]:80"), TcpListen("fe80::1%2", 80))
        self.assertEqual(parse_listen("0.0.0.0:65535"), TcpListen("0.0.0.0", 65535))

    def test_everything_else_is_a_path(self) -> None:
        """
        Host names, bad ports, unbracketed IPv6 and plain paths are Unix paths (serde's
        untagged rule), exactly as given.
        """
        for text in [
            "/tmp/x.sock",
            "localhost:8080",
            "127.0.0.1:65536",
            "127.0.0.1",
            "::1:80",
            "01.2.3.4:80",
            "127.0.0.1:+80",
            "[::1]80",
            "[fe80::1%eth0]:80",
            "relative.sock",
        ]:
            with self.subTest(text):
                self.assertEqual(parse_listen(text), UnixListen(text))

    def test_tagged_objects(self) -> None:
        """
        C{{"Unix": p}} and C{{"Tcp": "ip:port"}} are accepted.
        """
        self.assertEqual(parse_listen({"Unix": "/tmp/a"}), UnixListen("/tmp/a"))
        self.assertEqual(parse_listen({"Tcp": "[::1]:9"}), TcpListen("::1", 9))

    def test_bad_values(self) -> None:
        """
        Other shapes raise a L{ProtocolError} naming the field and what was expected.
        """
        for value, field in [
            (5, "listen"),
            ("", "listen"),
            ({"Tcp": "localhost:1"}, "listen.Tcp"),
            ({"Udp": "x"}, "listen"),
            (None, "listen"),
        ]:
            with self.subTest(value):
                error = self.assertRaises(ProtocolError, parse_listen, value)
                self.assertEqual(error.field, field)
                self.assertIn("expected", str(error))

    def test_str(self) -> None:
        """
        C{str()} renders the wire form.
        """
        self.assertEqual(str(TcpListen("127.0.0.1", 4102)), "127.0.0.1:4102")
        self.assertEqual(str(TcpListen("::1", 4102)), "[::1]:4102")
        self.assertEqual(str(UnixListen("/tmp/x")), "/tmp/x")

    def test_warning(self) -> None:
        """
        A host:port-looking path gets a warning; real paths and TCP addresses do not.
        """
        warning = listen_warning(parse_listen("localhost:8080"))
        assert warning is not None
        self.assertIn("localhost:8080", warning)
        self.assertIsNone(listen_warning(parse_listen("/tmp/x.sock")))
        self.assertIsNone(listen_warning(parse_listen("127.0.0.1:1")))
        self.assertIsNone(listen_warning(None))

    @settings(deadline=None)
    @given(listen_addresses())
    def test_round_trip(self, address: TcpListen | UnixListen) -> None:
        """
        The string form of any listen address parses back to it.
        """
        self.assertEqual(parse_listen(str(address)), address)

    @settings(deadline=None)
    @given(st.text())
    def test_never_crashes(self, text: str) -> None:
        """
        Any string parses to something or raises L{ProtocolError}; nothing else.
        """
        try:
            parse_listen(text)
        except ProtocolError:
            self.assertEqual(text, "")
        parsed = parse_ip_socket_address(text)
        if parsed is not None:
            self.assertEqual(int(text.rsplit(":", 1)[1]), parsed[1])
            self.assertIn(parsed[1], range(65536))


class InitBlobDecodeTests(SynchronousTestCase):
    def test_listen_missing(self) -> None:
        """
        A blob without C{listen} decodes with C{listen=None} (negotiated later).
        """
        self.assertIsNone(decode_init(blob(listen=...)).listen)
        self.assertIsNone(decode_init(blob(listen=None)).listen)

    def test_env_missing(self) -> None:
        """
        A missing or null C{env} is empty (Python SDK default).
        """
        self.assertEqual(decode_init(blob(env=...)).env, {})
        self.assertEqual(decode_init(blob(env=None)).env, {})

    def test_security_level(self) -> None:
        """
        The three levels parse; missing and null default to C{None}; others fail.
        """
        self.assertEqual(
            decode_init(blob(security_level="Mtls")).security_level, SecurityLevel.MTLS
        )
        self.assertEqual(decode_init(blob()).security_level, SecurityLevel.NONE)
        self.assertEqual(decode_init(blob(security_level=None)).security_level, SecurityLevel.NONE)
        error = self.assertRaises(ProtocolError, decode_init, blob(security_level="mtls"))
        self.assertEqual(error.field, "security_level")
        self.assertIn("'mtls'", str(error))

    def test_tcp_channel_forms(self) -> None:
        """
        R form (C{address}) and P form (C{host}, C{port}) give the same config; missing
        booleans are false; C{address} wins over C{host}.
        """
        r = decode_init(blob(tcp_channel={"address": "[::1]:9901", "tls_enabled": True}))
        self.assertEqual(r.tcp_channel, TcpChannelConfig("::1", 9901, True, False))
        p = decode_init(blob(tcp_channel={"host": "::1", "port": 9901, "tls_enabled": True}))
        self.assertEqual(p.tcp_channel, r.tcp_channel)
        both = decode_init(
            blob(tcp_channel={"address": "127.0.0.1:1", "host": "10.0.0.1", "port": 2})
        )
        self.assertEqual(both.tcp_channel, TcpChannelConfig("127.0.0.1", 1))
        named = decode_init(blob(tcp_channel={"address": "orchestrator.local:9901"}))
        self.assertEqual(named.tcp_channel, TcpChannelConfig("orchestrator.local", 9901))
        assert named.tcp_channel is not None
        self.assertEqual(named.tcp_channel.address, "orchestrator.local:9901")

    def test_errors_name_the_field(self) -> None:
        """
        Each kind of bad blob raises a L{ProtocolError} whose C{field} is the dotted path.
        """
        cases = [
            (blob(module_id=...), "module_id", "missing"),
            (blob(module_id=3), "module_id", "got number"),
            (blob(orchestrator_api=None), "orchestrator_api", "got null"),
            (blob(env={"A": 1}), "env", "object of strings"),
            (blob(env=[]), "env", "got array"),
            (blob(listen=4102), "listen", "got number"),
            (blob(tcp_channel={"address": "nowhere"}), "tcp_channel.address", "ip:port"),
            (blob(tcp_channel={"address": 5}), "tcp_channel.address", "got number"),
            (blob(tcp_channel={"host": "h", "port": 70000}), "tcp_channel.port", "65535"),
            (blob(tcp_channel={"tls_enabled": False}), "tcp_channel", "neither"),
            (
                blob(tcp_channel={"address": "1.2.3.4:5", "required": "yes"}),
                "tcp_channel.required",
                "true or false",
            ),
            (blob(tcp_channel="127.0.0.1:1"), "tcp_channel", "expected an object"),
            (blob(ipc_channel={}), "ipc_channel.socket_path", "missing"),
            (blob(auth_token=1), "auth_token", "string or null"),
            (blob(debug_mode="yes"), "debug_mode", "true or false"),
            (blob(op="secret"), "op", "init blob"),
        ]
        for data, field, words in cases:
            with self.subTest(field):
                error = self.assertRaises(ProtocolError, decode_init, data)
                self.assertEqual(error.field, field)
                self.assertIn(words, str(error))
                self.assertTrue(str(error).startswith(field + ": "))

    def test_not_json(self) -> None:
        """
        Invalid JSON and non-objects are clear errors, with no field.
        """
        error = self.assertRaises(ProtocolError, decode_init, b"{not json")
        self.assertIn("invalid JSON", str(error))
        self.assertIsNone(error.field)
        self.assertIn("got array", str(self.assertRaises(ProtocolError, decode_init, b"[]")))
        self.assertRaises(ProtocolError, decode_init, b'{"a":NaN}')

    def test_secret_values_not_in_errors(self) -> None:
        """
        Errors never quote string values (an env value may be a secret).
        """
        error = self.assertRaises(
            ProtocolError, decode_init, blob(env={"A": "hunter2", "B": 3}, module_id=["x"])
        )
        self.assertNotIn("hunter2", str(error))
        error = self.assertRaises(ProtocolError, decode_init, blob(auth_token=["hunter2"]))
        self.assertNotIn("hunter2", str(error))

    def test_nested_python_init(self) -> None:
        """
        C{{"op": "init", "init": {...}}} is unwrapped.
        """
        inner = json.loads(blob(listen="127.0.0.1:1"))
        self.assertEqual(
            decode_init(json.dumps({"op": "init", "init": inner})),
            decode_init(json.dumps(inner)),
        )


class InitBlobEncodeTests(SynchronousTestCase):
    def test_rust_order_and_omissions(self) -> None:
        """
        Fields in Rust order; None channels, token and listen omitted; security_level
        always present; Python extensions only when set.
        """
        out = encode_init(InitBlob("http://o", "m", {"K": "v"}, UnixListen("/s")))
        self.assertEqual(
            out,
            b'{"orchestrator_api":"http://o","module_id":"m","env":{"K":"v"},'
            b'"listen":"/s","security_level":"None"}',
        )
        extra = encode_init(InitBlob("a", "b", debug_mode=True, log_level="debug"))
        self.assertEqual(
            extra,
            b'{"orchestrator_api":"a","module_id":"b","env":{},"security_level":"None",'
            b'"debug_mode":true,"log_level":"debug"}',
        )

    def test_non_ascii_is_utf8(self) -> None:
        """
        Non-ASCII text is written as UTF-8, not escaped (serde does not escape).
        """
        self.assertIn("módulo".encode(), encode_init(InitBlob("a", "módulo")))

    def test_auth_token_not_in_repr(self) -> None:
        """
        The auth token is not shown in the blob's repr (it ends up in logs).
        """
        self.assertNotIn("tok-secret", repr(InitBlob("a", "b", auth_token="tok-secret")))

    @settings(deadline=None)
    @given(init_blobs())
    def test_round_trip(self, value: InitBlob) -> None:
        """
        Any blob survives encode/decode, bare and as the C{init} op.
        """
        self.assertEqual(decode_init(encode_init(value)), value)
        self.assertEqual(decode_from_orchestrator(encode(Init(value))), Init(value))
        self.assertEqual(decode_init(encode(Init(value))), value)
