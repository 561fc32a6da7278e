# -*- test-case-name: tests.dev.test_reload -*-
"""
C{pywatt dev --reload}: watch each module's source tree (and the secrets file) and
restart only the module whose files changed, after a debounce.

The watching is done by U{watchdog <https://pypi.org/project/watchdog/>}: one kept,
cross-platform library over the native file-change APIs (inotify, FSEvents, kqueue,
ReadDirectoryChangesW), with a polling fallback where none exists. Its observer runs in a
thread; L{SourceWatcher} hands the changed paths to the reactor in bounded batches, and
L{Reloader} (reactor side only, so it is tested on a L{Clock
<twisted.internet.task.Clock>}) maps paths to modules, debounces and restarts.

While a module restarts, the front port holds its new requests (L{RequestHold}) until
the new process announced, instead of answering 503.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.machinery import PathFinder
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

#: files whose change restarts a module (anything else in its tree is ignored)
WATCHED_SUFFIXES = frozenset(
    {".py", ".pyi", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".sql", ".html", ".txt"}
)
#: directory names never looked into
IGNORED_DIRS = frozenset({"__pycache__", "_trial_temp", "node_modules", "build", "dist"})
#: changed paths the watcher thread keeps for the reactor between two deliveries; more
#: are counted, and the modules of the roots they fell in are restarted all the same
MAX_PENDING_PATHS = 1000
#: changed file names a restart message lists (then "and N more")
NAMES_SHOWN = 3


def module_source_root(module: str, search: Iterable[str] | None = None) -> str | None:
    """
    The directory holding the source of C{module} (a C{--module} value,
    C{pkg.mod[:attr]} without the id), found without importing anything: the package directory of a
    package, else the directory of the C{.py} file. C{None} when it is not found (a
    namespace package, a compiled or zipped module).

    @param search: the directories to look in (default: the current directory, then
        C{sys.path}: what the module process sees).
    """
    import sys

    dotted = module.partition(":")[0]
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        return None
    path: list[str] | None = list(search) if search is not None else [os.getcwd(), *sys.path]
    spec = None
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    return os.path.dirname(os.path.abspath(spec.origin))


def watched(path: str) -> bool:
    """
    Whether a change of C{path} counts (a source-like file, not in a cache, hidden or
    build directory, not an editor's backup or swap file).
    """
    parts = path.split(os.sep)
    if any(p in IGNORED_DIRS or (p.startswith(".") and p not in (".", "..")) for p in parts):
        return False
    name = parts[-1]
    if name.endswith("~") or name.startswith("#"):
        return False
    return os.path.splitext(name)[1] in WATCHED_SUFFIXES


class Reloader:
    """
    Maps changed paths to the modules whose source root holds them (the deepest root
    wins, so a module nested in another's tree restarts alone), and restarts them once
    no change came for C{debounce} seconds (at most C{max_wait} after the first change,
    so a steady stream of writes still reloads). A change of the secrets file calls
    C{secrets_changed} instead (a rotation, not a restart).

    @param supervisors: the L{ModuleSupervisor
        <pywatt_twisted._dev.supervisor.ModuleSupervisor>}s by module id.
    @param roots: module id -> source root.
    @param say: C{say(text, level)}: the console.
    """

    def __init__(
        self,
        reactor: Any,
        supervisors: Mapping[str, Any],
        roots: Mapping[str, str],
        say: Callable[[str, str], object],
        *,
        debounce: float = 0.3,
        max_wait: float = 2.0,
        secrets_file: str | None = None,
        secrets_changed: Callable[[], object] | None = None,
    ) -> None:
        self.reactor = reactor
        self.supervisors = supervisors
        self.roots = {m: os.path.abspath(r) for m, r in roots.items()}
        self.say = say
        self.debounce = debounce
        self.max_wait = max_wait
        self.secrets_file = os.path.abspath(secrets_file) if secrets_file else None
        self.secrets_changed = secrets_changed
        # module id -> changed file names (bounded by NAMES_SHOWN) and their count
        self._changed: dict[str, tuple[list[str], int]] = {}
        self._secrets_pending = False
        self._call: Any = None
        self._first: float | None = None
        # module id -> a change came while it restarts: restart once more after it
        self._again: dict[str, bool] = {}

    def owners(self, path: str) -> list[str]:
        """
        The modules a change of C{path} restarts: those with the deepest source root
        holding it.
        """
        path = os.path.abspath(path)
        best: list[str] = []
        depth = -1
        for module_id, root in self.roots.items():
            if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                d = root.count(os.sep)
                if d > depth:
                    best, depth = [module_id], d
                elif d == depth:
                    best.append(module_id)
        return best

    def changed(self, paths: Iterable[str], roots: Iterable[str] = ()) -> None:
        """
        Files changed (C{paths}), and maybe more that were not kept, somewhere under
        C{roots}. Schedules the restarts.
        """
        any_change = False
        for path in paths:
            path = os.path.abspath(path)
            if self.secrets_file is not None and path == self.secrets_file:
                self._secrets_pending = any_change = True
                continue
            if not watched(path):
                continue
            for module_id in self.owners(path):
                names, count = self._changed.get(module_id, ([], 0))
                name = os.path.relpath(path, self.roots[module_id])
                if name not in names and len(names) < NAMES_SHOWN:
                    names.append(name)
                self._changed[module_id] = (names, count + (name not in names[:count]))
                any_change = True
        for root in roots:
            for module_id in self.owners(root):
                names, count = self._changed.get(module_id, ([], 0))
                self._changed[module_id] = (names, count + 1)
                any_change = True
        if not any_change:
            return
        now = self.reactor.seconds()
        if self._first is None:
            self._first = now
        delay = max(0.0, min(self.debounce, self._first + self.max_wait - now))
        if self._call is not None and self._call.active():
            self._call.reset(delay)
        else:
            self._call = self.reactor.callLater(delay, self.flush)

    def flush(self) -> None:
        """
        Act on the changes gathered so far.
        """
        self._call = None
        self._first = None
        if self._secrets_pending:
            self._secrets_pending = False
            if self.secrets_changed is not None:
                self.secrets_changed()
        changed, self._changed = self._changed, {}
        for module_id, (names, count) in sorted(changed.items()):
            shown = ", ".join(names) or "files"
            if count > len(names) and names:
                shown += f" and {count - len(names)} more"
            self.restart(module_id, shown)

    def restart(self, module_id: str, why: str) -> None:
        supervisor = self.supervisors[module_id]
        if supervisor.reloading:
            self._again[module_id] = True
            return
        self._again.pop(module_id, None)
        self.say(f"reload: {why} changed; restarting {module_id}", "info")
        started = self.reactor.seconds()
        d = supervisor.restart()

        def spawned(_: object) -> None:
            if self._again.pop(module_id, False):
                self.restart(module_id, "more files")
                return
            if supervisor.status in ("stopped", "stopping"):
                return
            announced = supervisor.when_announced()
            announced.addCallback(
                lambda s: self.say(
                    f"reload: {module_id} restarted in "
                    f"{self.reactor.seconds() - started:.1f} s (pid {s.pid})",
                    "info",
                )
            )

        d.addCallback(spawned)
        d.addErrback(lambda f: self.say(f"reload of {module_id} failed: {f.value}", "error"))

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class SourceWatcher:
    """
    A watchdog observer on the module roots (recursive) and the secrets file's
    directory; the changes reach C{deliver(paths, overflow_roots)} on the reactor thread,
    in batches: the observer thread keeps at most L{MAX_PENDING_PATHS} paths between two
    deliveries (beyond that it remembers only under which root a change happened) and
    schedules one delivery at a time.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        roots: Iterable[str],
        deliver: Callable[[list[str], list[str]], object],
        files: Iterable[str] = (),
    ) -> None:
        self.reactor = reactor
        self.roots = sorted({os.path.abspath(r) for r in roots})
        self.files = sorted({os.path.abspath(f) for f in files})
        self._deliver = deliver
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._overflow: set[str] = set()
        self._dropped = 0
        self._scheduled = False
        self._observer: Any = None

    def start(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def __init__(self, root: str) -> None:
                self.root = root

            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                paths = [event.src_path, getattr(event, "dest_path", "") or ""]
                watcher._note(
                    [os.fsdecode(p) for p in paths if p and not event.is_directory], self.root
                )

        observer = Observer()
        for root in self.roots:
            observer.schedule(Handler(root), root, recursive=True)
        for directory in sorted({os.path.dirname(f) for f in self.files}):
            if not any(directory == r or directory.startswith(r + os.sep) for r in self.roots):
                observer.schedule(Handler(directory), directory, recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _note(self, paths: list[str], root: str) -> None:
        """
        In the observer thread: keep C{paths} for the next delivery.
        """
        with self._lock:
            for path in paths:
                if len(self._paths) < MAX_PENDING_PATHS:
                    self._paths.add(path)
                else:
                    self._overflow.add(root)
                    self._dropped += 1
            if self._scheduled:
                return
            self._scheduled = True
        self.reactor.callFromThread(self._flush)

    def _flush(self) -> None:
        with self._lock:
            paths, self._paths = self._paths, set()
            overflow, self._overflow = self._overflow, set()
            dropped, self._dropped = self._dropped, 0
            self._scheduled = False
        if dropped:
            self.log.info(
                "{dropped} more changed paths than {limit} in one batch",
                dropped=dropped,
                limit=MAX_PENDING_PATHS,
            )
        self._deliver(sorted(paths), sorted(overflow))

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None


class RequestHold:
    """
    Front-port requests for a module that is restarting wait here for its announce
    (at most C{timeout} seconds, at most C{limit} requests in all; beyond the limit a
    request is refused at once), instead of failing with 503.
    """

    def __init__(self, reactor: Any, timeout: float = 30.0, limit: int = 256) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.limit = limit
        # module id -> [(deadline, waiter)]
        self._waiting: dict[str, list[tuple[float, Deferred[bool]]]] = {}
        self._loop: LoopingCall | None = None
        self._supervisors: dict[str, Any] = {}
        # modules whose next announce releases their requests
        self._announce_watched: set[str] = set()

    @staticmethod
    def coming_back(supervisor: Any) -> bool:
        """
        Whether C{supervisor}'s module is on its way to running (a reload, a start or a
        restart after an exit), so a request should wait for it.
        """
        return bool(supervisor.reloading) or supervisor.status in ("starting", "restarting")

    def __len__(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    def wait(self, supervisor: Any) -> Deferred[bool] | None:
        """
        A Deferred firing with C{True} once the module runs, C{False} when it gave up
        (it crashed, stopped, or the timeout passed); C{None} when the hold is full.
        """
        if len(self) >= self.limit:
            return None
        d: Deferred[bool] = Deferred()
        module_id = supervisor.module_id
        self._supervisors[module_id] = supervisor
        self._waiting.setdefault(module_id, []).append((self.reactor.seconds() + self.timeout, d))
        self._watch_announce(supervisor)
        if self._loop is None:
            self._loop = LoopingCall(self._check)
            self._loop.clock = self.reactor
            self._loop.start(0.25, now=False)
        return d

    def _watch_announce(self, supervisor: Any) -> None:
        """
        Release the module's requests at its next announce. Not while its old process
        still runs (a reload waiting for its in-flight requests): that one is going away.
        """
        module_id = supervisor.module_id
        if module_id in self._announce_watched or supervisor.status == "running":
            return
        self._announce_watched.add(module_id)

        def announced(_: object) -> None:
            self._announce_watched.discard(module_id)
            if module_id in self._waiting:
                self._release(module_id, True)

        supervisor.when_announced().addCallback(announced)

    def _release(self, module_id: str, result: bool, expired_only: bool = False) -> None:
        now = self.reactor.seconds()
        waiters = self._waiting.pop(module_id, [])
        keep = []
        for deadline, d in waiters:
            if expired_only and deadline > now:
                keep.append((deadline, d))
            else:
                d.callback(result)
        if keep:
            self._waiting[module_id] = keep
        if not self._waiting and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def _check(self) -> None:
        for module_id in list(self._waiting):
            supervisor = self._supervisors[module_id]
            if supervisor.status == "running" and not supervisor.reloading:
                self._release(module_id, True)
            elif not self.coming_back(supervisor):
                self._release(module_id, False)
            else:
                self._release(module_id, False, expired_only=True)
                self._watch_announce(supervisor)

    def stop(self) -> None:
        for module_id in list(self._waiting):
            self._release(module_id, False)
