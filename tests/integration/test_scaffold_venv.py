"""
C{pywatt new} end to end: the generated project's tests pass, straight after generation,
in a fresh virtualenv where only this repository and the project are installed; and
C{pywatt dev} serves the generated module.

The default project always runs (about a minute, most of it installing this repository
into the fresh venv, from pip's cache). The other option sets run only when C{CI=true}
(C{.ci/run} sets it); they reuse the same venv, installing each project with
C{pip install --no-deps -e}, and run the projects' real-server tests against the servers
of C{tests/services.py}.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from pywatt_twisted._scaffold import ProjectOptions, generate
from tests.dev.process import DevProcess, stop_dev
from tests.integration.process import child_environment
from tests.services import require_service
from tests.source_tree import copy_source_tree
from tests.test_scaffold import OPTION_SETS, _options

#: the projects' real-server URLs, per option set (variable suffix -> service name)
_SERVERS = {
    "postgresql-redis": {"DATABASE": "postgres", "CACHE": "redis"},
    "mysql-memcached": {"DATABASE": "mysql", "CACHE": "memcached"},
}

_venv: list[str] = []


def _run(argv: list[str], cwd: str, env: dict[str, str] | None = None, timeout: float = 600):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} failed ({result.returncode}) in {cwd}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def _clean_env(**extra: str) -> dict[str, str]:
    # Nothing of this checkout leaks in: no PYTHONPATH, no PYWATT_* settings.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYWATT_")}
    env.update(extra)
    return env


def fresh_venv(workdir: str) -> str:
    """
    The python of a venv (made once per test process) with this repository installed
    (not editable: what a user gets from a wheel).
    """
    if not _venv:
        workdir = os.path.abspath(workdir)
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "venv")
        _run([sys.executable, "-m", "venv", path], cwd=workdir)
        python = os.path.join(path, "bin", "python")
        source = copy_source_tree(os.path.join(workdir, "source"))
        _run(
            [python, "-m", "pip", "install", "--quiet", f"{source}[postgres,mysql]"],
            cwd=workdir,
            env=_clean_env(),
        )
        _venv.append(python)
    return _venv[0]


def readme_test_command(project: str) -> list[str]:
    """
    The test command of the project's README, as an argv (with its environment
    assignments split off by the caller).
    """
    with open(os.path.join(project, "README.md"), encoding="utf-8") as f:
        text = f.read()
    (line,) = [
        line for line in text.splitlines() if "twisted.trial" in line and "# run the tests" in line
    ]
    return shlex.split(line.split("#", 1)[0])


def run_project_tests(case: TestCase, python: str, name: str, argv: list[str]) -> str:
    project = os.path.abspath(case.mktemp())
    options = _options(argv)
    # the venv's own pywatt: the templates come from the installed wheel's package data
    pywatt = os.path.join(os.path.dirname(python), "pywatt")
    _run([pywatt, "new", f"gen-{name}", f"--directory={project}", *argv], cwd="/", env=_clean_env())
    options = ProjectOptions(f"gen-{name}", options.features)
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "-e", project], cwd=project)
    words = readme_test_command(project)
    assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    command = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    case.assertEqual(command[:3], ["python", "-m", "twisted.trial"])
    extra = dict(assignments)
    prefix = options.package.upper()
    for kind, service in _SERVERS.get(name, {}).items():
        extra[f"{prefix}_TEST_{kind}_URL"] = require_service(service)
    result = _run([python, *command[1:]], cwd=project, env=_clean_env(**extra))
    output = result.stdout + result.stderr
    case.assertIn("PASSED", output)
    if name in _SERVERS:
        # the real-server tests ran, not skipped
        case.assertNotIn("SKIPPED", output)
    return output


class GeneratedProjectTests(TestCase):
    timeout = 900

    def test_default_project_passes_its_tests_in_a_fresh_venv(self) -> None:
        python = fresh_venv(self.mktemp())
        run_project_tests(self, python, "default", OPTION_SETS["default"])

    def test_every_option_set_passes_its_tests(self) -> None:
        if os.environ.get("CI", "").lower() != "true":
            raise SkipTest("slow (one project per option set): runs when CI=true, as .ci/run sets")
        python = fresh_venv(self.mktemp())
        for name, argv in OPTION_SETS.items():
            if name != "default":
                run_project_tests(self, python, name, argv)


class DevServesTheProjectTests(TestCase):
    async def test_pywatt_dev_serves_the_generated_module(self) -> None:
        project = os.path.abspath(self.mktemp())
        generate(ProjectOptions("demo-mod"), project)
        proto = DevProcess()
        argv = [
            sys.executable,
            "-m",
            "pywatt_twisted._cli",
            "dev",
            "--module=demo_mod.module",
            "--secrets-file=secrets.json",
            "--port=0",
            "--heartbeat-interval=0.5",
            "--stop-deadline=5",
        ]
        # as the README says: PYTHONPATH=src, from the project directory
        env = child_environment(PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = "src" + os.pathsep + env["PYTHONPATH"]
        reactor.spawnProcess(proto, argv[0], argv, env=env, path=project)
        self.addCleanup(stop_dev, proto)
        match = await proto.wait_for(r"front port: (http://127\.0\.0\.1:\d+)/")
        await proto.wait_for(r"/hello/:name")  # announced
        base = match.group(1)
        response = await treq.get(f"{base}/demo_mod/hello/ada", persistent=False)
        self.assertEqual(response.code, 200)
        body = await response.json()
        self.assertEqual(body, {"message": "hello ada", "from": "demo_mod"})
        response = await treq.post(
            f"{base}/demo_mod/greeting",
            json={"greeting": "hi"},
            headers={"x-api-key": "dev-key"},
            persistent=False,
        )
        self.assertEqual(response.code, 200)
        await response.content()
