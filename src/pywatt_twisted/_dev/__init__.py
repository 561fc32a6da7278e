"""pywatt_twisted._dev"""
