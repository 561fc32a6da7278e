"""
Integration tests: C{pywatt dev} as a real process running two example modules, each a
real C{twistd -n pywatt} child.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.dev.process import DevProcess, alive, start_dev
from tests.integration.process import PROJECT_ROOT, child_environment


class DevOrchestratorTests(TestCase):
    timeout = 120

    async def start_dev(self, secrets: dict[str, str]) -> tuple[DevProcess, str, str]:
        workdir = tempfile.mkdtemp(prefix="pwdev-")
        self.addCleanup(shutil.rmtree, workdir, True)
        secrets_file = os.path.join(workdir, "secrets.json")
        with open(secrets_file, "w") as f:
            json.dump(secrets, f)
        proto, base = await start_dev(
            self,
            "--module=examples.counter.module",
            "--module=examples.greeter.module",
            f"--secrets-file={secrets_file}",
        )
        await proto.wait_for(r"counter announced")
        await proto.wait_for(r"greeter announced")
        return proto, base, secrets_file

    async def get(self, url: str, **kw) -> tuple[int, bytes]:
        response = await treq.request(kw.pop("method", "GET"), url, persistent=False, **kw)
        return response.code, await response.content()

    def pids(self, proto: DevProcess, module_id: str) -> list[int]:
        return [int(p) for p in re.findall(rf"started {module_id} \(.*?\) pid (\d+)", proto.output)]

    async def test_routing_restart_rotation_and_clean_exit(self) -> None:
        proto, base, secrets_file = await self.start_dev({"API_KEY": "k-1", "GREETING": "Hello"})

        # Requests through the front port reach the right module.
        code, body = await self.get(f"{base}/counter/count")
        self.assertEqual((code, json.loads(body)["module"]), (200, "counter"))
        code, body = await self.get(f"{base}/greeter/greet/ada")
        self.assertEqual((code, json.loads(body)["message"]), (200, "Hello, ada!"))
        code, _ = await self.get(
            f"{base}/counter/count", method="POST", headers={"x-api-key": "k-1"}
        )
        self.assertEqual(code, 200)
        # Not announced: 404; announced path, other method: 405; unknown module: 404.
        self.assertEqual((await self.get(f"{base}/counter/nope"))[0], 404)
        self.assertEqual((await self.get(f"{base}/greeter/greet/ada", method="DELETE"))[0], 405)
        self.assertEqual((await self.get(f"{base}/nobody/x"))[0], 404)
        code, body = await self.get(f"{base}/_pywatt/modules")
        states = {m["module_id"]: m["status"] for m in json.loads(body)}
        self.assertEqual(states, {"counter": "running", "greeter": "running"})
        # Each module connected to the TCP and Unix-socket channels pywatt dev serves.
        await proto.wait_for(r"counter identified as 'counter' on tcp")
        for module in json.loads((await self.get(f"{base}/_pywatt/modules"))[1]):
            channels = module["channels"]
            self.assertTrue(channels["tcp"].startswith("up"), channels)
            self.assertTrue(channels["ipc"].startswith("up"), channels)
        code, body = await self.get(f"{base}/")
        self.assertIn(b"greeter", body)

        # Editing the secrets file rotates; the new value is visible in a response.
        mark = len(proto.output)
        with open(secrets_file + ".tmp", "w") as f:
            json.dump({"API_KEY": "k-1", "GREETING": "Bonjour"}, f)
        os.replace(secrets_file + ".tmp", secrets_file)
        await proto.wait_for(r"greeter rotation \S+ acknowledged: success", after=mark)
        code, body = await self.get(f"{base}/greeter/greet/ada")
        self.assertEqual(json.loads(body), {"message": "Bonjour, ada!", "rotations": 1})
        self.assertNotIn("counter rotation", proto.output[mark:])

        # A module killed with SIGKILL is restarted and serves again.
        (first_pid,) = self.pids(proto, "greeter")
        mark = len(proto.output)
        os.kill(first_pid, 9)
        await proto.wait_for(r"greeter exited \(signal 9\); restarting", after=mark)
        await proto.wait_for(r"greeter announced", after=mark)
        code, body = await self.get(f"{base}/greeter/greet/bob")
        self.assertEqual(json.loads(body)["message"], "Bonjour, bob!")
        children = self.pids(proto, "counter") + self.pids(proto, "greeter")
        self.assertEqual(len(children), 3)

        # Ctrl-C stops every module gracefully and leaves no child behind.
        proto.transport.signalProcess("INT")
        self.assertEqual(await proto.ended, 0)
        self.assertIn("counter stopped (status 0)", proto.output)
        self.assertIn("greeter stopped (status 0)", proto.output)
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([p for p in children if alive(p)], [])

    async def test_demo_runs_to_the_end(self) -> None:
        proto = DevProcess()
        argv = [
            sys.executable,
            "-m",
            "pywatt_twisted._cli",
            "dev",
            "--module=examples.counter.module",
            "--secrets-file=examples/counter/secrets.json",
            "--port=0",
            "--demo-exit",
        ]
        reactor.spawnProcess(proto, argv[0], argv, env=child_environment(), path=PROJECT_ROOT)
        self.assertEqual(await proto.ended, 0, proto.output)
        self.assertIn("acknowledged rotation", proto.output)
        self.assertRegex(proto.output, r"POST \S+/counter/count -> 401")
        self.assertRegex(proto.output, r"POST \S+/counter/count -> 200 \{\"count\": 3\}")
        with open(os.path.join(PROJECT_ROOT, "examples/counter/secrets.json")) as f:
            self.assertEqual(json.load(f), {"API_KEY": "demo-key-1"})
