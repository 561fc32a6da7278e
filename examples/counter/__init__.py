"""The counter module: the seed README's quick-start module, translated to pywatt_twisted."""
