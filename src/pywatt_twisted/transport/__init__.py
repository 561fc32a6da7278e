"""pywatt_twisted.transport"""
