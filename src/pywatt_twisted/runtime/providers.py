# -*- test-case-name: tests.orchestrator.test_providers -*-
"""
Moved to L{pywatt_twisted.orchestrator._providers} (secret providers are the
orchestrator's side: C{pywatt dev} and the FakeOrchestrator use them, a module never
does); this module re-exports its names so existing imports keep working.
"""

import warnings

from pywatt_twisted.orchestrator._providers import (
    ENV_PREFIX,
    ChainedSecretProvider,
    ChangeCallback,
    EnvironmentSecretProvider,
    FileSecretProvider,
    ISecretProvider,
    MemorySecretProvider,
    read_secrets_file,
)

__all__ = [
    "ENV_PREFIX",
    "ChainedSecretProvider",
    "ChangeCallback",
    "EnvironmentSecretProvider",
    "FileSecretProvider",
    "ISecretProvider",
    "MemorySecretProvider",
    "read_secrets_file",
]

warnings.warn(
    "pywatt_twisted.runtime.providers is deprecated: import from pywatt_twisted.orchestrator",
    DeprecationWarning,
    stacklevel=2,
)
