"""
An example module that declares its tables next to its code (see docs/models.md).
"""
