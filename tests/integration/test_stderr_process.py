"""
Integration test: a module process whose stderr nobody reads keeps answering the
orchestrator (issue 13 item 6). Its stderr is a pipe that fills at 64 KiB while it logs a
lot; the old blocking log writer froze the reactor there.
"""

from __future__ import annotations

import json
import os

import treq
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.integration.process import (
    ModuleProcess,
    child_environment,
    init_blob,
    twistd_command,
)
from tests.integration.test_module_process import ECHO, SECRETS, http_line

LOG_BUFFER = 16 * 1024


def _read_to_eof(fd: int, chunks: list[bytes]) -> None:
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        chunks.append(chunk)


def _records(chunks: list[bytes]) -> list[dict]:
    data = b"".join(list(chunks))
    return [json.loads(x) for x in data[: data.rfind(b"\n") + 1].splitlines() if x.strip()]


def _notices(records: list[dict]) -> list[dict]:
    return [r for r in records if "dropped" in r and "buffer_bytes" in r]


class UnreadStderrTests(TestCase):
    timeout = 90

    async def test_heartbeats_answered_while_stderr_is_never_read(self) -> None:
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        directory = self.mktemp()
        os.makedirs(directory)
        proc = ModuleProcess.spawn(
            twistd_command(ECHO),
            env=child_environment(PYWATT_LOG_BUFFER_BYTES=str(LOG_BUFFER)),
            path=directory,
            stderr_fd=write_end,
        )
        os.close(write_end)
        self.addCleanup(self._kill, proc)
        proc.send(init_blob())
        for name, value in SECRETS.items():
            proc.send({"op": "secret", "name": name, "value": value})
        announce = await proc.expect_op("announce")

        # Each unknown op logs one warning line (~250 bytes): 1,000 of them are ~4 times
        # the 64 KiB pipe; five rounds, each followed by a heartbeat and a request.
        for round_ in range(5):
            for i in range(1000):
                proc.send({"op": f"no_such_op_{round_}_{i}", "padding": "p" * 40})
            proc.send({"op": "heartbeat"})
            proc.send(http_line(f"probe-{round_}", "GET", "/items/7"))
            reply = await proc.expect_http(f"probe-{round_}", timeout=15)
            self.assertEqual(reply["content"]["status_code"], 200)
            acks = [x for x in proc.lines if x.get("op") == "heartbeat_ack"]
            self.assertEqual(len(acks), round_ + 1)

        # The drops are counted on /metrics.
        response = await treq.get(f"http://{announce['listen']}/metrics", persistent=False)
        metrics = (await response.content()).decode()
        (sample,) = [x for x in metrics.splitlines() if x.startswith("pywatt_log_dropped_total")]
        dropped = float(sample.split()[-1])
        self.assertGreater(dropped, 0)

        # Now read stderr: once it drains, one line says how many lines were dropped,
        # and the stream is still whole JSON lines.
        chunks: list[bytes] = []
        stderr = threads.deferToThread(_read_to_eof, read_end, chunks)
        for _ in range(400):
            if _notices(_records(chunks)):
                break
            await deferLater(reactor, 0.05)
        # Only after the notice: the buffer is empty again, so the stop lines fit.
        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)
        await stderr
        records = _records(chunks)
        notices = _notices(records)
        self.assertTrue(notices, records[-5:])
        self.assertIn("PYWATT_LOG_BUFFER_BYTES", notices[0]["message"])
        self.assertEqual(notices[0]["buffer_bytes"], LOG_BUFFER)
        self.assertEqual(notices[0]["module_id"], "itest")
        self.assertGreaterEqual(sum(r["dropped"] for r in notices), dropped)
        self.assertTrue(any(r["message"] == "stopped" for r in records))

    async def _kill(self, proc: ModuleProcess) -> None:
        if proc.exit_code is None and proc.exit_signal is None:
            try:
                proc.signal("KILL")
            except Exception:
                pass
            await proc.ended
