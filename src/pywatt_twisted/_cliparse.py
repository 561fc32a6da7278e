# -*- test-case-name: tests.test_cli -*-
"""
What every C{pywatt} command line shares: help that shows each option's default, and an
unknown option answered with the closest known one.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from typing import Any


class HelpFormatter(argparse.HelpFormatter):
    """
    Adds C{(default: ...)} to the help of every option that has a default worth showing
    (not C{None}, not C{False}, not already mentioned in its help).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is False
            or default is argparse.SUPPRESS
            or "%(default)" in text
            or "default:" in text
            or not action.option_strings
        ):
            return action.help
        return f"{text} (default: %(default)s)"


def suggestion(unknown: str, known: Iterable[str]) -> str | None:
    """
    The known option closest to C{unknown} (C{--name} or C{--name=value}), or C{None}.
    """
    name = unknown.split("=", 1)[0]
    matches = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_options_message(extras: Sequence[str], known: Iterable[str]) -> str:
    """
    The error for unrecognized arguments, with a "did you mean" for each that is close
    to a known option.
    """
    known = list(known)
    parts = []
    for extra in extras:
        close = suggestion(extra, known) if extra.startswith("-") else None
        parts.append(f"{extra} (did you mean {close}?)" if close else extra)
    return "unrecognized arguments: " + " ".join(parts)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for action in parser._actions:
        found.extend(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_option_strings(sub))
    return found


class Parser(argparse.ArgumentParser):
    """
    An C{ArgumentParser} whose help shows defaults and whose unknown-option error
    suggests the closest known option (of this command or any of its subcommands).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> argparse.Namespace:
        known = _option_strings(self)
        given = list(sys.argv[1:] if args is None else args)
        # Unknown options first: a typo must not hide behind "--x is required".
        unknown = []
        for arg in given:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if name.startswith("--") and not any(k.startswith(name) for k in known):
                unknown.append(arg)
        if unknown:
            self.error(unknown_options_message(unknown, known))
        parsed, extras = self.parse_known_args(given, namespace)
        if extras:
            self.error(unknown_options_message(extras, known))
        return parsed


__all__ = ["HelpFormatter", "Parser", "suggestion", "unknown_options_message"]
