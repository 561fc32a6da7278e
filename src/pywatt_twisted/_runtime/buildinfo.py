# -*- test-case-name: tests.runtime.test_buildinfo -*-
"""
What build of a module is running: the SDK and module versions, Python, Twisted and
the git commit, for the C{pywatt_build_info} gauge and the C{build} object of
C{/health}.

Worked out once, on first use (no subprocess: the git commit is read from the
checkout's files): finding the installed distribution that holds the module reads the
metadata of every installed distribution (tens of milliseconds), so the runtime keeps
it off the way to the announce (L{LateBuildInfo}): the first C{/health} or C{/metrics}
works it out.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from attrs import asdict, frozen
from prometheus_client.core import GaugeMetricFamily

from pywatt_twisted.wire._value import Value

if TYPE_CHECKING:
    from importlib import metadata

__all__ = ["BuildInfo", "LateBuildInfo", "build_info", "git_sha_of", "module_distribution"]

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")

#: An environment variable a build (a CI job, a Dockerfile) sets to the commit it built.
GIT_SHA_VARIABLE = "PYWATT_GIT_SHA"


@frozen(eq=False, repr=False)
class BuildInfo(Value):
    """
    The labels of C{pywatt_build_info}; C{""} for what is unknown.
    """

    version: str
    module_version: str
    python: str
    twisted: str
    git_sha: str

    def as_dict(self) -> dict[str, str | None]:
        """
        The C{build} object of C{/health} (unknown values are C{null}).
        """
        return {k: (v or None) for k, v in asdict(self).items()}

    def collector(self) -> Callable[[], Iterable[Any]]:
        """
        A producer of the C{pywatt_build_info} gauge (always 1), for
        L{ModuleMetrics.add_collector <pywatt_twisted.web.metrics.ModuleMetrics.add_collector>}.
        """
        labels = asdict(self)

        def produce() -> Iterable[Any]:
            family = GaugeMetricFamily(
                "pywatt_build_info",
                "Always 1; the labels say which build of the module runs "
                "(SDK version, module version, Python, Twisted, git commit).",
                labels=list(labels),
            )
            family.add_metric(list(labels.values()), 1)
            yield family

        return produce


def _distribution_of(module_name: str) -> metadata.Distribution | None:
    from importlib import metadata  # (not at start-up: see the module docstring)

    top = module_name.split(".", 1)[0]
    if not top or top == "__main__":
        return None
    try:
        names = metadata.packages_distributions().get(top, [])
    except Exception:
        return None
    for name in names:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def module_distribution(create_app: object) -> metadata.Distribution | None:
    """
    The installed distribution that holds C{create_app}'s module, if any.
    """
    return _distribution_of(getattr(create_app, "__module__", None) or "")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _git_dir(start: str) -> str | None:
    here = os.path.abspath(start)
    while True:
        candidate = os.path.join(here, ".git")
        if os.path.isdir(candidate):
            return candidate
        if os.path.isfile(candidate):
            # A worktree or submodule: ".git" is a file "gitdir: <path>".
            text = _read(candidate) or ""
            if text.startswith("gitdir:"):
                target = text[len("gitdir:") :].strip()
                return os.path.normpath(os.path.join(here, target))
            return None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def git_sha_of(start: str) -> str | None:
    """
    The commit checked out in the git repository holding C{start} (a file or folder),
    read from C{.git/HEAD}, the ref it names, or C{packed-refs}; C{None} outside one.
    """
    git_dir = _git_dir(start if os.path.isdir(start) else os.path.dirname(start))
    if git_dir is None:
        return None
    head = _read(os.path.join(git_dir, "HEAD"))
    if head is None:
        return None
    if _SHA.fullmatch(head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head[len("ref:") :].strip()
    # Worktrees keep their HEAD but share refs with the main repository.
    common = _read(os.path.join(git_dir, "commondir"))
    dirs = [git_dir]
    if common:
        dirs.append(os.path.normpath(os.path.join(git_dir, common)))
    for d in dirs:
        sha = _read(os.path.join(d, ref))
        if sha and _SHA.fullmatch(sha):
            return sha
        packed = _read(os.path.join(d, "packed-refs")) or ""
        for line in packed.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref and _SHA.fullmatch(parts[0]):
                return parts[0]
    return None


def _installed_from_git(dist: metadata.Distribution | None) -> str | None:
    """
    The commit pip recorded when the distribution was installed from a git URL
    (PEP 610 C{direct_url.json}).
    """
    if dist is None:
        return None
    try:
        text = dist.read_text("direct_url.json")
    except Exception:
        return None
    if not text:
        return None
    try:
        commit = json.loads(text).get("vcs_info", {}).get("commit_id")
    except (ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) and _SHA.fullmatch(commit) else None


def build_info(definition: Any, environ: Mapping[str, str] | None = None) -> BuildInfo:
    """
    The build of the module C{definition} (a L{ModuleDefinition}).

      - C{module_version}: C{@pywatt_module(version=...)} when given, else the version
        of the installed distribution holding C{create_app}'s module.
      - C{git_sha}: C{$PYWATT_GIT_SHA} (set by a build), else the commit checked out
        where C{create_app}'s source file lives, else the commit pip recorded when the
        module was installed from git.
    """
    from pywatt_twisted import __version__
    from twisted import __version__ as twisted_version

    env = os.environ if environ is None else environ
    create_app = getattr(definition, "create_app", None)
    dist = module_distribution(create_app)
    module_version = getattr(definition, "version", None)
    if not isinstance(module_version, str) or not module_version:
        module_version = dist.version if dist is not None else ""
    sha = (env.get(GIT_SHA_VARIABLE) or "").strip().lower() or None
    if sha is None:
        source = sys.modules.get(getattr(create_app, "__module__", "") or "")
        path = getattr(source, "__file__", None)
        if path:
            sha = git_sha_of(path)
    if sha is None:
        sha = _installed_from_git(dist)
    return BuildInfo(
        version=__version__,
        module_version=module_version,
        python=platform.python_version(),
        twisted=twisted_version,
        git_sha=sha or "",
    )


class LateBuildInfo:
    """
    L{build_info} of a definition, worked out when first asked for (by C{/health} or
    a C{/metrics} scrape) and then kept. C{$PYWATT_GIT_SHA} is read when this is made,
    as L{build_info} would read it at that moment.
    """

    def __init__(self, definition: Any, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._definition = definition
        self._environ = {k: env[k] for k in (GIT_SHA_VARIABLE,) if k in env}
        self._info: BuildInfo | None = None

    def get(self) -> BuildInfo:
        """
        The L{BuildInfo} (worked out on the first call).
        """
        if self._info is None:
            self._info = build_info(self._definition, self._environ)
        return self._info

    def as_dict(self) -> dict[str, str | None]:
        """
        L{BuildInfo.as_dict} of L{get}.
        """
        return self.get().as_dict()

    def collector(self) -> Callable[[], Iterable[Any]]:
        """
        L{BuildInfo.collector} of L{get}, worked out on the first scrape.
        """

        def produce() -> Iterable[Any]:
            return self.get().collector()()

        return produce
