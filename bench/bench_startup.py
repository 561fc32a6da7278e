"""
Start-up time and idle memory of a real module process (issue 20).

Run: C{.venv/bin/python -m bench startup} (add C{--quick} for fewer starts).

Ours: C{twistd -n pywatt --module=examples.counter.module}, started the way an
orchestrator starts it: pipes for stdin and stdout, the init line written at once, its
C{API_KEY} secret request answered as soon as it is read. Measured: the wall time from
just before the process is spawned to its C{announce} line (interpreter start, imports,
the twistd plugin, bootstrap, binding its HTTP port), and its RSS once idle (1 s after
the announce).

The baseline: the least Twisted process with the same shape, in the same run: the
interpreter starts, imports the reactor and C{twisted.internet.stdio}, reads one JSON
line on stdin and answers with one line on stdout. The ratios (ours / baseline) are
what C{make bench-check} guards; the targets are absolute: announce within 0.3 s of the
start, idle RSS under 45 MiB.

The required stack, for information: a process with the same shape that also loads what
any Klein module started by C{twistd} loads before a line of ours runs (twistd's modules
and its plugin scan, Klein, C{twisted.web.server}) and serves one Klein route on a
loopback port before it answers. It is a floor, not the whole cost: twistd's option
parsing, logging set-up and application start are not in it. Its rows show what the
targets leave for the library itself (its time and RSS against the baseline's, and ours
against it).

Each is started C{STARTS} times (interleaved); the median is reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import IO, Any

from bench.record import row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "examples.counter.module"
STARTS = 7
ANNOUNCE_TARGET = 0.3
RSS_TARGET_MIB = 45.0
SETTLE = 1.0

INIT = {
    "orchestrator_api": "http://127.0.0.1:9900",
    "module_id": "bench-startup",
    "env": {},
    "listen": "127.0.0.1:0",
    "security_level": "None",
}

_BASELINE = r"""
import json, sys
from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver

class Answer(LineReceiver):
    delimiter = b"\n"
    def lineReceived(self, line):
        self.sendLine(json.dumps({"op": "announce", "got": json.loads(line)}).encode())
    def connectionLost(self, reason):
        reactor.stop()

stdio.StandardIO(Answer())
reactor.run()
"""


# The baseline's process after the imports and the Klein site any module under twistd
# has before a line of ours runs.
_STACK = (
    r"""
from twisted.scripts import twistd
from twisted.plugin import getPlugins
from twisted.application.service import IServiceMaker
list(getPlugins(IServiceMaker))
from klein import Klein
from twisted.internet import reactor
from twisted.web.server import Site

app = Klein()

@app.route("/")
def home(request):
    return b"ok"

reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
"""
    + _BASELINE
)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _environment() -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE is dropped: an installed module runs from compiled
    # bytecode (pip compiles what it installs; the first start writes the rest), and
    # the baseline's imports (site-packages) are compiled already. Without this every
    # start would recompile the package and the example from source.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYWATT_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _send(stream: IO[bytes], obj: Any) -> None:
    stream.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    stream.flush()


def cpu_seconds(pid: int) -> float:
    """
    The CPU time (user + system) process C{pid} has used so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(argv: list[str]) -> tuple[float, float, float]:
    """
    Start C{argv}, play the orchestrator until its announce; return (seconds from the
    spawn to the announce, idle RSS in MiB, CPU seconds used up to the announce).
    """
    with open(os.devnull, "wb") as devnull:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=devnull,
            env=_environment(),
            cwd=ROOT,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            _send(process.stdin, INIT)
            for raw in process.stdout:
                message = json.loads(raw)
                if message.get("op") == "get_secret":
                    _send(
                        process.stdin,
                        {"op": "secret", "name": message["name"], "value": "bench-key"},
                    )
                elif message.get("op") == "announce":
                    break
            else:
                raise RuntimeError(f"{argv} ended before announcing")
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(process.pid)
            time.sleep(SETTLE)
            rss = rss_kib(process.pid) / 1024
        finally:
            process.stdin.close()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return elapsed, rss, cpu


