"""
Streamed HTTP bodies (issue 15) through a real module process, versus a raw loopback
socket copy measured in the same run.

Run: C{.venv/bin/python -m bench stream} (add C{--quick} for 32 MiB instead of 256 MiB).

Ours: this process plays the orchestrator. It listens for the module's TCP channel
(L{ChannelServer}), starts C{twistd -n pywatt --module=bench.stream_module} with an init
blob that enables streaming (X0: what C{pywatt dev} offers, 256 KiB chunks, window 8)
and then, over the channel:

  - upload: an C{http_request} with a C{stream_id}, the body sent as chunks with the
    same L{StreamSender} the module uses (never more than the window unacknowledged) to
    C{POST /crc32}, which reads it as it arrives (C{@incremental_body}) and answers its
    CRC-32; timed until the response arrives;
  - download: C{GET /blob?size=N}, answered from a push producer in the module and
    streamed back as chunks, read here with a L{StreamReceiver}; timed until the final
    chunk.

Both ends check the whole body with a running CRC-32 against one computed before the
clock starts (the chunks' own CRC-32 is checked by the receivers too). Not sha256: at
1-2 GB/s a hash alone costs more CPU than the whole raw copy, which does not look at
its bytes at all; the tests (C{tests/runtime/test_streaming_*}) compare sha256.

The baseline: the same number of bytes copied over a loopback TCP connection between
two plain Twisted protocols in this process (a pull producer writing 64 KiB blocks,
a receiver that counts them). The ratio is ours / raw (target >= 0.25).

C{BENCH_CHUNK} and C{BENCH_WINDOW} (environment) change the chunk size and window;
C{BENCH_PROFILE_MODULE=path} runs the module under cProfile, writing its stats there;
C{BENCH_PROFILE_DEV=path} does the same for the C{pywatt dev} process.

Through C{pywatt dev}: the same two transfers as HTTP to its front port (C{pywatt dev
--module=big=bench.stream_module}; the upload with a C{Content-Length}, as any client
sends a body of known size), which streams them to and from the module as X1
chunks over its channel; with the peak RSS growth of the C{pywatt dev} process and of
its module.

CPU: each transfer also prints the CPU seconds each process spent on it and the ratio
they allow with one free core per process (raw copy CPU / busiest process's CPU): a
figure the load of a shared machine moves much less than wall-clock throughput.

Memory: the module's peak RSS growth (VmHWM after the transfers minus VmRSS once it
announced) and this process's (ru_maxrss growth); target under 64 MiB whatever the
body size.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
import zlib
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol

from bench.record import row
from pywatt_twisted._dev.supervisor import STREAM_OPTIONS
from pywatt_twisted.orchestrator import ChannelServer
from pywatt_twisted.streaming import StreamFailed, StreamReceiver, StreamSender, StreamTable
from pywatt_twisted.wire.codec import decode_envelope_from_module
from pywatt_twisted.wire.framing import frame_json
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse
from pywatt_twisted.wire.stream import StreamOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1024 * 1024
# (by default what pywatt dev offers its modules, so both halves of the bench compare)
OPTIONS = StreamOptions(
    int(os.environ.get("BENCH_CHUNK", STREAM_OPTIONS.chunk_size)),
    int(os.environ.get("BENCH_WINDOW", STREAM_OPTIONS.window)),
)
BLOCK = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(8192))  # 256 KiB

try:
    # (zlib's checksum, SIMD: the bench's own checks, at both ends, cost what a lean
    # client or route would spend, not zlib's ~80 us per 256 KiB)
    from isal.isal_zlib import crc32 as _client_crc32
except ImportError:  # pragma: no cover
    _client_crc32 = zlib.crc32


def _cpu(pid: int | None = None) -> float:
    """
    CPU seconds (user + system) used so far by process C{pid}, or by this process.
    """
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Clock:
    """
    Wall and CPU time of one transfer, for this process and the others in C{pids}.
    """

    def __init__(self, **pids: int | None) -> None:
        self.pids = pids
        self.wall = time.perf_counter()
        self.cpu = {who: _cpu(pid) for who, pid in pids.items()}

    def stop(self) -> tuple[float, dict[str, float]]:
        wall = time.perf_counter() - self.wall
        return wall, {who: _cpu(pid) - self.cpu[who] for who, pid in self.pids.items()}


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class _Child(ProcessProtocol):
    def __init__(self) -> None:
        self.announced: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._out = b""

    def outReceived(self, data: bytes) -> None:
        self._out += data
        *lines, self._out = self._out.split(b"\n")
        for line in lines:
            if b'"announce"' in line and not self.announced.called:
                self.announced.callback(None)

    def errReceived(self, data: bytes) -> None:
        pass

    def processEnded(self, reason: Any) -> None:
        if not self.announced.called:
            self.announced.errback(reason)
        self.ended.callback(None)


def _expected_crc(size: int) -> str:
    """
    The CRC-32 of the C{size} bytes the bench sends or asks for (L{BLOCK} repeated),
    computed before any transfer is timed.
    """
    crc, left = 0, size
    while left:
        piece = BLOCK[: min(len(BLOCK), left)]
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    return f"{crc:08x}"


class _Sink:
    def __init__(self, done: Deferred[str]) -> None:
        self.crc = 0
        self.done = done

    def body_data(self, data: bytes) -> None:
        self.crc = _client_crc32(data, self.crc)

    def body_done(self) -> None:
        self.done.callback(f"{self.crc:08x}")

    def body_failed(self, error: StreamFailed) -> None:
        self.done.errback(error)


async def bench_ours(reactor: Any, size: int) -> dict[str, float]:
    expected = _expected_crc(size)
    tables: dict[Any, StreamTable] = {}
    responses: dict[str, Deferred[HttpResponse]] = {}

    def on_frame(connection: Any, frame: Any) -> bool:
        # (decoded here: ChannelServer's own path records every envelope it delivers)
        message = decode_envelope_from_module(frame_json(frame)).content
        table = tables.setdefault(connection, StreamTable(connection.send))
        if table.received(message):
            return True
        if isinstance(message, HttpResponse):
            waiter = responses.pop(message.request_id, None)
            if waiter is not None:
                waiter.callback(message)
            return True
        return True

    server = ChannelServer(reactor, on_frame=on_frame)
    address = await server.listen_tcp()
    connected: Deferred[Any] = Deferred()
    original = server._connected

    def seen(connection: Any) -> None:
        original(connection)
        if not connected.called:
            connected.callback(connection)

    server._connected = seen  # type: ignore[method-assign]
    child = _Child()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATT_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    argv = [twistd, "-n", "pywatt", "--module=bench.stream_module"]
    profile = os.environ.get("BENCH_PROFILE_MODULE")
    if profile:
        argv = [sys.executable, "-m", "cProfile", "-o", profile, *argv]
    process = reactor.spawnProcess(
        child,
        argv[0],
        argv,
        env=env,
        path=ROOT,
    )
    init = {
        "orchestrator_api": "http://127.0.0.1:9900",
        "module_id": "bench-stream",
        "env": {},
        "listen": "127.0.0.1:0",
        "tcp_channel": {"address": address, "tls_enabled": False, "required": True},
        "security_level": "None",
        "extensions": {"streaming": {"chunk_size": OPTIONS.chunk_size, "window": OPTIONS.window}},
    }
    process.write(json.dumps(init).encode() + b"\n")
    try:
        await child.announced
        connection = await connected
        base_rss = _status(process.pid, "VmRSS")
        own_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        table = tables.setdefault(connection, StreamTable(connection.send))

        # upload
        clock = _Clock(orchestrator=None, module=process.pid)
        waiter: Deferred[HttpResponse] = Deferred()
        responses["up"] = waiter
        sender = StreamSender("up-1", connection.send, OPTIONS, reactor)
        table.add_sender(sender)
        connection.send(HttpRequest("up", "POST", "/crc32", {}, None, "up-1"))
        sent = 0

        def feed(writable: bool = True) -> None:
            nonlocal sent
            while sender.writable and sent < size:
                piece = BLOCK[: min(len(BLOCK), size - sent)]
                sender.write(piece)
                sent += len(piece)
            if sent >= size:
                sender.finish()

        sender._on_writable = lambda writable: writable and feed()
        feed()
        response = await waiter
        up_seconds, up_cpu = clock.stop()
        if (response.body or b"").decode() != expected:
            raise RuntimeError(f"upload hash mismatch: {response}")

        # download
        clock = _Clock(orchestrator=None, module=process.pid)
        head: Deferred[HttpResponse] = Deferred()
        responses["down"] = head
        connection.send(HttpRequest("down", "GET", f"/blob?size={size}", {}))
        first = await head
        if first.stream_id is None:
            raise RuntimeError(f"the download was not streamed: {first.status_code}")
        body_done: Deferred[str] = Deferred()
        table.add_receiver(
            StreamReceiver(
                first.stream_id, connection.send, _Sink(body_done), reactor, max_size=2**40
            )
        )
        got = await body_done
        down_seconds, down_cpu = clock.stop()
        if got != expected:
            raise RuntimeError(f"download CRC-32 mismatch: {got} != {expected}")
        peak = _status(process.pid, "VmHWM")
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        process.closeStdin()
        await child.ended
    return {
        "upload": size / up_seconds,
        "download": size / down_seconds,
        "upload_cpu": up_cpu,
        "download_cpu": down_cpu,
        "module_rss_growth": (peak - base_rss) / 1024,
        "orchestrator_rss_growth": (own_peak - own_base) / 1024,
    }


class _Counter(Protocol):
    def __init__(self, size: int, done: Deferred[None]) -> None:
        self.left = size
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left <= 0 and not self.done.called:
            self.done.callback(None)


class _Writer(Protocol):
    def __init__(self, size: int) -> None:
        self.left = size

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self.left > 0:
            piece = BLOCK[: min(65536, self.left)]
            self.left -= len(piece)
            self.transport.write(piece)
        else:
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self.left = 0


async def bench_raw(reactor: Any, size: int) -> float:
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

    done: Deferred[None] = Deferred()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: _Counter(size, done))
    )
    clock = _Clock(raw=None)
    client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(lambda: _Writer(size))
    )
    await done
    seconds, cpu = clock.stop()
    client.transport.loseConnection()
    await port.stopListening()
    return size / seconds, cpu["raw"]


def _print_cpu(cpu: dict[str, float], raw_cpu: float) -> None:
    """
    The CPU seconds each process spent on one transfer, and the ratio they allow with
    one free core per process: the raw copy's CPU time (both of its ends run in this
    process) over the busiest process's. Unlike wall-clock throughput, this does not
    move when other work loads the machine.
    """
    spent = ", ".join(f"{who} {seconds:.2f} s" for who, seconds in cpu.items())
    busiest = max(cpu.values())
    print(f"    cpu: {spent}; raw copy {raw_cpu:.2f} s; cpu-bound ratio {raw_cpu / busiest:.2f}")


def main(argv: list[str]) -> int:
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    size = 32 * MiB if "--quick" in argv else 256 * MiB
    result: dict[str, Any] = {}

    async def run() -> None:
        result["raw"], result["raw_cpu"] = await bench_raw(reactor, size)
        result.update(await bench_ours(reactor, size))
        result["dev"] = await bench_dev(reactor, size)

    def stop(outcome: Any) -> Any:
        result["outcome"] = outcome
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addBoth(stop))
    reactor.run()
    if "raw" not in result or "upload" not in result:
        print(result.get("outcome"))
        return 1
    raw = result["raw"]
    label = f"{size // MiB} MiB"
    for what in ("upload", "download"):
        ours = result[what]
        print(
            f"stream {what} {label} via tcp channel: {ours / MiB:8.1f} MiB/s  "
            f"raw loopback copy: {raw / MiB:8.1f} MiB/s  ratio {ours / raw:.2f} (target >= 0.25)"
        )
        _print_cpu(result[f"{what}_cpu"], result["raw_cpu"])
        row(
            "stream",
            f"{what} {label} through a tcp channel, vs raw loopback copy",
            ours / MiB,
            raw / MiB,
            unit="MiB/s",
            target=">= 0.25",
        )
    dev = result["dev"]
    for what in ("upload", "download"):
        ours = dev[what]
        print(
            f"stream {what} {label} via pywatt dev's front port: {ours / MiB:8.1f} MiB/s  "
            f"raw loopback copy: {raw / MiB:8.1f} MiB/s  ratio {ours / raw:.2f} (target >= 0.25)"
        )
        _print_cpu(dev[f"{what}_cpu"], result["raw_cpu"])
        row(
            "stream",
            f"{what} {label} through pywatt dev's front port, vs raw loopback copy",
            ours / MiB,
            raw / MiB,
            unit="MiB/s",
            target=">= 0.25",
        )
    growths = {
        "module (channel)": result["module_rss_growth"],
        "orchestrator (this bench)": result["orchestrator_rss_growth"],
        "pywatt dev": dev["dev_rss_growth"],
        "module (under pywatt dev)": dev["module_rss_growth"],
    }
    for who, growth in growths.items():
        print(f"peak RSS growth of the {who} process: {growth:.1f} MiB (target < 64 MiB)")
        row(
            "stream",
            f"peak RSS growth of the {who} process, {label} both ways",
            growth,
            None,
            unit="MiB",
            target="< 64 MiB",
            better="lower",
            ratio=growth / 64,
        )
    return 0


class _PatternFile:
    """
    A file-like object of C{size} bytes of L{BLOCK} (for C{FileBodyProducer}).

    It can tell its size (C{seek} / C{tell}, as a real file), so the upload goes with
    a C{Content-Length}, as any client sends a body of known size (curl, requests, a
    browser). Without them twisted's C{FileBodyProducer} sent it with chunked
    transfer encoding, which the bench's record up to session 5 measured.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.left = size
        self.offset = 0

    def tell(self) -> int:
        return self.offset

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.offset, os.SEEK_END: self.size}[whence]
        self.offset = min(max(base + offset, 0), self.size)
        self.left = self.size - self.offset
        return self.offset

    def read(self, n: int) -> bytes:
        n = min(n, self.left)
        start = self.offset % len(BLOCK)
        if start + n <= len(BLOCK):
            # (one slice of the block: no copy for a whole block, as the raw copy's
            # writer, so the client's cost does not weigh on the comparison)
            self.left -= n
            self.offset += n
            return BLOCK if n == len(BLOCK) else BLOCK[start : start + n]
        out = bytearray()
        while len(out) < n:
            start = self.offset % len(BLOCK)
            piece = BLOCK[start : start + (n - len(out))]
            out += piece
            self.offset += len(piece)
        self.left -= n
        return bytes(out)

    def close(self) -> None:
        pass


