"""
Tests for C{pywatt dev --reload}: finding a module's source, mapping changes to modules
with a debounce (on a clock), the watchdog watcher on a real directory, the front port
holding requests while a module restarts, and a real C{pywatt dev --reload} whose module
source is edited under a steady request loop.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted._dev._reload import (
    MAX_PENDING_PATHS,
    Reloader,
    RequestHold,
    SourceWatcher,
    module_source_root,
    watched,
)
from tests.dev.process import start_dev
from tests.dev.test_crash_loop import CRASHED, fail_once, supervisor


class FakeSupervisor:
    """
    Just enough of a ModuleSupervisor: C{restart} fires when told to.
    """

    def __init__(self, module_id: str, status: str = "running") -> None:
        self.module_id = module_id
        self.status = status
        self.reloading = False
        self.pid = 1
        self.restarting: list[Deferred[None]] = []
        self.announced: list[Deferred[Any]] = []

    def restart(self) -> Deferred[None]:
        self.reloading = True
        d: Deferred[None] = Deferred()
        self.restarting.append(d)
        return d

    def spawned(self) -> None:
        self.reloading = False
        self.status = "restarting"
        self.restarting.pop(0).callback(None)

    def when_announced(self) -> Deferred[Any]:
        if self.status == "running":
            return succeed(self)
        d: Deferred[Any] = Deferred()
        self.announced.append(d)
        return d

    def announce(self) -> None:
        self.status = "running"
        self.pid += 1
        waiters, self.announced = self.announced, []
        for d in waiters:
            d.callback(self)


def write(path: str, text: str = "") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class SourceRootTests(SynchronousTestCase):
    def test_package_and_plain_module(self) -> None:
        base = os.path.abspath(self.mktemp())
        write(os.path.join(base, "app", "__init__.py"))
        write(os.path.join(base, "app", "billing", "__init__.py"))
        write(os.path.join(base, "app", "billing", "module.py"))
        write(os.path.join(base, "single.py"))
        self.assertEqual(
            module_source_root("app.billing.module:create_app", [base]),
            os.path.join(base, "app", "billing"),
        )
        self.assertEqual(
            module_source_root("app.billing", [base]), os.path.join(base, "app", "billing")
        )
        self.assertEqual(module_source_root("single", [base]), base)
        self.assertIsNone(module_source_root("app.nothing", [base]))
        self.assertIsNone(module_source_root("", [base]))

    def test_nothing_is_imported(self) -> None:
        base = os.path.abspath(self.mktemp())
        write(os.path.join(base, "boom", "__init__.py"), "raise SystemExit('imported')\n")
        write(os.path.join(base, "boom", "module.py"), "raise SystemExit('imported')\n")
        self.assertEqual(module_source_root("boom.module", [base]), os.path.join(base, "boom"))
        self.assertNotIn("boom", sys.modules)

    def test_watched_files(self) -> None:
        self.assertTrue(watched("/src/app/module.py"))
        self.assertTrue(watched("/src/app/templates/page.html"))
        for path in (
            "/src/app/__pycache__/module.cpython-311.pyc",
            "/src/app/module.pyc",
            "/src/app/.module.py.swp",
            "/src/app/module.py~",
            "/src/app/.git/index",
            "/src/app/#module.py#",
            "/src/app/image.png",
        ):
            self.assertFalse(watched(path), path)


class ReloaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.said: list[tuple[str, str]] = []
        self.a = FakeSupervisor("a")
        self.b = FakeSupervisor("b")
        self.nested = FakeSupervisor("nested")
        self.secrets_checks = 0

        def secrets() -> None:
            self.secrets_checks += 1

        self.reloader = Reloader(
            self.clock,
            {"a": self.a, "b": self.b, "nested": self.nested},
            {"a": "/src/a", "b": "/src/b", "nested": "/src/a/plugins"},
            lambda text, level: self.said.append((level, text)),
            debounce=0.3,
            max_wait=2.0,
            secrets_file="/etc/secrets.json",
            secrets_changed=secrets,
        )

    def test_only_the_changed_module_restarts_after_the_debounce(self) -> None:
        self.reloader.changed(["/src/a/module.py"])
        self.clock.advance(0.2)
        self.reloader.changed(["/src/a/util.py", "/src/a/module.py"])
        self.clock.advance(0.2)
        self.assertEqual(self.a.restarting, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.a.restarting), 1)
        self.assertEqual((self.b.restarting, self.nested.restarting), ([], []))
        self.assertEqual(self.said, [("info", "reload: module.py, util.py changed; restarting a")])
        self.clock.advance(1.2)
        self.a.spawned()
        self.a.announce()
        self.assertEqual(self.said[-1], ("info", "reload: a restarted in 1.2 s (pid 2)"))

    def test_deepest_root_wins(self) -> None:
        self.reloader.changed(["/src/a/plugins/x.py"])
        self.clock.advance(0.3)
        self.assertEqual(len(self.nested.restarting), 1)
        self.assertEqual(self.a.restarting, [])

    def test_ignored_and_outside_files_do_nothing(self) -> None:
        self.reloader.changed(
            ["/src/a/__pycache__/m.pyc", "/src/a/.m.py.swp", "/elsewhere/x.py", "/src/ab/x.py"]
        )
        self.clock.advance(5)
        self.assertEqual(self.said, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_steady_stream_reloads_after_max_wait(self) -> None:
        for _ in range(20):
            self.reloader.changed(["/src/b/gen.py"])
            self.clock.advance(0.1)
        self.assertEqual(len(self.b.restarting), 1)
        self.assertLessEqual(self.clock.seconds(), 2.1)

    def test_many_files_are_summed_up(self) -> None:
        self.reloader.changed([f"/src/b/m{i}.py" for i in range(10)], roots=["/src/b"])
        self.clock.advance(0.3)
        self.assertEqual(
            self.said, [("info", "reload: m0.py, m1.py, m2.py and 8 more changed; restarting b")]
        )

    def test_a_change_during_a_restart_restarts_again(self) -> None:
        self.reloader.changed(["/src/a/m.py"])
        self.clock.advance(0.3)
        self.reloader.changed(["/src/a/m.py"])
        self.clock.advance(0.3)
        self.assertEqual(len(self.a.restarting), 1)
        self.a.spawned()
        self.assertEqual(len(self.a.restarting), 1, "restarted again once spawned")
        self.assertEqual(self.said[-1], ("info", "reload: more files changed; restarting a"))

    def test_secrets_file_is_checked_not_restarted(self) -> None:
        self.reloader.changed(["/etc/secrets.json", "/etc/other.json"])
        self.clock.advance(0.3)
        self.assertEqual(self.secrets_checks, 1)
        self.assertEqual([s.restarting for s in (self.a, self.b, self.nested)], [[], [], []])


class SourceWatcherTests(TestCase):
    timeout = 20

    async def test_real_changes_arrive_on_the_reactor(self) -> None:
        root = os.path.abspath(self.mktemp())
        other = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "pkg"))
        os.makedirs(other)
        secrets = os.path.join(other, "secrets.json")
        write(secrets, "{}")
        got: list[tuple[list[str], list[str]]] = []
        arrived: Deferred[None] = Deferred()

        def deliver(paths: list[str], roots: list[str]) -> None:
            got.append((paths, roots))
            seen = {p for batch, _ in got for p in batch}
            if {os.path.join(root, "pkg", "m.py"), secrets} <= seen and not arrived.called:
                arrived.callback(None)

        watcher = SourceWatcher(reactor, [root], deliver, files=[secrets])
        watcher.start()
        self.addCleanup(watcher.stop)
        write(os.path.join(root, "pkg", "m.py"), "x = 1\n")
        # Editors save by writing a new file and renaming it over the old one.
        write(secrets + ".tmp", '{"A": "1"}')
        os.replace(secrets + ".tmp", secrets)
        await arrived

    def test_the_batch_between_deliveries_is_bounded(self) -> None:
        clock = Clock()
        got: list[tuple[list[str], list[str]]] = []
        calls: list[Any] = []

        class Reactor:
            def callFromThread(self, f: Any, *a: Any) -> None:
                calls.append((f, a))

        watcher = SourceWatcher(Reactor(), ["/r"], lambda p, r: got.append((p, r)))
        del clock
        watcher._note([f"/r/{i}.py" for i in range(MAX_PENDING_PATHS + 5)], "/r")
        watcher._note(["/r/late.py"], "/r")
        self.assertEqual(len(calls), 1, "one delivery scheduled at a time")
        f, a = calls[0]
        f(*a)
        (paths, roots) = got[0]
        self.assertEqual(len(paths), MAX_PENDING_PATHS)
        self.assertEqual(roots, ["/r"])


class RequestHoldTests(SynchronousTestCase):
    def test_released_at_the_announce(self) -> None:
        clock = Clock()
        hold = RequestHold(clock, timeout=10, limit=2)
        s = FakeSupervisor("a")
        s.reloading = True
        self.assertTrue(hold.coming_back(s))
        results: list[bool] = []
        hold.wait(s).addCallback(results.append)  # type: ignore[union-attr]
        # Still the old process (finishing its requests): not released by it.
        self.assertEqual(s.announced, [])
        clock.advance(0.25)
        self.assertEqual(results, [])
        s.restart()
        s.spawned()
        clock.advance(0.25)
        self.assertEqual(results, [])
        s.announce()
        self.assertEqual(results, [True])
        self.assertEqual(len(hold), 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_bounded_timeout_and_crash(self) -> None:
        clock = Clock()
        hold = RequestHold(clock, timeout=1, limit=2)
        s = FakeSupervisor("a", status="restarting")
        results: list[bool] = []
        hold.wait(s).addCallback(results.append)  # type: ignore[union-attr]
        clock.advance(0.5)
        hold.wait(s).addCallback(results.append)  # type: ignore[union-attr]
        self.assertIsNone(hold.wait(s), "the hold is full")
        clock.advance(0.75)
        self.assertEqual(results, [False])
        s.status = "crashed"
        clock.advance(0.25)
        self.assertEqual(results, [False, False])
        self.assertEqual(len(hold), 0)


MODULE = """
import json

