# -*- test-case-name: tests.runtime.test_module -*-
"""
Finding the module definition named by C{--module=pkg.mod} or C{--module=pkg.mod:attr}.
"""

from __future__ import annotations

import importlib
import traceback

from pywatt_twisted._runtime.module import ModuleDefinition
from pywatt_twisted.errors import ModuleLoadError


def load_module_definition(spec: str) -> ModuleDefinition:
    """
    Import C{spec} and return its module definition.

    C{pkg.mod:attr} names the attribute; C{pkg.mod} alone must contain exactly one
    module definition (a value made by C{@pywatt_module}).

    @raise ModuleLoadError: with a message saying what was expected and what was found.
    """
    if not spec or not spec.strip():
        raise ModuleLoadError("--module is required: give it as pkg.mod or pkg.mod:attr")
    module_name, _, attr = spec.strip().partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ModuleLoadError(
                f"cannot import module {module_name!r}: no module named {e.name!r} "
                "(is it on PYTHONPATH, or installed in this environment?)"
            ) from e
        raise ModuleLoadError(
            f"importing {module_name!r} failed: {e}\n{traceback.format_exc()}"
        ) from e
    except Exception as e:
        raise ModuleLoadError(
            f"importing {module_name!r} failed with {type(e).__name__}: {e}\n"
            f"{traceback.format_exc()}"
        ) from e
    if attr:
        try:
            value = getattr(module, attr)
        except AttributeError:
            raise ModuleLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
        if not isinstance(value, ModuleDefinition):
            raise ModuleLoadError(
                f"{spec} is a {type(value).__name__}, not a module definition; "
                "decorate the create_app function with @pywatt_module(...)"
            )
        return value
    found = [
        (name, value)
        for name, value in sorted(vars(module).items())
        if isinstance(value, ModuleDefinition)
    ]
    if not found:
        raise ModuleLoadError(
            f"module {module_name!r} contains no @pywatt_module definition; decorate its "
            "create_app function with @pywatt_module(...) or name it with --module=mod:attr"
        )
    if len({id(v) for _, v in found}) > 1:
        names = ", ".join(f"{module_name}:{n}" for n, _ in found)
        raise ModuleLoadError(
            f"module {module_name!r} contains several module definitions ({names}); "
            "choose one with --module=mod:attr"
        )
    return found[0][1]
