"""
A tour of the framed channels, seen from the orchestrator's side.

Run it from the project root::

    .venv/bin/python -m examples.channels_tour          # TCP + Unix socket
    .venv/bin/python -m examples.channels_tour --tls    # TCP with mutual TLS

It starts a L{ChannelServer} (the orchestrator's end of the channels) on 127.0.0.1 and
a Unix socket, spawns the counter module with C{twistd -n pywatt} exactly as an
orchestrator would (init line with C{tcp_channel} and C{ipc_channel}, secrets over
stdio), then over the channels: reads identify, sends heartbeats, makes HTTP requests
to the module's real routes, drops the TCP connection and watches the module
reconnect, and finally asks it to shut down.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from pywatt_twisted.orchestrator import ChannelServer, EphemeralPKI
from pywatt_twisted.wire.messages import Shutdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Module(ProcessProtocol):
    """
    The module's stdio, as the orchestrator sees it: answer get_secret, wait for
    announce.
    """

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.buffer = b""
        self.announced: Deferred[dict[str, Any]] = Deferred()
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = json.loads(line)
            if message.get("op") == "get_secret":
                name = message["name"]
                reply = {"op": "secret", "name": name, "value": self.secrets[name]}
                self.transport.write(json.dumps(reply).encode() + b"\n")
            elif message.get("op") == "announce":
                self.announced.callback(message)

    def errReceived(self, data: bytes) -> None:
        for line in data.splitlines():
            record = json.loads(line)
            if "channel" in record.get("message", ""):
                print(f"  [module log] {record['level']}: {record['message']}")

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", 0))


async def tour(use_tls: bool) -> None:
    workdir = tempfile.mkdtemp(prefix="pwtour")
    server = ChannelServer(reactor)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATT_")}
    env["PYTHONPATH"] = ROOT
    try:
        socket_path = os.path.join(workdir, "orch.sock")
        tls_options = None
        if use_tls:
            pki = EphemeralPKI.generate()
            paths = pki.write(os.path.join(workdir, "pki"))
            tls_options = pki.server_options(require_client_cert=True)
            env.update(
                PYWATT_TLS_CA=paths["ca"],
                PYWATT_TLS_CERT=paths["client_cert"],
                PYWATT_TLS_KEY=paths["client_key"],
            )
        address = await server.listen_tcp(tls=tls_options)
        await server.listen_unix(socket_path)
        init = {
            "orchestrator_api": "http://127.0.0.1:9900",
            "module_id": "counter",
            "env": {},
            "listen": "127.0.0.1:0",
            "tcp_channel": {"address": address, "tls_enabled": use_tls, "required": True},
            "ipc_channel": {"socket_path": socket_path, "required": False},
            "security_level": "Mtls" if use_tls else "None",
        }
        module = Module({"API_KEY": "tour-key"})
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        command = [twistd, "-n", "pywatt", "--module=examples.counter.module"]
        reactor.spawnProcess(module, twistd, command, env=env, path=workdir)
        module.transport.write(json.dumps(init).encode() + b"\n")
        announce = await module.announced
        print(f"announced {announce['listen']} (after the required TCP channel connected)")

        tcp = await server.next_connection("tls" if use_tls else "tcp")
        ipc = await server.next_connection("ipc")
        identify = await tcp.expect_op("identify")
        print(f"TCP identify: {identify.content} metadata={identify.metadata}")
        for name, connection in (("TCP", tcp), ("Unix", ipc)):
            ack = await connection.heartbeat()
            print(f"{name} heartbeat -> {ack.content.op} (envelope id {ack.id})")
        response = await ipc.http_request("GET", "/count")
        print(f"GET /count over the Unix socket -> {response.status_code} {response.body!r}")
        response = await tcp.http_request(
            "POST", "/count", {"x-api-key": "tour-key"}, json.dumps({"by": 5}).encode()
        )
        print(f"POST /count over TCP -> {response.status_code} {response.body!r}")

        print("dropping the TCP connection...")
        tcp.drop()
        tcp = await server.next_connection("tls" if use_tls else "tcp")
        await tcp.expect_op("identify")
        print("the module reconnected and sent identify again")
        health = await tcp.http_request("GET", "/health")
        state = json.loads(health.body)["channels"]["tcp"]
        print(f"/health channels.tcp: state={state['state']} connects={state['connects']}")

        ipc.send(Shutdown())
        print(f"shutdown over the Unix socket -> exit status {await module.ended}")
    finally:
        await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> None:
    task.react(lambda _: Deferred.fromCoroutine(tour("--tls" in argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