from klein import Klein
from twisted.internet import reactor
from twisted.internet.task import deferLater

from pywatt_twisted import pywatt_module

VERSION = {version}


@pywatt_module()
def create_app(state):
    app = Klein()

    @app.route("/version", methods=["GET"])
    def version(request):
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({{"version": VERSION}}).encode()

    @app.route("/slow", methods=["GET"])
    async def slow(request):
        await deferLater(reactor, 1.5, lambda: None)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({{"version": VERSION}}).encode()

    return app
"""


class ReloadIntegrationTests(TestCase):
    timeout = 120

    async def test_edit_under_a_steady_request_loop(self) -> None:
        """
        A real C{pywatt dev --reload} with two modules: editing one module's source
        restarts only it, the new code answers within a few seconds, a slow request in
        flight at the edit is answered by the old code, and no request of a steady loop
        (one at a time, throughout the restart) fails.
        """
        workdir = tempfile.mkdtemp(prefix="pwreload-")
        self.addCleanup(shutil.rmtree, workdir, True)
        for name in ("alpha", "beta"):
            write(os.path.join(workdir, name, "__init__.py"))
            write(os.path.join(workdir, name, "module.py"), MODULE.format(version=1))
        proto, base = await start_dev(
            self,
            "--module=alpha.module",
            "--module=beta.module",
            "--reload",
            "--reload-delay=0.2",
            cwd=workdir,
        )
        await proto.wait_for(r"alpha announced")
        await proto.wait_for(r"beta announced")
        await proto.wait_for(r"reload: watching .*beta")

        results: list[tuple[int, Any]] = []
        stop = False

        async def loop() -> None:
            while not stop and len(results) < 2000:
                response = await treq.get(f"{base}/alpha/version", persistent=False)
                body = await response.content()
                results.append((response.code, body))
                await deferLater(reactor, 0.02, lambda: None)

        from twisted.internet.defer import ensureDeferred

        running = ensureDeferred(loop())
        await deferLater(reactor, 0.5, lambda: None)
        slow = treq.get(f"{base}/alpha/slow", persistent=False)
        await deferLater(reactor, 0.3, lambda: None)
        mark = len(proto.output)
        edited = time.monotonic()
        write(os.path.join(workdir, "alpha", "module.py"), MODULE.format(version=2))
        await proto.wait_for(r"reload: module.py changed; restarting alpha", after=mark)
        await proto.wait_for(r"reload: alpha restarted in [\d.]+ s", after=mark, timeout=30)
        # The new code is served within a few seconds here (the test prints it); the
        # bound is wide because the restart includes the slow request and a Python
        # start-up, whose time on a loaded 2-core machine is not this test's subject.
        while not results or results[-1][1] != b'{"version": 2}':
            self.assertLess(time.monotonic() - edited, 30, "new code not served in 30 s")
            await deferLater(reactor, 0.05, lambda: None)
        took = time.monotonic() - edited
        await deferLater(reactor, 0.3, lambda: None)
        stop = True
        await running
        slow_response = await slow
        self.assertEqual(
            (slow_response.code, await slow_response.content()), (200, b'{"version": 1}')
        )
        failed = [r for r in results if r[0] != 200]
        self.assertEqual(failed, [])
        versions = [r[1] for r in results]
        first_new = versions.index(b'{"version": 2}')
        self.assertEqual(set(versions[:first_new]), {b'{"version": 1}'})
        self.assertEqual(set(versions[first_new:]), {b'{"version": 2}'})
        # Only alpha restarted.
        self.assertNotIn("restarting beta", proto.output)
        self.assertEqual(proto.output.count("started beta"), 1)
        print(f"\nreload: {len(results)} requests, new code after {took:.2f} s")


class SupervisorRestartTests(SynchronousTestCase):
    """
    L{ModuleSupervisor.restart}: the reload of one module process.
    """

    def running(self, **options: Any) -> tuple[Any, Any]:
        from pywatt_twisted.wire.messages import Announce

        sup, clock, _ = supervisor(**options)
        sup.start()
        sup._from_module(Announce(listen="127.0.0.1:1", endpoints=()), lambda m: None)
        self.assertEqual(sup.status, "running")
        return sup, clock

    def sent(self, clock: Any, index: int = -1) -> list[str]:
        return [
            json.loads(line).get("op", "init")
            for line in b"".join(clock.spawned[index].transport.written).splitlines()
        ]

    def test_in_flight_requests_are_answered_before_the_stop(self) -> None:
        from pywatt_twisted.wire.messages import HttpResponse

        sup, clock = self.running()
        answered: list[Any] = []
        sup.requests.http("GET", "/slow", {}, None).addCallback(answered.append)
        restarted = sup.restart()
        self.assertTrue(sup.reloading)
        self.assertEqual(self.sent(clock), ["init", "http_request"], "no shutdown yet")
        (request_id,) = list(sup.requests.pending_http)
        sup.requests.http_answered(
            HttpResponse(request_id=request_id, status_code=200, headers={}, body=b"old")
        )
        self.assertEqual(answered[0].body, b"old")
        self.assertEqual(self.sent(clock)[-1], "shutdown")
        self.assertEqual(sup.status, "stopping")
        self.assertTrue(sup.reloading)
        clock.spawned[-1].processEnded(Failure(ProcessDone(0)))
        self.assertIsNone(self.successResultOf(restarted))
        self.assertEqual(len(clock.spawned), 2)
        self.assertEqual((sup.status, sup.restarts, sup.reloading), ("restarting", 1, False))
        self.assertEqual(sup.last_exit["how"], "status 0")
        self.assertTrue(sup.last_exit["wanted"])

    def test_a_slow_request_only_delays_it_by_its_timeout(self) -> None:
        sup, clock = self.running(request_timeout=5)
        failed: list[Any] = []
        sup.requests.http("GET", "/never", {}, None).addErrback(failed.append)
        sup.restart()
        clock.advance(5)
        self.assertEqual(len(failed), 1)
        self.assertEqual(self.sent(clock)[-1], "shutdown")

    def test_a_crashed_module_starts_again(self) -> None:
        sup, clock, _ = supervisor(crash_limit=1)
        sup.start()
        fail_once(sup, clock)
        self.assertEqual(sup.status, CRASHED)
        self.successResultOf(sup.restart())
        self.assertEqual((len(clock.spawned), sup.status), (2, "restarting"))
        self.assertEqual(sup.last_exit["how"], "status 1")
        self.assertFalse(sup.last_exit["wanted"])

    def test_a_stop_during_the_reload_cancels_the_new_start(self) -> None:
        from pywatt_twisted.wire.messages import HttpResponse

        sup, clock = self.running()
        sup.requests.http("GET", "/slow", {}, None)
        restarted = sup.restart()
        stopped = sup.stop()
        self.assertFalse(sup.reloading)
        (request_id,) = list(sup.requests.pending_http)
        sup.requests.http_answered(
            HttpResponse(request_id=request_id, status_code=200, headers={}, body=b"")
        )
        clock.spawned[-1].processEnded(Failure(ProcessDone(0)))
        self.successResultOf(restarted)
        self.successResultOf(stopped)
        self.assertEqual((len(clock.spawned), sup.status), (1, "stopped"))
