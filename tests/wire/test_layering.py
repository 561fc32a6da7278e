"""
The wire layer is pure: importing it must not pull in Twisted (let alone a reactor).
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

PROGRAM = """
import sys
import pywatt_twisted.wire.codec, pywatt_twisted.wire.framing
import pywatt_twisted.wire.lines, pywatt_twisted.wire._registration, pywatt_twisted.wire._forward
print(",".join(sorted(m for m in sys.modules if m == "twisted" or m.startswith("twisted."))))
"""


class LayeringTests(SynchronousTestCase):
    def test_no_twisted_import(self) -> None:
        """
        A fresh interpreter importing every wire module has loaded no Twisted module.
        """
        result = subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
        )
        self.assertEqual(result.stdout.strip(), "")
