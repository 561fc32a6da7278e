"""
The pywatt_twisted test suite.

Hypothesis builds its Unicode character tables the first time a process generates text
(C{st.text}, C{st.from_regex}) and caches them under C{.hypothesis} in the working
directory. Under C{trial -j} every worker runs in its own fresh directory, so whichever
property test comes first in a worker pays a second or more for that table, and the
C{too_slow} health check fails it depending only on how tests were spread over the
workers. That check is about input generation cost, not about the code under test:
it is switched off for the whole suite.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("pywatt", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pywatt")
