"""
Run the benchmarks: C{python -m bench [NAME ...] [OPTIONS]} (or C{make bench}).

Every C{bench/bench_<name>.py} module has a C{main(argv)} that measures our code and a
baseline in the same run, prints both with their ratio, and reports its rows with
L{bench.record.row}. With no NAME, all run. Machines here are noisy: read the ratios,
not the absolute numbers.

Options:
  - C{--quick}: shorter measurements (passed to each module);
  - C{--record}: run each module C{--repeat} times (3 by default), each time in a child
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


def repeated(names: list[str], options: list[str], repeat: int) -> list[record.Row]:
    """
    The median rows of C{repeat} runs of each bench in C{names}.
    """
    rows: list[record.Row] = []
    for name in names:
        runs = []
        for i in range(repeat):
            print(f"=== bench {name} (run {i + 1} of {repeat}) ===", flush=True)
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
    repeat = 3
    for option in options:
        if option.startswith("--repeat="):
            repeat = int(option.split("=", 1)[1])
    do_record = "--record" in options
    do_check = "--check" in options
    passed = [o for o in options if o == "--quick"]
    if do_record or do_check:
        rows = repeated(names, passed, repeat)
        print(f"\nmedian of {repeat} run(s) per bench:")
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
