"""
Tests for L{pywatt_twisted.wire._value}: the shared C{==}, C{hash} and C{repr} of the
protocol's value classes behave as the methods attrs would have generated.
"""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

import attrs
from attrs import field, frozen
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.testing.strategies import (
    init_blobs,
    module_envelopes,
    module_messages,
    orchestrator_messages,
)
from pywatt_twisted.wire import init, messages
from pywatt_twisted.wire._value import MutableValue, Value, fields_of, unfrozen


def _pairs() -> tuple[type, type]:
    """
    The same class twice: with attrs' own methods, and on L{Value}.
    """

    @frozen
    class Pair:
        a: object
        b: object = 0
        hidden: object = field(default="h", repr=False)

    generated = Pair

    @frozen(eq=False, repr=False)
    class Pair(Value):  # type: ignore[no-redef]
        a: object
        b: object = 0
        hidden: object = field(default="h", repr=False)

    return generated, Pair


Generated, Shared = _pairs()


class Odd:
    """
    An object whose C{==} returns a non-bool (truthy or not, as given).
    """

    def __init__(self, truthy: bool) -> None:
        self.truthy = truthy

    def __eq__(self, other: object) -> Any:
        return Verdict(self.truthy)

    __hash__ = object.__hash__


class Verdict:
    def __init__(self, truthy: bool) -> None:
        self.truthy = truthy

    def __bool__(self) -> bool:
        return self.truthy

    def __repr__(self) -> str:
        return f"Verdict({self.truthy})"


_TWINS: dict[type, type] = {}


def _twin(value: Any) -> Any:
    """
    An instance of a class attrs generates (its own methods) with C{value}'s class name,
    fields (C{repr}, C{eq} options) and values.
    """
    cls = type(value)
    twin_cls = _TWINS.get(cls)
    if twin_cls is None:
        twin_cls = _TWINS[cls] = attrs.make_class(
            cls.__name__,
            {a.name: attrs.field(repr=a.repr, eq=a.eq) for a in attrs.fields(cls)},
            frozen=True,
        )
    return twin_cls(**{a.name: getattr(value, a.name) for a in attrs.fields(cls)})


class SameAsAttrsTests(SynchronousTestCase):
    """
    L{Value} against attrs' generated methods on the same fields and values.
    """

    def assertSameRepr(self, *args: Any) -> None:
        self.assertEqual(repr(Shared(*args)), repr(Generated(*args)))

    def test_repr(self) -> None:
        """
        C{Name(field=value!r, ...)}, the local class's name without its C{<locals>}
        prefix, the C{repr=False} field left out.
        """
        self.assertEqual(repr(Shared(1, "x", "secret")), "Pair(a=1, b='x')")
        for args in [(1,), ("q'uo\"te",), (None, [1, {"k": b"v"}]), (Shared(2), Generated(3))]:
            self.assertSameRepr(*args)

    def test_repr_cycle(self) -> None:
        """
        A value met again while it is being shown is C{...}, as attrs does; the guard is
        cleared afterwards, also when a field's repr raises.
        """
        for cls in (Shared, Generated):
            looped = cls([])
            looped.a.append(looped)
            self.assertEqual(repr(looped), "Pair(a=[...], b=0)")
            self.assertEqual(repr(looped), "Pair(a=[...], b=0)")

        class Broken:
            def __repr__(self) -> str:
                raise ValueError("no")

        broken = Shared(Broken())
        self.assertRaises(ValueError, repr, broken)
        self.assertRaises(ValueError, repr, broken)
        self.assertEqual(repr(Shared(1)), "Pair(a=1, b=0)")

    def test_repr_per_thread(self) -> None:
        """
        Each thread has its own guard (two threads showing one value both see it).
        """
        value = Shared(1)
        seen: list[str] = []
        thread = threading.Thread(target=lambda: seen.append(repr(value)))
        thread.start()
        thread.join()
        self.assertEqual(seen, ["Pair(a=1, b=0)"])

    def test_eq(self) -> None:
        """
        Equal when every compared field is equal (the C{repr=False} one included);
        another class, even with the same fields, gives C{NotImplemented}.
        """
        for cls in (Shared, Generated):
            self.assertEqual(cls(1, 2, 3), cls(1, 2, 3))
            self.assertNotEqual(cls(1, 2, 3), cls(1, 2, 4))
            self.assertNotEqual(cls(1, 2), cls(2, 2))
            self.assertFalse(cls(1) != cls(1))
            self.assertIs(cls(1).__eq__(object()), NotImplemented)
            self.assertIs(cls(1).__ne__(object()), NotImplemented)
        self.assertNotEqual(Shared(1), Generated(1))
        self.assertNotEqual(Generated(1), Shared(1))

    def test_eq_subclass_is_another_class(self) -> None:
        class Sub(Shared):  # type: ignore[misc,valid-type]
            pass

        self.assertIs(Shared(1).__eq__(Sub(1)), NotImplemented)
        self.assertNotEqual(Shared(1), Sub(1))

    def test_eq_nan_and_identity(self) -> None:
        """
        Fields are compared with C{==}, not identity: a NaN field is unequal to itself,
        as with attrs (a tuple comparison would say equal).
        """
        nan = float("nan")
        for cls in (Shared, Generated):
            value = cls(nan)
            self.assertFalse(value == cls(nan))
            self.assertFalse(value == copy.copy(value))

    def test_eq_returns_the_comparison(self) -> None:
        """
        The first false comparison's result, or the last one's, is returned as is.
        """
        for truthy_a, truthy_b in [(True, True), (True, False), (False, True)]:
            results = []
            for cls in (Shared, Generated):
                results.append(repr(cls(Odd(truthy_a), Odd(truthy_b)) == cls(1, 2)))
            self.assertEqual(results[0], results[1])
        self.assertEqual(repr(Shared(Odd(False), Odd(True)) == Shared(1, 2)), "Verdict(False)")
        self.assertEqual(
            repr(Shared(Odd(True), Odd(True), Odd(True)) == Shared(1, 2, 3)), "Verdict(True)"
        )

    def test_hash(self) -> None:
        """
        Equal values hash alike; a value with an unhashable field cannot be hashed.
        """
        self.assertEqual(hash(Shared(1, "b", "c")), hash(Shared(1, "b", "c")))
        self.assertEqual(len({Shared(1), Shared(1), Shared(2)}), 2)
        self.assertRaises(TypeError, hash, Shared([]))
        self.assertRaises(TypeError, hash, Generated([]))

    def test_no_field(self) -> None:
        """
        A class without fields: all its values are equal, shown C{Name()}.
        """
        self.assertEqual(messages.Heartbeat(), messages.Heartbeat())
        self.assertEqual(hash(messages.Heartbeat()), hash(messages.Heartbeat()))
        self.assertEqual(repr(messages.Heartbeat()), "Heartbeat()")

    def test_refuses_options_it_does_not_reproduce(self) -> None:
        """
        A field with a custom C{eq} key, C{hash} choice or C{repr} callable is refused
        (checked when the methods are first used).
        """

        @frozen(eq=False, repr=False)
        class Keyed(Value):
            a: str = field(eq=str.lower)

        @frozen(eq=False, repr=False)
        class Hashed(Value):
            a: str = field(hash=False)

        @frozen(eq=False, repr=False)
        class Shown(Value):
            a: str = field(repr=lambda v: "*")

        for cls in (Keyed, Hashed, Shown):
            self.assertRaises(TypeError, fields_of, cls)
            self.assertRaises(TypeError, repr, cls("x"))


