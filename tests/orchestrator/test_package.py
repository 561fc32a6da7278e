"""
L{pywatt_twisted.orchestrator}: the orchestrator-side code in one package, and the old
import paths (C{runtime.providers}, C{dev.channel_server}) still giving the same objects.
"""

from __future__ import annotations

import importlib

from twisted.trial.unittest import SynchronousTestCase

import pywatt_twisted.orchestrator as orchestrator

MOVED = {
    "pywatt_twisted.runtime.providers": "pywatt_twisted.orchestrator._providers",
    "pywatt_twisted.dev.channel_server": "pywatt_twisted.orchestrator",
}


class PackageTests(SynchronousTestCase):
    def test_public_names(self) -> None:
        """
        Every name in the package's C{__all__} is importable from it.
        """
        for name in orchestrator.__all__:
            self.assertTrue(hasattr(orchestrator, name), name)

    def test_old_paths_reexport(self) -> None:
        """
        The old modules are shims: each of their public names is the very object the
        new package defines.
        """
        for old, new in MOVED.items():
            shim = importlib.import_module(old)
            target = importlib.import_module(new)
            self.assertTrue(shim.__all__, old)
            for name in shim.__all__:
                self.assertIs(getattr(shim, name), getattr(target, name), f"{old}.{name}")
