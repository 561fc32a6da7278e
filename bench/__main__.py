"""
Run the benchmarks: C{python -m bench [NAME ...]} (or C{make bench}).

Every C{bench/bench_<name>.py} module has a C{main(argv)} that measures our code and a
baseline in the same run and prints both with their ratio. With no NAME, all run.
Machines here are noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def available() -> list[str]:
    return sorted(
        info.name[len("bench_") :]
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name.startswith("bench_")
    )


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or available()
    options = [a for a in argv if a.startswith("-")]
    unknown = sorted(set(names) - set(available()))
    if unknown:
        sys.stderr.write(f"unknown benchmark(s) {unknown}; available: {available()}\n")
        return 2
    for name in names:
        print(f"=== bench {name} ===", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        status = module.main(options)
        if status:
            return int(status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
