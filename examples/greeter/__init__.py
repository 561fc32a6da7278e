"""The greeter module: a second example, whose answer comes from a rotatable secret."""
