"""Runnable example modules for pywatt_twisted."""
