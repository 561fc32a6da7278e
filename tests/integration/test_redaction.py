"""
The redaction proof of issue 5: a real module process (C{twistd -n pywatt}) logs its
secrets in every way a careless author might (see L{tests.integration.redaction_module});
the raw bytes of its stdout and stderr must never contain any secret value, in plain,
JSON-escaped or repr-escaped form, including values seeded from the init blob's C{env}
and values that arrived by rotation.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.process import ModuleProcess, init_blob, twistd_command
from tests.integration.redaction_module import WAYS

MODULE = "tests.integration.redaction_module:careless_app"

#: Values with quotes, braces, a backslash and non-ASCII, so escaped forms are tested too.
FETCHED = {
    "API_KEY": "ak-9f8e7d6c5b4a",
    "DB_PASSWORD": "pw-Tr0ub4dor&3-horse",
    "WEIRD": 'we{ird}\'s "val\\ue" é-42',
}
SEEDED = {"SEEDED_TOKEN": "seeded-from-env-31337"}
ROTATED = {"API_KEY": "ak-rotated-0a1b2c3d", "WEIRD": "rot{at}ed 'new' \"wei\\rd\" ü-7"}

ALL_VALUES = [*FETCHED.values(), *SEEDED.values(), *ROTATED.values()]


def forms(value: str) -> set[bytes]:
    """
    Ways a value could show up in a byte stream: itself, JSON-escaped (ASCII or not),
    repr-escaped, and as UTF-8 bytes' repr.
    """
    texts = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        repr(value.encode())[2:-1],
    }
    return {t.encode("utf-8") for t in texts if t}


def fragments(value: str) -> list[str]:
    """
    The distinctive ASCII stretches of a value with every backslash removed: whatever
    escaping of quotes and backslashes a value went through (repr of a repr, JSON of a
    repr...), stripping backslashes from the text brings these back.
    """
    return [
        part.replace("\\", "")
        for part in re.split(r"[^\x00-\x7f]", value)
        if len(part.replace("\\", "")) >= 6
    ]


def unescaped(text: str) -> str:
    return text.replace("\\", "")


def strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (*strings(k), *strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return []


def http_request(request_id: str, uri: str) -> dict[str, Any]:
    return {
        "op": "http_request",
        "request_id": request_id,
        "method": "GET",
        "uri": uri,
        "headers": {},
        "body": None,
    }


class RedactionProcessTests(TestCase):
    timeout = 90

    async def test_no_secret_value_ever_reaches_stdout_or_stderr(self) -> None:
        path = self.mktemp()
        os.makedirs(path)
        proc = ModuleProcess.spawn(twistd_command(MODULE), path=path)
        self.addCleanup(_kill, proc)
        proc.send(init_blob(module_id="careless", env=SEEDED))
        for _ in FETCHED:
            await proc.expect_op("get_secret")
        for name in reversed(list(FETCHED)):
            proc.send({"op": "secret", "name": name, "value": FETCHED[name]})
        await proc.expect_op("announce")

        proc.send(http_request("leak-1", "/leak"))
        reply = await proc.expect_http("leak-1")
        self.assertEqual(reply["content"]["status_code"], 200)
        proc.send(http_request("boom", "/explode"))
        reply = await proc.expect_http("boom")
        self.assertEqual(reply["content"]["status_code"], 500)

        proc.send({"op": "rotated", "keys": list(ROTATED), "rotation_id": "rot-leak"})
        await proc.expect(
            lambda x: (
                x.get("op") == "get_secret"
                and sum(1 for y in proc.lines if y.get("op") == "get_secret") == len(FETCHED) + 2
            )
        )
        for name, value in ROTATED.items():
            proc.send({"op": "secret", "name": name, "value": value, "rotation_id": "rot-leak"})
        ack = await proc.expect_op("rotation_ack")
        self.assertEqual(ack["status"], "success", ack)
        proc.send(http_request("leak-2", "/leak"))
        await proc.expect_http("leak-2")

        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)

        # 1. The raw bytes: no value in any form.
        for value in ALL_VALUES:
            for form in forms(value):
                self.assertNotIn(form, proc.stdout, f"a secret reached stdout as {form!r}")
                self.assertNotIn(form, proc.stderr, f"a secret reached stderr as {form!r}")

        # 2. The decoded log records: no value in any string, keys included, however
        # many times it was escaped on the way.
        records = proc.stderr_records()
        for record in records:
            for text in strings(record):
                for value in ALL_VALUES:
                    self.assertNotIn(value, text, f"a secret in a decoded log record: {record}")
                    for fragment in fragments(value):
                        self.assertNotIn(
                            fragment, unescaped(text), f"an escaped secret in: {record}"
                        )
        for stream in (proc.stdout, proc.stderr):
            flat = unescaped(stream.decode("utf-8", "replace"))
            for value in ALL_VALUES:
                for fragment in fragments(value):
                    self.assertNotIn(fragment, flat)

        # 3. The test is not vacuous: every way was logged on every occasion, redacted.
        text = proc.stderr.decode("utf-8")
        occasions = {"start": 4, "request": 4, "rotation": 4}
        for occasion in ("start", "request", "rotation"):
            self.assertIn(f"LEAK-DONE {occasion}", text)
        for way in WAYS:
            for occasion, count in occasions.items():
                marker = f"LEAK:{way} {occasion}:"
                self.assertGreaterEqual(
                    text.count(marker), count, f"{marker!r} missing from stderr ({count} names)"
                )
        self.assertGreater(text.count("[REDACTED]"), 12 * len(WAYS))
        # The exploding route's traceback was logged, with its message redacted.
        self.assertTrue(
            any(
                "cannot connect with password [REDACTED]" in json.dumps(r, ensure_ascii=False)
                for r in records
            )
        )


async def _kill(proc: ModuleProcess) -> None:
    if proc.exit_code is None and proc.exit_signal is None:
        try:
            proc.signal("KILL")
        except Exception:
            pass
        await proc.ended
