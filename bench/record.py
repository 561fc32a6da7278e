"""
The performance record: the rows each benchmark reports, and the table in
C{bench/README.md} that C{python -m bench --record} (C{make bench}) rewrites.

A bench module reports a row with L{row} next to what it prints. A row has the metric,
our number, the baseline's number measured in the same run, the ratio the target is
about, the target, and the direction in which the ratio is better (C{"higher"}: ours /
baseline rates; C{"lower"}: costs, times, memory). The driver (C{bench/__main__.py})
runs each module several times in a child process, takes the median of each column per
metric, and either rewrites the record (C{--record}) or compares with it (C{--check}).

The record is kept twice: C{bench/results.json} (read by C{--check}) and the markdown
table between the markers in C{bench/README.md} (read by people); the prose around the
markers is kept.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
README = os.path.join(HERE, "README.md")
START = "<!-- bench-table:start (rewritten by `make bench`; edit the prose, not the table) -->"
END = "<!-- bench-table:end -->"
ROW_PREFIX = "BENCH-ROW "
TOLERANCE = 0.20


@dataclass
class Row:
    """
    One line of the record.

    @ivar bench: the bench module's name (C{channel}, C{data}, ...).
    @ivar metric: what is measured, unique within the record.
    @ivar ours: our number, in C{unit}.
    @ivar baseline: the baseline's number in the same run (C{None} when there is none).
    @ivar unit: the unit of C{ours} and C{baseline}.
    @ivar ratio: the number the target and the regression check are about.
    @ivar target: the target, as text (C{">= 0.45"}, C{"< 45 MiB"}).
    @ivar better: C{"higher"} or C{"lower"}: which way C{ratio} improves.
    @ivar machine: where it was measured.
    """

    bench: str
    metric: str
    ours: float
    baseline: float | None
    unit: str
    ratio: float
    target: str
    better: str = "higher"
    machine: str = ""


ROWS: list[Row] = []


def machine() -> str:
    """
    A short description of this machine: CPU model, CPU count, Python version.
    """
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = re.sub(r"\((R|TM)\)|CPU|Processor|\d+-Core|@.*", "", model)
    model = " ".join(model.split())
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def row(
    bench: str,
    metric: str,
    ours: float,
    baseline: float | None,
    *,
    unit: str,
    target: str,
    better: str = "higher",
    ratio: float | None = None,
) -> Row:
    """
    Report one row (appended to L{ROWS}). Without C{ratio}, it is C{ours / baseline}.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better is 'higher' or 'lower', not {better!r}")
    if ratio is None:
        if not baseline:
            raise ValueError(f"{metric}: no baseline to make a ratio with")
        ratio = ours / baseline
    result = Row(bench, metric, ours, baseline, unit, ratio, target, better, machine())
    ROWS.append(result)
    return result


def emit(rows: Iterable[Row]) -> None:
    """
    Print C{rows} as machine-readable lines (one JSON object each) for the driver.
    """
    for r in rows:
        print(ROW_PREFIX + json.dumps(asdict(r)), flush=True)


def parse(lines: Iterable[str]) -> list[Row]:
    """
    The rows printed by L{emit} among other output.
    """
    return [
        Row(**json.loads(line[len(ROW_PREFIX) :])) for line in lines if line.startswith(ROW_PREFIX)
    ]


def median_rows(runs: Sequence[Sequence[Row]]) -> list[Row]:
    """
    One row per metric: the median of each number over the runs that reported it (the
    ratio is the median of the per-run ratios, so each ratio compares numbers of the
    same run).
    """
    by_metric: dict[str, list[Row]] = {}
    for rows in runs:
        for r in rows:
            by_metric.setdefault(r.metric, []).append(r)
    merged = []
    for same in by_metric.values():
        first = same[0]
        baselines = [r.baseline for r in same if r.baseline is not None]
        merged.append(
            Row(
                first.bench,
                first.metric,
                statistics.median(r.ours for r in same),
                statistics.median(baselines) if baselines else None,
                first.unit,
                statistics.median(r.ratio for r in same),
                first.target,
                first.better,
                first.machine,
            )
        )
    return merged


