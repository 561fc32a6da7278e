"""pywatt_twisted.web"""
