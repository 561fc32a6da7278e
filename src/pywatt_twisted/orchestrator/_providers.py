# -*- test-case-name: tests.orchestrator.test_providers -*-
"""
Secret providers: where secrets come from when there is no real orchestrator. They back
C{pywatt dev} and L{pywatt_twisted.testing.FakeOrchestrator}.

Every provider implements L{ISecretProvider}. A provider whose values can change (memory,
file, chained) tells its subscribers which names changed; the dev orchestrator turns that
into a C{rotated} notification for the modules that use them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Interface, implementer

from pywatt_twisted.errors import ConfigurationError

ChangeCallback = Callable[[frozenset[str]], object]

ENV_PREFIX = "PYWATT_SECRET_"


class ISecretProvider(Interface):
    """
    A source of secret values.
    """

    def get(name: str) -> str | None:
        """
        The current value of C{name}, or C{None} when this provider does not know it.
        """

    def names() -> frozenset[str]:
        """
        Every name this provider knows now.
        """

    def subscribe(callback: ChangeCallback) -> Callable[[], None]:
        """
        Call C{callback(names)} whenever values change (added, changed or removed names).
        Returns a function that unsubscribes.
        """


class _Subscribers:
    def __init__(self) -> None:
        self._callbacks: list[ChangeCallback] = []

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def notify(self, names: Iterable[str]) -> None:
        changed = frozenset(names)
        if not changed:
            return
        for callback in list(self._callbacks):
            try:
                callback(changed)
            except Exception:
                Logger().failure("secret change subscriber {cb} failed", cb=callback)


def _diff(old: Mapping[str, str], new: Mapping[str, str]) -> set[str]:
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}


class _HeldValues:
    """
    The part of L{ISecretProvider} shared by the providers that hold their values in a
    dict and notify through L{_Subscribers}.
    """

    _values: dict[str, str]
    _subscribers: _Subscribers

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._values)

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        return self._subscribers.subscribe(callback)


@implementer(ISecretProvider)
class MemorySecretProvider(_HeldValues):
    """
    Secrets held in memory; the public test double. L{set} and L{update} notify
    subscribers, so they act as a rotation.
    """

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = dict(values or {})
        self._subscribers = _Subscribers()

    def set(self, name: str, value: str) -> None:
        self.update({name: value})

    def update(self, values: Mapping[str, str]) -> frozenset[str]:
        """
        Set several values at once; returns (and notifies) the names that changed.
        """
        new = {**self._values, **values}
        changed = _diff(self._values, new)
        self._values = new
        self._subscribers.notify(changed)
        return frozenset(changed)

    def remove(self, name: str) -> None:
        if self._values.pop(name, None) is not None:
            self._subscribers.notify({name})


@implementer(ISecretProvider)
class EnvironmentSecretProvider:
    """
    Secrets from C{PYWATT_SECRET_<NAME>} environment variables (read at each L{get}).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> None:
        self._environ = environ
        self.prefix = prefix

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def get(self, name: str) -> str | None:
        if not name:
            return None
        return self._env().get(self.prefix + name)

    def names(self) -> frozenset[str]:
        return frozenset(
            k[len(self.prefix) :]
            for k in self._env()
            if k.startswith(self.prefix) and k != self.prefix
        )

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        return lambda: None


def read_secrets_file(path: str) -> dict[str, str]:
    """
    Read a JSON object of secret names to string values.

    @raise ConfigurationError: when the file is missing, not JSON, or not an object of
        strings (the message names the file and the offending key, never a value).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigurationError(f"secrets file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ConfigurationError(
            f"secrets file {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"secrets file {path} must hold a JSON object of names to strings, "
            f"got {type(data).__name__}"
        )
    result = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigurationError(
                f"secrets file {path}: the value of {key!r} must be a string, "
                f"got {type(value).__name__}"
            )
        result[key] = value
    return result


@implementer(ISecretProvider)
class FileSecretProvider(_HeldValues):
    """
    Secrets from a JSON file (an object of names to strings), re-read when it changes.

    L{start} polls the file every C{interval} seconds on C{clock}; a change becomes a
    notification of the names whose values changed. A file that becomes invalid is
    reported once (to C{report}, else to the log) and ignored: the last good values
    stay until a valid edit.

    @ivar problem: what is wrong with the file now (it names the file, and for a JSON
        error the line and column), or C{None} while it is valid.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        interval: float = 1.0,
        report: Callable[[str, str], object] | None = None,
    ) -> None:
        """
        @param report: called with C{(level, text)}, one line of text, when an edit makes
            the file invalid (C{error}) and when it is valid again (C{info}); by default
            these go to the log.
        """
        self.path = path
        self._report = report
        self.problem: str | None = None
        self._clock = clock
        self.interval = interval
        self._values = read_secrets_file(path)
        self._stamp = self._file_stamp()
        self._subscribers = _Subscribers()
        self._loop: LoopingCall | None = None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        # Nanosecond mtime, size and inode: an editor's atomic replace (new inode) or a
        # same-size edit within one second are both seen.
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> frozenset[str]:
        """
        Re-read the file now; notify and return the names that changed.
        """
        try:
            new = read_secrets_file(self.path)
        except ConfigurationError as e:
            self.problem = str(e)
            if self._report is not None:
                self._report("error", f"{e}; keeping the previous secrets until it is fixed")
            else:
                self.log.error("keeping the previous secrets: {error}", error=str(e))
            return frozenset()
        if self.problem is not None:
            self.problem = None
            if self._report is not None:
                self._report("info", f"secrets file {self.path} is valid again")
            else:
                self.log.info("secrets file {path} is valid again", path=self.path)
        changed = _diff(self._values, new)
        self._values = new
        self._subscribers.notify(changed)
        return frozenset(changed)

    def check(self) -> None:
        """
        Reload if the file's modification time, size or inode changed.
        """
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            self.reload()

    def start(self) -> None:
        if self._loop is None:
            self._loop = LoopingCall(self.check)
            self._loop.clock = self._clock
            self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


@implementer(ISecretProvider)
class ChainedSecretProvider:
    """
    Ask several providers in order; the first that knows a name answers.
    """

    def __init__(self, providers: Iterable[ISecretProvider]) -> None:
        self.providers = tuple(providers)

    def get(self, name: str) -> str | None:
        for provider in self.providers:
            value = provider.get(name)
            if value is not None:
                return value
        return None

    def names(self) -> frozenset[str]:
        result: frozenset[str] = frozenset()
        for provider in self.providers:
            result |= provider.names()
        return result

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        unsubscribes = [p.subscribe(callback) for p in self.providers]

        def unsubscribe() -> None:
            for u in unsubscribes:
                u()

        return unsubscribe
