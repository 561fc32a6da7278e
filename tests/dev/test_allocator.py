"""
C{pywatt dev} tunes glibc's allocator for streamed bodies (L{tune_allocator}), unless
the user tuned it or the C library is not glibc.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._dev._allocator import (
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    MMAP_THRESHOLD,
    TRIM_THRESHOLD,
    USER_SETTINGS,
    tune_allocator,
)


class _Libc:
    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.result


class TuneAllocatorTests(SynchronousTestCase):
    def test_sets_both_thresholds(self) -> None:
        libc = _Libc()
        self.assertTrue(tune_allocator(libc, environ={}))
        self.assertEqual(
            libc.calls, [(M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
        )
        # (glibc's own parameter numbers, and above a 4 MiB chunk's frame)
        self.assertEqual((M_TRIM_THRESHOLD, M_MMAP_THRESHOLD), (-1, -3))
        self.assertGreater(MMAP_THRESHOLD, 4 * 1024 * 1024 * 4 // 3)

    def test_user_settings_stand(self) -> None:
        for name in USER_SETTINGS:
            libc = _Libc()
            self.assertFalse(tune_allocator(libc, environ={name: "1"}), name)
            self.assertEqual(libc.calls, [], name)

    def test_no_mallopt(self) -> None:
        self.assertFalse(tune_allocator(object(), environ={}))

    def test_mallopt_refuses(self) -> None:
        self.assertFalse(tune_allocator(_Libc(result=0), environ={}))

    def test_fewer_page_faults(self) -> None:
        """
        On glibc, freeing and making again buffers of a few hundred KiB (what a
        streamed body does) no longer faults in fresh pages each time.
        """
        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            raise self.skipTest("glibc only")
        script = textwrap.dedent(
            """
            import resource, sys
            from pywatt_twisted._dev._allocator import tune_allocator
            if sys.argv[1] == "tuned":
                assert tune_allocator(environ={})
            keep = []
            def burst():
                # (a window of frames, then a larger joined send buffer, all freed)
                held = [bytes(350_000) for _ in range(8)]
                held.append(b"".join(held))
                return len(held)
            burst()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(50):
                burst()
            print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            """
        )
        env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
        faults = {}
        for mode in ("default", "tuned"):
            out = subprocess.run(
                [sys.executable, "-c", script, mode],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            faults[mode] = int(out)
        # 50 bursts of ~5.6 MB: ~68,000 pages if each is faulted in afresh.
        self.assertLess(faults["tuned"], 2000, faults)
        self.assertGreater(faults["default"], 10 * faults["tuned"] + 1000, faults)
