"""
The performance record behind C{make bench} / C{make bench-check} (C{bench/record.py}):
medians, the table in C{bench/README.md}, and the 20% regression check.
"""

from __future__ import annotations

import os
import sys

from twisted.trial.unittest import SynchronousTestCase

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

from bench import record  # noqa: E402
from bench.record import Row  # noqa: E402


def _row(metric: str, ratio: float, better: str = "higher", bench: str = "b") -> Row:
    return Row(bench, metric, ratio * 10, 10.0, "/s", ratio, ">= 1", better, "m")


class MedianTests(SynchronousTestCase):
    def test_median_of_each_column_per_metric(self) -> None:
        runs = [
            [Row("b", "x", 10, 20, "/s", 0.5, "t", "higher", "m")],
            [Row("b", "x", 30, 10, "/s", 3.0, "t", "higher", "m")],
            [Row("b", "x", 20, 40, "/s", 0.5, "t", "higher", "m")],
        ]
        (merged,) = record.median_rows(runs)
        self.assertEqual((merged.ours, merged.baseline, merged.ratio), (20, 20, 0.5))

    def test_ratio_without_baseline_is_refused(self) -> None:
        self.assertRaises(ValueError, record.row, "b", "x", 1.0, None, unit="s", target="-")
        del record.ROWS[:]


class RegressionTests(SynchronousTestCase):
    def test_higher_is_better(self) -> None:
        old = [_row("a", 1.0), _row("b", 1.0)]
        new = [_row("a", 0.81), _row("b", 0.79)]
        (line,) = record.regressions(old, new)
        self.assertIn("b: b: ratio 0.79, recorded 1.00", line)

    def test_lower_is_better(self) -> None:
        old = [_row("a", 1.0, "lower"), _row("b", 1.0, "lower")]
        new = [_row("a", 1.24, "lower"), _row("b", 1.26, "lower")]
        (line,) = record.regressions(old, new)
        self.assertIn("ratio 1.26", line)

    def test_far_beyond_target_not_compared(self) -> None:
        """
        A ratio still 10x better than its target is not compared (there it measures the
        baseline's noise); below that it is, and targets about our own number never
        count.
        """

        def row(ratio: float, target: str, better: str = "higher") -> Row:
            return Row("w", "m", ratio, 1.0, "MB/s", ratio, target, better, "m")

        self.assertEqual(record.regressions([row(99.0, ">= 3")], [row(60.0, ">= 3")]), [])
        (line,) = record.regressions([row(99.0, ">= 3")], [row(29.0, ">= 3")])
        self.assertIn("ratio 29.00", line)
        self.assertEqual(
            record.regressions([row(0.05, "<= 1.3", "lower")], [row(0.12, "<= 1.3", "lower")]),
            [],
        )
        self.assertEqual(
            len(record.regressions([row(0.1, "<= 1.3", "lower")], [row(0.2, "<= 1.3", "lower")])), 1
        )
        # about our own number (ends with the unit): compared as before
        self.assertEqual(
            len(record.regressions([row(99.0, ">= 3 MB/s")], [row(60.0, ">= 3 MB/s")])), 1
        )
        self.assertEqual(len(record.regressions([row(99.0, "-")], [row(60.0, "-")])), 1)

    def test_new_and_missing_metrics_are_not_compared(self) -> None:
        self.assertEqual(record.regressions([_row("a", 1.0)], [_row("z", 0.1)]), [])


class WriteTests(SynchronousTestCase):
    def test_table_between_markers_prose_kept(self) -> None:
        readme = self.mktemp()
        results = self.mktemp()
        with open(readme, "w") as f:
            f.write(f"# Prose\n\n{record.START}\nold table\n{record.END}\n\nMore prose.\n")
        rows = record.merge([_row("kept", 2.0, bench="other")], [_row("new", 1.5)])
        record.write(rows, results=results, readme=readme)
        with open(readme) as f:
            text = f.read()
        self.assertTrue(text.startswith("# Prose\n\n" + record.START))
        self.assertTrue(text.endswith(record.END + "\n\nMore prose.\n"))
        self.assertNotIn("old table", text)
        self.assertIn("| b: new | 15.0 /s | 10.0 /s | 1.50 | >= 1 | yes | m |", text)
        self.assertIn("| other: kept |", text)
        self.assertEqual([r.metric for r in record.load(results)], ["new", "kept"])

    def test_lost_markers_are_an_error(self) -> None:
        readme = self.mktemp()
        with open(readme, "w") as f:
            f.write("no markers\n")
        self.assertRaises(ValueError, record.write, [], results=self.mktemp(), readme=readme)

    def test_rows_round_trip_through_output_lines(self) -> None:
        rows = [_row("a", 1.0), _row("b", 2.0, "lower")]
        lines = [record.ROW_PREFIX + __import__("json").dumps(r.__dict__) for r in rows]
        self.assertEqual(record.parse(["noise\n", *lines]), rows)


class MetTests(SynchronousTestCase):
    def test_ratio_and_own_number_targets(self) -> None:
        def r(target: str, ours: float, ratio: float, unit: str = "/s") -> str:
            return record.met(Row("b", "m", ours, 1.0, unit, ratio, target, "higher", "m"))

        self.assertEqual(r(">= 0.45 (issue 20)", 1, 0.5), "yes")
        self.assertEqual(r(">= 0.45 (issue 20)", 1, 0.4), "NO")
        self.assertEqual(r("<= 1.3", 1, 1.31), "NO")
        self.assertEqual(r("<= 1.3", 1, 1.3), "yes")
        self.assertEqual(r("ours < 0.3 s", 0.29, 9.0, "s"), "yes")
        self.assertEqual(r("ours < 0.3 s", 0.31, 0.1, "s"), "NO")
        self.assertEqual(r("< 64 MiB", 70, 0.5, "MiB"), "NO")
        self.assertEqual(r("< 1.5", 70, 1.2, "MiB"), "yes")
        self.assertEqual(r("-", 1, 1), "-")
