# -*- test-case-name: tests.web.test_health -*-
"""
L{HealthChecks}: the checks behind C{GET /health}: the databases and caches a module
uses, its required channels and the checks its author adds with
C{state.health_check(name, fn, required=False)}.

Each check is a callable: returning (directly, through a Deferred or a coroutine)
means healthy; raising, failing or not answering within C{timeout} seconds means not.
A result is kept for C{cache_for} seconds, so however often C{/health} is polled a
backend sees at most one check call per C{cache_for} seconds per check; a check that is
still running is not started again (a second poll waits for the same run).

The overall status: C{"failing"} when a required check fails, C{"degraded"} when only
optional ones do, C{"ok"} otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.wire._value import MutableValue

__all__ = [
    "DEFAULT_CACHE_FOR",
    "DEFAULT_CHECK_TIMEOUT",
    "DEGRADED",
    "FAILING",
    "OK",
    "UNKNOWN",
    "HealthCheck",
    "HealthChecks",
]

OK = "ok"
DEGRADED = "degraded"
FAILING = "failing"
#: A check that has not finished a first run yet (not counted in the overall status).
UNKNOWN = "unknown"

#: Seconds one check may take before it counts as failing.
DEFAULT_CHECK_TIMEOUT = 2.0
#: Seconds a check result is reused before the check runs again.
DEFAULT_CACHE_FOR = 5.0

#: The longest C{last_error} kept per check, in characters.
MAX_ERROR_LENGTH = 500


class CheckTimedOut(Exception):
    """
    A health check did not answer within its timeout.
    """


@define(eq=False, repr=False)
class HealthCheck(MutableValue):
    """
    One check and its last result.

    @ivar name: unique among the module's checks.
    @ivar fn: called with no argument; returning means healthy.
    @ivar required: a failure makes the module C{failing} (else C{degraded}).
    @ivar kind: C{"check"} (the author's), C{"database"}, C{"cache"} or C{"channel"}.
    @ivar status: L{OK}, L{FAILING} or L{UNKNOWN} (not run yet).
    @ivar latency: seconds the last run took (the timeout when it timed out).
    @ivar last_error: C{"Type: message"} of the last failure, kept after a recovery.
    @ivar checked_at: clock time the last run finished.
    """

    name: str
    fn: Callable[[], Any]
    required: bool = False
    kind: str = "check"
    status: str = UNKNOWN
    latency: float | None = None
    last_error: str | None = None
    checked_at: float | None = None
    failures: int = 0
    running: Deferred[None] | None = field(default=None, repr=False)

    def entry(self, now: float) -> dict[str, Any]:
        """
        The check's entry on C{/health}.
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "required": self.required,
            "status": self.status,
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 3),
            "last_error": self.last_error,
            "checked_seconds_ago": (
                None if self.checked_at is None else round(max(0.0, now - self.checked_at), 3)
            ),
        }


def _describe(failure: Failure) -> str:
    error = failure.value
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 3] + "..."
    return text


