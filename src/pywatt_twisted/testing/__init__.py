"""pywatt_twisted.testing"""
