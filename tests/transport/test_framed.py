"""
Tests for L{pywatt_twisted._transport.framed.FramedProtocol}, the base of every framed
connection.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import error, reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.internet.protocol import ClientCreator, Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import classImplements

from pywatt_twisted._transport.framed import (
    COALESCE_LIMIT,
    LARGE_PAYLOAD,
    LARGE_READ_SIZE,
    UNIX_SEND_BUFFER,
    CoalesceGroup,
    FramedProtocol,
    raise_send_buffer,
    write_parts,
)
from pywatt_twisted.errors import FrameError, FrameTooLarge
from pywatt_twisted.wire.framing import Frame, encode_frame, frame_header
from tests.transport.fakes import BufferedTransport


class Recorder(FramedProtocol):
    """
    Records what the base hands to its hooks; may write a reply per frame.
    """

    def __init__(self, max_frame_length: int = 100, high_water: int | None = None) -> None:
        super().__init__(max_frame_length, high_water)
        self.frames: list[bytes] = []
        self.skipped: list[FrameError] = []
        self.writability: list[bool] = []
        self.high_water_hits = 0
        self.reply: bytes | None = None

    def frameReceived(self, frame: Frame) -> None:
        self.frames.append(frame.payload)
        if self.reply is not None:
            self.transmit(self.reply)

    def frameSkipped(self, error: FrameError) -> None:
        self.skipped.append(error)

    def writabilityChanged(self, writable: bool) -> None:
        self.writability.append(writable)

    def highWaterReached(self) -> None:
        self.high_water_hits += 1


class JsonRecorder(Recorder):
    """
    A L{Recorder} taking JSON frames as payload bytes (C{json_payloads}).
    """

    json_payloads = True

    def __init__(self, max_frame_length: int = 100, high_water: int | None = None) -> None:
        super().__init__(max_frame_length, high_water)
        self.json: list[bytes] = []

    def jsonReceived(self, payload: bytes) -> None:
        self.json.append(payload)
        if self.reply is not None:
            self.transmit(self.reply)


class AbortingTransport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class ReadingTests(SynchronousTestCase):
    def connect(self, protocol: FramedProtocol) -> AbortingTransport:
        transport = AbortingTransport()
        protocol.makeConnection(transport)
        return transport

    def test_json_payloads(self) -> None:
        """
        With C{json_payloads}, JSON frames go to C{jsonReceived} as bytes and other
        formats to C{frameReceived}, in order; without it, every frame reaches
        C{frameReceived} as a L{Frame}.
        """
        stream = encode_frame(b"one", 1, 100) + encode_frame(b"two", 2, 100)
        stream += encode_frame(b"three", 1, 100)
        p = JsonRecorder()
        self.connect(p)
        p.dataReceived(stream[:6])
        p.dataReceived(stream[6:])
        self.assertEqual((p.json, p.frames), ([b"one", b"three"], [b"two"]))
        d = Recorder()
        self.connect(d)
        d.dataReceived(stream)
        self.assertEqual(d.frames, [b"one", b"two", b"three"])

    def test_json_payloads_held_while_paused(self) -> None:
        """
        JSON payloads held while reading is paused are handed to C{jsonReceived} in
        order once it resumes.
        """
        p = JsonRecorder(high_water=10)
        transport = self.connect(p)
        p.registerAsProducer()
        p.reply = b"r" * 20
        p.pauseProducing()  # the transport is full: replies wait in the outbox
        p.dataReceived(b"".join(encode_frame(b"%d" % i, 1, 100) for i in range(4)))
        self.assertEqual(p.json, [b"0"])
        p.resumeProducing()
        self.assertEqual(p.json, [b"0", b"1", b"2", b"3"])
        self.assertTrue(transport.value())

    def test_frames_across_any_chunking(self) -> None:
        p = Recorder()
        self.connect(p)
        data = encode_frame(b'{"a":1}') + encode_frame(b"[]") + encode_frame(b'"x"')
        for i in range(len(data)):
            p.dataReceived(data[i : i + 1])
        self.assertEqual(p.frames, [b'{"a":1}', b"[]", b'"x"'])

    def test_unknown_format_is_skipped(self) -> None:
        p = Recorder()
        self.connect(p)
        p.dataReceived(encode_frame(b"zz", 9) + encode_frame(b"ok"))
        self.assertEqual(len(p.skipped), 1)
        self.assertEqual(p.frames, [b"ok"])

    def test_oversize_header_aborts_before_buffering(self) -> None:
        """
        The default C{frameTooLong} aborts with the error as the reason; frames after
        the bad header are never dispatched.
        """
        p = Recorder(max_frame_length=10)
        transport = self.connect(p)
        p.dataReceived(encode_frame(b"ok") + frame_header(11) + b"x" * 5)
        self.assertTrue(transport.aborted)
        self.assertIsInstance(p.abort_reason, FrameTooLarge)
        self.assertEqual(p.frames, [b"ok"])
        p.dataReceived(encode_frame(b"later"))
        self.assertEqual(p.frames, [b"ok"])

    def test_first_abort_reason_wins(self) -> None:
        p = Recorder()
        self.connect(p)
        first, second = ValueError("first"), ValueError("second")
        p.abortWith(first)
        p.abortWith(second)
        self.assertIs(p.abort_reason, first)


class ReadSizeTests(SynchronousTestCase):
    """
    While a large payload arrives the transport is read L{LARGE_READ_SIZE} bytes at a
    time; its own read size is back once the payload is complete.
    """

    def connect(self, buffer_size: object = 65536) -> tuple[Recorder, AbortingTransport]:
        protocol = Recorder(max_frame_length=4 * 1024 * 1024)
        transport = AbortingTransport()
        transport.bufferSize = buffer_size  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        return protocol, transport

    def test_raised_while_a_large_payload_arrives(self) -> None:
        protocol, transport = self.connect()
        payload = b"x" * (LARGE_PAYLOAD * 5)
        data = encode_frame(payload) + encode_frame(b"small")
        protocol.dataReceived(data[:1000])
        self.assertEqual(transport.bufferSize, LARGE_READ_SIZE)  # type: ignore[attr-defined]
        cut = len(data) - 2 * LARGE_PAYLOAD  # (over LARGE_PAYLOAD of the payload still to come)
        protocol.dataReceived(data[1000:cut])
        self.assertEqual(transport.bufferSize, LARGE_READ_SIZE)  # type: ignore[attr-defined]
        protocol.dataReceived(data[cut:])
        self.assertEqual(protocol.frames, [payload, b"small"])
        self.assertEqual(transport.bufferSize, 65536)  # type: ignore[attr-defined]

    def test_lowered_when_little_is_left(self) -> None:
        protocol, transport = self.connect()
        data = encode_frame(b"y" * (LARGE_PAYLOAD * 2))
        protocol.dataReceived(data[:100])
        self.assertEqual(transport.bufferSize, LARGE_READ_SIZE)  # type: ignore[attr-defined]
        protocol.dataReceived(data[100 : LARGE_PAYLOAD + 200])  # (under LARGE_PAYLOAD left)
        self.assertEqual(transport.bufferSize, 65536)  # type: ignore[attr-defined]
        protocol.dataReceived(data[LARGE_PAYLOAD + 200 :])
        self.assertEqual(len(protocol.frames), 1)

    def test_small_frames_leave_it(self) -> None:
        protocol, transport = self.connect()
        data = encode_frame(b"z" * (LARGE_PAYLOAD - 1)) * 3
        for i in range(0, len(data), 1000):
            protocol.dataReceived(data[i : i + 1000])
            self.assertEqual(transport.bufferSize, 65536)  # type: ignore[attr-defined]
        self.assertEqual(len(protocol.frames), 3)

    def test_larger_or_no_read_size_is_left(self) -> None:
        for size in (1 << 20, None):
            protocol, transport = self.connect(size)
            data = encode_frame(b"w" * (LARGE_PAYLOAD * 3))
            protocol.dataReceived(data[:10])
            self.assertEqual(transport.bufferSize, size)  # type: ignore[attr-defined]
            protocol.dataReceived(data[10:])
            self.assertEqual(transport.bufferSize, size)  # type: ignore[attr-defined]


class FlowControlTests(SynchronousTestCase):
    def connect(self, protocol: FramedProtocol, buffer: int = 10) -> BufferedTransport:
        transport = BufferedTransport(buffer)
        protocol.makeConnection(transport)
        protocol.registerAsProducer()
        return transport

    def test_not_a_producer_unless_registered(self) -> None:
        p = Recorder()
        transport = StringTransport()
        p.makeConnection(transport)
        self.assertIsNone(transport.producer)

    def test_paused_transport_fills_the_outbox_then_drains_in_order(self) -> None:
        p = Recorder()
        transport = self.connect(p, buffer=4)
        p.transmit(b"12345")  # over the buffer: the transport pauses us
        self.assertEqual((p.paused, p.writability), (True, [False]))
        p.transmit(b"abc")
        p.transmit(b"def")
        self.assertEqual(p.buffered, 6)
        self.assertEqual(transport.value(), b"12345")
        transport.drain()
        self.assertEqual(transport.delivered + transport.value(), b"12345abcdef")
        self.assertEqual(p.buffered, 0)

    def test_high_water_pauses_reading_and_holds_frames_in_order(self) -> None:
        """
        Above the high-water mark the transport is no longer read and decoded frames
        wait; once the outbox drains to the low-water mark they are dispatched in
        order, none dropped.
        """
        p = Recorder(high_water=8)
        p.reply = b"r" * 5
        transport = self.connect(p, buffer=4)
        p.dataReceived(b"".join(encode_frame(b"%d" % i) for i in range(5)))
        # 1st reply pauses the transport, 2nd and 3rd go to the outbox (10 > 8).
        self.assertEqual(p.frames, [b"0", b"1", b"2"])
        self.assertTrue(p.reading_paused)
        self.assertEqual(p.high_water_hits, 1)
        self.assertEqual(transport.producerState, "paused")
        p.dataReceived(encode_frame(b"5"))
        self.assertEqual(p.frames, [b"0", b"1", b"2"])
        while p.reading_paused or p.buffered:
            transport.drain()
        self.assertEqual(p.frames, [b"%d" % i for i in range(6)])
        self.assertEqual(transport.producerState, "producing")

    def test_flush_outbox_ignores_the_pause(self) -> None:
        p = Recorder()
        transport = self.connect(p, buffer=1)
        p.transmit(b"ab")
        p.transmit(b"cd")
        p.flushOutbox()
        self.assertEqual(transport.value(), b"abcd")
        self.assertEqual(p.buffered, 0)


class CountingTransport(StringTransport):
    """
    Records each call that hands bytes to it: C{("write", data)} or
    C{("writeSequence", [data, ...])}.
    """

    def __init__(self, bufferSize: int | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []
        if bufferSize is not None:
            self.bufferSize = bufferSize

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))
        super().write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.calls.append(("writeSequence", list(data)))
        super().writeSequence(data)


class CoalescingTests(SynchronousTestCase):
    def connect(self, protocol: FramedProtocol, bufferSize: int | None = None) -> CountingTransport:
        transport = CountingTransport(bufferSize)
        protocol.makeConnection(transport)
        return transport

    def replies(self, n: int) -> bytes:
        return b"".join(encode_frame(b"%d" % i) for i in range(n))

    def test_replies_to_one_read_go_in_one_call(self) -> None:
        """
        The frames transmitted while one read is dispatched reach the transport in one
        C{writeSequence}, in order, once the read is dispatched.
        """
        p = Recorder()
        p.reply = b"r"
        p.push_every = 0  # (coalescing alone: PushEveryTests has the slices)
        transport = self.connect(p)
        seen: list[int] = []
        original = p.frameReceived

        def frameReceived(frame: Frame) -> None:
            seen.append(len(transport.calls))  # nothing handed over mid-read
            original(frame)

        p.frameReceived = frameReceived  # type: ignore[method-assign]
        p.dataReceived(self.replies(64))
        self.assertEqual(seen, [0] * 64)
        self.assertEqual(transport.calls, [("writeSequence", [b"r"] * 64)])
        self.assertEqual(transport.value(), b"r" * 64)

    def test_one_reply_is_a_plain_write(self) -> None:
        p = Recorder()
        p.reply = b"r"
        transport = self.connect(p)
        p.dataReceived(self.replies(1))
        self.assertEqual(transport.calls, [("write", b"r")])

    def test_off(self) -> None:
        """
        With C{coalesce} off every frame is its own C{write}, as it is handed over.
        """
        p = Recorder()
        p.coalesce = False
        p.reply = b"r"
        transport = self.connect(p)
        p.dataReceived(self.replies(3))
        self.assertEqual(transport.calls, [("write", b"r")] * 3)

    def test_outside_a_read_writes_at_once(self) -> None:
        p = Recorder()
        transport = self.connect(p)
        p.transmit(b"a")
        p.transmit(b"b")
        self.assertEqual(transport.calls, [("write", b"a"), ("write", b"b")])

    def test_batch_bounded_by_the_transport_buffer(self) -> None:
        """
        A batch holding more than the transport's C{bufferSize} is handed over at once,
        mid-read; nothing is lost or reordered.
        """
        p = Recorder()
        p.reply = b"x" * 10
        transport = self.connect(p, bufferSize=25)
        p.dataReceived(self.replies(7))
        self.assertEqual(
            [(name, len(data)) for name, data in transport.calls],  # type: ignore[arg-type]
            [("writeSequence", 3), ("writeSequence", 3), ("write", 10)],
        )
        self.assertEqual(transport.value(), b"x" * 70)

    def test_limit_is_at_most_coalesce_limit(self) -> None:
        p = Recorder()
        self.connect(p, bufferSize=10 * COALESCE_LIMIT)
        self.assertEqual(p._coalesce_limit, COALESCE_LIMIT)

    def test_lost_mid_read_drops_the_batch(self) -> None:
        """
        When the connection goes away while a read is dispatched, the frames collected
        go with it, like the outbox: nothing is written after the loss.
        """
        p = Recorder()
        p.reply = b"r"
        transport = self.connect(p)
        original = p.frameReceived

        def frameReceived(frame: Frame) -> None:
            original(frame)
            if frame.payload == b"1":
                p.dropBuffers()

        p.frameReceived = frameReceived  # type: ignore[method-assign]
        p.dataReceived(self.replies(3))
        self.assertEqual(transport.calls, [("write", b"r")])

    def test_flush_outbox_mid_read_keeps_order(self) -> None:
        """
        L{FramedProtocol.flushOutbox} (before a clean close) hands over the batch
        first, then the outbox.
        """
        p = Recorder()
        transport = self.connect(p)
        original = p.frameReceived

        def frameReceived(frame: Frame) -> None:
            original(frame)
            p.transmit(b"<" + frame.payload + b">")
            if frame.payload == b"1":
                p.paused = True  # what the transport does when its buffer fills
            if frame.payload == b"2":
                p.flushOutbox()

        p.frameReceived = frameReceived  # type: ignore[method-assign]
        p.dataReceived(self.replies(3))
        self.assertEqual(transport.value(), b"<0><1><2>")

    def test_nested_read_is_handed_over_by_the_outer_one(self) -> None:
        """
        A read delivered while one is dispatched (a synchronous in-memory peer) adds
        to the outer read's batch.
        """
        p = Recorder()
        p.reply = b"r"
        transport = self.connect(p)
        original = p.frameReceived

        def frameReceived(frame: Frame) -> None:
            original(frame)
            if frame.payload == b"0":
                p.dataReceived(encode_frame(b"nested"))

        p.frameReceived = frameReceived  # type: ignore[method-assign]
        p.dataReceived(self.replies(2))
        self.assertEqual(p.frames, [b"0", b"nested", b"1"])
        self.assertEqual(transport.calls, [("writeSequence", [b"r"] * 3)])


class Relay(Recorder):
    """
    Forwards each frame it reads to C{target} (another connection), like pywatt dev.
    """

    target: FramedProtocol | None = None

    def frameReceived(self, frame: Frame) -> None:
        super().frameReceived(frame)
        if self.target is not None:
            self.target.transmit(b"<" + frame.payload + b">")


class GroupCoalescingTests(SynchronousTestCase):
    """
    Connections sharing a L{CoalesceGroup}: the frames transmitted on any of them while
    one dispatches a read are handed over when that read is dispatched.
    """

    def pair(
        self, bufferSize: int | None = None
    ) -> tuple[Relay, Relay, CountingTransport, CountingTransport]:
        group = CoalesceGroup()
        source, target = Relay(), Relay()
        source.group = target.group = group
        source.target = target
        source_transport = CountingTransport()
        target_transport = CountingTransport(bufferSize)
        source.makeConnection(source_transport)
        target.makeConnection(target_transport)
        return source, target, source_transport, target_transport

    def replies(self, n: int) -> bytes:
        return b"".join(encode_frame(b"%d" % i) for i in range(n))

    def test_forwarded_frames_go_in_one_call(self) -> None:
        """
        The frames forwarded to another connection of the group during one read reach
        its transport in one C{writeSequence}, in order, once the read is dispatched.
        """
        source, target, _, target_transport = self.pair()
        seen: list[int] = []
        original = target.transmit

        def transmit(frame: bytes) -> None:
            original(frame)
            seen.append(len(target_transport.calls))  # nothing handed over mid-read

        target.transmit = transmit  # type: ignore[method-assign]
        source.dataReceived(self.replies(3))
        self.assertEqual(seen, [0, 0, 0])
        self.assertEqual(target_transport.calls, [("writeSequence", [b"<0>", b"<1>", b"<2>"])])
        self.assertIsNone(target._batch)
        self.assertFalse(source.group.reading)  # type: ignore[union-attr]
        self.assertEqual(source.group.written, [])  # type: ignore[union-attr]

    def test_a_read_of_one_frame(self) -> None:
        """
        A read of one frame: what it forwards is handed over when the read is
        dispatched, like a larger read's (one C{write}; on a plain socket transport
        that is sent at once, see L{DirectSendTests}).
        """
        source, target, _, target_transport = self.pair()
        seen: list[int] = []
        original = target.transmit

        def transmit(frame: bytes) -> None:
            original(frame)
            seen.append(len(target_transport.calls))

        target.transmit = transmit  # type: ignore[method-assign]
        source.dataReceived(self.replies(1))
        self.assertEqual(seen, [0])
        self.assertEqual(target_transport.calls, [("write", b"<0>")])

    def test_replies_on_the_reading_connection_too(self) -> None:
        source, _, source_transport, target_transport = self.pair()
        source.reply = b"r"
        source.dataReceived(self.replies(2))
        self.assertEqual(source_transport.calls, [("writeSequence", [b"r", b"r"])])
        self.assertEqual(target_transport.calls, [("writeSequence", [b"<0>", b"<1>"])])

    def test_outside_a_read_writes_at_once(self) -> None:
        _, target, _, target_transport = self.pair()
        target.transmit(b"a")
        self.assertEqual(target_transport.calls, [("write", b"a")])

    def test_bounded_by_the_target_buffer(self) -> None:
        """
        A target's batch above its transport's C{bufferSize} is handed over mid-read.
        """
        source, _, _, target_transport = self.pair(bufferSize=8)
        source.dataReceived(self.replies(5))
        self.assertEqual(
            target_transport.calls,
            [("writeSequence", [b"<0>", b"<1>", b"<2>"]), ("writeSequence", [b"<3>", b"<4>"])],
        )

    def test_target_off_writes_at_once(self) -> None:
        source, target, _, target_transport = self.pair()
        target.coalesce = False
        source.dataReceived(self.replies(2))
        self.assertEqual(target_transport.calls, [("write", b"<0>"), ("write", b"<1>")])

    def test_nested_read_of_another_connection(self) -> None:
        """
        A read of another connection of the group delivered while one is dispatched (a
        synchronous in-memory peer) collects into a batch the outer read hands over.
        """
        source, target, _, target_transport = self.pair()
        target.reply = b"t"
        original = source.frameReceived

        def frameReceived(frame: Frame) -> None:
            original(frame)
            if frame.payload == b"0":
                target.dataReceived(encode_frame(b"nested"))

        source.frameReceived = frameReceived  # type: ignore[method-assign]
        source.dataReceived(self.replies(2))
        self.assertEqual(target.frames, [b"nested"])
        self.assertEqual(target_transport.calls, [("writeSequence", [b"<0>", b"t", b"<1>"])])
        self.assertIsNone(target._batch)

    def test_an_error_mid_read_still_hands_over(self) -> None:
        source, target, _, target_transport = self.pair()
        original = source.frameReceived

        def frameReceived(frame: Frame) -> None:
            original(frame)
            raise RuntimeError("boom")

        source.frameReceived = frameReceived  # type: ignore[method-assign]
        self.assertRaises(RuntimeError, source.dataReceived, self.replies(2))
        self.assertEqual(target_transport.calls, [("write", b"<0>")])
        self.assertIsNone(target._batch)
        target.transmit(b"after")
        self.assertEqual(target_transport.calls[-1], ("write", b"after"))


class PushingTransport(CountingTransport):
    """
    A L{CountingTransport} with the socket transport's C{doWrite}, recorded as
    C{("push", bytes handed over so far)}.
    """

    def doWrite(self) -> None:
        self.calls.append(("push", len(self.value())))


class PushEveryTests(SynchronousTestCase):
    """
    L{FramedProtocol.push_every}: a large read is dispatched in slices, and what each
    slice transmitted is handed over and sent (C{doWrite}) before the next one.
    """

    def connect(self, protocol: FramedProtocol, every: int = 16) -> PushingTransport:
        protocol.push_every = every
        transport = PushingTransport()
        protocol.makeConnection(transport)
        return transport

    def frames(self, n: int) -> bytes:
        return b"".join(encode_frame(b"%d" % i) for i in range(n))

    def shape(self, transport: CountingTransport) -> list[tuple[str, object]]:
        return [
            (name, len(data) if name == "writeSequence" else data)  # type: ignore[arg-type]
            for name, data in transport.calls
        ]

    def test_default_and_off(self) -> None:
        """
        By default reads go 32 frames at a time; with C{push_every} 0 a read is one
        slice: one C{writeSequence}, no push.
        """
        self.assertEqual(FramedProtocol.push_every, 32)
        p = Recorder()
        p.reply = b"r"
        p.push_every = 0
        transport = PushingTransport()
        p.makeConnection(transport)
        p.dataReceived(self.frames(40))
        self.assertEqual(self.shape(transport), [("writeSequence", 40)])

    def test_slices_are_handed_over_and_pushed_in_order(self) -> None:
        """
        40 frames, 16 at a time: after the first and the second slice, their replies
        are handed over and pushed before the next frame is dispatched; the last slice
        is handed over at the end of the read and left to the reactor. Nothing is
        reordered.
        """
        p = Recorder()
        p.reply = b"r"
        transport = self.connect(p)
        seen: list[int] = []
        original = p.frameReceived

        def frameReceived(frame: Frame) -> None:
            seen.append(len(transport.calls))
            p.reply = b"<" + frame.payload + b">"
            original(frame)

        p.frameReceived = frameReceived  # type: ignore[method-assign]
        p.dataReceived(self.frames(40))
        self.assertEqual(seen, [0] * 16 + [2] * 16 + [4] * 8)
        sent16 = len(b"".join(b"<%d>" % i for i in range(16)))
        sent32 = len(b"".join(b"<%d>" % i for i in range(32)))
        self.assertEqual(
            self.shape(transport),
            [
                ("writeSequence", 16),
                ("push", sent16),
                ("writeSequence", 16),
                ("push", sent32),
                ("writeSequence", 8),
            ],
        )
        self.assertEqual(transport.value(), b"".join(b"<%d>" % i for i in range(40)))
        self.assertEqual(p.frames, [b"%d" % i for i in range(40)])

    def test_a_read_of_one_slice_is_not_pushed(self) -> None:
        p = Recorder()
        p.reply = b"r"
        transport = self.connect(p)
        p.dataReceived(self.frames(16))
        self.assertEqual(self.shape(transport), [("writeSequence", 16)])

    def test_nothing_transmitted_nothing_pushed(self) -> None:
        """
        A slice that transmitted nothing sends nothing (a push would be an empty
        C{send()}).
        """
        p = Recorder()
        transport = self.connect(p, every=2)
        p.dataReceived(self.frames(5))
        self.assertEqual(p.frames, [b"%d" % i for i in range(5)])
        self.assertEqual(transport.calls, [])

    def test_no_push_without_do_write_or_while_disconnecting(self) -> None:
        """
        A transport without C{doWrite} (in memory) gets the slices handed over without
        a push; a socket transport being closed is left to the reactor.
        """
        p = Recorder()
        p.reply = b"r"
        p.push_every = 2
        plain = CountingTransport()
        p.makeConnection(plain)
        p.dataReceived(self.frames(5))
        self.assertEqual(self.shape(plain), [("writeSequence", 2)] * 2 + [("write", b"r")])

        q = Recorder()
        q.reply = b"r"
        closing = self.connect(q, every=2)
        closing.disconnecting = True
        q.dataReceived(self.frames(5))
        self.assertEqual(self.shape(closing), [("writeSequence", 2)] * 2 + [("write", b"r")])

    def test_held_frames_stay_in_order(self) -> None:
        """
        When the outbox passes the high-water mark in one slice, the frames of that
        slice and of the later ones are held, in order, until it drains.
        """
        p = Recorder(high_water=8)
        p.reply = b"r" * 5
        p.push_every = 2
        transport = BufferedTransport(4)
        p.makeConnection(transport)
        p.registerAsProducer()
        p.dataReceived(self.frames(7))
        self.assertTrue(p.reading_paused)
        self.assertEqual(p.frames, [b"0", b"1", b"2"])
        while p.reading_paused or p.buffered:
            transport.drain()
        self.assertEqual(p.frames, [b"%d" % i for i in range(7)])
        self.assertEqual(transport.delivered + transport.value(), b"r" * 35)

    def test_group_slices_are_pushed_on_each_connection_written(self) -> None:
        """
        In a group (pywatt dev), the frames forwarded during each slice are handed
        over and pushed on each connection they went to; the reading connection,
        given nothing, is not pushed.
        """
        group = CoalesceGroup()
        source, target = Relay(), Relay()
        source.group = target.group = group
        source.target = target
        source_transport = self.connect(source, every=2)
        target_transport = self.connect(target, every=2)
        source.dataReceived(self.frames(5))
        self.assertEqual(source_transport.calls, [])
        self.assertEqual(
            self.shape(target_transport),
            [
                ("writeSequence", 2),
                ("push", 6),
                ("writeSequence", 2),
                ("push", 12),
                ("write", b"<4>"),
            ],
        )
        self.assertFalse(group.reading)
        self.assertEqual(group.written, [])
        self.assertIsNone(target._batch)


class _Collector(Protocol):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(self.received)


class PushOverSocketTests(TestCase):
    """
    L{FramedProtocol.push_every} on a real TCP transport: each slice's replies are sent
    (a C{send()}) while the read is still being dispatched.
    """

    async def test_each_slice_is_sent_during_the_read(self) -> None:
        servers: list[Recorder] = []
        sends_seen: list[int] = []
        reads: list[int] = []

        class Server(Recorder):
            push_every = 2

            def connectionMade(self) -> None:
                servers.append(self)
                transport: Any = self.transport
                self.sends = 0
                original = transport.writeSomeData

                def writeSomeData(data: bytes) -> object:
                    self.sends += 1
                    return original(data)

                transport.writeSomeData = writeSomeData

            def dataReceived(self, data: bytes) -> None:
                reads.append(len(data))
                super().dataReceived(data)

            def frameReceived(self, frame: Frame) -> None:
                sends_seen.append(self.sends)
                self.transmit(b"r" + frame.payload)

        factory = Factory.forProtocol(Server)
        port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        client: Any = await ClientCreator(reactor, _Collector, 10).connectTCP(
            "127.0.0.1", port.getHost().port
        )
        self.addCleanup(client.transport.loseConnection)
        client.transport.write(b"".join(encode_frame(b"%d" % i) for i in range(5)))
        received = await client.done
        self.addCleanup(servers[0].transport.loseConnection)  # type: ignore[union-attr]
        if len(reads) != 1:
            raise SkipTest(f"the 5 frames came in {len(reads)} reads, not 1")
        self.assertEqual(received, b"r0r1r2r3r4")
        self.assertEqual(sends_seen, [0, 0, 1, 1, 2])


class DirectSendTests(SynchronousTestCase):
    """
    On Twisted's own TCP and Unix-socket transports, with nothing buffered, the frames
    handed over at the end of a read are sent at once (C{writeSomeData}) instead of on
    the reactor's next turn; anything else takes the transport's C{write}.
    """

    def connect(
        self, protocol: FramedProtocol, kind: type | None = None
    ) -> tuple[Any, socket.socket, MemoryReactor]:
        from twisted.internet import tcp

        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        fds = MemoryReactor()
        transport = (kind or tcp.Server)(ours, protocol, ("127.0.0.1", 1), None, 1, fds)
        protocol.makeConnection(transport)
        return transport, peer, fds

    def replies(self, n: int) -> bytes:
        return b"".join(encode_frame(b"%d" % i) for i in range(n))

    def test_sent_at_once(self) -> None:
        """
        The replies to a read are on the socket when the read is dispatched: the
        transport buffers nothing and does not wait for the socket to be writable.
        """
        p = Recorder()
        p.reply = b"r"
        transport, peer, fds = self.connect(p)
        p.dataReceived(self.replies(3))
        self.assertEqual(peer.recv(100), b"rrr")
        self.assertEqual(transport.dataBuffer, b"")
        self.assertEqual(transport._tempDataBuffer, [])
        self.assertNotIn(transport, fds.getWriters())

    def test_unix_socket(self) -> None:
        from twisted.internet import unix

        p = Recorder()
        p.reply = b"r"
        transport, peer, fds = self.connect(p, unix.Server)
        p.dataReceived(self.replies(1))
        self.assertEqual(peer.recv(100), b"r")
        self.assertNotIn(transport, fds.getWriters())

    def test_forwarded_to_another_connection_of_the_group(self) -> None:
        """
        A relay's read of one frame: the frame it forwards goes out on the other
        connection's socket when the read is dispatched.
        """
        group = CoalesceGroup()
        source, target = Relay(), Relay()
        source.group = target.group = group
        source.target = target
        source.makeConnection(StringTransport())
        transport, peer, fds = self.connect(target)
        source.dataReceived(self.replies(1))
        self.assertEqual(peer.recv(100), b"<0>")
        self.assertNotIn(transport, fds.getWriters())

    def test_behind_buffered_bytes(self) -> None:
        """
        While the transport holds bytes written before, the batch goes behind them
        through C{write}: nothing is sent out of order.
        """
        p = Recorder()
        p.reply = b"r"
        transport, peer, fds = self.connect(p)
        transport.write(b"early")
        p.dataReceived(self.replies(2))
        self.assertRaises(BlockingIOError, peer.recv, 100)
        self.assertIn(transport, fds.getWriters())
        transport.doWrite()
        self.assertEqual(peer.recv(100), b"earlyrr")
        self.assertNotIn(transport, fds.getWriters())

    def test_what_the_socket_does_not_take_is_buffered(self) -> None:
        """
        When the kernel takes part of the batch, the rest waits in the transport (sent
        when the socket is writable, as a C{write} would), in order.
        """
        p = Recorder()
        p.reply = b"x" * 50_000
        transport, peer, fds = self.connect(p)
        p.dataReceived(self.replies(20))  # 1 MB: more than a socket pair buffers
        self.assertIn(transport, fds.getWriters())
        received = []
        while True:
            try:
                chunk = peer.recv(1 << 20)
            except BlockingIOError:
                if transport not in fds.getWriters():
                    break
                transport.doWrite()
                continue
            received.append(chunk)
        self.assertEqual(b"".join(received), b"x" * 1_000_000)

    def test_an_error_is_left_to_the_transport(self) -> None:
        """
        A send that fails (the peer is gone) hands the bytes to C{write}: the
        transport reports the loss on its next write attempt, as before.
        """
        p = Recorder()
        p.reply = b"r"
        transport, peer, fds = self.connect(p)
        peer.close()
        p.dataReceived(self.replies(1))
        self.assertEqual(transport._tempDataBuffer, [b"r"])
        self.assertIn(transport, fds.getWriters())
        self.assertIsInstance(transport.doWrite(), ConnectionLost)

    def test_not_after_lose_connection(self) -> None:
        """
        Once the transport is closing, what is handed over takes its C{write} (which
        sends it before the close).
        """
        p = Recorder()
        p.reply = b"r"
        transport, peer, _ = self.connect(p)
        transport.loseConnection()
        p.dataReceived(self.replies(1))
        self.assertRaises(BlockingIOError, peer.recv, 100)
        self.assertEqual(transport._tempDataBuffer, [b"r"])

    def test_not_a_subclass(self) -> None:
        """
        A subclass of Twisted's transports may do more in C{write}: it gets the
        bytes through C{write}.
        """
        from twisted.internet import tcp

        class Subclass(tcp.Server):
            pass

        p = Recorder()
        p.reply = b"r"
        transport, peer, fds = self.connect(p, Subclass)
        p.dataReceived(self.replies(1))
        self.assertRaises(BlockingIOError, peer.recv, 100)
        self.assertIn(transport, fds.getWriters())


def _drain(transport: Any, peer: socket.socket, fds: MemoryReactor) -> bytes:
    """
    Everything the peer socket receives until C{transport} holds nothing more to send
    (its C{doWrite} called as the reactor would, while it waits for writability).
    """
    received = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            if transport not in fds.getWriters():
                return b"".join(received)
            transport.doWrite()
            continue
        received.append(chunk)


class WritePartsTests(SynchronousTestCase):
    """
    L{write_parts}: a large frame's pieces go to the kernel in one C{sendmsg}, only
    the rest joined and buffered; the same bytes as C{writeSequence} in every case.
    """

    connect = DirectSendTests.connect

    def test_sent_at_once(self) -> None:
        transport, peer, fds = self.connect(Recorder())
        write_parts(transport, [b"head", b"data", b"tail"])
        self.assertEqual(peer.recv(100), b"headdatatail")
        self.assertEqual((transport.dataBuffer, transport._tempDataBuffer), (b"", []))
        self.assertNotIn(transport, fds.getWriters())

    def test_unix_socket(self) -> None:
        from twisted.internet import unix

        transport, peer, fds = self.connect(Recorder(), unix.Server)
        write_parts(transport, [b"head", b"data"])
        self.assertEqual(peer.recv(100), b"headdata")
        self.assertNotIn(transport, fds.getWriters())

    def test_rest_is_joined_once_and_buffered(self) -> None:
        """
        What the kernel does not take waits in the transport as one piece, from the
        middle of the piece the send stopped in.
        """
        transport, peer, fds = self.connect(Recorder())
        parts = [b"<", b"a" * 3_000_000, b"b" * 1000, b">"]
        write_parts(transport, parts)
        self.assertIn(transport, fds.getWriters())
        (rest,) = transport._tempDataBuffer
        self.assertTrue(rest.endswith(b"a" + b"b" * 1000 + b">"))
        self.assertEqual(_drain(transport, peer, fds), b"".join(parts))

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.binary(max_size=40_000), min_size=1, max_size=5),
        st.integers(min_value=1024, max_value=65536),
        st.booleans(),
    )
    def test_same_bytes_as_write_sequence(
        self, parts: list[bytes], send_buffer: int, buffered_before: bool
    ) -> None:
        """
        Whatever the pieces, the socket's buffer and what the transport held before,
        the peer reads what C{writeSequence} would have sent, in order.
        """
        transport, peer, fds = self.connect(Recorder())
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        before = b"early" if buffered_before else b""
        if before:
            transport.write(before)
        write_parts(transport, parts)
        self.assertEqual(_drain(transport, peer, fds), before + b"".join(parts))

    def test_behind_buffered_bytes(self) -> None:
        # (nothing is sent ahead of what the transport holds)
        transport, peer, _fds = self.connect(Recorder())
        transport.write(b"early")
        write_parts(transport, [b"head", b"tail"])
        self.assertRaises(BlockingIOError, peer.recv, 100)
        self.assertEqual(transport._tempDataBuffer, [b"early", b"head", b"tail"])

    def test_an_error_is_left_to_the_transport(self) -> None:
        transport, peer, _fds = self.connect(Recorder())
        peer.close()
        write_parts(transport, [b"head", b"tail"])
        self.assertEqual(transport._tempDataBuffer, [b"head", b"tail"])
        self.assertIsInstance(transport.doWrite(), ConnectionLost)

    def test_other_transports_write_sequence(self) -> None:
        transport = StringTransport()
        write_parts(transport, [b"head", b"data", b"tail"])
        self.assertEqual(transport.value(), b"headdatatail")


class RaiseSendBufferTests(SynchronousTestCase):
    """
    L{raise_send_buffer}: a larger kernel send buffer for Unix sockets only.
    """

    connect = DirectSendTests.connect

    def test_unix_socket(self) -> None:
        from twisted.internet import unix

        transport, _peer, _fds = self.connect(Recorder(), unix.Server)
        before = transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.assertLess(before, UNIX_SEND_BUFFER)
        raise_send_buffer(transport)
        after = transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.assertGreater(after, before)

    def test_tcp_left_to_the_kernel(self) -> None:
        """
        A TCP socket's buffer is not set: the kernel sizes it itself, and would stop
        once it is set.
        """
        from twisted.internet import tcp

        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        self.addCleanup(peer.close)
        self.addCleanup(ours.close)
        ours.setblocking(False)
        transport = tcp.Server(ours, Recorder(), ("127.0.0.1", 1), None, 1, MemoryReactor())
        before = ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        raise_send_buffer(transport)
        self.assertEqual(ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), before)

    def test_other_transports(self) -> None:
        raise_send_buffer(StringTransport())  # (no socket: nothing to do, no error)
        raise_send_buffer(None)


class _TransportWithoutTwistedFields(StringTransport):
    """
    A transport the framed layer takes for one of Twisted's socket transports (the
    test puts its type among them) but without their buffer and write-side fields, as
    in a Twisted that keeps them otherwise.
    """

    def writeSomeData(self, data: bytes) -> int:
        raise AssertionError("sent directly although the fields could not be read")


class HandOverFallbackTests(SynchronousTestCase):
    """
    L{_hand_over} sends at once only on a transport whose Twisted fields it can read;
    otherwise it writes, and stops trying direct sends for every transport.
    """

    def test_fields_missing(self) -> None:
        from pywatt_twisted._transport import framed

        self.patch(framed, "_DIRECT_TYPES", frozenset({_TransportWithoutTwistedFields}))
        transport = _TransportWithoutTwistedFields()
        framed._hand_over(transport, [b"one", b"two"])
        self.assertEqual(transport.value(), b"onetwo")
        self.assertEqual(framed._DIRECT_TYPES, frozenset())
        framed._hand_over(transport, [b"three"])
        self.assertEqual(transport.value(), b"onetwothree")


class _FakeTLS:
    """
    Stands for Twisted's TLS protocol: what is written to it lands in the socket
    transport underneath, which the reactor would send on its next turn.
    """

    def __init__(self) -> None:
        self.transport = _PushableTransport()

    def write(self, data: bytes) -> None:
        self.transport.held.append(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.transport.held.extend(data)


class _PushableTransport:
    connected = True
    disconnecting = False

    def __init__(self) -> None:
        self.held: list[bytes] = []
        self.sent: list[bytes] = []

    def doWrite(self) -> None:
        self.sent.extend(self.held)
        del self.held[:]


class HandOverTLSTests(SynchronousTestCase):
    """
    Over TLS, L{_hand_over} sends what the TLS layer passed to the socket transport
    at once, as on a plain socket.
    """

    def test_pushed(self) -> None:
        from pywatt_twisted._transport import framed

        self.patch(framed, "_TLS_TYPE", _FakeTLS)
        tls = _FakeTLS()
        framed._hand_over(tls, [b"one", b"two"])
        self.assertEqual((tls.transport.held, tls.transport.sent), ([], [b"one", b"two"]))

    def test_other_wrappers_not_pushed(self) -> None:
        from pywatt_twisted._transport import framed

        tls = _FakeTLS()  # not Twisted's TLS protocol
        framed._hand_over(tls, [b"one"])
        self.assertEqual((tls.transport.held, tls.transport.sent), ([b"one"], []))


class _DescriptorReceiver(Recorder):
    """
    A framed connection that receives file descriptors (none of ours does).
    """

    def fileDescriptorReceived(self, descriptor: int) -> None:
        os.close(descriptor)


classImplements(_DescriptorReceiver, IFileDescriptorReceiver)


class PlainUnixTests(SynchronousTestCase):
    """
    On a Unix socket a framed connection reads with C{recv} and sends at once with
    C{send}, as on a TCP socket, unless its protocol receives file descriptors.
    """

    def connect(self, protocol: FramedProtocol, kind: type) -> tuple[Any, socket.socket]:
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        transport = kind(ours, protocol, ("127.0.0.1", 1), None, 1, MemoryReactor())
        protocol.makeConnection(transport)
        return transport, peer

    def test_read_plainly(self) -> None:
        """
        Frames read through the transport's C{doRead} arrive as with Twisted's own,
        which is not called; the plain read answers a closed peer the same way.
        """
        from twisted.internet import tcp, unix

        from pywatt_twisted._transport import framed

        p = Recorder()
        p.reply = b"r"
        transport, peer = self.connect(p, unix.Server)
        self.patch(unix.Server, "doRead", lambda self: self.fail("recvmsg read"))
        peer.send(encode_frame(b"one") + encode_frame(b"two"))
        self.assertIsNone(transport.doRead())
        self.assertEqual(p.frames, [b"one", b"two"])
        self.assertEqual(peer.recv(100), b"rr")
        self.assertIsNone(transport.doRead())  # nothing to read: EWOULDBLOCK
        peer.close()
        self.assertIsInstance(transport.doRead(), error.ConnectionDone)
        # a client connection (made by connectUNIX) is read the same way
        self.assertEqual(
            framed._PLAIN_UNIX[unix.Client], (tcp.Connection.doRead, tcp.Connection.writeSomeData)
        )

    def test_descriptor_receiver_keeps_recvmsg(self) -> None:
        """
        A framed connection that receives file descriptors keeps Twisted's read.
        """
        from twisted.internet import unix

        transport, _peer = self.connect(_DescriptorReceiver(), unix.Server)
        self.assertNotIn("doRead", vars(transport))

    def test_descriptor_queued_takes_the_transport_send(self) -> None:
        """
        With a file descriptor queued to pass, a direct send goes through the
        transport's own C{writeSomeData}, which passes it.
        """
        from twisted.internet import unix

        p = Recorder()
        p.reply = b"r"
        transport, peer = self.connect(p, unix.Server)
        readable, writable = os.pipe()
        self.addCleanup(os.close, readable)
        self.addCleanup(os.close, writable)
        transport._sendmsgQueue.append(writable)
        p.dataReceived(encode_frame(b"x"))
        data, ancillary, _flags, _address = peer.recvmsg(100, socket.CMSG_SPACE(4))
        self.assertEqual(data, b"r")
        self.assertEqual(len(ancillary), 1)
        for _level, _type, payload in ancillary:
            os.close(int.from_bytes(payload[:4], sys.byteorder))
        self.assertEqual(transport._sendmsgQueue, [])

    def test_sent_plainly(self) -> None:
        """
        Without a descriptor queued, the direct send is the plain socket's: the
        transport's own C{writeSomeData} is not called.
        """
        from twisted.internet import unix

        p = Recorder()
        p.reply = b"r"
        _transport, peer = self.connect(p, unix.Server)
        self.patch(unix.Server, "writeSomeData", lambda self, data: self.fail("sendmsg"))
        p.dataReceived(encode_frame(b"x") + encode_frame(b"y"))
        self.assertEqual(peer.recv(100), b"rr")
