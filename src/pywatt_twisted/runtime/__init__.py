"""pywatt_twisted.runtime"""