class HealthChecks:
    """
    The module's health checks (see the module docstring).

    @param clock: times the checks and their cache.
    @param timeout: seconds one check may take.
    @param cache_for: seconds a result is reused.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float = DEFAULT_CHECK_TIMEOUT,
        cache_for: float = DEFAULT_CACHE_FOR,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"the health check timeout must be positive, got {timeout!r}")
        if cache_for < 0:
            raise ValueError(f"the health check cache time must be >= 0, got {cache_for!r}")
        self.clock = clock
        self.timeout = timeout
        self.cache_for = cache_for
        self._checks: dict[str, HealthCheck] = {}

    def add(
        self, name: str, fn: Callable[[], Any], required: bool = False, kind: str = "check"
    ) -> HealthCheck:
        """
        Add a check.

        @raise ConfigurationError: C{name} is empty or taken, or C{fn} is not callable.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a health check needs a non-empty name, got {name!r}")
        if not callable(fn):
            raise ConfigurationError(
                f"health check {name!r} needs a callable (returning means healthy), got {fn!r}"
            )
        if name in self._checks:
            raise ConfigurationError(
                f"there is already a health check named {name!r}; give each check its own name"
            )
        check = HealthCheck(name=name, fn=fn, required=bool(required), kind=kind)
        self._checks[name] = check
        return check

    def free_name(self, base: str) -> str:
        """
        C{base}, or C{base#2}, C{base#3}... when taken (for checks named after a backend).
        """
        name, n = base, 1
        while name in self._checks:
            n += 1
            name = f"{base}#{n}"
        return name

    def remove(self, name: str) -> None:
        """
        Drop a check (nothing happens for an unknown name).
        """
        self._checks.pop(name, None)

    def __iter__(self) -> Iterator[HealthCheck]:
        return iter(list(self._checks.values()))

    def __len__(self) -> int:
        return len(self._checks)

    def __contains__(self, name: object) -> bool:
        return name in self._checks

    # -- running ------------------------------------------------------------------------------

    def refresh(self, only: Callable[[HealthCheck], bool] | None = None) -> Deferred[None]:
        """
        Run every check whose result is older than C{cache_for} (or never ran) and is
        not already running; fires once all of them (and any already running) have a
        result, which is at most C{timeout} seconds later. Never fails.

        @param only: run (and wait for) just the checks it returns true for.
        """
        now = self.clock.seconds()
        waits: list[Deferred[None]] = []
        for check in list(self._checks.values()):
            if only is not None and not only(check):
                continue
            if check.running is None and (
                check.checked_at is None or now - check.checked_at >= self.cache_for
            ):
                self._start(check)
            if check.running is not None:
                waits.append(_follow(check.running))
        if not waits:
            return succeed(None)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    def _start(self, check: HealthCheck) -> None:
        started = self.clock.seconds()
        done: Deferred[None] = Deferred()
        check.running = done
        try:
            work = maybeDeferred(check.fn)
        except BaseException:  # pragma: no cover - maybeDeferred catches
            work = Deferred()
            work.errback()

        def result(value: object) -> object:
            if inspect.iscoroutine(value):
                return ensureDeferred(value)
            return value

        work.addCallback(result)

        def expire() -> None:
            finish(Failure(CheckTimedOut(f"no answer within {self.timeout:g} s")))
            work.cancel()

        timer = self.clock.callLater(self.timeout, expire)

        def finish(outcome: object) -> None:
            if check.running is not done:
                return
            if timer.active():
                timer.cancel()
            check.running = None
            check.checked_at = self.clock.seconds()
            check.latency = max(0.0, check.checked_at - started)
            if isinstance(outcome, Failure):
                was = check.status
                check.status = FAILING
                check.failures += 1
                check.last_error = _describe(outcome)
                if was != FAILING:
                    self.log.warn(
                        "health check {name} ({kind}{required}) is failing: {error}",
                        name=check.name,
                        kind=check.kind,
                        required=", required" if check.required else "",
                        error=check.last_error,
                    )
            else:
                if check.status == FAILING:
                    self.log.info("health check {name} is ok again", name=check.name)
                check.status = OK
            done.callback(None)

        def settle(outcome: object) -> None:
            finish(outcome)

        work.addBoth(settle)

    # -- reading ------------------------------------------------------------------------------

    def status(self) -> str:
        """
        L{FAILING} if a required check fails, L{DEGRADED} if an optional one does, else
        L{OK} (checks that never ran count as passing).
        """
        failing = [c for c in self._checks.values() if c.status == FAILING]
        if any(c.required for c in failing):
            return FAILING
        if failing:
            return DEGRADED
        return OK

    def entries(self) -> list[dict[str, Any]]:
        """
        One C{/health} entry per check, in the order they were added.
        """
        now = self.clock.seconds()
        return [c.entry(now) for c in self._checks.values()]


def _follow(d: Deferred[None]) -> Deferred[None]:
    """
    A Deferred that fires when C{d} does, without taking its result.
    """
    follower: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        follower.callback(None)
        return result

    d.addBoth(fire)
    return follower
