"""
The C{pywatt} command: C{--version}, and an unknown command answered with the closest.
"""

from __future__ import annotations

import contextlib
import io

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import __version__
from pywatt_twisted._cli import main
from pywatt_twisted._cliparse import suggestion, unknown_options_message


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


class CommandTests(SynchronousTestCase):
    def test_version(self) -> None:
        self.assertEqual(run("--version"), (0, f"pywatt {__version__}\n", ""))

    def test_unknown_command_suggests_the_closest(self) -> None:
        code, out, err = run("deb")
        self.assertEqual((code, out), (2, ""))
        self.assertTrue(err.startswith("pywatt: unknown command 'deb'; did you mean 'db'?\n"))

    def test_misspelled_version(self) -> None:
        code, _, err = run("--verison")
        self.assertEqual(code, 2)
        self.assertIn("did you mean '--version'?", err)

    def test_nothing_close(self) -> None:
        code, _, err = run("zzzzzz")
        self.assertEqual(code, 2)
        self.assertIn("pywatt: unknown command 'zzzzzz'\n", err)


class SuggestionTests(SynchronousTestCase):
    def test_closest_option(self) -> None:
        known = ["--heartbeat-interval", "--heartbeat-timeout", "--port"]
        self.assertEqual(suggestion("--hearbeat-timeout=3", known), "--heartbeat-timeout")
        self.assertIsNone(suggestion("--completely-different", known))
        self.assertEqual(
            unknown_options_message(["--prot", "extra"], known),
            "unrecognized arguments: --prot (did you mean --port?) extra",
        )
