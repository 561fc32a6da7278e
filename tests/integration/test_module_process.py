"""
Integration tests: a module as a real process (C{twistd -n pywatt} and
C{python -m pywatt_twisted}), driven over real stdin/stdout as an orchestrator would.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import treq
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.utils import getProcessOutput
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from tests.integration.process import (
    ModuleProcess,
    init_blob,
    python_m_command,
    twistd_command,
)

ECHO = "tests.runtime.modules:echo_app"
SECRETS = {"API_KEY": "itest-api-key-1", "DB_PASSWORD": "itest-db-pw-2"}


@implementer(IAgentEndpointFactory)
class _UnixEndpoints:
    def __init__(self, path: str) -> None:
        self.path = path

    def endpointForURI(self, uri):
        return UNIXClientEndpoint(reactor, self.path)


def http_line(request_id: str, method: str, uri: str, headers=None, body: bytes | None = None):
    return {
        "op": "http_request",
        "request_id": request_id,
        "method": method,
        "uri": uri,
        "headers": headers or {},
        "body": list(body) if body is not None else None,
    }


class ModuleProcessTests(TestCase):
    timeout = 60

    async def start(self, listen: str = "127.0.0.1:0", command=twistd_command, module=ECHO):
        proc = ModuleProcess.spawn(command(module), path=self.mktemp_dir())
        self.addCleanup(self._kill, proc)
        proc.send(init_blob(listen=listen))
        for _ in SECRETS:
            request = await proc.expect_op("get_secret")
            del request
        # Answer in the reverse order of the requests.
        for name in reversed(list(SECRETS)):
            proc.send({"op": "secret", "name": name, "value": SECRETS[name]})
        announce = await proc.expect_op("announce")
        return proc, announce

    def mktemp_dir(self) -> str:
        path = self.mktemp()
        os.makedirs(path)
        return path

    async def _kill(self, proc: ModuleProcess) -> None:
        if proc.exit_code is None and proc.exit_signal is None:
            try:
                proc.signal("KILL")
            except Exception:
                pass
            await proc.ended

    def assert_clean_streams(self, proc: ModuleProcess) -> None:
        """
        stdout holds only protocol lines; stderr only JSON log lines; no secret anywhere.
        """
        for line in proc.lines:
            self.assertNotIn("__not_json__", line, f"non-protocol line on stdout: {line}")
            self.assertTrue(
                "op" in line or ("content" in line and "metadata" in line),
                f"unexpected stdout line: {line}",
            )
        records = proc.stderr_records()
        self.assertTrue(records)
        for record in records:
            for key in ("timestamp", "level", "message", "namespace", "module_id"):
                self.assertIn(key, record)
        for value in SECRETS.values():
            self.assertNotIn(value.encode(), proc.stderr)

    async def test_announce_direct_http_and_ipc(self) -> None:
        proc, announce = await self.start()
        host, _, port = announce["listen"].rpartition(":")
        self.assertEqual(host, "127.0.0.1")
        self.assertNotEqual(port, "0")
        paths = {e["path"]: e["methods"] for e in announce["endpoints"]}
        self.assertEqual(paths["/items/:item_id"], ["GET"])
        self.assertEqual(paths["/health"], ["GET"])

        # Direct HTTP on the bound port.
        response = await treq.get(f"http://{announce['listen']}/items/5", persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(await response.content()), {"id": 5})
        response = await treq.get(f"http://{announce['listen']}/health", persistent=False)
        self.assertEqual(json.loads(await response.content())["module_id"], "itest")

        # HTTP-over-IPC: GET with a query string.
        proc.send(http_line("g1", "GET", "/echo?x=1&y=%C3%A9", {"x-trace": "t1"}))
        reply = await proc.expect_http("g1")
        content = reply["content"]
        self.assertEqual(content["status_code"], 200)
        echoed = json.loads(bytes(content["body"]))
        self.assertEqual(echoed["args"], {"x": ["1"], "y": ["é"]})
        self.assertEqual(echoed["headers"]["x-trace"], "t1")
        self.assertEqual(reply["metadata"]["properties"]["correlation_id"], "g1")

        # POST with a body.
        proc.send(http_line("p1", "POST", "/echo", {"content-type": "text/plain"}, b"hello body"))
        echoed = json.loads(bytes((await proc.expect_http("p1"))["content"]["body"]))
        self.assertEqual((echoed["method"], echoed["body"]), ("POST", "hello body"))

        # An async def route.
        proc.send(http_line("a1", "GET", "/async"))
        self.assertEqual(bytes((await proc.expect_http("a1"))["content"]["body"]), b"async done")

        # 20 concurrent requests, answered out of order by delay.
        ids = [f"c{i}" for i in range(20)]
        for i, request_id in enumerate(ids):
            delay = (20 - i) * 0.01
            proc.send(http_line(request_id, "GET", f"/slow?delay={delay}"))
        replies = await gatherResults([proc.expect_http(i) for i in ids])
        self.assertEqual({r["content"]["status_code"] for r in replies}, {200})
        order = [x["content"]["request_id"] for x in proc.lines if "content" in x]
        self.assertNotEqual(order[-20:], ids, "concurrent requests were served one by one")

        # The start-up heap was frozen after the announce (_runtime.heap).
        proc.send(http_line("gc", "GET", "/gc-frozen"))
        frozen = int(bytes((await proc.expect_http("gc"))["content"]["body"]))
        self.assertGreater(frozen, 10_000)

        # A stray print() goes to stderr, never stdout.
        proc.send(http_line("pr", "GET", "/print"))
        await proc.expect_http("pr")

        # Heartbeat on stdin gets a bare ack.
        proc.send({"op": "heartbeat"})
        await proc.expect_op("heartbeat_ack")

        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)
        self.assertIn(b"a stray print() must not reach stdout", proc.stderr)
        self.assert_clean_streams(proc)
        messages = [r["message"] for r in proc.stderr_records()]
        self.assertTrue(any("pywatt" in m.lower() or "twistd" in m.lower() for m in messages))

    async def test_gc_freeze_off(self) -> None:
        # --gc-freeze=0 (PYWATT_GC_FREEZE=0) leaves the start-up heap to the collector:
        # the module's frozen count is the bare interpreter's (0 on 3.11; CPython 3.12
        # starts with a few hundred objects of its own in the permanent generation).
        bare = int(
            await getProcessOutput(
                sys.executable, ["-c", "import gc; print(gc.get_freeze_count())"], env=os.environ
            )
        )
        self.assertLess(bare, 10_000)
        proc, _announce = await self.start(
            command=lambda module: twistd_command(module, "--gc-freeze=0")
        )
        proc.send(http_line("h1", "GET", "/items/1"))
        self.assertEqual((await proc.expect_http("h1"))["content"]["status_code"], 200)
        proc.send(http_line("gc", "GET", "/gc-frozen"))
        self.assertEqual(int(bytes((await proc.expect_http("gc"))["content"]["body"])), bare)
        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)

    async def test_unix_socket_listen(self) -> None:
        # AF_UNIX paths are short (108 bytes): use a fresh directory under /tmp.
        directory = tempfile.mkdtemp(prefix="pw-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "http.sock")
        proc, announce = await self.start(listen=path)
        self.assertEqual(announce["listen"], path)
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent.usingEndpointFactory(reactor, _UnixEndpoints(path), pool=pool)
        response = await treq.request("GET", b"http://module/items/9", agent=agent)
        self.assertEqual(json.loads(await response.content()), {"id": 9})
        proc.close_stdin()
        self.assertEqual(await proc.ended, 0)

    async def test_stdin_eof_exits_zero(self) -> None:
        proc, _ = await self.start()
        proc.close_stdin()
        self.assertEqual(await proc.ended, 0)
        self.assert_clean_streams(proc)

    async def test_no_pid_file_so_modules_can_share_a_directory(self) -> None:
        directory = self.mktemp_dir()
        first = ModuleProcess.spawn(twistd_command(ECHO), path=directory)
        self.addCleanup(self._kill, first)
        second = ModuleProcess.spawn(twistd_command(ECHO), path=directory)
        self.addCleanup(self._kill, second)
        for proc in (first, second):
            proc.send(init_blob())
            for name, value in SECRETS.items():
                proc.send({"op": "secret", "name": name, "value": value})
        await first.expect_op("announce")
        await second.expect_op("announce")
        self.assertEqual(os.listdir(directory), [])
        first.close_stdin()
        second.close_stdin()
        self.assertEqual([await first.ended, await second.ended], [0, 0])

    async def test_sigterm_exits_zero_after_in_flight_request(self) -> None:
        proc, _ = await self.start()
        proc.send(http_line("inflight", "GET", "/slow?delay=0.5"))
        # Give the request time to arrive, then ask for a stop.
        from twisted.internet.task import deferLater

        await deferLater(reactor, 0.2, lambda: None)
        proc.signal("TERM")
        reply = await proc.expect_http("inflight")
        self.assertEqual(reply["content"]["status_code"], 200)
        self.assertEqual(await proc.ended, 0)
        self.assertIsNone(proc.exit_signal)
        self.assertTrue(any("SIGTERM" in r["message"] for r in proc.stderr_records()))

    async def test_python_dash_m(self) -> None:
        proc, _ = await self.start(command=python_m_command)
        proc.send(http_line("m1", "GET", "/items/2"))
        reply = await proc.expect_http("m1")
        self.assertEqual(bytes(reply["content"]["body"]), b'{"id": 2}')
        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)
        self.assert_clean_streams(proc)

    async def test_unknown_module_fails_clearly(self) -> None:
        proc = ModuleProcess.spawn(twistd_command("no_such_module_xyz"), path=self.mktemp_dir())
        code = await proc.ended
        self.assertEqual(code, 1)
        self.assertEqual(proc.stdout, b"")
        record = proc.stderr_records()[-1]
        self.assertEqual(record["level"], "critical")
        self.assertIn("no_such_module_xyz", record["message"])

    async def test_bad_init_line_fails_clearly(self) -> None:
        proc = ModuleProcess.spawn(twistd_command(ECHO), path=self.mktemp_dir())
        proc.send_raw(b"{not json\n")
        self.assertEqual(await proc.ended, 1)
        self.assertEqual(proc.stdout, b"")
        self.assertTrue(any(r["level"] == "critical" for r in proc.stderr_records()))

    async def _failed_start(self, *extra: str) -> ModuleProcess:
        proc = ModuleProcess.spawn(
            twistd_command("tests.runtime.modules:failing_start", *extra), path=self.mktemp_dir()
        )
        proc.send(init_blob())
        self.assertEqual(await proc.ended, 1)
        self.assertEqual(proc.stdout, b"")
        return proc

    async def test_failed_start_is_one_critical_line(self) -> None:
        """
        A module whose start fails logs one critical line naming the error and exits 1:
        no traceback at the default level and no second C{ReactorNotRunning} failure.
        """
        proc = await self._failed_start()
        self.assertNotIn(b"ReactorNotRunning", proc.stderr)
        self.assertNotIn(b"Traceback", proc.stderr)
        critical = [r for r in proc.stderr_records() if r["level"] in ("critical", "error")]
        self.assertEqual(
            [r["message"] for r in critical],
            ["module start-up failed: RuntimeError: database host not configured"],
        )

    async def test_failed_start_traceback_at_debug_level(self) -> None:
        """
        With C{--log-level=debug} the traceback of a failed start follows as a debug line.
        """
        proc = await self._failed_start("--log-level=debug")
        self.assertNotIn(b"ReactorNotRunning", proc.stderr)
        (debug,) = [r for r in proc.stderr_records() if r.get("traceback")]
        self.assertEqual(debug["level"], "debug")
        self.assertIn("database host not configured", debug["traceback"])
