"""
Old import paths, kept as deprecated re-exports: C{pywatt dev} now lives in the private
package C{pywatt_twisted._dev}; the channel server is in L{pywatt_twisted.orchestrator}.
"""
