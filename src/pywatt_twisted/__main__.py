"""
C{python -m pywatt_twisted --module=mymod}: the same as C{twistd -n pywatt --module=mymod}
without twistd.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from twisted.python import usage

    from pywatt_twisted._tap import Options

    options = Options()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        sys.stderr.write(f"{options}\npython -m pywatt_twisted: {e}\n")
        return 2

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from pywatt_twisted._runtime.process import build_process_service

    service = build_process_service(
        options["definition"], level=options["level"], config=options["config"], reactor=reactor
    )
    globalLogBeginner.beginLoggingTo([service.observer], redirectStandardIO=True)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()  # type: ignore[attr-defined]
    return service.module.exit_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
