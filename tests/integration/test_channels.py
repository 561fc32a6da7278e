"""
Integration tests: a module as a real process (C{twistd -n pywatt}) with framed TCP and
Unix-socket channels to a real test orchestrator (L{ChannelServer}) on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from pywatt_twisted.orchestrator import ChannelServer, EphemeralPKI, ModuleConnection
from pywatt_twisted.wire.messages import HttpRequest, Identify, Shutdown
from tests.integration.process import ModuleProcess, child_environment, init_blob, twistd_command

ECHO = "tests.runtime.modules:echo_app"
SECRETS = {"API_KEY": "chan-api-key-1", "DB_PASSWORD": "chan-db-pw-2"}


class ChannelProcessTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.server = ChannelServer(reactor)
        self.addCleanup(self.server.stop)
        # Unix socket paths are limited to ~100 bytes: keep it short, outside _trial_temp.
        self.sockdir = tempfile.mkdtemp(prefix="pwch")
        self.addCleanup(shutil.rmtree, self.sockdir, True)

    async def start(
        self,
        *,
        tcp: bool = True,
        ipc: bool = True,
        tcp_required: bool = True,
        tls: bool = False,
        env: dict[str, str] | None = None,
        security_level: str = "None",
        **blob: Any,
    ) -> ModuleProcess:
        if tcp:
            self.tcp_address = await self.server.listen_tcp(
                tls=self.pki.server_options(True) if tls else None
            )
            blob["tcp_channel"] = {
                "address": self.tcp_address,
                "tls_enabled": tls,
                "required": tcp_required,
            }
        if ipc:
            self.socket_path = os.path.join(self.sockdir, "orch.sock")
            await self.server.listen_unix(self.socket_path)
            blob["ipc_channel"] = {"socket_path": self.socket_path, "required": False}
        workdir = self.mktemp()
        os.makedirs(workdir)
        proc = ModuleProcess.spawn(
            twistd_command(ECHO), env=child_environment(**(env or {})), path=workdir
        )
        self.addCleanup(self._kill, proc)
        proc.send(init_blob(module_id="chan", security_level=security_level, **blob))
        for _ in SECRETS:
            await proc.expect_op("get_secret")
        for name, value in SECRETS.items():
            proc.send({"op": "secret", "name": name, "value": value})
        await proc.expect_op("announce")
        return proc

    async def _kill(self, proc: ModuleProcess) -> None:
        if proc.exit_code is None and proc.exit_signal is None:
            try:
                proc.signal("KILL")
            except Exception:
                pass
            await proc.ended

    async def connection(self, listener: str) -> ModuleConnection:
        return await self.server.next_connection(listener, timeout=15)

    async def test_heartbeats_on_tcp_and_unix_socket(self) -> None:
        """
        Heartbeats are acked on the channel they came in on, enveloped; identify goes
        first on TCP only (the default).
        """
        await self.start()
        tcp = await self.connection("tcp")
        ipc = await self.connection("ipc")
        identify = await tcp.expect_op("identify")
        self.assertEqual(identify.content, Identify("chan"))
        self.assertEqual(identify.metadata.source, "chan")
        self.assertIsNotNone(identify.id)
        for connection in (tcp, ipc, tcp, ipc):
            ack = await connection.heartbeat()
            self.assertEqual(ack.content.op, "heartbeat_ack")
            self.assertIsNotNone(ack.id)
        self.assertIsNone(ipc.identify)
        self.assertEqual(ipc.received[0].content.op, "heartbeat_ack")

    async def test_http_over_channels_uses_real_routes(self) -> None:
        await self.start()
        tcp = await self.connection("tcp")
        ipc = await self.connection("ipc")
        response = await tcp.http_request("GET", "/items/42")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(json.loads(response.body), {"id": 42})
        response = await ipc.http_request(
            "POST", "/echo?x=1", {"content-type": "text/plain"}, b"over the socket"
        )
        echoed = json.loads(response.body)
        self.assertEqual(
            (echoed["method"], echoed["body"], echoed["args"]),
            ("POST", "over the socket", {"x": ["1"]}),
        )
        health = await ipc.http_request("GET", "/health")
        channels = json.loads(health.body)["channels"]
        self.assertEqual(channels["tcp"]["state"], "connected")
        self.assertEqual(channels["ipc"]["state"], "connected")
        self.assertGreaterEqual(channels["ipc"]["frames_in"], 2)
        metrics = await tcp.http_request("GET", "/metrics")
        self.assertIn(b'pywatt_channel_state{channel="ipc",state="connected"} 1.0', metrics.body)
        # Concurrent requests on both channels, answered where they came from.
        waits = [
            (tcp if i % 2 else ipc).http_request("GET", f"/slow?delay={0.02 * (10 - i)}")
            for i in range(10)
        ]
        for d in waits:
            self.assertEqual((await d).body, b"slow done")

    async def test_survives_orchestrator_closing_the_connection(self) -> None:
        """
        The orchestrator drops TCP while a request is in flight: the module reconnects
        (identify again) and the reply is delivered on the new connection.
        """
        await self.start(ipc=False)
        first = await self.connection("tcp")
        await first.expect_op("identify")
        first.send(HttpRequest("in-flight", "GET", "/slow?delay=0.5", {}, None))
        await deferLater(reactor, 0.1, lambda: None)
        first.drop()
        await first.closed
        second = await self.connection("tcp")
        self.assertEqual((await second.expect_op("identify")).content, Identify("chan"))
        reply = await second.expect(
            lambda e: getattr(e.content, "request_id", None) == "in-flight", timeout=10
        )
        self.assertEqual(reply.content.status_code, 200)
        self.assertEqual(reply.content.body, b"slow done")
        # And the channel works as before.
        self.assertEqual((await second.heartbeat()).content.op, "heartbeat_ack")
        self.assertEqual(json.loads((await second.http_request("GET", "/items/7")).body), {"id": 7})

    async def test_in_flight_reply_fails_over_to_the_other_channel(self) -> None:
        """
        TCP goes down for good while a request is in flight: the reply comes on the
        Unix socket instead.
        """
        await self.start()
        tcp = await self.connection("tcp")
        ipc = await self.connection("ipc")
        tcp.send(HttpRequest("moved", "GET", "/slow?delay=0.4", {}, None))
        await deferLater(reactor, 0.1, lambda: None)
        tcp_port = self.server.ports[0]
        self.assertEqual(f"127.0.0.1:{tcp_port.getHost().port}", self.tcp_address)
        await tcp_port.stopListening()
        tcp.abort()
        reply = await ipc.expect(lambda e: getattr(e.content, "request_id", None) == "moved")
        self.assertEqual(reply.content.body, b"slow done")

    async def test_gib_frame_header_aborts_and_reconnects(self) -> None:
        """
        A header announcing 1 GiB aborts that connection at once (nothing allocated);
        the module reconnects and keeps working.
        """
        proc = await self.start(ipc=False)
        first = await self.connection("tcp")
        await first.expect_op("identify")
        first.send_bogus_header(1 << 30)
        await first.closed
        second = await self.connection("tcp")
        await second.expect_op("identify")
        self.assertEqual((await second.heartbeat()).content.op, "heartbeat_ack")
        health = json.loads((await second.http_request("GET", "/health")).body)
        tcp = health["channels"]["tcp"]
        self.assertEqual(tcp["connects"], 2)
        self.assertEqual(tcp["bad_frames"], 1)
        self.assertIn("1073741824", proc.stderr.decode())

    async def test_shutdown_on_a_channel(self) -> None:
        proc = await self.start(tcp=False)
        ipc = await self.connection("ipc")
        self.assertEqual((await ipc.heartbeat()).content.op, "heartbeat_ack")
        ipc.send(Shutdown())
        self.assertEqual(await proc.ended, 0)

    async def test_required_channel_missing_fails_start(self) -> None:
        """
        A required channel nobody listens on makes start-up fail after the timeout
        with a clear error naming it; nothing is announced.
        """
        workdir = self.mktemp()
        os.makedirs(workdir)
        proc = ModuleProcess.spawn(
            twistd_command(ECHO),
            env=child_environment(PYWATT_CHANNEL_REQUIRED_TIMEOUT="1.5"),
            path=workdir,
        )
        self.addCleanup(self._kill, proc)
        missing = os.path.join(self.sockdir, "nobody.sock")
        proc.send(
            init_blob(module_id="chan", ipc_channel={"socket_path": missing, "required": True})
        )
        for _ in SECRETS:
            await proc.expect_op("get_secret")
        for name, value in SECRETS.items():
            proc.send({"op": "secret", "name": name, "value": value})
        self.assertEqual(await proc.ended, 1)
        self.assertFalse([x for x in proc.lines if x.get("op") == "announce"])
        self.assertIn(f"required ipc channel ({missing})", proc.stderr.decode())

    async def test_mutual_tls_channel(self) -> None:
        self.pki = EphemeralPKI.generate()
        paths = self.pki.write(os.path.abspath(self.mktemp()))
        await self.start(
            ipc=False,
            tls=True,
            security_level="Mtls",
            env={
                "PYWATT_TLS_CA": paths["ca"],
                "PYWATT_TLS_CERT": paths["client_cert"],
                "PYWATT_TLS_KEY": paths["client_key"],
            },
        )
        tls = await self.connection("tls")
        await tls.expect_op("identify")
        self.assertEqual((await tls.heartbeat()).content.op, "heartbeat_ack")
        self.assertEqual(json.loads((await tls.http_request("GET", "/items/3")).body), {"id": 3})
