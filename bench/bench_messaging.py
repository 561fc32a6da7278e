"""
Module-to-module request/reply round trips through C{pywatt dev}, next to a raw Twisted
relay with the same shape.

Run: C{.venv/bin/python -m bench messaging} (add C{--quick} for a short run).

Ours: C{pywatt dev} runs two real module processes, C{requester} and C{responder}
(defined below). The requester's C{GET /bench?seconds=S&inflight=N} route keeps N
C{state.send_request("responder", "echo", {...})} calls in flight for S seconds and
reports how many replies came back. Each round trip is: C{route_to_module} enveloped on
the requester's preferred channel -> the dev orchestrator decodes it and sends
C{routed_module_message} on the responder's preferred channel -> the responder unwraps the
payload envelope, runs the handler, replies with C{routed_module_response} -> the dev
orchestrator routes it back -> the requester decodes it and fires the caller's Deferred
from its correlation table (with a 30 s timeout per request). Three processes, two
hops each way, JSON with full validation at every step.

The baseline: the same three-process shape with raw Twisted, nothing else. A client
process sends 4-byte-length-prefixed frames (C{Int32StringReceiver}) of the same size
as our request to a relay process, which forwards each frame to an echo process and
each echo back to the client by connection (FIFO, no parsing, no ids, no timeouts).

Ours runs twice: with C{--channel-preference=tcp,ipc} (TCP channels, like the raw relay)
and with the default C{ipc,tcp} (Unix-socket channels). Each is measured with 1 request
in flight (round trips per second) and with 64 in flight (replies per second), best of
two runs. Targets (issue 17): 0.6 of the raw relay at 1 in flight, 0.4 at 64. The
machines here are noisy: read the ratios.

It also prints the CPU microseconds per reply of each of the three processes (from
C{/proc/PID/task/*/schedstat}: other load on the machine does not count), and of the
raw relay's three in the same columns (its client is a thread of the bench process:
C{time.thread_time}; its relay and echo processes: schedstat), and the
syscalls per reply of each, TCP, 64 in flight, with write coalescing on and off
(C{perf stat}; C{--no-syscalls} skips it). C{--profile [--inflight=N]} runs the three
processes under C{cProfile} instead (CPU time, the measured window only, through the
start-up hook in C{bench/_hook/}). C{BENCH_PUSH_EVERY=N} in the bench's environment sets
L{FramedProtocol.push_every <pywatt_twisted._transport.framed.FramedProtocol.push_every>}
in the three processes (through the same hook), to compare with it off.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from typing import Any

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = {"query": "stock", "sku": "A1", "quantity": 1}
IN_FLIGHT = 64
ROUNDS = 2


# -- the two modules (run by pywatt dev as requester=... and responder=...) ---------------


def _requester_app(state: Any) -> Any:
    from klein import Klein
    from twisted.internet.defer import DeferredList

    app = Klein()

    @app.route("/bench", methods=["GET"])
    async def bench(request: Any) -> bytes:
        seconds = float(request.args.get(b"seconds", [b"2"])[0])
        inflight = int(request.args.get(b"inflight", [b"1"])[0])
        reactor = state.reactor
        done = [0]
        deadline = reactor.seconds() + seconds

        async def worker() -> None:
            while reactor.seconds() < deadline:
                await state.send_request("responder", "echo", PAYLOAD)
                done[0] += 1

        # Warm up the path once before timing.
        await state.send_request("responder", "echo", PAYLOAD)
        started = reactor.seconds()
        from twisted.internet.defer import Deferred

        await DeferredList(
            [Deferred.fromCoroutine(worker()) for _ in range(inflight)], fireOnOneErrback=True
        )
        elapsed = reactor.seconds() - started
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"replies": done[0], "seconds": elapsed}).encode()

    return app


def _responder_app(state: Any) -> Any:
    from klein import Klein

    state.handler("echo")(lambda source, payload: payload)
    return Klein()


def _definitions() -> tuple[Any, Any]:
    from pywatt_twisted import pywatt_module

    return (
        pywatt_module(health="/health", metrics=False)(_requester_app),
        pywatt_module(health="/health", metrics=False)(_responder_app),
    )


requester, responder = _definitions()


# -- ours: through pywatt dev ---------------------------------------------------------------


class _Console:
    """
    The output of a child process, read by a thread, searchable.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.text = ""
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._lock:
                self.text += raw.decode("utf-8", "replace")
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def wait_for(self, regex: str, timeout: float = 60.0) -> re.Match[str]:
        pattern = re.compile(regex)
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                match = pattern.search(self.text)
                if match:
                    return match
                left = end - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise RuntimeError(f"no {regex!r} in the output:\n{self.text[-3000:]}")
                self._lock.wait(min(left, 0.5))


