"""
The test-suite.

Hypothesis settings for every property test: no per-example deadline and no "input
generation is slow" health check. Both measure wall-clock time, so on a loaded machine
(parallel trial workers, other suites on the same host) they fail tests at random; they
say nothing about correctness. Set C{HYPOTHESIS_PROFILE=default} to get Hypothesis's
own defaults back, e.g. to look for slow strategies.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("pywatt", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pywatt"))
