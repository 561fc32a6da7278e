"""pywatt_twisted._runtime"""
