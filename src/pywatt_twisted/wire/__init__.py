"""pywatt_twisted.wire"""
