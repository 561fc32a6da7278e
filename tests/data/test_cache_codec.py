"""
Tests for L{pywatt_twisted.data._cache._codec}: the stored value format and key rules.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data._cache import (
    InvalidKey,
    SerializationError,
    decode_value,
    encode_value,
    validate_key,
)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


class CodecTests(SynchronousTestCase):
    def test_format(self) -> None:
        self.assertEqual(encode_value(b"ab"), b"bab")
        self.assertEqual(encode_value("ab"), b'j"ab"')
        self.assertEqual(encode_value(-12), b"-12")
        self.assertEqual(encode_value(True), b"jtrue")
        self.assertEqual(encode_value({"a": [1]}), b'j{"a":[1]}')
        self.assertEqual(decode_value(b"77"), 77)

    def test_foreign_data(self) -> None:
        for data in (b"", b"xyz", b"j{broken"):
            self.assertRaises(SerializationError, decode_value, data)

    def test_unserialisable(self) -> None:
        self.assertRaises(SerializationError, encode_value, {1j})

    @given(st.binary())
    def test_bytes_round_trip(self, value: bytes) -> None:
        self.assertEqual(decode_value(encode_value(value)), value)

    @given(_json)
    def test_json_round_trip(self, value: object) -> None:
        back = decode_value(encode_value(value))
        self.assertEqual(back, value)
        self.assertIs(type(back), type(value))

    def test_keys(self) -> None:
        self.assertEqual(validate_key("k", "ns:"), "ns:k")
        self.assertEqual(validate_key("x" * 250), "x" * 250)
        self.assertRaises(InvalidKey, validate_key, "\u00e9" * 126)  # 252 bytes
        self.assertRaises(InvalidKey, validate_key, "a\u2003b")  # unicode whitespace
        self.assertRaises(InvalidKey, validate_key, "a\x7fb")
