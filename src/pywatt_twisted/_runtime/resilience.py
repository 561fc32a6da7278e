# -*- test-case-name: tests.runtime.test_resilience -*-
"""
Circuit breakers and retry policies for requests to a I{target}: another module (by id)
or a proxied service (by name). Nothing here sends anything; the caller asks the breaker
for permission, reports the outcome, and asks the policy whether and when to retry.

B{The breaker} (L{CircuitBreaker}) is an explicit state machine on an injected clock:

  - C{closed}: calls go through. It opens after C{failures} consecutive failures, or
    when at least C{min_calls} calls ended in the last C{window} seconds and at least
    C{error_rate} of them failed.
  - C{open}: calls fail at once with L{CircuitOpen} (nothing is sent). After C{reset}
    seconds it lets one probe through (C{half_open}).
  - C{half_open}: exactly one call (the probe) is on its way; the others fail with
    L{CircuitOpen}. The probe's success closes the breaker (and the reset delay goes
    back to C{reset}); its failure opens it again with the reset delay doubled, up to
    C{max_reset}. A probe that ends neither way (cancelled by its caller, or failed
    before reaching the target) frees the probe slot for the next call.

A I{failure} is an error of one of the C{failure_kinds} (by default C{timeout},
C{unavailable}, C{target_exited}): the target did not answer. Any other answer, errors
of the handler's own included (C{out_of_stock}), shows the target is alive and counts as
a success. The open -> half-open move happens when the clock passes the reset time (read
on the next call or the next look at the state), so an idle breaker holds no timer.

B{Retries} (L{RetryPolicy}): opt-in, per call or per target, for idempotent requests
only; exponential backoff with jitter; never past the request's deadline; never while
the breaker is open.

L{Breakers} keeps one breaker per target (bounded: past C{max_targets}, the least
recently used closed breaker is forgotten), with per-target policies, and reports them
to C{/health} and C{/metrics}.
"""

from __future__ import annotations

import enum
import random as _random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import field, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted.errors import CircuitOpen, RemoteError, Timeout, Unavailable
from pywatt_twisted.wire._value import Value

__all__ = [
    "DEFAULT_FAILURE_KINDS",
    "BreakerPolicy",
    "BreakerState",
    "Breakers",
    "CircuitBreaker",
    "RetryPolicy",
]

#: the error kinds that count as the target not answering
DEFAULT_FAILURE_KINDS = frozenset({"timeout", "unavailable", "target_exited"})


class BreakerState(enum.Enum):
    """
    The states of a L{CircuitBreaker}; the value is what C{/metrics} reports.
    """

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


#: the gauge value of each state (C{pywatt_circuit_state})
STATE_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

# The states as module globals for the per-request checks: a member read through its
# class (C{BreakerState.OPEN}) goes through the enum type's attribute hook on Python
# 3.11, about 1k instructions a read (issue 20).
_CLOSED = BreakerState.CLOSED
_HALF_OPEN = BreakerState.HALF_OPEN
_OPEN = BreakerState.OPEN


