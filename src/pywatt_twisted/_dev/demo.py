"""
The walkthrough behind C{pywatt dev --demo} (and C{make demo}): a request through the
front port, a secret rotation by editing the secrets file, its acknowledgement, and the
rotated value in use.
"""

from __future__ import annotations

import json
import os
import secrets as random_secrets
from typing import Any

import treq
from twisted.internet.defer import Deferred

from pywatt_twisted._dev.orchestrator import DevOrchestrator
from pywatt_twisted._dev.supervisor import Console


async def _show(console: Console, method: str, url: str, **kw: Any) -> tuple[int, bytes]:
    response = await treq.request(method, url, persistent=False, **kw)
    body = await response.content()
    console.say(
        "demo", f"{method} {url} -> {response.code} {body.decode('utf-8', 'replace').strip()}"
    )
    return response.code, body


async def run_demo(
    orchestrator: DevOrchestrator, console: Console, secrets_file: str | None
) -> None:
    """
    Walk through what an orchestrator does with the first module.
    """
    console.say("demo", "waiting for every module to announce")
    await orchestrator.when_all_announced()
    base = orchestrator.front_url
    supervisor = next(iter(orchestrator.supervisors.values()))
    module_id = supervisor.module_id
    paths = {e.path: e.methods for e in supervisor.endpoints}
    console.say(
        "demo", f"{module_id} announced {len(paths)} endpoint(s): {', '.join(sorted(paths))}"
    )

    await _show(console, "GET", f"{base}/{module_id}/health")
    has_counter = "/count" in paths and "POST" in paths["/count"]
    if has_counter:
        await _show(console, "GET", f"{base}/{module_id}/count")
        key = orchestrator.secrets.get("API_KEY") or ""
        await _show(
            console,
            "POST",
            f"{base}/{module_id}/count",
            headers={"x-api-key": key},
            data=b'{"by": 2}',
        )
    if secrets_file is None:
        console.say("demo", "no --secrets-file: skipping the rotation step")
        return
    with open(secrets_file, encoding="utf-8") as f:
        values = json.load(f)
    name = "API_KEY" if "API_KEY" in values else next(iter(values), None)
    if name is None:
        console.say("demo", "the secrets file is empty: skipping the rotation step")
        return
    old = values[name]
    new = f"rotated-{random_secrets.token_hex(4)}"
    acked: Deferred[Any] = Deferred()
    wanted: list[bool] = []

    def watch(names: frozenset[str]) -> None:
        if name in names and not wanted:
            wanted.append(True)
            for s in orchestrator.supervisors.values():
                if name in s.used_secrets:
                    s.requests.when_rotation_acked().chainDeferred(acked)
                    return

    unsubscribe = orchestrator.secrets.subscribe(watch)
    console.say("demo", f"editing {secrets_file}: {name} gets a new value")
    values[name] = new
    tmp = secrets_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2)
    os.replace(tmp, secrets_file)
    ack = await acked
    unsubscribe()
    console.say("demo", f"{module_id} acknowledged rotation {ack.rotation_id}: {ack.status}")
    if has_counter and name == "API_KEY":
        await _show(console, "POST", f"{base}/{module_id}/count", headers={"x-api-key": old})
        await _show(console, "POST", f"{base}/{module_id}/count", headers={"x-api-key": new})
    console.say("demo", f"done. The status page is {base}/")
