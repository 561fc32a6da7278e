# -*- test-case-name: tests.dev.test_crash_loop -*-
"""
Crash-loop accounting for one supervised module: the restart backoff and the crash
window (L{RestartPolicy}), and the errors of each failed run, so that a start that
keeps failing the same way is shown once (L{RunErrors}).
"""

from __future__ import annotations

from collections.abc import Callable

#: log levels whose lines (with any line carrying a traceback) a failed start repeats at
#: each restart: the console collapses them
_ERROR_LEVELS = frozenset({"error", "critical"})


class RestartPolicy:
    """
    When to restart a module that exited on its own: after a delay doubling from
    C{restart_initial} up to C{restart_max} (reset after a stable run of 30 seconds),
    unless it failed C{crash_limit} times within C{crash_window} seconds (a crash loop).
    """

    def __init__(
        self, restart_initial: float, restart_max: float, crash_limit: int, crash_window: float
    ) -> None:
        self.restart_initial = restart_initial
        self.restart_max = restart_max
        self.crash_limit = crash_limit
        self.crash_window = crash_window
        self._restart_delay = restart_initial
        # When the recent unwanted exits happened.
        self._failures: list[float] = []

    def reset(self) -> None:
        """
        Forget the recent failures (the module is started on purpose).
        """
        self._failures = []

    def exited(self, now: float, started_at: float) -> float | None:
        """
        The module started at C{started_at} exited on its own at C{now}: the delay before
        restarting it, or C{None} when this exit makes a crash loop (the failures are then
        forgotten: it is not restarted until started again).
        """
        if now - started_at > 30:
            self._restart_delay = self.restart_initial
        if now - started_at > self.crash_window:
            # It ran for a while: this is not a crash loop.
            self._failures = []
        self._failures = [t for t in self._failures if now - t <= self.crash_window]
        self._failures.append(now)
        if len(self._failures) >= self.crash_limit:
            self._failures = []
            return None
        delay = self._restart_delay
        self._restart_delay = min(self._restart_delay * 2, self.restart_max)
        return delay

    def crashed_message(self, module_id: str, error: str) -> str:
        """
        What the console says when C{module_id} is in a crash loop, ending with C{error}.
        """
        return (
            f"{module_id} crashed: it failed {self.crash_limit} times within "
            f"{self.crash_window:g} s, so it is not restarted.\n"
            f"error: {error}\n"
            "hint: fix the error, then restart pywatt dev (Ctrl-C stops it); the limit is "
            f"--crash-limit={self.crash_limit} --crash-window={self.crash_window:g}"
        )


class RunErrors:
    """
    The error lines a module logs before it announces, run after run: a line the
    previous failed run logged too is not shown again; the run's end shows one "same
    error as before" line instead.

    @ivar last_error: the first line of the last error of the last failed run, or
        C{None}.
    """

    def __init__(self) -> None:
        self.last_error: str | None = None
        # Error lines of the current run, those of the previous failed run, and how many
        # runs in a row repeated them.
        self._run_errors: list[str] = []
        self._run_error: str | None = None
        self._run_repeated = False
        self._previous_errors: frozenset[str] = frozenset()
        self._repeats = 0

    def new_run(self) -> None:
        """
        A new process starts.
        """
        self._run_errors = []
        self._run_error = None
        self._run_repeated = False

    def hide(self, level: str, text: str) -> bool:
        """
        Note one log line of the current run (before it announced); C{True} when it
        repeats an error of the previous failed run and must not be shown.
        """
        if not (level in _ERROR_LEVELS or "\nTraceback (most recent call last)" in text):
            return False
        self._run_errors.append(text)
        if level in _ERROR_LEVELS:
            self._run_error = text.splitlines()[0]
        if text in self._previous_errors:
            self._run_repeated = True
            return True
        return False

    def run_failed(self, say: Callable[[str], object]) -> None:
        """
        At the end of a failed run: remember its errors, and C{say} once that they repeat
        those of the previous run.
        """
        errors, self._run_errors = self._run_errors, []
        if not errors:
            self._previous_errors = frozenset()
            self._repeats = 0
            return
        self.last_error = self._run_error or errors[-1].splitlines()[0]
        if self._run_repeated:
            self._repeats += 1
            say(f"same error as before, x{self._repeats}")
        else:
            self._repeats = 1
        self._previous_errors = frozenset(errors)
