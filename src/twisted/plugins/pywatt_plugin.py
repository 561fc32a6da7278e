"""
The C{twistd pywatt} plugin.

Keep this file import-light: twistd imports every plugin before it selects a reactor, so
nothing here may import klein, treq, txredisapi or the reactor. The real work lives in
L{pywatt_twisted._tap}, which twistd imports only when C{pywatt} is the command.
"""

from twisted.application.service import ServiceMaker

pywatt = ServiceMaker(
    "PyWatt module",
    "pywatt_twisted._tap",
    "Run a PyWatt module under an orchestrator (stdin/stdout protocol, Klein HTTP).",
    "pywatt",
)
