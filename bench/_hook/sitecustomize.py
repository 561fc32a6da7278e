"""
Start-up hook for the processes of C{bench messaging} (C{pywatt dev} and its two
module processes), on their C{PYTHONPATH} only when the bench asks for it:

  - C{BENCH_PROFILE_DIR=DIR}: run the whole process under C{cProfile} and write
    C{DIR/<role>-<pid>.prof} at exit (C{role}: the module id, or C{dev});
  - C{BENCH_COALESCE=0}: turn write coalescing off (L{FramedProtocol.coalesce}) to
    compare syscalls per message with it on and off.

Nothing here is imported by the package or its tests.
"""

import os

if os.environ.get("BENCH_COALESCE") == "0":
    from pywatt_twisted.transport.framed import FramedProtocol

    FramedProtocol.coalesce = False

_directory = os.environ.get("BENCH_PROFILE_DIR")
if _directory:
    import atexit
    import cProfile

    _role = os.environ.get("PYWATT_MODULE_ID") or "dev"
    _profiler = cProfile.Profile()

    def _dump() -> None:
        _profiler.disable()
        _profiler.dump_stats(os.path.join(_directory, f"{_role}-{os.getpid()}.prof"))

    atexit.register(_dump)
    _profiler.enable()
