"""
The C{pywatt dev} command line: help with defaults, unknown options answered with the
closest one, and an invalid edit of the secrets file reported on the console.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._dev.cli import build_parser, main, secrets_file_provider
from pywatt_twisted._dev.supervisor import Console


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


class HelpAndUsageTests(SynchronousTestCase):
    def test_help_shows_defaults(self) -> None:
        code, out, _ = run("--help")
        self.assertEqual(code, 0)
        text = " ".join(out.split())
        for default in (
            "(default: 8080)",
            "seconds between heartbeats (default: 5.0)",
            "(default: 15.0)",
            "(default: 10.0)",
            "no longer restarted (default: 5)",
            "the window of --crash-limit (default: 30.0)",
        ):
            self.assertIn(default, text)

    def test_unknown_option_suggests_the_closest(self) -> None:
        code, out, err = run("-m", "x", "--hearbeat-interval=1")
        self.assertEqual(code, 2)
        self.assertEqual(out, "")
        self.assertIn(
            "pywatt dev: error: unrecognized arguments: --hearbeat-interval=1 "
            "(did you mean --heartbeat-interval?)",
            err,
        )

    def test_unknown_option_before_a_missing_one(self) -> None:
        """
        A typo in a required option is named as a typo, not as a missing option.
        """
        code, _, err = run("--modle", "x")
        self.assertEqual(code, 2)
        self.assertIn("--modle (did you mean --module?)", err)

    def test_crash_options(self) -> None:
        args = build_parser().parse_args(["-m", "x", "--crash-limit=3", "--crash-window=9"])
        self.assertEqual((args.crash_limit, args.crash_window), (3, 9.0))
        code, _, err = run("-m", "x", "--crash-limit=0")
        self.assertEqual(code, 2)
        self.assertIn("--crash-limit: must be a positive integer, got '0'", err)


class SecretsFileTests(SynchronousTestCase):
    def test_invalid_edit_is_reported_on_the_console(self) -> None:
        """
        An edit that breaks the JSON is shown on the console with the file, line, column
        and what is wrong; the previous values stay; a fix is shown too.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump({"API_KEY": "one"}, f)
        clock = Clock()
        lines: list[str] = []
        provider = secrets_file_provider(path, clock, Console(lines.append))
        provider.start()
        self.addCleanup(provider.stop)
        broken = '{\n  "API_KEY": "two",\n}\n'
        with open(path, "w") as f:
            f.write(broken)
        # (the parser's words and position vary between Python versions: 3.13 names the
        # trailing comma, earlier ones the missing name after it)
        with self.assertRaises(json.JSONDecodeError) as raised:
            json.loads(broken)
        error = raised.exception
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
        clock.advance(0.5)
        self.assertEqual(provider.get("API_KEY"), "one")
        self.assertEqual(
            lines,
            [
                f"[pywatt-dev] ERROR secrets file {path} is not valid JSON ({error.msg} at "
                f"line {error.lineno} column {error.colno}); keeping the previous secrets "
                "until it is fixed\n"
            ],
        )
        # Reported once, not at every poll.
        clock.advance(5)
        self.assertEqual(len(lines), 1)
        with open(path, "w") as f:
            json.dump({"API_KEY": "two"}, f)
        os.utime(path, ns=(1_000_000_000_000_000_001, 1_000_000_000_000_000_001))
        clock.advance(0.5)
        self.assertEqual(provider.get("API_KEY"), "two")
        self.assertEqual(lines[1], f"[pywatt-dev] INFO  secrets file {path} is valid again\n")
