"""pywatt_twisted._transport"""
