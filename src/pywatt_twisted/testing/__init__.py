"""
Testing tools for module authors (trial), shipped with the library like treq's
C{treq.testing}:

  - L{FakeOrchestrator}: runs a module definition in memory and plays the orchestrator.
  - C{pywatt_twisted.testing.strategies}: hypothesis strategies for protocol values
    (needs hypothesis, from the C{test} extra).

See C{docs/testing.md}.
"""

from pywatt_twisted.testing._http import FakeResponse
from pywatt_twisted.testing._module import FakeModule
from pywatt_twisted.testing._orchestrator import FakeOrchestrator

__all__ = ["FakeModule", "FakeOrchestrator", "FakeResponse"]