class _Hasher(Protocol):
    def __init__(self, done: Deferred[str]) -> None:
        self.crc = 0
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.crc = _client_crc32(data, self.crc)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(f"{self.crc:08x}")


class _Text(Protocol):
    def __init__(self, done: Deferred[str]) -> None:
        self.data = b""
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.data.decode("utf-8", "replace"))


class _DevOutput(ProcessProtocol):
    def __init__(self) -> None:
        self.output = ""
        self.front: Deferred[str] = Deferred()
        self.announced: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def _text(self, data: bytes) -> None:
        import re

        self.output += data.decode("utf-8", "replace")
        if not self.front.called:
            match = re.search(r"front port: (http://127\.0\.0\.1:\d+)/", self.output)
            if match:
                self.front.callback(match.group(1))
        if not self.announced.called and "big announced" in self.output:
            match = re.search(r"started big \(.*?\) pid (\d+)", self.output)
            self.announced.callback(int(match.group(1)) if match else 0)

    def outReceived(self, data: bytes) -> None:
        self._text(data)

    def errReceived(self, data: bytes) -> None:
        self._text(data)

    def processEnded(self, reason: Any) -> None:
        for d in (self.front, self.announced):
            if not d.called:
                d.errback(RuntimeError(f"pywatt dev ended: {self.output[-2000:]}"))
        self.ended.callback(None)


