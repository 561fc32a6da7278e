"""
Integration test: two real module processes (examples.orders and examples.inventory)
under a real C{pywatt dev}; orders calls inventory's handlers through the dev
orchestrator's routing over their TCP channels.
"""

from __future__ import annotations

import json
import os
import re
import time

import treq
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from tests.dev.process import DevProcess, start_dev


class MessagingIntegrationTests(TestCase):
    timeout = 120

    async def start_dev(self) -> tuple[DevProcess, str]:
        proto, base = await start_dev(
            self, "--module=examples.inventory.module", "--module=examples.orders.module"
        )
        for module_id in ("inventory", "orders"):
            await proto.wait_for(rf"{module_id} announced")
            await proto.wait_for(rf"{module_id} identified as '{module_id}' on tcp")
        return proto, base

    async def call(self, url: str, **kw) -> tuple[int, object]:
        response = await treq.request(kw.pop("method", "GET"), url, persistent=False, **kw)
        body = await response.content()
        return response.code, json.loads(body) if body else None

    async def test_request_reply_kill_and_restart(self) -> None:
        proto, base = await self.start_dev()

        # A asks B through pywatt dev and gets B's handler's reply.
        code, body = await self.call(f"{base}/orders/stock/A1")
        self.assertEqual((code, body), (200, {"sku": "A1", "in_stock": 7}))
        code, body = await self.call(
            f"{base}/orders/orders", method="POST", data=b'{"sku": "A1", "quantity": 5}'
        )
        self.assertEqual((code, body), (201, {"sku": "A1", "reserved": 5, "left": 2}))
        # B's handler raised an error answer: A gets it as a RemoteError (409 here).
        code, body = await self.call(
            f"{base}/orders/orders", method="POST", data=b'{"sku": "A1", "quantity": 5}'
        )
        self.assertEqual((code, body["error"]), (409, "out_of_stock"))
        # Discovery is answered from what inventory registered.
        await proto.wait_for(r"inventory provides Custom\(stock\)")
        code, body = await self.call(f"{base}/orders/providers")
        self.assertEqual(code, 200)
        self.assertEqual(
            body,
            [
                {
                    "module_id": "inventory",
                    "name": "inventory",
                    "address": "inventory",
                    "healthy": True,
                }
            ],
        )

        # B killed while it holds a request: A's request fails at once, well within
        # its 20 s timeout, with the orchestrator's error reply (502 here).
        mark = len(proto.output)
        started = time.monotonic()
        pending = ensureDeferred(self.call(f"{base}/orders/stock/A1?delay=60&timeout=20"))
        await proto.wait_for(r"get_stock A1 from orders: answering in 60", after=mark)
        (pid,) = [int(p) for p in re.findall(r"started inventory \(.*?\) pid (\d+)", proto.output)]
        os.kill(pid, 9)
        code, body = await pending
        elapsed = time.monotonic() - started
        self.assertEqual((code, body["error"]), (502, "target_exited"))
        self.assertLess(elapsed, 20)

        await proto.wait_for(r"inventory exited \(signal 9\); restarting", after=mark)
        # B restarted serves again (its stock starts over).
        await proto.wait_for(r"inventory announced", after=mark)
        await proto.wait_for(r"inventory identified as 'inventory' on tcp", after=mark)
        code, body = await self.call(f"{base}/orders/stock/A1")
        self.assertEqual((code, body), (200, {"sku": "A1", "in_stock": 7}))
        await proto.wait_for(r"inventory provides Custom\(stock\)", after=mark)
        code, body = await self.call(f"{base}/orders/providers")
        self.assertEqual([p["healthy"] for p in body], [True])

        proto.transport.signalProcess("INT")
        self.assertEqual(await proto.ended, 0)
        self.assertIn("inventory stopped (status 0)", proto.output)
        self.assertIn("orders stopped (status 0)", proto.output)
