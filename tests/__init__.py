"""
The pywatt_twisted test suite.

Hypothesis settings for every property test: no per-example deadline and no "input
generation is slow" health check. Both measure wall-clock time, so on a loaded machine
(parallel trial workers, other suites on the same host) they fail tests at random; they
say nothing about correctness. Hypothesis also builds its Unicode character tables the
first time a process generates text and caches them under C{.hypothesis} in the working
directory; under C{trial -j} every worker runs in its own fresh directory, so whichever
property test comes first in a worker pays a second or more for that table. Set
C{HYPOTHESIS_PROFILE=default} to get Hypothesis's own defaults back, e.g. to look for
slow strategies.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("pywatt", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pywatt"))
