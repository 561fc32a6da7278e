"""
Memory of a real module process when the world is slow or hostile (issue 13).

Run: C{.venv/bin/python -m bench reliability} (C{--quick} divides the counts by 10).

Each scenario starts C{twistd -n pywatt --module=bench.reliability_module} with pipes for
stdin and stdout, answers its secret request, waits for its announce, lets it settle and
reads its idle RSS (the baseline, measured in the same run). It then resets the kernel's
peak-RSS mark (C{/proc/PID/clear_refs}), runs the scenario, and reads the peak
(C{VmHWM}). The printed ratio is peak over idle; the target is under 1.5 for each:

  - C{stdout-not-read}: 10,000 C{http_request}s for a 64 KiB reply written to stdin while
    nobody reads stdout (the module must stop reading stdin above its stdout high-water
    mark), then stdout is drained and every reply is counted;
  - C{routed}: 100,000 C{routed_module_message}s to a handler that takes 50 ms, written
    as fast as the pipe takes them (the module must bound the calls it holds and answer
    the rest C{overloaded}); every request gets a reply;
  - C{rotations}: 10,000 rotations of one secret (a C{secret} line and a C{rotated} line
    each), every one acknowledged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from bench.record import row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.5


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


class Module:
    """
    A module process with the orchestrator's side of its stdin and stdout.
    """

    def __init__(self) -> None:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATT_")}
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["PYWATT_LOG_LEVEL"] = "warn"
        self.stderr = open(os.devnull, "wb")
        self.proc = subprocess.Popen(
            [twistd, "-n", "pywatt", "--module=bench.reliability_module"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            cwd=ROOT,
            bufsize=1024 * 1024,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.pid = self.proc.pid

    def send(self, obj: Any) -> None:
        self.stdin.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        self.stdin.flush()

    def lines(self) -> Iterator[dict[str, Any]]:
        for raw in self.stdout:
            yield json.loads(raw)

    def start(self) -> None:
        self.send(
            {
                "orchestrator_api": "http://127.0.0.1:9900",
                "module_id": "bench-reliability",
                "env": {},
                "listen": "127.0.0.1:0",
                "security_level": "None",
            }
        )
        for line in self.lines():
            if line.get("op") == "get_secret":
                self.send({"op": "secret", "name": line["name"], "value": "initial-key-000"})
            elif line.get("op") == "announce":
                return
        raise RuntimeError("the module ended before announcing")

    def idle_rss(self) -> int:
        time.sleep(1.0)
        samples = []
        for _ in range(5):
            samples.append(rss_kib(self.pid))
            time.sleep(0.1)
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        return max(samples)

    def stop(self) -> None:
        try:
            self.send({"op": "shutdown"})
            self.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def writer(module: Module, lines: Callable[[], Iterator[bytes]]) -> threading.Thread:
    def run() -> None:
        batch = []
        for line in lines():
            batch.append(line)
            if len(batch) >= 64:
                module.stdin.write(b"".join(batch))
                module.stdin.flush()
                batch = []
        if batch:
            module.stdin.write(b"".join(batch))
        module.stdin.flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stdout_not_read(module: Module, count: int) -> str:
    def requests() -> Iterator[bytes]:
        for i in range(count):
            yield (
                b'{"op":"http_request","request_id":"r%d","method":"GET","uri":"/big",'
                b'"headers":{},"body":null}\n' % i
            )

    thread = writer(module, requests)
    # Nobody reads stdout until the writer stalls (the module stopped reading stdin) or
    # has written everything.
    last, stalled_since = -1, time.monotonic()
    while thread.is_alive() and time.monotonic() - stalled_since < 3:
        time.sleep(0.5)
        now = rss_kib(module.pid, "VmHWM")
        if now != last:
            last, stalled_since = now, time.monotonic()
    writer_stalled = thread.is_alive()
    replies = 0
    for raw in module.stdout:  # 256 KiB lines: count them, do not parse them
        if raw.startswith(b'{"content":{"body":'):
            replies += 1
            if replies == count:
                break
    thread.join()
    return f"{replies}/{count} replies, stdin writer stalled while unread: {writer_stalled}"


def routed(module: Module, count: int) -> str:
    def messages() -> Iterator[bytes]:
        for i in range(count):
            envelope = {
                "id": f"00000000-0000-4000-8000-{i:012d}",
                "content": {"n": i},
                "metadata": {"properties": {"target_endpoint": "work"}},
            }
            data = list(json.dumps(envelope, separators=(",", ":")).encode())
            yield (
                json.dumps(
                    {
                        "op": "routed_module_message",
                        "source_module_id": "bench",
                        "original_request_id": f"10000000-0000-4000-8000-{i:012d}",
                        "payload": {"data": data, "format": "Json"},
                    },
                    separators=(",", ":"),
                ).encode()
                + b"\n"
            )

    thread = writer(module, messages)
    replies = kinds = 0
    overloaded = 0
    for line in module.lines():
        if line.get("op") == "routed_module_response" or "request_id" in line:
            replies += 1
            text = json.dumps(line)
            if "overloaded" in text:
                overloaded += 1
            if replies == count:
                break
        else:
            kinds += 1
    thread.join()
    return f"{replies}/{count} replies ({overloaded} overloaded)"


def rotations(module: Module, count: int) -> str:
    def messages() -> Iterator[bytes]:
        for i in range(count):
            yield b'{"op":"secret","name":"API_KEY","value":"rotated-key-%08d"}\n' % i
            yield b'{"op":"rotated","keys":["API_KEY"],"rotation_id":"rot-%d"}\n' % i

    thread = writer(module, messages)
    acks = 0
    for line in module.lines():
        if line.get("op") == "rotation_ack":
            acks += 1
            if acks == count:
                break
    thread.join()
    return f"{acks}/{count} rotations acknowledged"


SCENARIOS: dict[str, tuple[Callable[[Module, int], str], int]] = {
    "stdout-not-read": (stdout_not_read, 10_000),
    "routed": (routed, 100_000),
    "rotations": (rotations, 10_000),
}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    print(
        f"{'scenario':<18} {'count':>7} {'idle MiB':>9} {'peak MiB':>9} {'ratio':>6}  target",
        flush=True,
    )
    worst = 0.0
    for name, (run, count) in SCENARIOS.items():
        n = count // 10 if quick else count
        module = Module()
        try:
            module.start()
            idle = module.idle_rss()
            started = time.monotonic()
            detail = run(module, n)
            elapsed = time.monotonic() - started
            peak = rss_kib(module.pid, "VmHWM")
        finally:
            module.stop()
        ratio = peak / idle
        worst = max(worst, ratio)
        verdict = "ok" if ratio < TARGET else "OVER"
        row(
            "reliability",
            f"peak RSS under {name}, vs idle RSS",
            peak / 1024,
            idle / 1024,
            unit="MiB",
            target=f"< {TARGET}",
            better="lower",
        )
        print(
            f"{name:<18} {n:>7} {idle / 1024:>9.1f} {peak / 1024:>9.1f} {ratio:>6.2f}  "
            f"< {TARGET} {verdict}  ({detail}; {elapsed:.1f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
