"""
pywatt_twisted.web: the module's HTTP side.

  - L{pywatt_twisted.web.discovery}: the endpoints to announce, read from the Klein
    routes (C{discover_endpoints}, C{mark_auth}).
  - L{pywatt_twisted.web.site}: the built-in C{/health} and C{/metrics} in front of the
    user's resource (C{build_root_resource}) and the metered site (C{PyWattSite}).
  - L{pywatt_twisted.web.metrics}: the module's Prometheus metrics (C{ModuleMetrics}).
  - L{pywatt_twisted.web.bridge}: HTTP-over-IPC into the same site, in memory
    (C{HttpBridge}).

Nothing is imported here, so importing the package stays cheap.
"""