def _wire_classes() -> list[type]:
    found = []
    for module in (messages, init):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and attrs.has(value) and value not in found:
                found.append(value)
    return found


class WireClassesTests(SynchronousTestCase):
    """
    The protocol's value classes use L{Value} and match attrs' methods on real values.
    """

    def test_every_wire_class_uses_value(self) -> None:
        classes = _wire_classes()
        self.assertEqual(len(classes), 42)
        for cls in classes:
            self.assertTrue(issubclass(cls, Value), cls)
            fields_of(cls)

    def test_secret_fields_not_shown(self) -> None:
        self.assertNotIn("s3cret", repr(messages.SecretMessage("K", "s3cret")))
        self.assertIn("name='K'", repr(messages.SecretMessage("K", "s3cret")))

    def _check(self, value: Any, other: Any) -> None:
        self.assertEqual(repr(value), repr(_twin(value)))
        self.assertEqual(value == other, _twin(value) == _twin(other))
        self.assertEqual(value == copy.copy(value), _twin(value) == _twin(copy.copy(value)))
        try:
            same = hash(value) == hash(copy.copy(value))
        except TypeError:
            self.assertRaises(TypeError, hash, _twin(value))
        else:
            self.assertTrue(same)

    @settings(max_examples=100, deadline=None)
    @given(st.data())
    def test_messages_like_attrs(self, data: st.DataObject) -> None:
        strategy = st.one_of(module_messages(), orchestrator_messages(), init_blobs())
        value = data.draw(strategy)
        other = data.draw(st.one_of(st.just(value), strategy))
        self._check(value, other)

    @settings(max_examples=30, deadline=None)
    @given(module_envelopes())
    def test_envelopes_like_attrs(self, envelope: messages.Envelope) -> None:
        self._check(envelope, envelope)


