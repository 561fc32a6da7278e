"""
The codec's fast path for large C{stream_chunk} messages (the C{data} string is not
parsed as JSON, its base64 is decoded from the message bytes): whatever the key
order, extra fields, escapes or envelope, it decodes exactly what parsing the whole
message decodes, and falls back to that when it cannot be sure.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire import codec
from pywatt_twisted.wire.codec import decode_envelope_from_module, decode_from_orchestrator
from pywatt_twisted.wire.messages import StreamChunk

BIG = 20000  # above the fast path's threshold once base64-coded


def big(seed: bytes) -> bytes:
    """
    At least L{BIG} bytes made of C{seed} (hypothesis draws the small seed).
    """
    return (seed * (BIG // len(seed) + 1))[: BIG + len(seed)]


def chunk_fields(data: bytes, stream_id: str = "s-1") -> dict[str, Any]:
    return {
        "op": "stream_chunk",
        "stream_id": stream_id,
        "sequence": 3,
        "data": base64.b64encode(data).decode(),
        "compressed": False,
        "checksum": 12345,
        "is_final": False,
    }


def both(text: bytes) -> tuple[Any, Any]:
    """
    (what decoding C{text} gives, what decoding its fully parsed object gives)
    """
    return decode_from_orchestrator(text), decode_from_orchestrator(json.loads(text))


extra_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["data", "x", "op"]), inner, max_size=3)
    ),
    max_leaves=6,
)


class FastPathTests(SynchronousTestCase):
    def test_plain_chunk_takes_the_fast_path(self) -> None:
        data = bytes(range(256)) * (BIG // 256)
        text = json.dumps(chunk_fields(data)).replace(" ", "").encode()
        self.assertIsNotNone(codec._chunk_object(text))
        taken = []
        original = codec._chunk_object
        self.patch(codec, "_chunk_object", lambda d: taken.append(d) or original(d))
        fast, full = both(text)
        self.assertEqual(taken, [text])
        self.assertEqual(fast, full)
        self.assertEqual(fast.data, data)
        self.assertIs(type(fast.data), bytes)

    @settings(max_examples=200, deadline=None)
    @given(
        seed=st.binary(min_size=1, max_size=300),
        order=st.permutations(list(chunk_fields(b""))),
        stream_id=st.text(max_size=30),
        extras=st.dictionaries(st.sampled_from(["x", "meta", "data2"]), extra_values, max_size=3),
        escape_slashes=st.booleans(),
        spaces=st.booleans(),
    )
    def test_same_as_parsing_it_all(
        self,
        seed: bytes,
        order: list[str],
        stream_id: str,
        extras: dict[str, Any],
        escape_slashes: bool,
        spaces: bool,
    ) -> None:
        data = big(seed)
        fields = chunk_fields(data, stream_id)
        message = {key: fields[key] for key in order}
        message.update(extras)
        text = json.dumps(message, separators=(", ", ": ") if spaces else (",", ":"))
        if escape_slashes:
            text = text.replace("/", "\\/")
        fast, full = both(text.encode())
        self.assertEqual(fast, full)
        self.assertEqual(fast.data, data)

    @settings(max_examples=50, deadline=None)
    @given(seed=st.binary(min_size=1, max_size=100), nested=st.booleans())
    def test_enveloped_chunk(self, seed: bytes, nested: bool) -> None:
        """
        A module's chunk on a channel is enveloped (C{content}); a C{data} key
        elsewhere in the envelope means two keys: the whole message is parsed.
        """
        data = big(seed)
        envelope: dict[str, Any] = {
            "id": "00000000-0000-0000-0000-000000000001",
            "content": chunk_fields(data),
            "metadata": {"properties": {"data": "x"}} if nested else {},
        }
        text = json.dumps(envelope, separators=(",", ":")).encode()
        self.assertEqual(codec._chunk_object(text) is None, nested)
        message = decode_envelope_from_module(text).content
        self.assertIsInstance(message, StreamChunk)
        self.assertEqual(message.data, data)

    def test_not_base64_is_refused_either_way(self) -> None:
        fields = chunk_fields(bytes(BIG))
        fields["data"] = "!" + fields["data"][1:]
        text = json.dumps(fields, separators=(",", ":")).encode()
        with self.assertRaises(ProtocolError) as caught:
            decode_from_orchestrator(text)
        self.assertIn("base64", str(caught.exception))

    def test_other_ops_are_parsed_whole(self) -> None:
        text = json.dumps(
            {"op": "unknown_thing", "data": "A" * BIG}, separators=(",", ":")
        ).encode()
        self.assertIsNone(codec._chunk_object(text))
        self.assertEqual(decode_from_orchestrator(text).op, "unknown_thing")


class DuplicateDataKeyTests(SynchronousTestCase):
    """
    A second C{data} key that the byte search does not see as C{"data":"} (spaces
    around the colon, or an escape in the key) makes the full parse keep it; the fast
    path must then decode exactly that too, not the first value. (An empty second
    value is the case that matters: it looks like the fast path's own placeholder.)
    """

    def _text(self, second_key: bytes) -> bytes:
        fields = chunk_fields(big(b"first"))
        text = json.dumps(fields, separators=(",", ":")).encode()
        return text[:-1] + b"," + second_key + b':""}'

    def _check(self, second_key: bytes) -> None:
        text = self._text(second_key)
        fast, full = both(text)
        self.assertEqual(fast, full)
        self.assertEqual(fast.data, b"")

    def test_spaces_around_the_colon(self) -> None:
        self._check(b'"data" ')

    def test_escaped_key(self) -> None:
        self._check(b'"d\\u0061ta"')
