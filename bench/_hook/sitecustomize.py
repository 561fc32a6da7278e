"""
Start-up hook for the processes of C{bench messaging} (C{pywatt dev} and its two
module processes), on their C{PYTHONPATH} only when the bench asks for it:

  - C{BENCH_PROFILE_DIR=DIR}: C{SIGUSR1} starts C{cProfile} in the process, C{SIGUSR2}
    stops it and writes C{DIR/<role>-<pid>.prof} (C{role}: the module id, or C{dev}),
    so that only the measured window is profiled;
  - C{BENCH_COALESCE=0}: turn write coalescing off (L{FramedProtocol.coalesce}) to
    compare syscalls per message with it on and off;
  - C{BENCH_PUSH_EVERY=N}: set L{FramedProtocol.push_every} (a large read dispatched
    N frames at a time, each slice's writes sent before the next; C{0}: off) to compare
    the rates with and without it (C{bench messaging} passes it on from its own
    environment).

Nothing here is imported by the package or its tests.
"""

import os

if os.environ.get("BENCH_COALESCE") == "0":
    from pywatt_twisted._transport.framed import FramedProtocol

    FramedProtocol.coalesce = False

if os.environ.get("BENCH_PUSH_EVERY"):
    from pywatt_twisted._transport.framed import FramedProtocol

    FramedProtocol.push_every = int(os.environ["BENCH_PUSH_EVERY"])

_directory = os.environ.get("BENCH_PROFILE_DIR")
if _directory:
    import cProfile
    import signal

    _role = os.environ.get("PYWATT_MODULE_ID") or "dev"
    import time

    # CPU time, not wall time: the machine is shared, a descheduled process is not slow
    _profiler = cProfile.Profile(time.process_time)

    def _start(signum: int, frame: object) -> None:
        _profiler.enable()

    def _dump(signum: int, frame: object) -> None:
        _profiler.disable()
        _profiler.dump_stats(os.path.join(_directory, f"{_role}-{os.getpid()}.prof"))

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)
