"""
Old import paths, kept as deprecated re-exports: the module runtime now lives in the
private package C{pywatt_twisted._runtime}; import the public names from
L{pywatt_twisted} and the subpackages listed in C{docs/api.md}.
"""
