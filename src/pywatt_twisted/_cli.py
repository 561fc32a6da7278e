"""
The C{pywatt} command: C{pywatt dev ...} (the embedded orchestrator), C{pywatt db ...}
(the schema tool) and C{pywatt new NAME} (a new module project). Each subcommand lives
with its layer and is imported only when used.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence

USAGE = """\
usage: pywatt <command> [options]
       pywatt --version

commands:
  dev     run modules under the embedded development orchestrator
  db      validate models, generate and apply database schemas
  new     create a ready project for one module (pywatt new NAME)

Run 'pywatt <command> --help' for a command's options.
"""

COMMANDS = ("dev", "db", "new")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Entry point of the C{pywatt} console script.

    @return: the process exit status (0 success, 1 failure, 2 bad usage).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    if args[0] in ("--version", "-V"):
        from pywatt_twisted import __version__

        sys.stdout.write(f"pywatt {__version__}\n")
        return 0
    command, rest = args[0], args[1:]
    if command == "dev":
        from pywatt_twisted._dev.cli import main as dev_main

        return dev_main(rest)
    if command == "db":
        from pywatt_twisted._dbcli import main as db_main

        return db_main(rest)
    if command == "new":
        from pywatt_twisted._scaffold import main as new_main

        return new_main(rest)
    close = difflib.get_close_matches(command, (*COMMANDS, "--version", "--help"), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    sys.stderr.write(f"pywatt: unknown command {command!r}{hint}\n\n{USAGE}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