HOOK = os.path.join(PROJECT_ROOT, "bench", "_hook")


def _environment(
    preference: str = "tcp,ipc", extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYWATT_", "BENCH_PROFILE_DIR", "BENCH_COALESCE", "BENCH_PUSH_EVERY"))
    }
    env["PYWATT_CHANNEL_PREFERENCE"] = preference
    push_every = os.environ.get("BENCH_PUSH_EVERY")
    if push_every:
        # FramedProtocol.push_every in the three processes (through the hook), to A/B it
        extra = {**(extra or {}), "BENCH_PUSH_EVERY": push_every}
    path = PROJECT_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if extra:
        # bench/_hook/sitecustomize.py reads BENCH_PROFILE_DIR and BENCH_COALESCE
        env.update(extra)
        path = HOOK + os.pathsep + path
    env["PYTHONPATH"] = path
    env["PYTHONUNBUFFERED"] = "1"
    # The requester logs nothing per request; keep the module logs quiet anyway.
    env["PYWATT_LOG_LEVEL"] = "warn"
    return env


def start_dev(
    preference: str = "tcp,ipc", extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], _Console, str]:
    argv = [
        sys.executable,
        "-m",
        "pywatt_twisted._cli",
        "dev",
        "--module=requester=bench.bench_messaging:requester",
        "--module=responder=bench.bench_messaging:responder",
        "--port=0",
    ]
    process = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=_environment(preference, extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    console = _Console(process)
    try:
        base = console.wait_for(r"front port: (http://127\.0\.0\.1:\d+)/").group(1)
        for module_id in ("requester", "responder"):
            console.wait_for(rf"{module_id} announced")
            console.wait_for(rf"{module_id} identified as '{module_id}' on tcp")
    except Exception:
        process.kill()
        raise
    return process, console, base


def stop_dev(process: subprocess.Popen[bytes]) -> None:
    import signal

    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def bench_ours(base: str, seconds: float, inflight: int) -> float:
    return measure_ours(base, seconds, inflight)["rate"]


def processes(dev: subprocess.Popen[bytes]) -> dict[str, int]:
    """
    The pids of the bench's three processes: C{dev}, C{requester}, C{responder} (the
    children are told apart by their C{PYWATT_MODULE_ID}). Linux only; empty elsewhere.
    """
    try:
        with open(f"/proc/{dev.pid}/task/{dev.pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        return {}
    found = {"dev": dev.pid}
    for pid in children:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"PYWATT_MODULE_ID="):
                found[entry.partition(b"=")[2].decode()] = pid
    return found


def _cpu_seconds(pid: int) -> float:
    """
    CPU seconds process C{pid} has run, its threads included: the sum of their
    C{schedstat} (nanoseconds; C{/proc/PID/stat} counts in 10 ms ticks, too coarse for
    a second's run), else C{stat}.
    """
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _perf_syscalls(pid: int) -> subprocess.Popen[str] | None:
    """
    C{perf stat} counting the syscalls of C{pid} until L{_perf_count} stops it, or
    C{None} when perf cannot run.
    """
    try:
        return subprocess.Popen(
            ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError:
        return None


def _perf_count(process: subprocess.Popen[str] | None) -> int | None:
    if process is None:
        return None
    import signal

    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None
    for line in err.splitlines():
        value = line.split(",")[0]
        if "raw_syscalls" in line and value.isdigit():
            return int(value)
    return None


def measure_ours(
    base: str,
    seconds: float,
    inflight: int,
    pids: dict[str, int] | None = None,
    syscalls: bool = False,
) -> dict[str, Any]:
    """
    One measurement through pywatt dev: C{rate} (replies per second), and with C{pids}
    the CPU microseconds per reply of each process (C{cpu_us}) and, with C{syscalls},
    the syscalls per reply of each (C{syscalls}; C{None} without perf).
    """
    pids = pids or {}
    url = f"{base}/requester/bench?seconds={seconds}&inflight={inflight}"
    before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    counters = {}
    if syscalls:
        counters = {name: _perf_syscalls(pid) for name, pid in pids.items()}
        time.sleep(0.3)  # perf attaches
    with urllib.request.urlopen(url, timeout=seconds + 25) as response:
        result = json.loads(response.read())
    after = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    # (the requester's warm-up request and the HTTP request are counted too: one reply
    # more, and a few syscalls)
    replies = int(result["replies"]) + 1
    out: dict[str, Any] = {"rate": float(result["replies"] / result["seconds"])}
    out["cpu_us"] = {name: (after[name] - before[name]) * 1e6 / replies for name in pids}
    if syscalls:
        counts = {name: _perf_count(process) for name, process in counters.items()}
        out["syscalls"] = {
            name: None if count is None else count / replies for name, count in counts.items()
        }
    return out


# -- the baseline: client -> relay -> echo, raw Int32StringReceiver ------------------------

_RELAY_CODE = r"""
import sys
from collections import deque
from twisted.internet import reactor
from twisted.internet.protocol import ClientFactory, Factory
from twisted.protocols.basic import Int32StringReceiver

role = sys.argv[1]

class Echo(Int32StringReceiver):
    MAX_LENGTH = 1 << 24
    def stringReceived(self, data):
        self.sendString(data)

class Upstream(Int32StringReceiver):
    MAX_LENGTH = 1 << 24
    def connectionMade(self):
        self.factory.relay.upstream = self
        for frame in self.factory.relay.backlog:
            self.sendString(frame)
        self.factory.relay.backlog.clear()
    def stringReceived(self, data):
        self.factory.relay.clients.popleft().sendString(data)

class RelayState:
    def __init__(self):
        self.upstream = None
        self.backlog = []
        self.clients = deque()

class Relay(Int32StringReceiver):
    MAX_LENGTH = 1 << 24
    def stringReceived(self, data):
        state = self.factory.state
        state.clients.append(self)
        if state.upstream is None:
            state.backlog.append(data)
        else:
            state.upstream.sendString(data)

if role == "echo":
    f = Factory.forProtocol(Echo)
    port = reactor.listenTCP(0, f, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
elif role == "relay":
    state = RelayState()
    up = ClientFactory.forProtocol(Upstream)
    up.relay = state
    reactor.connectTCP("127.0.0.1", int(sys.argv[2]), up)
    f = Factory.forProtocol(Relay)
    f.state = state
    port = reactor.listenTCP(0, f, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
reactor.run()
"""


def _spawn(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", _RELAY_CODE, *args], stdout=subprocess.PIPE, cwd=PROJECT_ROOT
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def bench_raw(relay_port: int, frame_size: int, seconds: float, inflight: int) -> float:
    return measure_raw(relay_port, frame_size, seconds, inflight)["rate"]


def measure_raw(
    relay_port: int,
    frame_size: int,
    seconds: float,
    inflight: int,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """
    One measurement of the raw relay: C{rate} (replies per second) and C{cpu_us}, the
    CPU microseconds per reply of the client (this thread, which runs the client's
    reactor: C{time.thread_time}) and, with C{pids} (C{relay}, C{echo}), of each of
    those processes (schedstat, as L{measure_ours}).
    """
    pids = pids or {}
    before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    client_before = time.thread_time()
    replies, elapsed = _run_raw(relay_port, frame_size, seconds, inflight)
    client = time.thread_time() - client_before
    after = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    # (the warm-up request counted too, as in measure_ours)
    cpu = {name: (after[name] - before[name]) * 1e6 / (replies + 1) for name in pids}
    cpu["client"] = client * 1e6 / (replies + 1)
    return {"rate": replies / elapsed, "cpu_us": cpu}


def _run_raw(relay_port: int, frame_size: int, seconds: float, inflight: int) -> tuple[int, float]:
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ClientFactory
    from twisted.protocols.basic import Int32StringReceiver

    from bench.bench_channel import fresh_reactor, run

    class Client(Int32StringReceiver):
        MAX_LENGTH = 1 << 24

        def connectionMade(self) -> None:
            self.waiting: deque[Deferred[bytes]] = deque()
            self.factory.ready.callback(self)  # type: ignore[attr-defined]

        def stringReceived(self, data: bytes) -> None:
            self.waiting.popleft().callback(data)

        def ask(self, data: bytes) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            self.waiting.append(d)
            self.sendString(data)
            return d

    async def measure(reactor: Any) -> tuple[int, float]:
        from twisted.internet.defer import DeferredList

        factory = ClientFactory.forProtocol(Client)
        factory.ready = Deferred()  # type: ignore[attr-defined]
        connector = reactor.connectTCP("127.0.0.1", relay_port, factory)
        client = await factory.ready  # type: ignore[attr-defined]
        frame = b"x" * frame_size
        await client.ask(frame)
        done = [0]
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                await client.ask(frame)
                done[0] += 1

        started = time.monotonic()
        await DeferredList(
            [Deferred.fromCoroutine(worker()) for _ in range(inflight)], fireOnOneErrback=True
        )
        elapsed = time.monotonic() - started
        connector.disconnect()
        return done[0], elapsed

    replies, elapsed = run(fresh_reactor(), measure)
    return int(replies), float(elapsed)


def _request_frame_size() -> int:
    import uuid

    from pywatt_twisted._runtime.messaging import request_payload
    from pywatt_twisted._transport.channel import encode_channel_frame
    from pywatt_twisted.wire.messages import RouteToModule

    message = RouteToModule(
        "responder", "echo", uuid.uuid4(), request_payload(PAYLOAD, "echo", "requester", False, 1)
    )
    return len(encode_channel_frame(message, 1 << 24)) - 5


ROLES = ("requester", "dev", "responder")
#: the raw relay's process in each of those places
RAW_ROLES = {"requester": "client", "dev": "relay", "responder": "echo"}


def _print_cpu(rows: list[tuple[str, int, dict[str, float]]]) -> None:
    print(
        "CPU microseconds per reply, per process (time on CPU, /proc/PID/task/*/schedstat; "
        "the raw relay's client is this process's thread: time.thread_time), ours and, "
        "in the same columns, the raw relay's client, relay and echo:"
    )
    print(f"{'channels':>8} {'in flight':>9} " + " ".join(f"{r:>10}" for r in ROLES))
    for channel, inflight, cpu in rows:
        roles = [RAW_ROLES[r] for r in ROLES] if channel == "raw" else ROLES
        cells = " ".join(f"{cpu.get(r, float('nan')):>10.1f}" for r in roles)
        print(f"{channel:>8} {inflight:>9} {cells}")


def syscalls_on_off(seconds: float) -> None:
    """
    Syscalls per reply of each process, TCP channels, C{IN_FLIGHT} in flight, with
    write coalescing on and off (C{BENCH_COALESCE=0} in the three processes).
    """
    results = {}
    for coalesce in (True, False):
        dev, _, base = start_dev("tcp,ipc", None if coalesce else {"BENCH_COALESCE": "0"})
        try:
            pids = processes(dev)
            measure_ours(base, seconds / 2, IN_FLIGHT)  # warm up
            results[coalesce] = measure_ours(base, seconds, IN_FLIGHT, pids, syscalls=True)
        finally:
            stop_dev(dev)
    if any(v is None for r in results.values() for v in r["syscalls"].values()):
        print("syscalls per reply: perf stat could not count them here (perf missing?)")
        return
    print(f"syscalls per reply (perf stat), TCP, {IN_FLIGHT} in flight, coalescing on / off:")
    print(f"{'coalescing':>10} {'replies/s':>10} " + " ".join(f"{r:>10}" for r in ROLES))
    for coalesce, result in results.items():
        cells = " ".join(f"{result['syscalls'].get(r, float('nan')):>10.2f}" for r in ROLES)
        print(f"{'on' if coalesce else 'off':>10} {result['rate']:>10.0f} {cells}")


def profile(seconds: float, inflight: int, top: int = 25) -> None:
    """
    Run the three processes under cProfile (TCP channels, C{inflight} in flight) and
    print each one's top functions by internal time; the C{.prof} files are left in
    C{bench/profiles/messaging-<role>-<pid>.prof}.
    """
    import glob
    import pstats
    import signal
    import tempfile

    directory = tempfile.mkdtemp(prefix="bench-messaging-")
    dev, _, base = start_dev("tcp,ipc", {"BENCH_PROFILE_DIR": directory})
    try:
        pids = processes(dev)
        measure_ours(base, seconds / 3, inflight)  # warm up
        for pid in pids.values():
            os.kill(pid, signal.SIGUSR1)
        result = measure_ours(base, seconds, inflight, pids)
        for pid in pids.values():
            os.kill(pid, signal.SIGUSR2)
        time.sleep(1)  # the profiles are written
    finally:
        stop_dev(dev)
    print(f"{result['rate']:.0f} replies/s under cProfile; CPU us/reply {result['cpu_us']}")
    out = os.path.join(PROJECT_ROOT, "bench", "profiles")
    os.makedirs(out, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(directory, "*.prof"))):
        name = os.path.basename(path)
        os.replace(path, os.path.join(out, f"messaging-{name}"))
        print(f"\n== {name} (the measured window)")
        pstats.Stats(os.path.join(out, f"messaging-{name}")).sort_stats("tottime").print_stats(top)


def main(argv: list[str]) -> int:
    seconds = 1.0 if "--quick" in argv else 3.0
    if "--profile" in argv:
        inflight = IN_FLIGHT
        for arg in argv:
            if arg.startswith("--inflight="):
                inflight = int(arg.partition("=")[2])
        profile(seconds * 3, inflight)
        return 0
    frame_size = _request_frame_size()
    print(
        "module-to-module request/reply through pywatt dev (3 processes: requester -> dev "
        "-> responder and back; TCP, then Unix-socket channels) vs a raw "
        "Int32StringReceiver relay of the same "
        f"shape and frame size ({frame_size} bytes); {seconds:g} s per measurement, best of "
        f"{ROUNDS}"
    )
    echo, echo_port = _spawn("echo")
    relay, relay_port = _spawn("relay", str(echo_port))
    rows = []
    cpu_rows = []
    raw_pids = {"relay": relay.pid, "echo": echo.pid}
    raw_cpus: dict[int, list[dict[str, float]]] = {}
    try:
        for channel, preference in (("tcp", "tcp,ipc"), ("unix", "ipc,tcp")):
            dev, _, base = start_dev(preference)
            try:
                pids = processes(dev)
                for inflight in (1, IN_FLIGHT):
                    raws, ours, cpus = [], [], []
                    for _ in range(ROUNDS):
                        raw = measure_raw(relay_port, frame_size, seconds, inflight, raw_pids)
                        raws.append(raw["rate"])
                        raw_cpus.setdefault(inflight, []).append(raw["cpu_us"])
                        result = measure_ours(base, seconds, inflight, pids)
                        ours.append(result["rate"])
                        cpus.append(result["cpu_us"])
                    rows.append((channel, inflight, max(raws), max(ours)))
                    # the per-process CPU of the round with the least in all
                    cpu_rows.append((channel, inflight, min(cpus, key=lambda c: sum(c.values()))))
            finally:
                stop_dev(dev)
        for inflight, measured in raw_cpus.items():
            cpu_rows.append(("raw", inflight, min(measured, key=lambda c: sum(c.values()))))
    finally:
        for process in (relay, echo):
            process.kill()
            process.wait()
    print(f"{'channels':>8} {'in flight':>9} {'raw/s':>10} {'ours/s':>10} {'ratio':>6}")
    from bench.record import row

    for channel, inflight, raw, ours in rows:
        print(f"{channel:>8} {inflight:>9} {raw:>10.0f} {ours:>10.0f} {ours / raw:>6.2f}")
        name = "" if channel == "tcp" else " (Unix-socket channels)"
        row(
            "messaging",
            f"module-to-module via pywatt dev{name}, {inflight} in flight, vs raw relay",
            ours,
            raw,
            unit="/s",
            target=">= 0.60 (issue 17)" if inflight == 1 else ">= 0.40 (issue 17)",
        )
    if cpu_rows and cpu_rows[0][2]:
        _print_cpu(cpu_rows)
    if "--no-syscalls" not in argv:
        syscalls_on_off(seconds)
    return 0