def _runtime_classes() -> list[type]:
    from pywatt_twisted._runtime.buildinfo import BuildInfo
    from pywatt_twisted._runtime.config import RuntimeConfig, Setting
    from pywatt_twisted._runtime.module import ModuleDefinition
    from pywatt_twisted._runtime.parts import ModuleParts
    from pywatt_twisted._runtime.ports import RetryPolicy as PortRetryPolicy
    from pywatt_twisted._runtime.resilience import BreakerPolicy, RetryPolicy
    from pywatt_twisted.link._choice import Route
    from pywatt_twisted.link._slo import Alert, SloThresholds
    from pywatt_twisted.streaming._machine import StreamLink
    from pywatt_twisted.web._cors import CorsPolicy, _Route
    from pywatt_twisted.web._health import HealthCheck
    from pywatt_twisted.wire.framing import Frame
    from pywatt_twisted.wire.stream import StreamOptions

    return [
        BuildInfo,
        RuntimeConfig,
        Setting,
        ModuleDefinition,
        ModuleParts,
        PortRetryPolicy,
        BreakerPolicy,
        RetryPolicy,
        Route,
        Alert,
        SloThresholds,
        StreamLink,
        CorsPolicy,
        _Route,
        HealthCheck,
        Frame,
        StreamOptions,
    ]


class RuntimeClassesTests(SynchronousTestCase):
    """
    The runtime's value classes on the start-up path use L{Value} (frozen) or
    L{MutableValue} (mutable: unhashable, as attrs makes them).
    """

    def test_bases(self) -> None:
        mutable = {"ModuleParts", "StreamLink", "HealthCheck"}
        for cls in _runtime_classes():
            self.assertTrue(issubclass(cls, Value), cls)
            self.assertEqual(issubclass(cls, MutableValue), cls.__name__ in mutable, cls)
            fields_of(cls)

    def test_mutable_is_unhashable(self) -> None:
        from pywatt_twisted._runtime.parts import ModuleParts

        parts = ModuleParts()
        self.assertRaises(TypeError, hash, parts)
        self.assertEqual(parts, parts)
        self.assertIs(parts.__eq__(object()), NotImplemented)
        self.assertTrue(repr(parts).startswith("ModuleParts(metrics=<"))

    def test_config_like_attrs(self) -> None:
        """
        The runtime config (60-odd fields) compares, hashes and shows as attrs would.
        """
        from pywatt_twisted._runtime.config import SETTINGS, RuntimeConfig

        config = RuntimeConfig()
        other = attrs.evolve(config, secret_timeout=5.0)
        self.assertEqual(repr(config), repr(_twin(config)))
        self.assertEqual(config, RuntimeConfig())
        self.assertEqual(hash(config), hash(RuntimeConfig()))
        self.assertNotEqual(config, other)
        self.assertEqual(config == other, _twin(config) == _twin(other))
        self.assertEqual(repr(SETTINGS[0]), repr(_twin(SETTINGS[0])))


class UnfrozenTests(SynchronousTestCase):
    """
    L{unfrozen}: a twin whose instances, filled and switched to the frozen class, are the
    objects the constructor makes.
    """

    def test_same_as_constructed(self) -> None:
        twin = unfrozen(messages.RoutedModuleResponse)
        payload_twin = unfrozen(messages.EncodedPayload)
        payload = payload_twin()
        payload.data = b"[1]"
        payload.format = "Json"
        payload.__class__ = messages.EncodedPayload
        value = twin()
        value.source_module_id = "inv"
        value.request_id = uuid.UUID(int=7)
        value.payload = payload
        value.__class__ = messages.RoutedModuleResponse
        made = messages.RoutedModuleResponse(
            "inv", uuid.UUID(int=7), messages.EncodedPayload(b"[1]", "Json")
        )
        self.assertIs(type(value), messages.RoutedModuleResponse)
        self.assertEqual(value, made)
        self.assertEqual(hash(value), hash(made))
        self.assertEqual(repr(value), repr(made))
        self.assertEqual(attrs.asdict(value), attrs.asdict(made))
        self.assertEqual(copy.deepcopy(value), made)
        self.assertEqual(attrs.evolve(value, source_module_id="x").source_module_id, "x")
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, value, "payload", None)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, delattr, value, "payload")

    def test_uuid(self) -> None:
        twin = unfrozen(uuid.UUID)
        value = twin()
        value.int = 0x3F2C8A6E5B1D4C7A9E2F0A1B2C3D4E5F
        value.is_safe = uuid.SafeUUID.unknown
        value.__class__ = uuid.UUID
        made = uuid.UUID("3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f")
        self.assertIs(type(value), uuid.UUID)
        self.assertEqual(value, made)
        self.assertEqual(hash(value), hash(made))
        self.assertEqual(str(value), str(made))
        self.assertEqual(value.is_safe, made.is_safe)
        self.assertRaises(TypeError, setattr, value, "int", 1)

    def test_twin_takes_stores(self) -> None:
        """
        Before the switch the twin is an ordinary object (stores on the fast path);
        it adds no slot and no C{__dict__}.
        """
        twin = unfrozen(messages.EncodedPayload)
        self.assertTrue(issubclass(twin, messages.EncodedPayload))
        self.assertEqual(twin.__dict__["__slots__"], ())
        value = twin()
        value.data = b"x"
        del value.data
        self.assertFalse(hasattr(value, "__dict__"))

    def test_refused_layout(self) -> None:
        """
        A class whose instances cannot switch to it (a built-in type) is refused when
        the twin is made, not when a value is built.
        """
        self.assertRaises(TypeError, unfrozen, int)
