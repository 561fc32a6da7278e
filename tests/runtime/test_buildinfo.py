"""
L{build_info}: the git commit from a checkout's files, a worktree, packed refs or
C{PYWATT_GIT_SHA}; the module version from the definition.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.buildinfo import LateBuildInfo, build_info, git_sha_of

SHA_A = "a" * 40
SHA_B = "b" * 40


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class GitShaTests(SynchronousTestCase):
    def test_branch_ref_file(self) -> None:
        root = self.mktemp()
        write(os.path.join(root, ".git", "HEAD"), "ref: refs/heads/main\n")
        write(os.path.join(root, ".git", "refs", "heads", "main"), SHA_A + "\n")
        write(os.path.join(root, "src", "mod.py"), "")
        self.assertEqual(git_sha_of(os.path.join(root, "src", "mod.py")), SHA_A)

    def test_packed_ref_and_detached_head(self) -> None:
        root = self.mktemp()
        write(os.path.join(root, ".git", "HEAD"), "ref: refs/heads/dev\n")
        write(os.path.join(root, ".git", "packed-refs"), f"# pack\n{SHA_B} refs/heads/dev\n")
        self.assertEqual(git_sha_of(root), SHA_B)
        write(os.path.join(root, ".git", "HEAD"), SHA_A + "\n")
        self.assertEqual(git_sha_of(root), SHA_A)

    def test_worktree(self) -> None:
        base = os.path.abspath(self.mktemp())
        main_git = os.path.join(base, "repo", ".git")
        wt_git = os.path.join(main_git, "worktrees", "wt")
        write(os.path.join(wt_git, "HEAD"), "ref: refs/heads/wt\n")
        write(os.path.join(wt_git, "commondir"), "../..\n")
        write(os.path.join(main_git, "refs", "heads", "wt"), SHA_B + "\n")
        write(os.path.join(base, "wt", ".git"), f"gitdir: {wt_git}\n")
        self.assertEqual(git_sha_of(os.path.join(base, "wt")), SHA_B)

    def test_not_a_checkout(self) -> None:
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        write(os.path.join(root, ".git"), "not a gitdir line")
        self.assertIsNone(git_sha_of(root))


class BuildInfoTests(SynchronousTestCase):
    def test_environment_sha_wins_and_labels(self) -> None:
        @pywatt_module
        def app(state: Any) -> None:
            return None

        info = build_info(app, environ={"PYWATT_GIT_SHA": SHA_A.upper()})
        self.assertEqual(info.git_sha, SHA_A)
        self.assertEqual(
            set(info.as_dict()), {"version", "module_version", "python", "twisted", "git_sha"}
        )
        # tests are not an installed distribution: no module version is made up
        self.assertEqual(info.module_version, "")
        self.assertIsNone(info.as_dict()["module_version"])

    def test_definition_version(self) -> None:
        class Definition:
            version = "2.1.0"

            def create_app(self, state: Any) -> None:
                return None

        self.assertEqual(build_info(Definition(), environ={}).module_version, "2.1.0")


class LateBuildInfoTests(SynchronousTestCase):
    def test_worked_out_on_first_use_and_kept(self) -> None:
        calls = []

        class Definition:
            @property
            def version(self) -> str:
                calls.append("version")
                return "3.0.0"

            def create_app(self, state: Any) -> None:
                return None

        late = LateBuildInfo(Definition(), environ={"PYWATT_GIT_SHA": SHA_A})
        self.assertEqual(calls, [])  # nothing looked up yet
        produce = late.collector()
        self.assertEqual(calls, [])
        [family] = list(produce())
        self.assertEqual(calls, ["version"])
        self.assertEqual(family.samples[0].labels["module_version"], "3.0.0")
        self.assertEqual(family.samples[0].labels["git_sha"], SHA_A)
        self.assertEqual(late.as_dict()["module_version"], "3.0.0")
        self.assertIs(late.get(), late.get())
        self.assertEqual(calls, ["version"])  # worked out once

    def test_sha_variable_read_when_made(self) -> None:
        environ = {"PYWATT_GIT_SHA": SHA_A}
        late = LateBuildInfo(object(), environ=environ)
        environ["PYWATT_GIT_SHA"] = "f" * 40
        self.assertEqual(late.get().git_sha, SHA_A)