def main(argv: list[str]) -> int:
    starts = 3 if "--quick" in argv else STARTS
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    ours_argv = [twistd, "-n", "pywatt", f"--module={MODULE}"]
    base_argv = [sys.executable, "-c", _BASELINE]
    stack_argv = [sys.executable, "-c", _STACK]
    start_once(ours_argv)  # warm the disk cache and the .pyc files first
    start_once(stack_argv)
    ours, base, stack = [], [], []
    for _ in range(starts):
        base.append(start_once(base_argv))
        stack.append(start_once(stack_argv))
        ours.append(start_once(ours_argv))
    stack_announce = statistics.median(t for t, _, _ in stack)
    stack_rss = statistics.median(r for _, r, _ in stack)
    stack_cpu = statistics.median(c for _, _, c in stack)
    announce = statistics.median(t for t, _, _ in ours)
    base_announce = statistics.median(t for t, _, _ in base)
    rss = statistics.median(r for _, r, _ in ours)
    base_rss = statistics.median(r for _, r, _ in base)
    cpu = statistics.median(c for _, _, c in ours)
    base_cpu = statistics.median(c for _, _, c in base)
    print(f"{MODULE} under twistd vs a bare Twisted stdio process, median of {starts} starts")
    print(f"{'':<22} {'ours':>8} {'baseline':>9} {'ratio':>6}  target (ours)")
    verdict = "meets" if announce < ANNOUNCE_TARGET else "MISSES"
    print(
        f"{'start to announce':<22} {announce:>7.3f}s {base_announce:>8.3f}s "
        f"{announce / base_announce:>6.2f}  < {ANNOUNCE_TARGET} s: {verdict}"
    )
    print(
        f"{'(CPU to announce)':<22} {cpu:>7.3f}s {base_cpu:>8.3f}s {cpu / base_cpu:>6.2f}  "
        "(user + system; steadier than wall time on a busy machine)"
    )
    verdict = "meets" if rss < RSS_TARGET_MIB else "MISSES"
    print(
        f"{'idle RSS':<22} {rss:>6.1f}Mi {base_rss:>7.1f}Mi {rss / base_rss:>6.2f}  "
        f"< {RSS_TARGET_MIB:g} MiB: {verdict}"
    )
    print(
        f"{'the required stack':<22} {stack_announce:>7.3f}s {base_announce:>8.3f}s "
        f"{stack_announce / base_announce:>6.2f}  (reactor, twistd + plugin scan, Klein "
        "serving one route; none of ours)"
    )
    print(
        f"{'  its CPU to answer':<22} {stack_cpu:>7.3f}s {base_cpu:>8.3f}s "
        f"{stack_cpu / base_cpu:>6.2f}"
    )
    print(
        f"{'  its idle RSS':<22} {stack_rss:>6.1f}Mi {base_rss:>7.1f}Mi "
        f"{stack_rss / base_rss:>6.2f}"
    )
    print(
        f"{'ours vs the stack':<22} {announce / stack_announce:>6.2f}x start, "
        f"{cpu / stack_cpu:.2f}x CPU, {rss / stack_rss:.2f}x RSS (what the library adds)"
    )
    stack_name = "the required stack alone (reactor, twistd + plugin scan, Klein serving one route)"
    row(
        "startup",
        f"{stack_name}: process start to answer, vs bare Twisted stdio process",
        stack_announce,
        base_announce,
        unit="s",
        target="-",
        better="lower",
    )
    row(
        "startup",
        f"{stack_name}: idle RSS, vs bare Twisted stdio process",
        stack_rss,
        base_rss,
        unit="MiB",
        target="-",
        better="lower",
    )
    row(
        "startup",
        "counter example: process start to announce, vs the required stack alone",
        announce,
        stack_announce,
        unit="s",
        target="-",
        better="lower",
    )
    row(
        "startup",
        "counter example: idle RSS, vs the required stack alone",
        rss,
        stack_rss,
        unit="MiB",
        target="-",
        better="lower",
    )
    row(
        "startup",
        "counter example: process start to announce, vs bare Twisted stdio process",
        announce,
        base_announce,
        unit="s",
        target=f"ours < {ANNOUNCE_TARGET} s",
        better="lower",
    )
    row(
        "startup",
        "counter example: idle RSS, vs bare Twisted stdio process",
        rss,
        base_rss,
        unit="MiB",
        target=f"ours < {RSS_TARGET_MIB:g} MiB",
        better="lower",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
