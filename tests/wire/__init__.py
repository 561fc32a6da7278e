"""Tests for pywatt_twisted.wire."""
