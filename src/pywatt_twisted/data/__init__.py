"""pywatt_twisted.data"""
