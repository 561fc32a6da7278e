# -*- test-case-name: tests.test_views -*-
"""
Marks that decorators leave on Klein view functions (C{@incremental_body}, C{@cors},
C{@requires_auth}), found through the wrappers between the route and the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def find_mark(view: Any, attribute: str, accept: Callable[[Any], bool]) -> Any:
    """
    The first value of C{attribute} that C{accept} takes, on C{view} or on anything it
    wraps: Klein's wrappers (C{__original__}) and C{functools.wraps} chains
    (C{__wrapped__}), each object visited once; C{None} when there is none.
    """
    seen: set[int] = set()
    todo = [view]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        mark = getattr(current, attribute, None)
        if mark is not None and accept(mark):
            return mark
        todo.append(getattr(current, "__wrapped__", None))
        todo.append(getattr(current, "__original__", None))
    return None
