# -*- test-case-name: tests.wire.test_value -*-
"""
The equality, hash and repr the protocol's value classes share, written once.

attrs writes these three methods as source text for each class and compiles it when the
class is made: for the 37 classes of L{pywatt_twisted.wire.messages} that was about 0.1 G
instructions of every module's start-up (two thirds of it Python's parser), and ~35 M
more for the runtime's own value classes (its config, policies, parts). The classes
are still attrs classes (C{@frozen(eq=False, repr=False)}: attrs makes C{__init__}, the
fields, C{evolve}, C{asdict}...); they inherit these from L{Value} instead. Each gives
what the attrs-made method gave:

  - C{==}: C{NotImplemented} for another class, else the fields compared in order, the
    first false comparison's result (or the last one's) returned as is;
  - C{hash}: the class and the field values, so equal values hash alike;
  - C{repr}: C{Name(field=value!r, ...)} without the C{repr=False} fields, C{...} for an
    object already being shown further up (a cycle).

L{MutableValue} is the same for a mutable (C{@define}) class, unhashable as attrs
makes it.

L{unfrozen} gives the hot decoders a cheap way to build frozen values (see there).

Only fields with the plain attrs options may use it: L{fields_of} refuses a custom C{eq}
key, C{hash} choice or C{repr} callable.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

__all__ = ["MutableValue", "Value", "fields_of", "unfrozen"]

#: class -> (names compared and hashed, names shown by repr)
_FIELDS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}

_showing = threading.local()


def fields_of(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """
    The names of C{cls}'s fields that C{==} and C{hash} use, and those C{repr} shows.

    @raise TypeError: if a field has an option L{Value} does not reproduce.
    """
    found = _FIELDS.get(cls)
    if found is None:
        compared: list[str] = []
        shown: list[str] = []
        for a in attrs.fields(cls):
            if a.eq_key is not None or a.hash is not None or not isinstance(a.repr, bool):
                raise TypeError(f"{cls.__name__}.{a.name}: options Value cannot reproduce")
            if a.eq:
                compared.append(a.name)
            if a.repr:
                shown.append(a.name)
        found = _FIELDS[cls] = (tuple(compared), tuple(shown))
    return found


class Value:
    """
    The base of a C{@frozen(eq=False, repr=False)} attrs class: C{==}, C{hash} and
    C{repr} as attrs would have made them.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        result: Any = True
        for name in fields_of(self.__class__)[0]:
            result = getattr(self, name) == getattr(other, name)
            if not result:
                return result
        return result

    def __ne__(self, other: object) -> Any:
        result = self.__eq__(other)
        if result is NotImplemented:
            return NotImplemented
        return not result

    def __hash__(self) -> int:
        cls = self.__class__
        return hash((cls, *(getattr(self, name) for name in fields_of(cls)[0])))

    def __repr__(self) -> str:
        try:
            showing: set[int] = _showing.ids
        except AttributeError:
            showing = _showing.ids = set()
        if id(self) in showing:
            return "..."
        showing.add(id(self))
        try:
            cls = self.__class__
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in fields_of(cls)[1])
            return f"{cls.__qualname__.rsplit('>.', 1)[-1]}({inner})"
        finally:
            showing.discard(id(self))


class MutableValue(Value):
    """
    The base of a mutable C{@define(eq=False, repr=False)} attrs class: C{==} and
    C{repr} of L{Value}, and no hash, as attrs leaves a mutable class with C{eq}.
    """

    __slots__ = ()

    __hash__ = None  # type: ignore[assignment]


def unfrozen(cls: type) -> Any:
    """
    A subclass of the slotted class C{cls} (a frozen attrs class, or C{uuid.UUID}) that
    adds no slot and takes plain attribute stores: C{value = twin()} makes an empty
    instance, its fields are stored as on any object, and C{value.__class__ = cls} then
    makes it an instance of C{cls} itself, frozen, the very object C{cls(...)} makes for
    a class whose constructor only stores its arguments (no validator, converter or
    post-init: the caller stores every field, already in its final form).

    Why (issue 20): a frozen class refuses a plain store, so the hot decoders used to
    set each slot through its descriptor's C{__set__} (a method-wrapper call, with an
    argument tuple: ~0.7k instructions each). Here each store is the interpreter's
    specialised slot store, and the class switch is one C-level check of the two
    layouts: a C{routed_module_response} with its C{UUID} and payload, 8.2k -> 4.3k
    instructions. CPython allows the switch because the twin adds nothing to the layout
    of C{cls}; that is checked here, once.

    @raise TypeError: if the interpreter refuses the switch for C{cls}.
    """
    twin = type(
        f"_Unfrozen{cls.__name__}",
        (cls,),
        {
            "__slots__": (),
            "__module__": cls.__module__,
            # (both: either one defined in Python keeps stores off the fast path)
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
            "__init__": object.__init__,
        },
    )
    probe = twin()
    probe.__class__ = cls
    return twin
