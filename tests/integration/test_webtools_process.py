"""
CORS, versioned routes and IPC-only mode in real processes: C{twistd -n pywatt} driven
over its stdin/stdout as an orchestrator would, and C{pywatt dev} with its front port.
The module is C{examples.catalog.module} (version C{v1}, a CORS policy with
credentials, and one public route).
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.dev.process import DevProcess, stop_dev
from tests.integration.process import (
    PROJECT_ROOT,
    ModuleProcess,
    child_environment,
    init_blob,
    twistd_command,
)

MODULE = "examples.catalog.module"
APP = "http://localhost:5173"
PREFLIGHT = {"origin": APP, "access-control-request-method": "DELETE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_line(request_id: str, method: str, uri: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "op": "http_request",
        "request_id": request_id,
        "method": method,
        "uri": uri,
        "headers": headers,
        "body": None,
    }


class TwistdTests(TestCase):
    timeout = 60

    async def start(self, **env: str) -> tuple[ModuleProcess, dict[str, Any], str]:
        workdir = tempfile.mkdtemp(prefix="pw-webtools-")
        self.addCleanup(shutil.rmtree, workdir, True)
        proc = ModuleProcess.spawn(
            twistd_command(MODULE), env=child_environment(**env), path=workdir
        )
        self.addCleanup(self._kill, proc)
        listen = f"127.0.0.1:{free_port()}"
        proc.send(init_blob(module_id="catalog", listen=listen))
        announce = await proc.expect_op("announce")
        return proc, announce, listen

    async def _kill(self, proc: ModuleProcess) -> None:
        if proc.exit_code is None and proc.exit_signal is None:
            try:
                proc.signal("KILL")
            except Exception:
                pass
            await proc.ended

    async def over_stdin(
        self, proc: ModuleProcess, request_id: str, method: str, uri: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        proc.send(http_line(request_id, method, uri, headers))
        content = (await proc.expect_http(request_id))["content"]
        return content["status_code"], content["headers"], bytes(content.get("body") or [])

    async def test_ipc_only_with_the_original_variable(self) -> None:
        proc, announce, listen = await self.start(IPC_ONLY="1")
        self.assertEqual(announce["listen"], "")
        endpoints = {e["path"]: e["methods"] for e in announce["endpoints"]}
        self.assertEqual(endpoints["/v1/items"], ["GET", "OPTIONS"])
        self.assertEqual(endpoints["/v1/items/:item_id"], ["DELETE", "OPTIONS"])
        self.assertEqual(endpoints["/health"], ["GET", "OPTIONS"])

        # Nothing listens on the init blob's address.
        host, _, port = listen.rpartition(":")
        with self.assertRaises(ConnectionRefusedError):
            await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), Protocol())

        # A preflight over stdin is answered without reaching the route...
        code, headers, _ = await self.over_stdin(proc, "p1", "OPTIONS", "/v1/items/1", PREFLIGHT)
        self.assertEqual(code, 204)
        self.assertEqual(headers["access-control-allow-origin"], APP)
        self.assertEqual(headers["access-control-allow-credentials"], "true")
        self.assertIn("DELETE", headers["access-control-allow-methods"])
        code, _, body = await self.over_stdin(proc, "g1", "GET", "/v1/items", {})
        self.assertEqual(len(json.loads(body)), 2)
        # ...and the actual request is.
        code, headers, body = await self.over_stdin(
            proc, "d1", "DELETE", "/v1/items/1", {"origin": APP}
        )
        self.assertEqual((code, json.loads(body)), (200, {"deleted": 1}))
        self.assertEqual(headers["access-control-allow-origin"], APP)
        self.assertIn("origin", headers["vary"].lower())
        code, headers, _ = await self.over_stdin(
            proc, "e1", "GET", "/v1/items", {"origin": "https://evil.example"}
        )
        self.assertEqual(code, 200)
        self.assertNotIn("access-control-allow-origin", headers)
        code, _, _ = await self.over_stdin(proc, "u1", "GET", "/items", {})
        self.assertEqual(code, 404)

        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)

    async def test_direct_http_answers_as_stdin_does(self) -> None:
        proc, announce, listen = await self.start()
        self.assertEqual(announce["listen"], listen)
        base = f"http://{listen}"
        response = await treq.request(
            "OPTIONS", base + "/v1/items/2", headers=PREFLIGHT, persistent=False
        )
        await response.content()
        _, bridged, _ = await self.over_stdin(proc, "p1", "OPTIONS", "/v1/items/2", PREFLIGHT)
        self.assertEqual(response.code, 204)
        for name in (
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-max-age",
        ):
            self.assertEqual(response.headers.getRawHeaders(name), [bridged[name]], name)

        response = await treq.get(base + "/v1/items", headers={"origin": APP}, persistent=False)
        self.assertEqual(json.loads(await response.content())[1]["name"], "teapot")
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), [APP])
        self.assertEqual(
            response.headers.getRawHeaders("access-control-expose-headers"), ["X-Total-Count"]
        )
        response = await treq.get(base + "/health", persistent=False)
        self.assertEqual(json.loads(await response.content())["status"], "ok")
        response = await treq.get(base + "/items", persistent=False)
        await response.content()
        self.assertEqual(response.code, 404)
        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)


class DevTests(TestCase):
    timeout = 120

    async def test_pywatt_dev_serves_an_ipc_only_versioned_cors_module(self) -> None:
        proto = DevProcess()
        argv = [
            sys.executable,
            "-m",
            "pywatt_twisted._cli",
            "dev",
            f"--module={MODULE}",
            "--port=0",
            "--stop-deadline=5",
        ]
        env = child_environment(PYTHONUNBUFFERED="1", PYWATT_IPC_ONLY="1")
        reactor.spawnProcess(proto, argv[0], argv, env=env, path=PROJECT_ROOT)
        self.addCleanup(stop_dev, proto)
        base = (await proto.wait_for(r"front port: (http://127\.0\.0\.1:\d+)/")).group(1)
        await proto.wait_for(r"catalog announced")

        response = await treq.get(f"{base}/_pywatt/modules", persistent=False)
        (module,) = json.loads(await response.content())
        self.assertEqual(module["listen"], "")

        response = await treq.request(
            "OPTIONS", f"{base}/catalog/v1/items/2", headers=PREFLIGHT, persistent=False
        )
        await response.content()
        self.assertEqual(response.code, 204)
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), [APP])

        response = await treq.get(
            f"{base}/catalog/v1/items", headers={"origin": APP}, persistent=False
        )
        self.assertEqual(len(json.loads(await response.content())), 2)
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), [APP])
        self.assertIn("Origin", response.headers.getRawHeaders("vary")[0])

        response = await treq.get(
            f"{base}/catalog/v1/status",
            headers={"origin": "https://any.example"},
            persistent=False,
        )
        await response.content()
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["*"])