async def bench_dev(reactor: Any, size: int) -> dict[str, float]:
    """
    The same transfers through C{pywatt dev}'s front port (HTTP in, X1 chunks to the
    module and back, chunked HTTP out).
    """
    expected = _expected_crc(size)
    from twisted.web.client import Agent, FileBodyProducer

    dev = _DevOutput()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATT_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    argv = [
        sys.executable,
        "-m",
        "pywatt_twisted._cli",
        "dev",
        "--module=big=bench.stream_module",
        "--port=0",
    ]
    profile = os.environ.get("BENCH_PROFILE_DEV")
    if profile:
        argv[1:1] = ["-m", "cProfile", "-o", profile]
    process = reactor.spawnProcess(dev, argv[0], argv, env=env, path=ROOT)
    try:
        base = await dev.front
        module_pid = await dev.announced
        dev_base = _status(process.pid, "VmRSS")
        module_base = _status(module_pid, "VmRSS")
        agent = Agent(reactor)

        clock = _Clock(client=None, dev=process.pid, module=module_pid)
        producer = FileBodyProducer(_PatternFile(size), readSize=len(BLOCK))
        response = await agent.request(b"POST", f"{base}/big/crc32".encode(), None, producer)
        text: Deferred[str] = Deferred()
        response.deliverBody(_Text(text))
        answer = await text
        up_seconds, up_cpu = clock.stop()
        if response.code != 200 or answer != expected:
            raise RuntimeError(f"upload through pywatt dev: {response.code} {answer}")

        clock = _Clock(client=None, dev=process.pid, module=module_pid)
        response = await agent.request(b"GET", f"{base}/big/blob?size={size}".encode())
        digest: Deferred[str] = Deferred()
        response.deliverBody(_Hasher(digest))
        got = await digest
        down_seconds, down_cpu = clock.stop()
        if got != expected:
            raise RuntimeError(f"download through pywatt dev: CRC-32 {got} != {expected}")
        dev_peak = _status(process.pid, "VmHWM")
        module_peak = _status(module_pid, "VmHWM")
    finally:
        process.signalProcess("INT")
        await dev.ended
    return {
        "upload": size / up_seconds,
        "download": size / down_seconds,
        "upload_cpu": up_cpu,
        "download_cpu": down_cpu,
        "dev_rss_growth": (dev_peak - dev_base) / 1024,
        "module_rss_growth": (module_peak - module_base) / 1024,
    }
