"""
Run the benchmarks: C{python -m bench [NAME ...] [OPTIONS]} (or C{make bench}).

Every C{bench/bench_<name>.py} module has a C{main(argv)} that measures our code and a
baseline in the same run, prints both with their ratio, and reports its rows with
L{bench.record.row}. With no NAME, all run. Machines here are noisy: read the ratios,
not the absolute numbers.

Options:
  - C{--quick}: shorter measurements (passed to each module);
  - C{--record}: run each module C{--repeat} times (L{RUNS}: 2 or 3), each time in a child
    process, take the median of each row, print the table and rewrite the record
    (C{bench/results.json} and the table in C{bench/README.md}); C{make bench};
  - C{--check}: the same runs, then compare each ratio with the recorded one and fail
    (exit status 1) when one is more than 20% worse; nothing is written;
    C{make bench-check} (quick runs);
  - C{--repeat=N}: how many runs per module for C{--record} / C{--check};
  - C{--rows}: print the rows as C{BENCH-ROW} JSON lines after the module's output
    (what the child processes do).

C{python -m bench profile [pipelined|bridge]} runs the profiler instead (see
C{bench/profile.py}).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import time

import bench
from bench import record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def available() -> list[str]:
    return sorted(
        info.name[len("bench_") :]
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name.startswith("bench_")
    )


def _child(name: str, options: list[str]) -> list[record.Row]:
    """
    Run one bench module in a fresh process (its own reactor, its own imports); pass
    its output through and return its rows.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", name, "--rows", *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        if line.startswith(record.ROW_PREFIX):
            lines.append(line)
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
    status = process.wait()
    if status:
        raise SystemExit(f"bench {name} failed with exit status {status}")
    return record.parse(lines)


#: Runs per bench for C{--record} and C{--check} when C{--repeat} is not given. A bench
#: that already measures several times inside one run and keeps the median or the best
#: (C{data}, C{startup}, C{tracing}, C{wire}) runs twice, C{stream} (throughput of
#: 256 MiB, then peak memory) twice; C{channel} (best of two interleaved rounds inside
#: a run, over a minute) and C{reliability} (peak memory against idle memory, counted
#: work) once; the others three times, C{messaging} included (best of two rounds inside
#: a run as well, but three processes on two CPUs: its 64-in-flight ratio swung from
#: 0.31 to 0.47 between runs on one machine in session 9). This keeps C{make bench}
#: within about 15 minutes on the 2-CPU machines.
RUNS = {
    "channel": 1,
    "data": 2,
    "reliability": 1,
    "startup": 2,
    "stream": 2,
    "tracing": 2,
    "wire": 2,
}
DEFAULT_RUNS = 3


def repeated(names: list[str], options: list[str], repeat: int | None) -> list[record.Row]:
    """
    The median rows of C{repeat} runs of each bench in C{names} (L{RUNS} when None).
    """
    rows: list[record.Row] = []
    for name in names:
        runs = []
        count = repeat if repeat is not None else RUNS.get(name, DEFAULT_RUNS)
        for i in range(count):
            print(f"=== bench {name} (run {i + 1} of {count}) ===", flush=True)
            runs.append(_child(name, options))
        rows.extend(record.median_rows(runs))
    return rows


def main(argv: list[str]) -> int:
    if argv[:1] == ["profile"]:
        from bench import profile

        return profile.main(argv[1:])
    names = [a for a in argv if not a.startswith("-")] or available()
    options = [a for a in argv if a.startswith("-")]
    unknown = sorted(set(names) - set(available()))
    if unknown:
        sys.stderr.write(f"unknown benchmark(s) {unknown}; available: {available()}\n")
        return 2
    repeat: int | None = None
    for option in options:
        if option.startswith("--repeat="):
            repeat = int(option.split("=", 1)[1])
    do_record = "--record" in options
    do_check = "--check" in options
    passed = [o for o in options if o == "--quick"]
    if do_record or do_check:
        started = time.monotonic()
        rows = repeated(names, passed, repeat)
        runs = f"{repeat}" if repeat is not None else "2 or 3 (see RUNS in bench/__main__.py)"
        print(f"\nmedian of {runs} run(s) per bench, {time.monotonic() - started:.0f} s in all:")
        print(record.table(rows))
        old = record.load()
        if do_check:
            if not old:
                sys.stderr.write("no record to check against: run `make bench` first\n")
                return 2
            print("\nratios against the record (bench/results.json):")
            print("\n".join(record.compare_lines(old, rows)))
            worse = record.regressions(old, rows)
            for line in worse:
                print(f"REGRESSION: {line}")
            if worse:
                return 1
            print(f"no ratio more than {record.TOLERANCE:.0%} worse than recorded")
            return 0
        record.write(record.merge(old, rows))
        print(f"\nrecorded in {record.RESULTS} and {record.README}")
        return 0
    for name in names:
        print(f"=== bench {name} ===", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        status = module.main(options)
        if status:
            return int(status)
        if "--rows" in options:
            record.emit(record.ROWS)
        del record.ROWS[:]
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
