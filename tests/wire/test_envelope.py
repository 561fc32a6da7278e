"""
Tests for L{pywatt_twisted.wire.envelope}: the envelopes a module sends, built as plain
values.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ChannelError, FrameTooLarge, MessageTooLarge, PayloadError
from pywatt_twisted.wire import envelope
from pywatt_twisted.wire.envelope import (
    correlated_metadata,
    encode_channel_frame,
    envelope_id,
    heartbeat_ack_frame,
    identify_metadata,
    json_payload,
    op_name,
    random_uuid4,
    random_uuid4_int,
    route_to_module_frame,
    routed_reply_content,
    routed_request_frame,
    routed_request_json,
    routed_request_parts,
    routed_request_payload,
    unwrap_routed_request,
)
from pywatt_twisted.wire.framing import FORMAT_JSON, Frame, FrameDecoder
from pywatt_twisted.wire.messages import EncodedPayload, HeartbeatAck, Identify, RouteToModule


def decode(frame: bytes) -> dict[str, object]:
    [item] = FrameDecoder(1 << 30).feed(frame)
    assert isinstance(item, Frame) and item.format == FORMAT_JSON
    value = json.loads(item.payload)
    assert isinstance(value, dict)
    return value


class ChannelEnvelopeTests(SynchronousTestCase):
    def test_envelope_id_is_a_uuid4(self) -> None:
        value = envelope_id()
        parsed = uuid.UUID(value)
        self.assertEqual((str(parsed), parsed.version), (value, 4))
        self.assertNotEqual(value, envelope_id())

    def test_envelope_ids_are_unique_uuid4_strings(self) -> None:
        """
        Many ids in a row are all distinct, each a lowercase hyphenated version-4 UUID
        with the RFC 4122 variant.
        """
        values = [envelope_id() for _ in range(10_000)]
        self.assertEqual(len(set(values)), len(values))
        for value in values[:50] + values[-50:]:
            parsed = uuid.UUID(value)
            self.assertEqual(
                (str(parsed), parsed.version, parsed.variant), (value, 4, uuid.RFC_4122)
            )

    def test_forked_child_has_its_own_ids(self) -> None:
        """
        A forked child does not repeat the ids its parent goes on to hand out.
        """
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.write(write_end, "".join(envelope_id() for _ in range(3)).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as f:
            child = f.read().decode()
        parent = [envelope_id() for _ in range(3)]
        self.assertEqual(len(child), 3 * 36)
        child_ids = {child[i : i + 36] for i in range(0, len(child), 36)}
        self.assertEqual(child_ids & set(parent), set())
        self.assertNotEqual(child[:19], parent[0][:19])

    def test_random_uuid4(self) -> None:
        """
        L{random_uuid4} gives distinct version-4 UUIDs with the RFC 4122 variant, across
        several refills of its pool, usable like any L{uuid.UUID}.
        """
        values = [random_uuid4() for _ in range(3 * 256 + 7)]
        self.assertEqual(len(set(values)), len(values))
        for value in values[:20] + values[250:260] + values[-20:]:
            self.assertIs(type(value), uuid.UUID)
            self.assertEqual((value.version, value.variant), (4, uuid.RFC_4122))
            self.assertEqual(value.is_safe, uuid.uuid4().is_safe)
            self.assertRaises(TypeError, setattr, value, "int", 1)  # immutable, as any UUID
            self.assertEqual(uuid.UUID(str(value)), value)
            self.assertEqual(hash(uuid.UUID(str(value))), hash(value))
        # 122 random bits each: no bit position (other than the fixed ones) is constant
        varying = 0
        for value in values:
            varying |= value.int ^ values[0].int
        self.assertEqual(bin(varying).count("1"), 122)

    def test_envelope_ids_across_counter_blocks(self) -> None:
        """
        The low counter of an id runs out once in 2**48 - 2**44 ids: the ids go on in
        the next block (the fourth group), then with a fresh prefix after the last
        block, all distinct v4 UUID strings, from L{envelope_id} and from the frames
        L{encode_channel_frame} builds alike.
        """
        from pywatt_twisted.wire import envelope

        def near_the_end(block: int) -> None:
            envelope._start_block(block)
            self.patch(envelope, "_next_low", itertools.count(envelope._LOW_END - 2).__next__)

        def frame_id() -> str:
            return str(decode(encode_channel_frame(HeartbeatAck(), 1 << 20))["id"])

        self.addCleanup(envelope._reseed_ids)
        near_the_end(0x8000)
        prefix = envelope._id_prefix.decode()
        values = [envelope_id(), frame_id(), envelope_id(), frame_id()]
        self.assertEqual(values[0][19:], "8000-fffffffffffe")
        self.assertEqual(values[1][19:], "8000-ffffffffffff")
        self.assertEqual(values[2][19:], "8001-100000000000")
        self.assertEqual(values[3][19:], "8001-100000000001")
        self.assertEqual({v[:19] for v in values}, {prefix})
        near_the_end(0xBFFF)
        more = [frame_id(), envelope_id(), frame_id()]
        self.assertEqual(more[0][:19], prefix)
        self.assertEqual(more[0][19:], "bfff-fffffffffffe")
        self.assertEqual(more[1][19:], "bfff-ffffffffffff")
        self.assertNotEqual(more[2][:19], prefix)  # a fresh prefix
        self.assertEqual(more[2][19:], "8000-100000000000")
        for value in values + more:
            parsed = uuid.UUID(value)
            self.assertEqual(
                (str(parsed), parsed.version, parsed.variant), (value, 4, uuid.RFC_4122)
            )
        self.assertEqual(len(set(values + more)), len(values + more))

    def test_forked_child_has_its_own_random_uuids(self) -> None:
        """
        A forked child does not hand out the random ids its parent drew for later.
        """
        random_uuid4()  # the parent has a pool
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.write(write_end, "".join(str(random_uuid4()) for _ in range(3)).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as f:
            child = f.read().decode()
        parent = {str(random_uuid4()) for _ in range(3)}
        self.assertEqual(len(child), 3 * 36)
        self.assertEqual({child[i : i + 36] for i in range(0, len(child), 36)} & parent, set())

    def test_heartbeat_ack_frame(self) -> None:
        """
        The pre-encoded ack is byte for byte what L{encode_channel_frame} builds for a
        L{HeartbeatAck}, but for its (fresh, valid) envelope id.
        """
        frame = heartbeat_ack_frame()
        envelope = decode(frame)
        generic = encode_channel_frame(HeartbeatAck(), 1000)
        ack_id = envelope["id"]
        assert isinstance(ack_id, str)
        self.assertEqual(uuid.UUID(ack_id).version, 4)
        self.assertEqual(
            frame.replace(ack_id.encode(), b"ID"),
            generic.replace(str(decode(generic)["id"]).encode(), b"ID"),
        )
        self.assertNotEqual(decode(heartbeat_ack_frame())["id"], ack_id)

    def test_frame_is_the_rust_envelope(self) -> None:
        """
        C{{"id", "content", "metadata"}} in that order, the metadata as given.
        """
        envelope = decode(encode_channel_frame(HeartbeatAck(), 1000, {"source": "m"}))
        self.assertEqual(list(envelope), ["id", "content", "metadata"])
        self.assertEqual(envelope["content"], {"op": "heartbeat_ack"})
        self.assertEqual(envelope["metadata"], {"source": "m"})
        self.assertEqual(decode(encode_channel_frame(HeartbeatAck(), 1000))["metadata"], {})

    def test_too_large(self) -> None:
        error = self.assertRaises(MessageTooLarge, encode_channel_frame, Identify("m" * 200), 100)
        self.assertIsInstance(error, ChannelError)
        self.assertIsInstance(error, FrameTooLarge)
        self.assertEqual((error.op, error.limit), ("identify", 100))
        self.assertIn("--max-frame-length", str(error))

    def test_identify_metadata(self) -> None:
        self.assertEqual(identify_metadata("m"), {"source": "m"})
        self.assertEqual(
            identify_metadata("m", {"k": "v"}), {"source": "m", "properties": {"k": "v"}}
        )

    def test_correlated_metadata(self) -> None:
        [(key, value)] = correlated_metadata().items()
        self.assertEqual((key, uuid.UUID(str(value)).version), ("id", 4))

    def test_op_name(self) -> None:
        self.assertEqual(op_name(HeartbeatAck()), "heartbeat_ack")
        self.assertEqual(op_name(object()), "object")


class RoutedEnvelopeTests(SynchronousTestCase):
    def test_request_round_trip(self) -> None:
        payload = routed_request_payload({"n": 1}, "ep", source="a", no_reply=True, timestamp=7)
        value = payload.json()
        self.assertEqual(list(value), ["id", "content", "metadata"])
        self.assertEqual(
            value["metadata"],
            {
                "timestamp": 7,
                "source": "a",
                "properties": {"target_endpoint": "ep", "no_reply": True},
            },
        )
        self.assertEqual(unwrap_routed_request(payload, None), ({"n": 1}, "ep", True))

    def test_bare_request(self) -> None:
        payload = EncodedPayload.from_json([1])
        self.assertEqual(unwrap_routed_request(payload, "top"), ([1], "top", False))

    def test_payload_is_a_plain_json_payload(self) -> None:
        """
        The payload (built through its slots) equals the one C{EncodedPayload.from_json}
        makes of the same envelope; content only the standard library writes exactly
        (an integer over 64 bits) is written exactly.
        """
        payload = routed_request_payload({"n": 1}, "ep", "me", timestamp=5)
        self.assertIs(type(payload), EncodedPayload)
        self.assertEqual(payload.format, "Json")
        envelope = payload.json()
        self.assertEqual(envelope["content"], {"n": 1})
        self.assertEqual(payload, EncodedPayload.from_json(envelope))
        big = routed_request_payload({"big": 2**70}, "ep")
        self.assertIn(b'"content":{"big":%d}' % 2**70, big.data)

    def test_not_serialisable(self) -> None:
        error = self.assertRaises(PayloadError, routed_request_payload, object(), "ep")
        self.assertIsInstance(error, ValueError)
        self.assertIn("'ep'", str(error))

    def test_reply_content(self) -> None:
        self.assertEqual(routed_reply_content(EncodedPayload.from_json([1])), [1])
        self.assertEqual(
            routed_reply_content(EncodedPayload.from_json({"id": "x", "content": 2})), 2
        )

    def test_reply_content_base64_and_invalid_json(self) -> None:
        """
        A C{"Base64"} reply is decoded first (a C{"Json"} one is read directly); one that
        is not JSON raises a C{ValueError} with the text L{EncodedPayload.json} gives.
        """
        value = {"id": "x", "content": [3]}
        encoded = base64.b64encode(json.dumps(value).encode())
        self.assertEqual(routed_reply_content(EncodedPayload(encoded, "Base64")), [3])
        bad = EncodedPayload(b"{nope", "Json")
        expected = self.assertRaises(ValueError, bad.json)
        error = self.assertRaises(ValueError, routed_reply_content, bad)
        self.assertEqual(str(error), str(expected))


class JsonPayloadTests(SynchronousTestCase):
    """
    L{json_payload} makes what C{EncodedPayload.from_json} makes, and refuses what it
    refuses with the same exceptions.
    """

    def test_same_as_from_json(self) -> None:
        for value in [
            {"a": [1, 2.5, None, True], "b": "\u00e9"},
            [],
            "text",
            0,
            None,
            2**70,  # only the standard library writes it exactly
            {1: "a"},  # a key orjson refuses and the standard library writes
            float("nan"),
        ]:
            payload = json_payload(value)
            self.assertIs(type(payload), EncodedPayload)
            self.assertEqual(payload, EncodedPayload.from_json(value))
            self.assertEqual(payload.format, "Json")

    def test_refused(self) -> None:
        for value in [object(), {"a": {1, 2}}, {(1, 2): "a"}]:
            try:
                EncodedPayload.from_json(value)
            except (TypeError, ValueError) as e:
                expected: type[Exception] = type(e)
            else:
                self.fail(f"from_json accepted {value!r}")
            self.assertRaises(expected, json_payload, value)


class DeadlineTests(SynchronousTestCase):
    """
    The X4 C{deadline_ms} of a routed request.
    """

    def test_round_trip(self) -> None:
        payload = routed_request_payload({"n": 1}, "ep", source="a", deadline_ms=1_700_000_000_123)
        properties = payload.json()["metadata"]["properties"]
        self.assertEqual(properties, {"target_endpoint": "ep", "deadline_ms": 1_700_000_000_123})
        self.assertEqual(
            routed_request_parts(payload, None), ({"n": 1}, "ep", False, 1_700_000_000_123)
        )

    def test_absent_or_unusable_is_none(self) -> None:
        for raw in (None, "soon", True, [1]):
            value = {
                "id": "x",
                "content": 1,
                "metadata": {"properties": {"target_endpoint": "ep", "deadline_ms": raw}},
            }
            payload = EncodedPayload(json.dumps(value).encode())
            self.assertEqual(routed_request_parts(payload, None)[3], None, raw)
        self.assertEqual(routed_request_parts(EncodedPayload.from_json(5), "t")[3], None)

    def test_base64_payload_and_invalid_json(self) -> None:
        """
        A C{"Base64"} payload is decoded first (the C{"Json"} one is read directly);
        a payload that is not JSON raises a C{ValueError} either way.
        """
        value = {"id": "x", "content": 1, "metadata": {"properties": {"deadline_ms": 7}}}
        encoded = base64.b64encode(json.dumps(value).encode())
        self.assertEqual(
            routed_request_parts(EncodedPayload(encoded, "Base64"), "t"), (1, "t", False, 7)
        )
        self.assertRaises(ValueError, routed_request_parts, EncodedPayload(b"{nope", "Json"), "t")
        self.assertRaises(
            ValueError,
            routed_request_parts,
            EncodedPayload(base64.b64encode(b"{nope"), "Base64"),
            "t",
        )

    def test_fractional_milliseconds_are_truncated(self) -> None:
        value = {"id": "x", "content": 1, "metadata": {"properties": {"deadline_ms": 12.9}}}
        payload = EncodedPayload.from_json(value)
        self.assertEqual(routed_request_parts(payload, "t")[3], 12)


class RouteToModuleFrameTests(SynchronousTestCase):
    """
    L{route_to_module_frame} is the frame L{encode_channel_frame} builds for the same
    L{RouteToModule}, byte for byte (but for the envelope id, fresh in each).
    """

    def _generic(self, target: str, endpoint: str, number: int, data: bytes, cap: int) -> bytes:
        message = RouteToModule(
            target, endpoint, uuid.UUID(int=number), EncodedPayload(data, "Json")
        )
        return encode_channel_frame(message, cap)

    @given(
        st.text(max_size=20),
        st.text(max_size=20),
        st.integers(min_value=0, max_value=2**128 - 1),
        st.binary(max_size=300),
    )
    def test_same_bytes(self, target: str, endpoint: str, number: int, data: bytes) -> None:
        spliced = route_to_module_frame(target, endpoint, number, data, 1 << 20)
        generic = self._generic(target, endpoint, number, data, 1 << 20)
        ids = [str(decode(frame)["id"]).encode() for frame in (spliced, generic)]
        self.assertNotEqual(ids[0], ids[1])
        self.assertEqual(spliced.replace(ids[0], b"ID", 1), generic.replace(ids[1], b"ID", 1))

    def test_too_large(self) -> None:
        """
        The frame cap is checked as L{encode_channel_frame} checks it, to the byte.
        """
        data = routed_request_json({"n": 1}, "ep", "me", timestamp=5)
        size = len(self._generic("t", "ep", 5, data, 1 << 20)) - 5  # (less the header)
        self.assertEqual(len(route_to_module_frame("t", "ep", 5, data, size)), size + 5)
        for build in (route_to_module_frame, self._generic):
            error = self.assertRaises(MessageTooLarge, build, "t", "ep", 5, data, size - 1)
            self.assertEqual((error.op, error.limit), ("route_to_module", size - 1))

    def test_random_uuid4_int(self) -> None:
        """
        L{random_uuid4_int} gives the numbers of distinct version-4 UUIDs.
        """
        numbers = [random_uuid4_int() for _ in range(300)]
        self.assertEqual(len(set(numbers)), 300)
        for number in numbers:
            value = uuid.UUID(int=number)
            self.assertEqual((value.version, value.variant), (4, uuid.RFC_4122))


_contents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)  # (past 64 bits: the standard library's fallback)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


class RoutedRequestFrameTests(SynchronousTestCase):
    """
    L{routed_request_frame} is C{route_to_module_frame(..., routed_request_json(...))},
    byte for byte, envelope ids included (the id counter started at the same place for
    both), or fails with the same error.
    """

    def _ids_from(self, low: int) -> None:
        # the same id state for both builds (and back to the real one after the test)
        for name, value in self._start:
            self.patch(envelope, name, value)
        self.patch(envelope, "_next_low", itertools.count(low).__next__)

    def _both(self, low: int, *args: Any, cap: int = 1 << 20) -> list[object]:
        (target, endpoint, number, content, source, timestamp, deadline, extra) = args
        out: list[object] = []
        self._start = [(name, getattr(envelope, name)) for name in ("_id_block", "_id_head")]
        for fast in (True, False):
            self._ids_from(low)
            try:
                if fast:
                    frame = routed_request_frame(
                        target, endpoint, number, content, source, timestamp, deadline, cap, extra
                    )
                else:
                    data = routed_request_json(
                        content,
                        endpoint,
                        source,
                        False,
                        timestamp,
                        deadline,
                        extra_properties=extra,
                    )
                    frame = route_to_module_frame(target, endpoint, number, data, cap)
            except (PayloadError, MessageTooLarge) as e:
                out.append((type(e), str(e)))
            else:
                out.append((frame, envelope._next_low()))
        return out

    @given(
        st.text(max_size=12),
        st.text(max_size=12),
        st.integers(min_value=0, max_value=2**128 - 1),
        _contents,
        st.text(max_size=12),
        st.integers(-(2**40), 2**70),
        st.integers(-(2**40), 2**70),
        st.sampled_from([None, {}, {"traceparent": "00-ab-cd-01"}]),
        st.sampled_from([0, 1, 2]),
        st.integers(min_value=0, max_value=envelope._LOW_END - envelope._LOW_START - 3),
    )
    def test_same_bytes(
        self,
        target: str,
        endpoint: str,
        number: int,
        content: Any,
        source: str,
        timestamp: int,
        deadline: int,
        extra: dict[str, str] | None,
        near_end: int,
        offset: int,
    ) -> None:
        low = (envelope._LOW_END - near_end) if near_end else envelope._LOW_START + offset
        parts = (target, endpoint, number, content, source, timestamp, deadline, extra)
        fast, general = self._both(low, *parts)
        self.assertEqual(fast, general)

    def test_not_json_and_too_large(self) -> None:
        """
        A payload that is not JSON-serialisable, or a frame over the cap, fails as the
        general path fails.
        """
        parts = ("t", "ep", 5, {"n": object()}, "me", 1, 2, None)
        fast, general = self._both(envelope._LOW_START, *parts)
        self.assertEqual(fast, general)
        self.assertIs(fast[0], PayloadError)  # type: ignore[index]
        parts = ("t", "ep", 5, {"n": "x" * 50}, "me", 1, 2, None)
        for cap in (100, 300, 400):
            fast, general = self._both(envelope._LOW_START, *parts, cap=cap)
            self.assertEqual(fast, general)

    def test_timestamps_and_deadlines(self) -> None:
        """
        The same timestamp again (its array kept), another one, one over 64 bits, and
        booleans or floats where numbers go: the general path's bytes each time.
        """
        for timestamp, deadline in (
            (5, 7),
            (5, 8),
            (6, -9),
            (6, 2**64),
            (2**64, 1),
            (6, 1),
            (True, 1),
            (6, False),
            (1.5, 2),
            (7, 2.5),
            (7, 2**63 - 1),
        ):
            parts = ("t", "ep", 5, {"n": 1}, "me", timestamp, deadline, None)
            fast, general = self._both(envelope._LOW_START + 13 * 16**3, *parts)
            self.assertEqual(fast, general)