def _positive(instance: object, attribute: Any, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@frozen(eq=False, repr=False)
class BreakerPolicy(Value):
    """
    When a L{CircuitBreaker} opens and how long it stays open.

    @ivar failures: consecutive failures that open it.
    @ivar error_rate: the share of failed calls (0 < rate <= 1) over C{window} that
        opens it, once at least C{min_calls} calls ended in the window.
    @ivar min_calls: calls the window needs before C{error_rate} applies.
    @ivar window: seconds the error rate is measured over.
    @ivar reset: seconds it stays open before a probe.
    @ivar max_reset: the longest reset delay (it doubles while probes fail).
    @ivar failure_kinds: the L{RemoteError} kinds that count as failures.
    """

    failures: int = field(default=5, validator=_positive)
    error_rate: float = field(default=0.5, validator=_positive)
    min_calls: int = field(default=20, validator=_positive)
    window: float = field(default=10.0, validator=_positive)
    reset: float = field(default=10.0, validator=_positive)
    max_reset: float = field(default=60.0, validator=_positive)
    failure_kinds: frozenset[str] = field(default=DEFAULT_FAILURE_KINDS, converter=frozenset)

    def __attrs_post_init__(self) -> None:
        if self.error_rate > 1:
            raise ValueError(f"error_rate must be at most 1, got {self.error_rate!r}")
        if self.max_reset < self.reset:
            raise ValueError(
                f"max_reset ({self.max_reset!r}) must be at least reset ({self.reset!r})"
            )

    def is_failure(self, error: BaseException) -> bool:
        """
        Whether C{error} (the outcome of a call) counts against the target.
        """
        return isinstance(error, RemoteError) and error.kind in self.failure_kinds


#: buckets the error-rate window is cut into (memory per breaker is bounded by it)
WINDOW_BUCKETS = 10


class CircuitBreaker:
    """
    The breaker of one target (see the module docstring).

    Use: C{permit = breaker.acquire()} before sending (raises L{CircuitOpen} instead of
    letting the call through), then exactly one of C{breaker.succeeded(permit)},
    C{breaker.failed(permit)} or C{breaker.released(permit)} when the call ends.
    L{CircuitBreaker.record} picks the right one for an outcome.

    @param target: the module id or service name, for errors and metrics.
    @param on_change: called with C{(breaker, old_state, new_state)} on each transition.
    @ivar transitions: how many times it entered each state.
    @ivar rejected: calls failed with L{CircuitOpen}.
    """

    log = Logger()

    def __init__(
        self,
        target: str,
        clock: IReactorTime,
        policy: BreakerPolicy | None = None,
        on_change: Callable[[CircuitBreaker, BreakerState, BreakerState], object] | None = None,
    ) -> None:
        self.target = target
        self.clock = clock
        self.policy = policy if policy is not None else BreakerPolicy()
        self._on_change = on_change
        self._state = _CLOSED
        self._generation = 0
        self._consecutive = 0
        #: [bucket start, calls, failures], oldest first, at most WINDOW_BUCKETS + 1
        self._buckets: deque[list[float]] = deque()
        self.reset_delay = self.policy.reset
        self.opened_at: float | None = None
        self._probe_out = False
        self.transitions: dict[str, int] = {s.value: 0 for s in BreakerState}
        self.rejected = 0
        self.last_failure: str | None = None

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """
        The state now (an open breaker whose reset time passed is half-open).
        """
        if self._state is _OPEN:
            assert self.opened_at is not None
            if self.clock.seconds() >= self.opened_at + self.reset_delay:
                self._enter(_HALF_OPEN)
        return self._state

    def retry_after(self) -> float | None:
        """
        Seconds until an open breaker lets a probe through (C{None} unless open).
        """
        if self.state is not _OPEN:
            return None
        assert self.opened_at is not None
        return max(0.0, self.opened_at + self.reset_delay - self.clock.seconds())

    def _enter(self, state: BreakerState) -> None:
        old, self._state = self._state, state
        self._generation += 1
        self.transitions[state.value] += 1
        if state is _OPEN:
            self.opened_at = self.clock.seconds()
        elif state is _HALF_OPEN:
            self._probe_out = False
        elif state is _CLOSED:
            self._consecutive = 0
            self._buckets.clear()
            self.reset_delay = self.policy.reset
            self.opened_at = None
        self.log.info(
            "circuit breaker of {target}: {old} -> {new}{detail}",
            target=self.target,
            old=old.value,
            new=state.value,
            detail=(
                f" for {self.reset_delay:g} s (last failure: {self.last_failure})"
                if state is _OPEN
                else ""
            ),
        )
        if self._on_change is not None:
            self._on_change(self, old, state)

    # -- calls ----------------------------------------------------------------------------

    def acquire(self) -> tuple[int, bool]:
        """
        Permission for one call: a permit to hand back when it ends.

        @raise CircuitOpen: while open, or half-open with the probe already out.
        """
        state = self.state
        if state is _CLOSED:
            return (self._generation, False)
        if state is _HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return (self._generation, True)
        self.rejected += 1
        after = self.retry_after()
        when = (
            f"a probe goes through in {after:.3g} s"
            if after is not None
            else "a probe request is on its way"
        )
        raise CircuitOpen(
            f"the circuit breaker of {self.target!r} is {state.value}: {when} "
            f"(last failure: {self.last_failure}); the request was not sent",
            target=self.target,
            retry_after=after,
        )

    def succeeded(self, permit: tuple[int, bool], now: float | None = None) -> None:
        """
        The call of C{permit} got an answer from the target (C{now}: the breaker's
        clock's time, when the caller just read it).
        """
        generation, probe = permit
        if generation != self._generation:
            return  # from a state the breaker left already
        if probe:
            self._enter(_CLOSED)
            return
        if self._state is _CLOSED:
            self._consecutive = 0
            self._tally(False, now)  # (the window's sums only matter after a failure)

    def failed(self, permit: tuple[int, bool], reason: str = "failure") -> None:
        """
        The call of C{permit} failed in a way that counts against the target.
        """
        generation, probe = permit
        self.last_failure = reason
        if generation != self._generation:
            return
        if probe:
            self.reset_delay = min(self.reset_delay * 2, self.policy.max_reset)
            self._enter(_OPEN)
            return
        if self._state is not _CLOSED:
            return
        self._consecutive += 1
        calls, failures = self._count(True)
        policy = self.policy
        if self._consecutive >= policy.failures or (
            calls >= policy.min_calls and failures >= policy.error_rate * calls
        ):
            self.reset_delay = policy.reset
            self._enter(_OPEN)

    def released(self, permit: tuple[int, bool]) -> None:
        """
        The call of C{permit} ended without telling anything about the target
        (cancelled, or not sent): a probe's slot goes to the next call.
        """
        generation, probe = permit
        if probe and generation == self._generation:
            self._probe_out = False

    def record(self, permit: tuple[int, bool], error: BaseException | None) -> None:
        """
        Report the outcome of the call of C{permit}: C{None} for a reply, else the
        error it failed with (judged by L{BreakerPolicy.is_failure}; an error that is
        not a L{RemoteError} (a channel that could not write, a cancellation) releases
        the permit).
        """
        if error is None:
            self.succeeded(permit)
        elif self.policy.is_failure(error):
            self.failed(permit, f"{getattr(error, 'kind', type(error).__name__)}: {error}")
        elif isinstance(error, RemoteError):
            self.succeeded(permit)
        else:
            self.released(permit)

    def _tally(self, failed: bool, now: float | None = None) -> float:
        """
        Count one ended call in the window (its bucket), at C{now} (read from the
        clock when not given); the time now.
        """
        if now is None:
            now = self.clock.seconds()
        buckets = self._buckets
        if buckets:
            bucket = buckets[-1]
            width = self.policy.window / WINDOW_BUCKETS
            if now >= bucket[0] + width:
                # A new bucket (the oldest ones leave the window).
                while buckets and buckets[0][0] <= now - self.policy.window - width:
                    buckets.popleft()
                bucket = [now, 0, 0]
                buckets.append(bucket)
        else:
            bucket = [now, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        if failed:
            bucket[2] += 1
        return now

    def _count(self, failed: bool) -> tuple[int, int]:
        """
        Count one ended call in the window; the window's C{(calls, failures)}.
        """
        now = self._tally(failed)
        width = self.policy.window / WINDOW_BUCKETS
        buckets = self._buckets
        while buckets and buckets[0][0] <= now - self.policy.window - width:
            buckets.popleft()
        calls = failures = 0
        since = now - self.policy.window
        for start, c, f in buckets:
            if start + width > since:
                calls += int(c)
                failures += int(f)
        return calls, failures

    def snapshot(self) -> Mapping[str, object]:
        """
        What C{/health} and C{state.breakers} show.
        """
        state = self.state
        return {
            "state": state.value,
            "consecutive_failures": self._consecutive,
            "reset_delay": self.reset_delay,
            "retry_after": self.retry_after(),
            "rejected": self.rejected,
            "opened": self.transitions[BreakerState.OPEN.value],
            "last_failure": self.last_failure,
        }


class Breakers:
    """
    One L{CircuitBreaker} per target, created on first use with the target's policy.

    @param clock: the breakers' clock.
    @param policy: the policy of targets without one of their own.
    @param max_targets: breakers kept; past it the least recently used closed one is
        forgotten (an open or half-open one is never forgotten, so a failing target
        cannot be reset by calling many others).
    """

    def __init__(
        self,
        clock: IReactorTime,
        policy: BreakerPolicy | None = None,
        max_targets: int = 1024,
    ) -> None:
        self.clock = clock
        self.policy = policy if policy is not None else BreakerPolicy()
        self.policies: dict[str, BreakerPolicy] = {}
        self.max_targets = max_targets
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()
        #: transitions of forgotten breakers stay counted
        self.forgotten = 0

    def set_policy(self, target: str, policy: BreakerPolicy) -> None:
        """
        Use C{policy} for C{target} from now on (its breaker starts over, closed).
        """
        self.policies[target] = policy
        self._breakers.pop(target, None)

    def get(self, target: str) -> CircuitBreaker:
        """
        The breaker of C{target} (made closed on first use).
        """
        breaker = self._breakers.get(target)
        if breaker is not None:
            self._breakers.move_to_end(target)
            return breaker
        breaker = CircuitBreaker(target, self.clock, self.policies.get(target, self.policy))
        self._breakers[target] = breaker
        if len(self._breakers) > self.max_targets:
            for name, old in self._breakers.items():
                if old.state is _CLOSED and name != target:
                    del self._breakers[name]
                    self.forgotten += 1
                    break
        return breaker

    def __iter__(self) -> Any:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def snapshot(self) -> dict[str, Mapping[str, object]]:
        """
        Every breaker's L{CircuitBreaker.snapshot}, by target.
        """
        return {name: b.snapshot() for name, b in list(self._breakers.items())}

    def collect(self) -> list[Any]:
        """
        The metric families (C{pywatt_circuit_state}, C{pywatt_circuit_transitions},
        C{pywatt_circuit_rejected}) for L{ModuleMetrics.add_collector}.
        """
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = GaugeMetricFamily(
            "pywatt_circuit_state",
            "Circuit breaker state per target (0 closed, 1 half-open, 2 open).",
            labels=["target"],
        )
        transitions = CounterMetricFamily(
            "pywatt_circuit_transitions",
            "Circuit breaker transitions per target and new state.",
            labels=["target", "state"],
        )
        rejected = CounterMetricFamily(
            "pywatt_circuit_rejected",
            "Requests failed at once with CircuitOpen, per target.",
            labels=["target"],
        )
        for name, breaker in list(self._breakers.items()):
            state.add_metric([name], STATE_GAUGE[breaker.state])
            for to, count in breaker.transitions.items():
                transitions.add_metric([name, to], count)
            rejected.add_metric([name], breaker.rejected)
        return [state, transitions, rejected]


def _error_types(value: Iterable[type[BaseException]]) -> tuple[type[BaseException], ...]:
    types = tuple(value)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"RetryPolicy(on=...) takes exception classes, got {t!r}")
    return types


@frozen(eq=False, repr=False)
class RetryPolicy(Value):
    """
    How an idempotent request is retried.

    @ivar attempts: attempts in all, the first one included (at least 1).
    @ivar backoff: seconds before the first retry.
    @ivar multiplier: the factor between two successive delays.
    @ivar max_backoff: the longest delay.
    @ivar jitter: each delay is drawn uniformly from C{[d * (1 - jitter), d]}.
    @ivar on: the errors that are retried (L{Timeout} and L{Unavailable} by default).
    @ivar attempt_timeout: seconds one attempt may wait for its reply; by default the
        time left to the deadline shared evenly by the attempts left, so a timed-out
        attempt leaves time for the next one.
    """

    attempts: int = field(default=3, validator=_positive)
    backoff: float = field(default=0.1, validator=_positive)
    multiplier: float = field(default=2.0, validator=_positive)
    max_backoff: float = field(default=5.0, validator=_positive)
    jitter: float = 0.5
    on: tuple[type[BaseException], ...] = field(
        default=(Timeout, Unavailable), converter=_error_types
    )
    attempt_timeout: float | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError(f"attempt_timeout must be positive, got {self.attempt_timeout!r}")

    def retries(self, error: BaseException) -> bool:
        """
        Whether C{error} is one this policy retries.
        """
        return isinstance(error, self.on)

    def delay(self, retry: int, random: Callable[[], float] = _random.random) -> float:
        """
        Seconds to wait before retry number C{retry} (1 for the first retry).
        """
        base = min(self.backoff * self.multiplier ** (retry - 1), self.max_backoff)
        return base * (1 - self.jitter * random())

    def timeout_for(self, remaining: float, attempts_left: int) -> float:
        """
        Seconds the next attempt may wait, out of the C{remaining} seconds to the
        deadline with C{attempts_left} attempts (this one included) to go.
        """
        if self.attempt_timeout is not None:
            return min(self.attempt_timeout, remaining)
        return remaining / max(1, attempts_left)
