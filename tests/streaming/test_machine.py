"""
Tests for L{pywatt_twisted.streaming}: the sender and receiver state machines, driven
with a L{Clock} and plain lists for the messages each side sends.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.streaming import (
    StreamFailed,
    StreamReceiver,
    StreamSender,
    StreamState,
    StreamTable,
)
from pywatt_twisted.streaming._machine import _Timer
from pywatt_twisted.wire.stream import (
    StreamAck,
    StreamCancel,
    StreamChunk,
    StreamOptions,
    crc32,
    make_chunk,
)


class Sink:
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.done = False
        self.failed: StreamFailed | None = None

    def body_data(self, data: bytes) -> None:
        self.data.append(data)

    def body_done(self) -> None:
        self.done = True

    def body_failed(self, error: StreamFailed) -> None:
        self.failed = error


def chunks(sent: list[Any]) -> list[StreamChunk]:
    return [m for m in sent if isinstance(m, StreamChunk)]


class SenderTests(SynchronousTestCase):
    def sender(self, window: int = 2, size: int = 4, **kw: Any) -> tuple[StreamSender, list[Any]]:
        sent: list[Any] = []
        self.clock = Clock()
        self.writable: list[bool] = []
        sender = StreamSender(
            "s",
            sent.append,
            StreamOptions(size, window),
            self.clock,
            on_writable=self.writable.append,
            **kw,
        )
        return sender, sent

    def test_window_is_respected(self) -> None:
        """
        Never more than C{window} chunks unacknowledged; the producer is paused while
        the window is full and resumed when acks open it; acks are cumulative.
        """
        sender, sent = self.sender()
        sender.write(b"abcdefghijklmnopqrstuvwxyz")
        sender.finish()
        self.assertEqual([c.data for c in chunks(sent)], [b"abcd", b"efgh"])
        self.assertEqual(self.writable, [False])
        sender.ack_received(StreamAck("s", 0))
        self.assertEqual(len(chunks(sent)), 3)
        sender.ack_received(StreamAck("s", 2))  # cumulative: 1 and 2
        self.assertEqual(len(chunks(sent)), 5)
        sender.ack_received(StreamAck("s", 4))
        body = chunks(sent)
        self.assertEqual(b"".join(c.data for c in body), b"abcdefghijklmnopqrstuvwxyz")
        self.assertEqual([c.sequence for c in body], list(range(7)))
        self.assertEqual([c.is_final for c in body], [False] * 6 + [True])
        self.assertNoResult(sender.done)
        sender.ack_received(StreamAck("s", 6))
        self.assertEqual(self.successResultOf(sender.done), 26)
        self.assertEqual(sender.max_unacked, 2)
        self.assertIs(sender.state, StreamState.DONE)

    def test_empty_body_is_one_empty_final_chunk(self) -> None:
        sender, sent = self.sender()
        sender.finish()
        [chunk] = chunks(sent)
        self.assertEqual((chunk.data, chunk.is_final, chunk.checksum), (b"", True, 0))

    def test_exact_multiple(self) -> None:
        sender, sent = self.sender(window=8)
        sender.write(b"12345678")
        self.assertEqual(len(chunks(sent)), 2)  # full chunks go at once
        sender.finish()
        self.assertEqual(
            [(c.data, c.is_final) for c in chunks(sent)],
            [(b"1234", False), (b"5678", False), (b"", True)],
        )

    def test_whole_chunk_writes_are_not_copied(self) -> None:
        """
        A write of exactly one chunk is sent as the very bytes written; other writes
        are cut and joined into chunks, whatever their buffer type.
        """
        sender, sent = self.sender(window=8)
        whole = b"wxyz"
        sender.write(whole)
        self.assertIs(chunks(sent)[0].data, whole)
        sender.write(bytearray(b"123456"))
        sender.write(memoryview(b"7890"))
        sender.finish()
        self.assertEqual(
            [(c.data, type(c.data)) for c in chunks(sent)],
            [(b"wxyz", bytes), (b"1234", bytes), (b"5678", bytes), (b"90", bytes)],
        )

    def test_writable_again(self) -> None:
        sender, sent = self.sender(window=1, size=4)
        sender.write(b"abcd")
        sender.write(b"e")
        self.assertEqual(self.writable, [False])
        sender.ack_received(StreamAck("s", 0))
        # 'e' waits (less than a chunk) and the window has room: write on.
        self.assertEqual(self.writable, [False, True])
        self.assertEqual(len(chunks(sent)), 1)
        sender.write(b"fgh")
        self.assertEqual(self.writable, [False, True, False])
        self.assertEqual(chunks(sent)[-1].data, b"efgh")

    def test_refused_chunk(self) -> None:
        sender, sent = self.sender()
        sender.write(b"abcdefgh")
        sender.ack_received(StreamAck("s", 0, False, "checksum mismatch"))
        error = self.failureResultOf(sender.done, StreamFailed).value
        self.assertEqual(error.kind, "rejected")
        self.assertIsInstance(sent[-1], StreamCancel)
        self.assertRaises(StreamFailed, sender.write, b"x")

    def test_cancel_received(self) -> None:
        sender, sent = self.sender()
        sender.write(b"abcdefgh")
        sender.cancel_received(StreamCancel("s", "client went away"))
        error = self.failureResultOf(sender.done, StreamFailed).value
        self.assertEqual((error.kind, error.reason), ("cancelled", "client went away"))
        self.assertFalse(any(isinstance(m, StreamCancel) for m in sent))

    def test_stall(self) -> None:
        """
        No ack for C{stall_timeout} while chunks are unacknowledged: cancelled.
        """
        sender, sent = self.sender(stall_timeout=60)
        sender.write(b"abcdefgh")
        self.clock.advance(59)
        sender.ack_received(StreamAck("s", 0))
        self.clock.advance(59)
        self.assertNoResult(sender.done)
        self.clock.advance(1)
        self.assertEqual(self.failureResultOf(sender.done, StreamFailed).value.kind, "stalled")
        self.assertIsInstance(sent[-1], StreamCancel)

    def test_ack_for_unsent_chunk(self) -> None:
        sender, _sent = self.sender()
        sender.write(b"abcd")
        sender.ack_received(StreamAck("s", 5))
        self.assertEqual(self.failureResultOf(sender.done, StreamFailed).value.kind, "rejected")

    def test_local_cancel(self) -> None:
        sender, sent = self.sender()
        sender.write(b"abcd")
        sender.cancel("route failed")
        self.assertEqual(sent[-1], StreamCancel("s", "route failed"))
        self.assertEqual(self.failureResultOf(sender.done, StreamFailed).value.kind, "aborted")


class ReceiverTests(SynchronousTestCase):
    def receiver(
        self, max_size: int = 1000, stall: float | None = 60.0
    ) -> tuple[StreamReceiver, Sink, list[Any]]:
        self.clock = Clock()
        sent: list[Any] = []
        sink = Sink()
        receiver = StreamReceiver(
            "s", sent.append, sink, self.clock, max_size=max_size, stall_timeout=stall
        )
        return receiver, sink, sent

    def test_in_order_with_acks(self) -> None:
        receiver, sink, sent = self.receiver()
        receiver.chunk_received(make_chunk("s", 0, b"abc"))
        receiver.chunk_received(make_chunk("s", 1, b"def", is_final=True))
        self.assertEqual(sink.data, [b"abc", b"def"])
        self.assertTrue(sink.done)
        self.assertEqual(sent, [StreamAck("s", 0), StreamAck("s", 1)])
        self.assertIs(receiver.state, StreamState.DONE)

    def test_paused_sink_holds_acks(self) -> None:
        """
        While the sink has the receiver paused, chunks are held and not acknowledged:
        the sender's window then stops it.
        """
        receiver, sink, sent = self.receiver()
        receiver.pauseProducing()
        receiver.chunk_received(make_chunk("s", 0, b"abc"))
        receiver.chunk_received(make_chunk("s", 1, b"def"))
        self.assertEqual((sink.data, sent), ([], []))
        receiver.resumeProducing()
        self.assertEqual(sink.data, [b"abc", b"def"])
        self.assertEqual(sent, [StreamAck("s", 0), StreamAck("s", 1)])

    def test_sink_pausing_inside_delivery(self) -> None:
        receiver, sink, sent = self.receiver()
        receiver.pauseProducing()
        receiver.chunk_received(make_chunk("s", 0, b"a"))
        receiver.chunk_received(make_chunk("s", 1, b"b"))
        original = sink.body_data

        def pause_after(data: bytes) -> None:
            original(data)
            receiver.pauseProducing()

        sink.body_data = pause_after  # type: ignore[method-assign]
        receiver.resumeProducing()
        self.assertEqual((sink.data, sent), ([b"a"], [StreamAck("s", 0)]))

    def test_gzip_chunk(self) -> None:
        receiver, sink, _sent = self.receiver(max_size=10000)
        chunk = make_chunk("s", 0, b"z" * 5000, gzip=True, is_final=True)
        self.assertTrue(chunk.compressed)
        receiver.chunk_received(chunk)
        self.assertEqual(b"".join(sink.data), b"z" * 5000)

    def test_checksum_error(self) -> None:
        receiver, sink, sent = self.receiver()
        bad = StreamChunk("s", 0, b"abc", False, crc32(b"abd"), False)
        receiver.chunk_received(bad)
        ack, cancel = sent
        self.assertEqual((ack.sequence, ack.success), (0, False))
        self.assertIn("checksum", ack.error)
        self.assertEqual(cancel, StreamCancel("s", ack.error))
        assert sink.failed is not None
        self.assertEqual(sink.failed.kind, "checksum")

    def test_gap(self) -> None:
        receiver, sink, sent = self.receiver()
        receiver.chunk_received(make_chunk("s", 0, b"abc"))
        receiver.chunk_received(make_chunk("s", 2, b"ghi"))
        self.assertEqual(sent[1].success, False)
        self.assertIn("expected chunk 1, got chunk 2", sent[1].error)
        self.assertIsInstance(sent[2], StreamCancel)
        assert sink.failed is not None
        self.assertEqual(sink.failed.kind, "gap")

    def test_cancel(self) -> None:
        receiver, sink, _sent = self.receiver()
        receiver.chunk_received(make_chunk("s", 0, b"abc"))
        receiver.cancel_received(StreamCancel("s", "upload aborted"))
        assert sink.failed is not None
        self.assertEqual((sink.failed.kind, sink.failed.reason), ("cancelled", "upload aborted"))
        receiver.chunk_received(make_chunk("s", 1, b"def"))
        self.assertEqual(sink.data, [b"abc"])

    def test_stall(self) -> None:
        receiver, sink, sent = self.receiver(stall=60)
        self.clock.advance(30)
        receiver.chunk_received(make_chunk("s", 0, b"abc"))
        self.clock.advance(59)
        self.assertIsNone(sink.failed)
        self.clock.advance(1)
        assert sink.failed is not None
        self.assertEqual(sink.failed.kind, "stalled")
        self.assertIsInstance(sent[-1], StreamCancel)

    def test_body_limit(self) -> None:
        receiver, sink, sent = self.receiver(max_size=5)
        receiver.chunk_received(make_chunk("s", 0, b"abc"))
        receiver.chunk_received(make_chunk("s", 1, b"def"))
        assert sink.failed is not None
        self.assertEqual(sink.failed.kind, "too_large")
        self.assertIsInstance(sent[-1], StreamCancel)
        self.assertEqual(sink.data, [b"abc"])


class EndToEndTests(SynchronousTestCase):
    """
    A sender and a receiver wired to each other through a table each.
    """

    def test_large_body_through_a_slow_reader(self) -> None:
        clock = Clock()
        to_receiver: list[Any] = []
        to_sender: list[Any] = []
        sink = Sink()
        receivers = StreamTable(to_sender.append)
        senders = StreamTable(to_receiver.append)
        receiver = StreamReceiver("s", to_sender.append, sink, clock, max_size=10**9)
        receivers.add_receiver(receiver)
        sender = StreamSender("s", to_receiver.append, StreamOptions(1000, 4, True), clock)
        senders.add_sender(sender)
        data = bytes(range(256)) * 400
        sender.write(data)
        sender.finish()
        receiver.pauseProducing()
        peak = 0
        for _ in range(1000):
            while to_receiver:
                receivers.received(to_receiver.pop(0))
            peak = max(peak, sender.unacked)
            receiver.resumeProducing()
            receiver.pauseProducing()
            while to_sender:
                senders.received(to_sender.pop(0))
            if sender.state is not StreamState.OPEN:
                break
        self.assertEqual(b"".join(sink.data), data)
        self.assertEqual(self.successResultOf(sender.done), len(data))
        self.assertLessEqual(peak, 4)
        self.assertEqual(len(receivers) + len(senders), 0)

    def test_unknown_stream(self) -> None:
        sent: list[Any] = []
        table = StreamTable(sent.append)
        self.assertTrue(table.received(make_chunk("nope", 3, b"x")))
        ack, cancel = sent
        self.assertEqual((ack.stream_id, ack.sequence, ack.success), ("nope", 3, False))
        self.assertIn("unknown stream", ack.error)
        self.assertIsInstance(cancel, StreamCancel)
        self.assertFalse(table.received(object()))
        table.received(StreamCancel("nope", "x"))
        self.assertEqual(len(sent), 2)


class ReentrancyTests(SynchronousTestCase):
    def test_synchronous_peer(self) -> None:
        """
        A receiver that acks synchronously, inside the sender's send (an in-memory
        link), does not recurse once per chunk: 5000 chunks go through.
        """
        clock = Clock()
        sink = Sink()
        holder: list[StreamSender] = []
        receiver = StreamReceiver(
            "s", lambda ack: holder[0].ack_received(ack), sink, clock, max_size=10**9
        )
        sender = StreamSender("s", receiver.chunk_received, StreamOptions(10, 2), clock)
        holder.append(sender)
        sender.write(b"0123456789" * 5000)
        sender.finish()
        self.assertEqual(self.successResultOf(sender.done), 50000)
        self.assertEqual(b"".join(sink.data), b"0123456789" * 5000)


class _FreshCallTimer:
    """
    The general form of a restartable timeout, which L{_Timer} must equal: every
    restart cancels the pending call and schedules a new one, every stop cancels it.
    """

    def __init__(self, clock: Clock, seconds: float, fire: Any) -> None:
        self.clock = clock
        self.seconds = seconds
        self.fire = fire
        self.call: Any = None

    def restart(self) -> None:
        self.stop()
        self.call = self.clock.callLater(self.seconds, self._expired)

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def _expired(self) -> None:
        self.call = None
        self.fire()


_timer_steps = st.lists(
    st.one_of(
        st.just("restart"),
        st.just("stop"),
        st.floats(min_value=0, max_value=25, allow_nan=False),
    ),
    max_size=40,
)


class TimerTests(SynchronousTestCase):
    """
    L{_Timer} (a restart moves the pending call, a stop only disarms it) against a
    fresh delayed call per restart.
    """

    @given(_timer_steps)
    def test_same_as_a_fresh_call_per_restart(self, steps: list[Any]) -> None:
        """
        Any sequence of restarts, stops and clock advances fires both at the same
        times.
        """
        clock = Clock()
        fired: list[tuple[str, float]] = []
        timer = _Timer(clock, 10.0, lambda: fired.append(("timer", clock.seconds())))
        fresh = _FreshCallTimer(clock, 10.0, lambda: fired.append(("fresh", clock.seconds())))
        for step in [*steps, 100.0]:
            if step == "restart":
                timer.restart()
                fresh.restart()
            elif step == "stop":
                timer.stop()
                fresh.stop()
            else:
                clock.advance(step)
        self.assertEqual(
            [at for who, at in fired if who == "timer"],
            [at for who, at in fired if who == "fresh"],
        )

    def test_restart_moves_the_pending_call(self) -> None:
        """
        A restart while the call is pending reuses it: one delayed call, fired
        C{seconds} after the last restart.
        """
        clock = Clock()
        fired: list[float] = []
        timer = _Timer(clock, 10.0, lambda: fired.append(clock.seconds()))
        timer.restart()
        clock.advance(6)
        timer.restart()
        timer.stop()
        timer.restart()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(9)
        self.assertEqual(fired, [])
        clock.advance(1)
        self.assertEqual(fired, [16.0])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancel_drops_the_call(self) -> None:
        """
        L{_Timer.cancel} leaves nothing scheduled; a stop alone leaves a call that
        does nothing when it comes due.
        """
        clock = Clock()
        fired: list[float] = []
        timer = _Timer(clock, 10.0, lambda: fired.append(clock.seconds()))
        timer.restart()
        timer.stop()
        clock.advance(20)
        self.assertEqual((fired, clock.getDelayedCalls()), ([], []))
        timer.restart()
        timer.cancel()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(20)
        self.assertEqual(fired, [])

    def test_none_never_schedules(self) -> None:
        clock = Clock()
        timer = _Timer(clock, None, lambda: None)
        timer.restart()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_ended_streams_leave_nothing_scheduled(self) -> None:
        """
        A stream that ended, either way and on either side, leaves no delayed call.
        """
        clock = Clock()
        to_receiver: list[Any] = []
        to_sender: list[Any] = []
        sink = Sink()
        receivers = StreamTable(to_sender.append)
        senders = StreamTable(to_receiver.append)
        receivers.add_receiver(StreamReceiver("s", to_sender.append, sink, clock, max_size=10**6))
        sender = StreamSender("s", to_receiver.append, StreamOptions(4, 2), clock)
        senders.add_sender(sender)
        sender.write(b"0123456789")
        sender.finish()
        while to_receiver or to_sender:
            for message in to_receiver[:]:
                to_receiver.remove(message)
                receivers.received(message)
            for message in to_sender[:]:
                to_sender.remove(message)
                senders.received(message)
        self.assertEqual(self.successResultOf(sender.done), 10)
        self.assertEqual(b"".join(sink.data), b"0123456789")
        self.assertEqual(clock.getDelayedCalls(), [])

        failing = StreamSender("f", to_receiver.append, StreamOptions(4, 2), clock)
        failing.write(b"abcdefgh")
        failing.cancel("gone")
        self.failureResultOf(failing.done, StreamFailed)
        receiver = StreamReceiver("r", to_sender.append, Sink(), clock, max_size=10)
        receiver.pauseProducing()
        receiver.cancel("gone")
        self.assertEqual(clock.getDelayedCalls(), [])