def load(path: str = RESULTS) -> list[Row]:
    """
    The last recorded rows (none if nothing was recorded yet).
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return []
    return [Row(**r) for r in data["rows"]]


def merge(old: Sequence[Row], new: Sequence[Row]) -> list[Row]:
    """
    The record after a run: C{new} rows replace the old rows of the benches that ran;
    the rows of benches that did not run are kept; the order follows the bench names.
    """
    ran = {r.bench for r in new}
    kept = [r for r in old if r.bench not in ran]
    return sorted([*kept, *new], key=lambda r: r.bench)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}"


_TARGET = re.compile(r"\s*(ours\s+)?(>=|<=|<|>)\s*([0-9]*\.?[0-9]+)\s*([^\s(]*)")


def met(r: Row) -> str:
    """
    Whether C{r} meets its target: C{"yes"}, C{"NO"}, or C{"-"} when it has none. A
    target is about the ratio (C{">= 0.45"}, C{"<= 1.3 (issue 20)"}) unless it starts
    with C{ours} or ends with the row's unit (C{"ours < 0.3 s"}, C{"< 64 MiB"}): then it
    is about our own number.
    """
    m = _TARGET.match(r.target)
    if m is None:
        return "-"
    about_ours = bool(m.group(1)) or (bool(m.group(4)) and m.group(4) == r.unit)
    value = r.ours if about_ours else r.ratio
    bound = float(m.group(3))
    ok = {
        ">=": value >= bound,
        "<=": value <= bound,
        "<": value < bound,
        ">": value > bound,
    }[m.group(2)]
    return "yes" if ok else "NO"


def table(rows: Sequence[Row]) -> str:
    """
    The markdown table of C{rows}.
    """
    lines = [
        "| metric | ours | baseline | ratio | target | met | machine |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.bench}: {r.metric} | {_number(r.ours, r.unit)} | "
            f"{_number(r.baseline, r.unit)} | {r.ratio:.2f} | {r.target} | {met(r)} | "
            f"{r.machine} |"
        )
    return "\n".join(lines)


def write(rows: Sequence[Row], results: str = RESULTS, readme: str = README) -> None:
    """
    Save C{rows} as the record: C{results} (JSON) and the table in C{readme}, between
    the markers (which must be there).
    """
    with open(results, "w") as f:
        json.dump(
            {"recorded": time.strftime("%Y-%m-%d %H:%M"), "rows": [asdict(r) for r in rows]},
            f,
            indent=1,
        )
        f.write("\n")
    with open(readme) as f:
        text = f.read()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has lost its table markers ({START!r} ... {END!r})")
    stamp = f"\nRecorded {time.strftime('%Y-%m-%d %H:%M')} by `make bench`.\n\n"
    text = text[: start + len(START)] + stamp + table(rows) + "\n\n" + text[end:]
    with open(readme, "w") as f:
        f.write(text)


#: a ratio still this many times better than its target is not compared with the record:
#: there it measures the baseline's noise, not ours (the 16 MiB frame decode against the
#: quadratic Int32StringReceiver reads 60x to 110x from one run to the next, target 3x)
CLEAR_MARGIN = 10.0


def far_beyond_target(r: Row, margin: float = CLEAR_MARGIN) -> bool:
    """
    Whether C{r}'s ratio is at least C{margin} times better than a target about the
    ratio (C{">= 3"}: a ratio of 30 or more; C{"<= 1.3"}: 0.13 or less).
    """
    m = _TARGET.match(r.target)
    if m is None or m.group(1) or (m.group(4) and m.group(4) == r.unit):
        return False  # no target, or one about our own number
    bound = float(m.group(3))
    if m.group(2) in (">=", ">"):
        return bound > 0 and r.ratio >= bound * margin
    return r.ratio <= bound / margin


def regressions(old: Sequence[Row], new: Sequence[Row], tolerance: float = TOLERANCE) -> list[str]:
    """
    One line per metric of C{new} whose ratio is more than C{tolerance} worse than the
    recorded one in C{old} (metrics missing from either side are not compared, nor a
    new ratio still L{far_beyond_target}).
    """
    recorded = {r.metric: r for r in old}
    found = []
    for r in new:
        before = recorded.get(r.metric)
        if before is None or before.ratio <= 0 or far_beyond_target(r):
            continue
        if r.better == "higher":
            worse = r.ratio < before.ratio * (1 - tolerance)
        else:
            worse = r.ratio > before.ratio / (1 - tolerance)
        if worse:
            found.append(
                f"{r.bench}: {r.metric}: ratio {r.ratio:.2f}, recorded {before.ratio:.2f} "
                f"({r.better} is better; more than {tolerance:.0%} worse)"
            )
    return found


def compare_lines(old: Sequence[Row], new: Sequence[Row]) -> list[str]:
    """
    A line per new row with its ratio next to the recorded one.
    """
    recorded = {r.metric: r for r in old}
    lines = []
    for r in new:
        before = recorded.get(r.metric)
        was = "    -" if before is None else f"{before.ratio:5.2f}"
        lines.append(f"  {r.bench + ': ' + r.metric:<62} {r.ratio:5.2f}  (recorded {was})")
    return lines
