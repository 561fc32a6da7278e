# -*- test-case-name: tests.dev.test_dev_cli, tests.dev.test_crash_loop -*-
"""
Where C{pywatt dev} tells a person what happens: the L{Console}, and the reading of a
module's stderr lines (JSON log lines or anything else) for it. Re-exported from
L{pywatt_twisted._dev.supervisor}.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


class Console:
    """
    Where C{pywatt dev} tells a person what happens (stdout of the dev command).
    """

    def __init__(self, write: Callable[[str], object] | None = None) -> None:
        self._write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
        #: called with C{(source, text, level)} for everything said (the dashboard)
        self.listeners: list[Callable[[str, str, str], object]] = []

    def say(self, source: str, text: str, level: str = "info") -> None:
        label = level.upper().ljust(5)
        for line in text.splitlines() or [""]:
            self._write(f"[{source}] {label} {line}\n")
        for listener in self.listeners:
            listener(source, text, level)

    def module_log(self, module_id: str, raw: bytes) -> None:
        """
        Show one stderr line of a module: JSON log lines in a readable form, anything else
        as it is.
        """
        parsed = parse_module_log(raw)
        if parsed is not None:
            self.say(module_id, parsed[1], parsed[0])


def parse_module_log(raw: bytes) -> tuple[str, str] | None:
    """
    One stderr line of a module as C{(level, text)}: a JSON log line's level and its
    message (followed by its traceback, if any); anything else as level C{log}, as it is.
    C{None} for an empty line.
    """
    text = raw.decode("utf-8", "replace").rstrip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return ("log", text)
    if not isinstance(record, dict):
        return ("log", text)
    message = str(record.get("message", ""))
    if record.get("traceback"):
        message += "\n" + str(record["traceback"])
    return (str(record.get("level", "info")), message)
