# -*- test-case-name: tests.runtime.test_secrets -*-
"""
L{SecretClient}: fetches secrets from the orchestrator, correlated by name, and caches
them.

Requests go out as C{get_secret} through a C{send} callable (whichever transport is up);
replies are C{secret} messages that the dispatcher hands to L{SecretClient.secret_received},
with any number of other messages in between. Several waiters for one name share one
request. Every request has a timeout that fails its waiters with an error naming the
secret. Every value received is registered with the redactor before anything else sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted import tracing
from pywatt_twisted._runtime.correlation import CorrelationTable
from pywatt_twisted._runtime.redaction import Redactor, default_redactor
from pywatt_twisted._runtime.secret import Secret
from pywatt_twisted.errors import SecretError
from pywatt_twisted.wire.messages import GetSecret, SecretMessage

CACHE_FIRST = "cache-first"
FORCE_REMOTE = "force-remote"
DEFAULT_SECRET_TIMEOUT = 30.0


class SecretClient:
    """
    Fetch, cache and correlate secrets.

    @ivar timeout: seconds to wait for a C{secret} reply.
    """

    log = Logger()

    def __init__(
        self,
        send: Callable[[Any], object],
        clock: IReactorTime,
        timeout: float = DEFAULT_SECRET_TIMEOUT,
        redactor: Redactor = default_redactor,
    ) -> None:
        self._send = send
        self._clock = clock
        self.timeout = timeout
        self._redactor = redactor
        self._cache: dict[str, Secret] = {}
        # name -> the callers waiting for it: they share one request
        self._pending: CorrelationTable[str] = CorrelationTable(clock, timeout_error=SecretError)
        self._used: set[str] = set()
        # name -> new value held back until its whole rotation is in (see refresh)
        self._staged: dict[str, Secret | None] = {}

    # -- cache ---------------------------------------------------------------------------

    def seed(self, values: Mapping[str, str]) -> None:
        """
        Put values the orchestrator already gave (the init blob's C{env}) in the cache.
        """
        for name, value in values.items():
            self._store(Secret(name, value))

    def cached(self, name: str) -> Secret:
        """
        The cached value of C{name}.

        @raise SecretError: if it was never fetched.
        """
        self._used.add(name)
        try:
            return self._cache[name]
        except KeyError:
            raise SecretError(
                f"secret {name!r} was never fetched; list it in @pywatt_module(secrets=[...]) "
                "or call state.get_secret(name) first"
            ) from None

    def known(self) -> frozenset[str]:
        """
        Names this module holds or asked for.
        """
        return frozenset(self._cache) | frozenset(self._used)

    def _store(self, secret: Secret) -> None:
        self._redactor.add(secret)
        self._cache[secret.name] = secret

    # -- fetching --------------------------------------------------------------------------

    def get_secret(self, name: str, mode: str = CACHE_FIRST) -> Deferred[Secret]:
        """
        Fetch C{name}: answered from the cache with C{mode="cache-first"} when present,
        otherwise (or with C{mode="force-remote"}) by a C{get_secret} request.

        @return: a Deferred firing with a L{Secret}, or failing with L{SecretError} on
            timeout.
        """
        if mode not in (CACHE_FIRST, FORCE_REMOTE):
            raise ValueError(f"mode must be {CACHE_FIRST!r} or {FORCE_REMOTE!r}, got {mode!r}")
        self._used.add(name)
        if mode == CACHE_FIRST and name in self._cache:
            from twisted.internet.defer import succeed

            return succeed(self._cache[name])
        if tracing.switch.on:
            # tracing: a fetch from the orchestrator (the name only, never the value)
            span = tracing.internal_span("get_secret", **{"pywatt.secret.name": name})
            return tracing.traced(span, self._request(name))
        return self._request(name)

    def _request(self, name: str) -> Deferred[Secret]:
        d, first = self._pending.join(
            name,
            self.timeout,
            f"no reply for secret {name!r} within {self.timeout:g} s; does the "
            "orchestrator know this secret?",
        )
        if first:
            try:
                self._send(GetSecret(name=name))
            except Exception as e:
                self._pending.fail(name, SecretError(f"could not request secret {name!r}: {e}"))
        return d

    def get_secrets(
        self, names: Iterable[str], mode: str = CACHE_FIRST
    ) -> Deferred[dict[str, Secret]]:
        """
        Fetch several secrets at once (requests go out together; replies may come in any
        order). Fails with one L{SecretError} naming every secret that did not arrive.
        """
        ordered = list(dict.fromkeys(names))
        ds = [self.get_secret(n, mode) for n in ordered]

        def collect(results: list[tuple[bool, Any]]) -> dict[str, Secret]:
            missing = [n for n, (ok, _) in zip(ordered, results, strict=True) if not ok]
            if missing:
                reasons = "; ".join(
                    str(r.value) for (ok, r) in results if not ok and isinstance(r, Failure)
                )
                raise SecretError(
                    f"secret(s) {', '.join(repr(m) for m in missing)} not received: {reasons}"
                )
            return {n: v for n, (_, v) in zip(ordered, results, strict=True)}

        return DeferredList(ds, consumeErrors=True).addCallback(collect)

    def secret_received(self, message: SecretMessage) -> None:
        """
        A C{secret} message arrived (solicited or not): update the cache and wake every
        waiter for that name.
        """
        secret = Secret(message.name, message.value, message.rotation_id)
        if message.name in self._staged:
            self._redactor.add(secret)
            self._staged[message.name] = secret
        else:
            self._store(secret)
        self._pending.resolve(message.name, secret)

    def cancel_all(self, reason: str) -> None:
        """
        Fail every outstanding request (the module is stopping).
        """
        self._pending.fail_all(
            lambda name, _: SecretError(f"secret {name!r} not received: {reason}")
        )

    @property
    def outstanding(self) -> frozenset[str]:
        """
        Names with a request in flight.
        """
        return frozenset(self._pending)

    # -- rotation --------------------------------------------------------------------------

    def refresh(self, names: Iterable[str]) -> Deferred[tuple[str, ...]]:
        """
        Re-fetch C{names} from the orchestrator. The new values are held back and swapped
        into the cache together once every one has arrived, so readers see either all old
        or all new values, never a half-rotated state. On failure the old values stay.
        Fires with the names refreshed.
        """
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            self._staged.setdefault(name, None)
        d = self.get_secrets(wanted, mode=FORCE_REMOTE)

        def swap(values: dict[str, Secret]) -> tuple[str, ...]:
            for name in wanted:
                staged = self._staged.pop(name, None)
                self._store(staged if staged is not None else values[name])
            return tuple(wanted)

        def discard(f: Failure) -> Failure:
            for name in wanted:
                staged = self._staged.pop(name, None)
                if staged is not None and name in self._cache:
                    # The value in use stays the redactor's current one; the value that
                    # arrived for nothing becomes history, not the other way round.
                    self._redactor.add(self._cache[name])
            return f

        return d.addCallbacks(swap, discard)
