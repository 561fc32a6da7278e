# -*- test-case-name: tests.test_public_api -*-
"""
Deprecated: the module-to-module payload helpers are public in L{pywatt_twisted}
(C{from pywatt_twisted import error_payload, request_payload}); this old path
re-exports them and warns.
"""

import warnings

from pywatt_twisted._runtime.messaging import error_payload, request_payload

__all__ = ["error_payload", "request_payload"]

warnings.warn(
    "pywatt_twisted.runtime.messaging is deprecated: import error_payload and "
    "request_payload from pywatt_twisted",
    DeprecationWarning,
    stacklevel=2,
)
