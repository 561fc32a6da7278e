"""pywatt_twisted.dev"""
