# -*- test-case-name: tests.wire.test_ops -*-
"""
L{op_name}: the name of a message's op, for logs, metrics and error texts.
"""

from __future__ import annotations

__all__ = ["op_name"]


def op_name(message: object) -> str:
    """
    The op a message carries (its class's C{op}, e.g. C{"http_request"}), or its type's
    name when it has none (a value that is not a wire message).
    """
    op = getattr(message, "op", None)
    if isinstance(op, str):
        return op
    return type(message).__name__
