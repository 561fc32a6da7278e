"""
Where the microseconds go: C{python -m bench profile [pipelined|channel|bridge]
[--label=NAME]}.

  - C{pipelined}: a real module service (L{ModuleService} with its channel manager)
    connected over loopback TCP to an orchestrator-side L{ChannelServer} in the same
    process; the orchestrator keeps C{IN_FLIGHT} C{heartbeat}s in flight (pre-encoded
    frames) and counts the module's C{heartbeat_ack} envelopes with a lean frame hook,
    so nearly all the CPU is the module's receive / dispatch / reply path (and the
    reactor's).
  - C{channel}: the C{bench channel} path, ours over TCP with C{IN_FLIGHT} in flight: a
    L{ChannelManager} sends C{route_to_module} requests (fresh random ids, a swept
    correlation table), the lean echo of C{bench channel} answers, the module's
    L{ChannelProtocol} decodes the replies: both ends of the message path.
  - C{bridge}: HTTP over IPC in memory, as C{bench bridge} measures it: decode the
    C{http_request} line with the wire codec, run it through L{HttpBridge} and the
    Klein site, encode the stdout reply.

Each runs once without the profiler (the printed microseconds per message, both sides
of the process included) and once under C{cProfile}; the top frames by total time and
by cumulative time are printed and written to C{bench/profiles/<what>-<label>.txt}
(label C{before} unless given).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILES = os.path.join(HERE, "profiles")
IN_FLIGHT = 64
MESSAGES = 50_000
TOP = 30


async def _pipelined(reactor: Any, count: int, profiler: cProfile.Profile | None) -> float:
    """
    Run C{count} pipelined heartbeats through a real module service; return the
    process CPU seconds they took (profiled when C{profiler} is given).
    """
    from klein import Klein
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from pywatt_twisted._runtime.module import pywatt_module
    from pywatt_twisted.orchestrator import ChannelServer
    from pywatt_twisted.testing import FakeOrchestrator
    from pywatt_twisted.wire.codec import encode
    from pywatt_twisted.wire.framing import FORMAT_JSON, encode_frame
    from pywatt_twisted.wire.messages import Heartbeat

    heartbeat = encode_frame(encode(Heartbeat()), FORMAT_JSON, 1 << 20)
    state = {"sent": 0, "acked": 0}
    done: Deferred[None] = Deferred()

    def on_frame(connection: Any, frame: Any) -> bool:
        if b'"heartbeat_ack"' not in frame.payload:
            return False
        state["acked"] += 1
        if state["sent"] < count:
            state["sent"] += 1
            connection.transport.write(heartbeat)
        elif state["acked"] == count:
            done.callback(None)
        return True

    server = ChannelServer(reactor, on_frame=on_frame)
    address = await server.listen_tcp()
    host, port = address.rsplit(":", 1)
    orchestrator = FakeOrchestrator(reactor=reactor, channels=("tcp",), module_id="profiled")
    orchestrator.endpoints["tcp"] = TCP4ClientEndpoint(reactor, host, int(port))  # type: ignore[assignment]
    definition = pywatt_module(metrics=True)(lambda state: Klein())
    await orchestrator.start(definition)
    connection = await server.next_connection()
    while connection.identify is None:  # the module says who it is first
        await _later(reactor, 0.01)
    for _ in range(min(IN_FLIGHT, count)):
        state["sent"] += 1
        connection.transport.write(heartbeat)  # type: ignore[union-attr]
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    await done
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - cpu
    await orchestrator.shutdown()
    await server.stop()
    return cpu


def _later(reactor: Any, seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


async def _channel(reactor: Any, count: int, profiler: cProfile.Profile | None) -> float:
    """
    Run C{count} routed requests through the C{bench channel} path (ours, TCP,
    C{IN_FLIGHT} in flight); return the process CPU seconds they took.
    """
    from bench.bench_channel import TIMEOUT, PendingTable, _echo, _request
    from pywatt_twisted.link import ChannelManager, ChannelOptions, ChannelSpec
    from pywatt_twisted.orchestrator import ChannelServer
    from pywatt_twisted.wire.envelope import random_uuid4
    from pywatt_twisted.wire.messages import RoutedModuleResponse

    server = ChannelServer(reactor, on_frame=_echo)
    address = await server.listen_tcp()
    host, port = address.rsplit(":", 1)
    spec = ChannelSpec("tcp", address, required=True, host=host, port=int(port))
    pending = PendingTable(reactor, TIMEOUT)

    def receive(message: object, link: object) -> None:
        if isinstance(message, RoutedModuleResponse):
            pending.resolve(message.request_id, message.payload)

    manager = ChannelManager(
        [spec],
        module_id="bench",
        receiver=receive,
        clock=reactor,
        reactor=reactor,
        options=ChannelOptions(queue_size=10_000),
    )
    manager.startService()
    await manager.when_required_ready()
    send = manager.send
    state = {"left": count}

    async def worker() -> None:
        while state["left"] > 0:
            state["left"] -= 1
            request_id = random_uuid4()
            d = pending.add(request_id)
            send(_request(request_id))
            await d

    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    workers = [Deferred.fromCoroutine(worker()) for _ in range(IN_FLIGHT)]
    for w in workers:
        await w
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - cpu
    pending.close()
    await manager.stopService()
    await server.stop()
    return cpu


def profile_channel(count: int, profiler: cProfile.Profile | None) -> float:
    from bench.bench_channel import fresh_reactor, run

    return float(run(fresh_reactor(), lambda r: _channel(r, count, profiler)))


def profile_pipelined(count: int, profiler: cProfile.Profile | None) -> float:
    from bench.bench_channel import fresh_reactor, run

    return float(run(fresh_reactor(), lambda r: _pipelined(r, count, profiler)))


def profile_bridge(count: int, profiler: cProfile.Profile | None) -> float:
    from twisted.internet.epollreactor import EPollReactor

    from bench.bench_bridge import WORKLOADS, build_site
    from pywatt_twisted.web.bridge import HttpBridge

    bridge = HttpBridge(build_site(EPollReactor()), reactor=EPollReactor())
    seconds_per_round = 0.05
    from bench.bench_bridge import bench_bridge_wire

    workload = WORKLOADS["GET /items/:id"]
    # calibrate: how many requests one round of bench_bridge_wire makes
    rate = bench_bridge_wire(bridge, workload, 16, seconds_per_round)
    seconds = count / rate
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    done = bench_bridge_wire(bridge, workload, 16, seconds) * seconds
    if profiler is not None:
        profiler.disable()
    # the rounds run for a time, not a count: scale to C{count} requests
    return (time.process_time() - cpu) * count / max(done, 1.0)


WHAT: dict[str, tuple[str, Callable[[int, cProfile.Profile | None], float]]] = {
    "pipelined": (
        f"heartbeat -> heartbeat_ack over a loopback TCP channel, {IN_FLIGHT} in flight, "
        "through a real ModuleService",
        profile_pipelined,
    ),
    "channel": (
        f"the bench channel path: route_to_module -> routed_module_response over "
        f"loopback TCP, {IN_FLIGHT} in flight, requester and echo in one process",
        profile_channel,
    ),
    "bridge": (
        "HTTP over IPC in memory: http_request line -> HttpBridge -> Klein -> stdout "
        "reply, GET /items/:id, 16 in flight",
        profile_bridge,
    ),
}


def report(what: str, count: int, label: str) -> str:
    title, runner = WHAT[what]
    runner(count // 10, None)  # warm-up
    cpu = runner(count, None)
    profiler = cProfile.Profile()
    profiled_cpu = runner(count, profiler)
    out = io.StringIO()
    out.write(f"profile {what} ({label}): {title}\n")
    out.write(
        f"per message: {cpu / count * 1e6:.1f} us of process CPU without the profiler "
        f"(both ends, one process), {profiled_cpu / count * 1e6:.1f} us under cProfile; "
        "ncalls below are those of the profiled run\n"
    )
    out.write(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}\n")
    for key in ("tottime", "cumtime"):
        out.write(f"\n--- top {TOP} by {key} ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(TOP)
    return out.getvalue()


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or list(WHAT)
    label = "before"
    count = MESSAGES
    for option in argv:
        if option.startswith("--label="):
            label = option.split("=", 1)[1]
        if option == "--quick":
            count = MESSAGES // 10
    unknown = sorted(set(names) - set(WHAT))
    if unknown:
        sys.stderr.write(f"unknown profile(s) {unknown}; available: {sorted(WHAT)}\n")
        return 2
    os.makedirs(PROFILES, exist_ok=True)
    for name in names:
        text = report(name, count, label)
        path = os.path.join(PROFILES, f"{name}-{label}.txt")
        with open(path, "w") as f:
            f.write(text)
        print(text)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
