"""
Tests for L{pywatt_twisted.link.ChannelManager}, with a L{Clock} and fake
endpoints (no sockets), and for the channel wiring of L{ModuleService}.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._transport.channel import MessageTooLarge, encode_channel_frame
from pywatt_twisted._transport.tls import TlsMaterial
from pywatt_twisted.errors import BootstrapError, ChannelError, ConfigurationError
from pywatt_twisted.link import (
    ChannelManager,
    ChannelOptions,
    ChannelQueueFull,
    ChannelSpec,
    ChannelState,
    ChannelUnavailable,
    RequiredChannelFailed,
    backoff_policy,
)
from pywatt_twisted.link._choice import Route
from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.wire.codec import decode_init
from pywatt_twisted.wire.framing import frame_header
from pywatt_twisted.wire.init import SecurityLevel
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    Heartbeat,
    HttpResponse,
    RouteToModule,
)
from tests.runtime.helpers import Harness
from tests.runtime.modules import echo_app
from tests.transport.fakes import FakeConnection, FakeEndpoint

TCP = ChannelSpec("tcp", "127.0.0.1:9901", host="127.0.0.1", port=9901)
IPC = ChannelSpec("ipc", "/tmp/wattson_demo.sock", path="/tmp/wattson_demo.sock")


def route(n: int = 0, size: int = 10) -> RouteToModule:
    return RouteToModule(
        "peer",
        f"ep{n}",
        uuid.UUID(int=n),
        EncodedPayload(json.dumps({"n": n, "x": "x" * size}).encode()),
    )


def endpoint_of(message: dict[str, Any]) -> str:
    return message["content"]["target_endpoint"]


class Rig:
    """
    A manager on a Clock with one fake endpoint per channel.
    """

    def __init__(
        self,
        *specs: ChannelSpec,
        options: ChannelOptions | None = None,
        jitter: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.clock = Clock()
        self.endpoints = {spec.name: FakeEndpoint(spec.name) for spec in specs}
        self.received: list[tuple[object, str]] = []
        self.metrics = ModuleMetrics()
        self.manager = ChannelManager(
            specs,
            module_id="demo",
            receiver=lambda m, link: self.received.append((m, link.name)),
            clock=self.clock,
            options=options or ChannelOptions(),
            endpoint_factory=lambda spec, tls: self.endpoints[spec.name],
            metrics=self.metrics,
            random=lambda: jitter,
            **kwargs,
        )

    def start(self) -> Rig:
        self.manager.startService()
        return self

    def up(self, name: str) -> FakeConnection:
        return self.endpoints[name].succeed()

    def stop(self) -> None:
        d = self.manager.stopService()
        self.clock.advance(10)
        self.successResultOf(d)

    def successResultOf(self, d: Any) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        assert results and not hasattr(results[0], "raiseException"), results
        return results[0]


class BackoffPolicyTests(SynchronousTestCase):
    def test_schedule_without_jitter(self) -> None:
        """
        100 ms doubling to 30 s, then 30 s for ever.
        """
        policy = backoff_policy(random=lambda: 0.0)
        delays = [policy(n) for n in range(1, 14)]
        self.assertEqual(
            [round(d, 3) for d in delays],
            [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0, 30.0],
        )
        self.assertEqual(policy(10_000), 30.0)

    def test_jitter_bounds(self) -> None:
        """
        With jitter j every delay lies in [base * (1 - j), base], never above 30 s.
        """
        rng = random.Random(4)
        policy = backoff_policy(jitter=0.5, random=rng.random)
        seen = set()
        for attempt in range(1, 40):
            base = min(0.1 * 2 ** (attempt - 1), 30.0)
            for _ in range(50):
                delay = policy(attempt)
                self.assertGreaterEqual(delay, base * 0.5)
                self.assertLessEqual(delay, base)
                seen.add(round(delay, 6))
        self.assertGreater(len(seen), 500, "jitter must actually spread the delays")

    def test_full_jitter_extremes(self) -> None:
        policy = backoff_policy(jitter=0.5, random=lambda: 1.0)
        self.assertAlmostEqual(policy(1), 0.05)
        self.assertAlmostEqual(policy(20), 15.0)
        self.assertRaises(ValueError, backoff_policy, jitter=1.5)


class ReconnectTests(SynchronousTestCase):
    def test_retry_times_follow_the_policy(self) -> None:
        """
        The ClientService retries a refused channel at 0.1, 0.2, 0.4... seconds after
        each failure; each failure is counted and recorded as the last error.
        """
        rig = Rig(TCP).start()
        endpoint = rig.endpoints["tcp"]
        self.assertEqual(endpoint.attempts, 1)
        times = []
        for _ in range(6):
            endpoint.fail()
            self.assertEqual(rig.manager.channels["tcp"].state, ChannelState.BACKOFF)
            [retry] = rig.clock.getDelayedCalls()
            delay = retry.getTime() - rig.clock.seconds()
            times.append(round(delay, 6))
            before = endpoint.attempts
            rig.clock.advance(delay - 0.001)
            self.assertEqual(endpoint.attempts, before)
            rig.clock.advance(0.001)
            self.assertEqual(endpoint.attempts, before + 1)
        self.assertEqual(times, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
        channel = rig.manager.channels["tcp"]
        self.assertEqual(channel.connect_failures, 6)
        self.assertIn("connection refused", channel.last_error or "")
        self.assertEqual(channel.state, ChannelState.CONNECTING)
        rig.stop()
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_identify_on_every_reconnect(self) -> None:
        """
        After each drop the channel reconnects (first retry after 100 ms) and sends
        identify first again.
        """
        rig = Rig(TCP).start()
        for _ in range(3):
            connection = rig.up("tcp")
            [identify] = connection.written()
            self.assertEqual(identify["content"]["op"], "identify")
            connection.receive({"op": "heartbeat"})  # healthy: the backoff resets
            connection.drop()
            self.assertEqual(rig.manager.channels["tcp"].state, ChannelState.BACKOFF)
            rig.clock.advance(0.1)
        self.assertEqual(rig.manager.channels["tcp"].connects, 3)
        self.assertEqual(rig.manager.channels["tcp"].disconnects, 3)
        rig.stop()

    def retry_delay(self, rig: Rig) -> float:
        [retry] = rig.clock.getDelayedCalls()
        return round(retry.getTime() - rig.clock.seconds(), 6)

    def test_unhealthy_connections_keep_the_backoff_growing(self) -> None:
        """
        A connection that opens and dies before it is healthy (no inbound message,
        less than healthy_after seconds up: a TLS rejection, a peer that closes at
        once) does not reset the delay: it keeps growing, up to the maximum.
        """
        rig = Rig(TCP, options=ChannelOptions(healthy_after=10.0, max_delay=1.0)).start()
        delays = []
        for _ in range(6):
            connection = rig.up("tcp")
            rig.clock.advance(9.0)
            connection.drop()
            delays.append(self.retry_delay(rig))
            rig.clock.advance(delays[-1])
        self.assertEqual(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
        channel = rig.manager.channels["tcp"]
        self.assertEqual(channel.failures_in_a_row, 6)
        self.assertEqual(channel.connects, 6)
        rig.stop()

    def test_refusals_and_unhealthy_connections_share_the_count(self) -> None:
        rig = Rig(TCP).start()
        endpoint = rig.endpoints["tcp"]
        endpoint.fail()
        self.assertEqual(self.retry_delay(rig), 0.1)
        rig.clock.advance(0.1)
        rig.up("tcp").drop()
        self.assertEqual(self.retry_delay(rig), 0.2)
        rig.clock.advance(0.2)
        endpoint.fail()
        self.assertEqual(self.retry_delay(rig), 0.4)
        rig.stop()

    def test_healthy_connection_resets_the_backoff(self) -> None:
        """
        After a connection carried a message, or stayed up healthy_after seconds, the
        next retry starts again at 100 ms.
        """
        rig = Rig(TCP, options=ChannelOptions(healthy_after=10.0)).start()
        for _ in range(3):
            rig.up("tcp").drop()
            rig.clock.advance(self.retry_delay(rig))
        connection = rig.up("tcp")
        connection.receive({"op": "heartbeat"})
        connection.drop()
        self.assertEqual(self.retry_delay(rig), 0.1)
        rig.clock.advance(0.1)
        for _ in range(2):
            rig.up("tcp").drop()
            rig.clock.advance(self.retry_delay(rig))
        connection = rig.up("tcp")
        rig.clock.advance(10.0)
        connection.drop()
        self.assertEqual(self.retry_delay(rig), 0.1)
        rig.stop()

    def test_identify_mode_all_and_off(self) -> None:
        rig = Rig(TCP, IPC, options=ChannelOptions(identify="all")).start()
        self.assertEqual(rig.up("ipc").written()[0]["content"]["op"], "identify")
        rig.stop()
        rig = Rig(TCP, IPC, options=ChannelOptions(identify="off")).start()
        self.assertEqual(rig.up("tcp").written(), [])
        self.assertEqual(rig.up("ipc").written(), [])
        rig.stop()
        rig = Rig(TCP, IPC).start()
        self.assertEqual(rig.up("ipc").written(), [], "identify defaults to the TCP channel only")
        rig.stop()

    def test_token_in_identify_only_for_token_level(self) -> None:
        rig = Rig(TCP, security_level=SecurityLevel.TOKEN, auth_token="tok-7").start()
        [identify] = rig.up("tcp").written()
        self.assertEqual(
            identify["metadata"]["properties"],
            {"extensions": ["streaming/1", "gzip"], "auth_token": "tok-7"},
        )
        rig.stop()
        rig = Rig(TCP, security_level=SecurityLevel.NONE, auth_token="tok-7").start()
        [identify] = rig.up("tcp").written()
        # (X0: the extensions it supports, and no token below the Token level)
        self.assertEqual(
            identify["metadata"]["properties"], {"extensions": ["streaming/1", "gzip"]}
        )
        self.assertNotIn("tok-7", json.dumps(rig.manager.health()))
        rig.stop()


class RequiredTests(SynchronousTestCase):
    def test_required_waits_for_connect(self) -> None:
        rig = Rig(
            ChannelSpec("tcp", "127.0.0.1:9901", required=True, host="127.0.0.1", port=9901), IPC
        ).start()
        d = rig.manager.when_required_ready()
        self.assertNoResult(d)
        rig.up("ipc")
        self.assertNoResult(d)
        rig.up("tcp")
        self.assertIsNone(self.successResultOf(d))
        rig.stop()
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_optional_channels_do_not_block(self) -> None:
        rig = Rig(TCP, IPC).start()
        self.successResultOf(rig.manager.when_required_ready())
        self.assertEqual(rig.manager.channels["tcp"].state, ChannelState.CONNECTING)
        rig.stop()

    def test_required_timeout_names_the_channel(self) -> None:
        """
        A required channel that keeps failing makes the wait fail after the timeout,
        naming the channel, its address and the last error.
        """
        spec = ChannelSpec("ipc", "/run/orch.sock", required=True, path="/run/orch.sock")
        rig = Rig(spec, options=ChannelOptions(required_timeout=5.0)).start()
        d = rig.manager.when_required_ready()
        endpoint = rig.endpoints["ipc"]
        while rig.clock.seconds() < 5.0:
            if endpoint.pending:
                endpoint.fail(FileNotFoundError(2, "No such file or directory"))
            rig.clock.advance(0.05)
        error = self.failureResultOf(d, RequiredChannelFailed).value
        self.assertIsInstance(error, BootstrapError)
        text = str(error)
        self.assertIn("required ipc channel (/run/orch.sock)", text)
        self.assertIn("within 5 s", text)
        self.assertIn("No such file or directory", text)
        rig.stop()
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_timeout_counts_from_start(self) -> None:
        spec = ChannelSpec("ipc", "/s", required=True, path="/s")
        rig = Rig(spec, options=ChannelOptions(required_timeout=5.0)).start()
        rig.clock.advance(4.0)
        d = rig.manager.when_required_ready()
        rig.clock.advance(1.0)
        self.failureResultOf(d, RequiredChannelFailed)
        rig.stop()

    def test_required_tls_without_ca_fails_at_once(self) -> None:
        """
        TLS without a CA never connects (no plaintext fallback) and fails the
        required wait immediately with the reason.
        """
        spec = ChannelSpec("tcp", "127.0.0.1:1", required=True, tls=True, host="127.0.0.1", port=1)
        rig = Rig(spec, tls_material=TlsMaterial()).start()
        error = self.failureResultOf(rig.manager.when_required_ready(), RequiredChannelFailed)
        self.assertIn("PYWATT_TLS_CA", str(error.value))
        self.assertEqual(rig.endpoints["tcp"].attempts, 0)
        self.assertEqual(rig.manager.channels["tcp"].state, ChannelState.FAILED)
        self.flushLoggedErrors()
        rig.stop()

    def test_mtls_refuses_plaintext_tcp(self) -> None:
        rig = Rig(TCP, IPC, security_level=SecurityLevel.MTLS).start()
        self.assertEqual(rig.manager.channels["tcp"].state, ChannelState.FAILED)
        self.assertIn("refusing", rig.manager.channels["tcp"].last_error or "")
        self.assertEqual(rig.endpoints["tcp"].attempts, 0)
        self.assertEqual(rig.endpoints["ipc"].attempts, 1, "the Unix socket channel still runs")
        self.flushLoggedErrors()
        rig.stop()


class FailoverTests(SynchronousTestCase):
    def test_prefers_unix_socket_then_fails_over_mid_stream(self) -> None:
        """
        Sends go over the Unix socket while it is up, over TCP while it is down, and
        back to the Unix socket once it reconnects; nothing is lost or reordered.
        """
        rig = Rig(TCP, IPC).start()
        tcp, ipc = rig.up("tcp"), rig.up("ipc")
        tcp.new()
        for n in range(3):
            self.successResultOf(rig.manager.send(route(n)))
        ipc.drop(ConnectionLost("reset"))
        for n in range(3, 6):
            self.successResultOf(rig.manager.send(route(n)))
        rig.clock.advance(0.1)
        ipc2 = rig.up("ipc")
        for n in range(6, 8):
            self.successResultOf(rig.manager.send(route(n)))
        self.assertEqual([endpoint_of(m) for m in ipc.new()], ["ep0", "ep1", "ep2"])
        self.assertEqual([endpoint_of(m) for m in tcp.new()], ["ep3", "ep4", "ep5"])
        self.assertEqual([endpoint_of(m) for m in ipc2.new()], ["ep6", "ep7"])
        self.assertIn("reset", rig.manager.channels["ipc"].last_error or "")
        rig.stop()

    def test_configured_preference(self) -> None:
        rig = Rig(TCP, IPC, options=ChannelOptions(preference=("tcp",))).start()
        tcp, ipc = rig.up("tcp"), rig.up("ipc")
        tcp.new()
        self.successResultOf(rig.manager.send(route(1)))
        self.successResultOf(rig.manager.send(route(2), prefer="ipc"))
        self.assertEqual([endpoint_of(m) for m in tcp.new()], ["ep1"])
        self.assertEqual([endpoint_of(m) for m in ipc.new()], ["ep2"])
        rig.stop()

    def test_route_is_told_the_channel(self) -> None:
        """
        A L{Route}'s C{written} callback is told the channel its frame went on, whether
        C{send} wrote it at once or it waited in the queue until a channel came up.
        """
        rig = Rig(TCP, IPC, options=ChannelOptions(preference=("tcp",))).start()
        tcp, ipc = rig.up("tcp"), rig.up("ipc")
        told: list[str] = []
        self.successResultOf(rig.manager.send(route(1), Route(prefer="ipc", written=told.append)))
        self.successResultOf(rig.manager.send(route(2), Route(written=told.append)))
        self.assertEqual(told, ["ipc", "tcp"])
        tcp.drop()
        ipc.drop()
        d = rig.manager.send(route(3), Route(written=told.append))
        self.assertNoResult(d)
        self.assertEqual(told, ["ipc", "tcp"])
        rig.clock.advance(0.1)
        rig.up("tcp")
        self.successResultOf(d)
        self.assertEqual(told, ["ipc", "tcp", "tcp"])
        rig.stop()

    def test_paused_channel_is_skipped(self) -> None:
        """
        A channel whose transport is full (paused) gets nothing new; the other takes
        over, and with both paused messages queue until one drains.
        """
        rig = Rig(TCP, IPC).start()
        tcp, ipc = rig.up("tcp"), rig.up("ipc")
        tcp.new()
        ipc.channel.pauseProducing()
        self.assertEqual(rig.manager.channels["ipc"].state, ChannelState.PAUSED)
        self.successResultOf(rig.manager.send(route(1)))
        tcp.channel.pauseProducing()
        d = rig.manager.send(route(2))
        self.assertNoResult(d)
        self.assertEqual(rig.manager.queued, 1)
        ipc.channel.resumeProducing()
        self.successResultOf(d)
        self.assertEqual([endpoint_of(m) for m in tcp.new()], ["ep1"])
        self.assertEqual([endpoint_of(m) for m in ipc.new()], ["ep2"])
        self.assertEqual(rig.manager.channels["ipc"].state, ChannelState.CONNECTED)
        rig.stop()

    def test_reply_for_a_dropped_connection_is_rerouted(self) -> None:
        """
        An HTTP response whose connection died goes out on the other channel.
        """
        rig = Rig(TCP, IPC).start()
        tcp, ipc = rig.up("tcp"), rig.up("ipc")
        tcp.new()
        link = ipc.channel
        ipc.drop()
        link.send_http_response(HttpResponse("req-1", 200, {}, b"ok"))
        [reply] = tcp.new()
        self.assertEqual(reply["content"]["request_id"], "req-1")
        rig.stop()


class QueueTests(SynchronousTestCase):
    def test_delivered_after_reconnect_in_order_after_identify(self) -> None:
        rig = Rig(TCP).start()
        first = rig.up("tcp")
        first.drop()
        sends = [rig.manager.send(route(n)) for n in range(4)]
        for d in sends:
            self.assertNoResult(d)
        self.assertEqual(rig.manager.queue_health()["queued"], 4)
        rig.clock.advance(0.1)
        again = rig.up("tcp")
        frames = again.written()
        self.assertEqual(frames[0]["content"]["op"], "identify")
        self.assertEqual([endpoint_of(m) for m in frames[1:]], ["ep0", "ep1", "ep2", "ep3"])
        for d in sends:
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(rig.manager.queued, 0)
        rig.stop()
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_overflow_fails_at_once(self) -> None:
        rig = Rig(TCP, options=ChannelOptions(queue_size=2)).start()
        a, b = rig.manager.send(route(1)), rig.manager.send(route(2))
        error = self.failureResultOf(rig.manager.send(route(3)), ChannelQueueFull).value
        self.assertIsInstance(error, ChannelError)
        self.assertIn("queue size 2", str(error))
        self.assertIn("route_to_module", str(error))
        self.assertIn("tcp connecting", str(error))
        self.assertNoResult(a)
        self.assertNoResult(b)
        self.assertEqual(rig.manager.queue_health()["rejected"], 1)
        rig.stop()
        self.failureResultOf(a, ChannelUnavailable)
        self.failureResultOf(b, ChannelUnavailable)

    def test_bounded_in_bytes(self) -> None:
        """
        The queue counts bytes as well as messages: a message that would take it over
        queue_bytes fails at once with ChannelQueueFull naming the limit and how to
        raise it, logged once until the queue empties; the queued ones are delivered
        in order.
        """
        frame_size = len(encode_channel_frame(route(0, 1000), 1 << 30))
        small_size = len(encode_channel_frame(route(5, 1), 1 << 30))
        limit = 3 * frame_size + small_size
        rig = Rig(TCP, options=ChannelOptions(queue_bytes=limit)).start()
        events: list[dict[str, Any]] = []
        rig.manager.log = Logger(observer=events.append)
        queued = [rig.manager.send(route(n, 1000)) for n in range(3)]
        self.assertEqual(rig.manager.queue.bytes, 3 * frame_size)
        over = rig.manager.send(route(3, 1000))
        error = self.failureResultOf(over, ChannelQueueFull).value
        self.assertIn("PYWATT_CHANNEL_QUEUE_BYTES", str(error))
        self.assertIn(f"queue bytes {limit}", str(error))
        self.failureResultOf(rig.manager.send(route(4, 1000)), ChannelQueueFull)
        small = rig.manager.send(route(5, 1))  # still fits in bytes
        self.assertNoResult(small)
        logged = [e for e in events if "PYWATT_CHANNEL_QUEUE_BYTES" in str(e.get("error"))]
        self.assertEqual(len(logged), 1)
        self.assertEqual(rig.manager.queue_health()["rejected"], 2)
        self.assertEqual(rig.manager.queue_health()["bytes_limit"], limit)
        connection = rig.up("tcp")
        for d in [*queued, small]:
            self.successResultOf(d)
        self.assertEqual(
            [endpoint_of(m) for m in connection.written()[1:]], ["ep0", "ep1", "ep2", "ep5"]
        )
        self.assertEqual(rig.manager.queue.bytes, 0)
        self.assertEqual(rig.manager.queue_health()["bytes"], 0)
        rig.stop()

    def test_bytes_released_on_expiry_and_cancel(self) -> None:
        rig = Rig(TCP, options=ChannelOptions(queue_deadline=2.0)).start()
        first = rig.manager.send(route(1))
        second = rig.manager.send(route(2))
        self.assertGreater(rig.manager.queue.bytes, 0)
        second.cancel()
        self.failureResultOf(second)
        rig.clock.advance(2.0)
        self.failureResultOf(first, ChannelUnavailable)
        self.assertEqual(rig.manager.queue.bytes, 0)
        rig.stop()

    def test_message_bound_is_logged_once(self) -> None:
        rig = Rig(TCP, options=ChannelOptions(queue_size=1)).start()
        events: list[dict[str, Any]] = []
        rig.manager.log = Logger(observer=events.append)
        waiting = rig.manager.send(route(1))
        for n in range(3):
            self.failureResultOf(rig.manager.send(route(n)), ChannelQueueFull)
        logged = [e for e in events if "PYWATT_CHANNEL_QUEUE_SIZE" in str(e.get("error"))]
        self.assertEqual(len(logged), 1)
        rig.up("tcp")
        self.successResultOf(waiting)
        rig.manager.send(route(4))  # sent at once
        self.assertEqual(rig.manager.queued, 0)
        rig.manager.channels["tcp"].protocol.pauseProducing()  # type: ignore[union-attr]
        pending = rig.manager.send(route(5))
        self.failureResultOf(rig.manager.send(route(6)), ChannelQueueFull)
        logged = [e for e in events if "PYWATT_CHANNEL_QUEUE_SIZE" in str(e.get("error"))]
        self.assertEqual(len(logged), 2, "logged again once the queue emptied and refilled")
        rig.stop()
        self.failureResultOf(pending, ChannelUnavailable)

    def test_deadline(self) -> None:
        rig = Rig(TCP, options=ChannelOptions(queue_deadline=2.0)).start()
        d = rig.manager.send(route(1))
        rig.clock.advance(1.9)
        self.assertNoResult(d)
        rig.clock.advance(0.1)
        error = self.failureResultOf(d, ChannelUnavailable).value
        self.assertIn("within 2 s", str(error))
        self.assertEqual(rig.manager.queued, 0)
        rig.up("tcp")
        rig.stop()

    def test_cancel_removes_from_queue(self) -> None:
        rig = Rig(TCP).start()
        d = rig.manager.send(route(1))
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(rig.manager.queued, 0)
        [identify] = rig.up("tcp").written()
        self.assertEqual(identify["content"]["op"], "identify")
        rig.stop()

    def test_too_large_fails_without_queueing(self) -> None:
        rig = Rig(TCP, options=ChannelOptions(max_frame_length=100)).start()
        self.failureResultOf(rig.manager.send(route(1, size=500)), MessageTooLarge)
        self.assertEqual(rig.manager.queued, 0)
        rig.stop()

    def test_stop_fails_queued_and_leaves_no_timers(self) -> None:
        rig = Rig(TCP, IPC).start()
        connection = rig.up("tcp")
        pending = rig.manager.send(route(1), prefer=None)
        self.successResultOf(pending)
        connection.drop()
        queued = rig.manager.send(route(2))
        rig.stop()
        error = self.failureResultOf(queued, ChannelUnavailable).value
        self.assertIn("stopped", str(error))
        self.failureResultOf(rig.manager.send(route(3)), ChannelUnavailable)
        self.assertEqual(rig.clock.getDelayedCalls(), [])
        self.assertEqual({c.state for c in rig.manager.channels.values()}, {ChannelState.STOPPED})


class LivenessTests(SynchronousTestCase):
    def test_silent_connection_is_replaced(self) -> None:
        rig = Rig(TCP, options=ChannelOptions(liveness_deadline=15.0)).start()
        first = rig.up("tcp")
        rig.clock.advance(10)
        first.receive({"op": "heartbeat"})
        rig.clock.advance(10)
        self.assertFalse(first.transport.disconnected)
        rig.clock.advance(5)
        self.assertTrue(first.transport.disconnected)
        channel = rig.manager.channels["tcp"]
        self.assertIn("liveness", channel.last_error or "")
        rig.clock.advance(0.1)
        second = rig.up("tcp")
        self.assertEqual(second.written()[0]["content"]["op"], "identify")
        rig.stop()
        self.assertEqual(rig.clock.getDelayedCalls(), [])


class OversizeTests(SynchronousTestCase):
    def test_gib_header_aborts_and_reconnects(self) -> None:
        rig = Rig(TCP, options=ChannelOptions(max_frame_length=1 << 20)).start()
        connection = rig.up("tcp")
        connection.protocol.dataReceived(frame_header(1 << 30))
        self.assertTrue(connection.transport.disconnected)
        channel = rig.manager.channels["tcp"]
        self.assertIn("1073741824", channel.last_error or "")
        self.assertEqual(channel.counters.bad_frames, 1)
        rig.clock.advance(0.1)
        self.assertEqual(rig.endpoints["tcp"].attempts, 2)
        self.flushLoggedErrors()
        rig.stop()


class HealthTests(SynchronousTestCase):
    def test_health_and_metrics(self) -> None:
        rig = Rig(TCP, IPC).start()
        tcp = rig.up("tcp")
        tcp.receive({"op": "heartbeat"})
        rig.endpoints["ipc"].fail()
        health = rig.manager.health()
        self.assertEqual(health["tcp"]["state"], ChannelState.CONNECTED)
        self.assertEqual(health["tcp"]["frames_in"], 1)
        self.assertEqual(health["tcp"]["frames_out"], 1)
        self.assertEqual(health["ipc"]["state"], ChannelState.BACKOFF)
        self.assertEqual(health["ipc"]["connect_failures"], 1)
        self.assertIn("refused", health["ipc"]["last_error"])
        self.assertEqual((health["tcp"]["read_pauses"], health["tcp"]["unsent_bytes"]), (0, 0))
        self.assertEqual(rig.manager.queue_health()["bytes"], 0)
        self.assertAlmostEqual(health["ipc"]["retry_in_seconds"], 0.1)
        self.assertEqual(rig.received, [(Heartbeat(), "tcp")])
        text = rig.metrics.render().decode()
        self.assertIn('pywatt_channel_state{channel="tcp",state="connected"} 1.0', text)
        self.assertIn('pywatt_channel_state{channel="ipc",state="backoff"} 1.0', text)
        self.assertIn('pywatt_channel_frames_total{channel="tcp",direction="in"} 1.0', text)
        self.assertIn('pywatt_channel_connect_failures_total{channel="ipc"} 1.0', text)
        self.assertIn("pywatt_channel_queue_depth 0.0", text)
        self.assertIn("pywatt_channel_queue_bytes 0.0", text)
        self.assertIn('pywatt_channel_last_error_timestamp_seconds{channel="ipc"', text)
        rig.stop()
        self.assertNotIn("pywatt_channel_frames_total", rig.metrics.render().decode())


class OptionsTests(SynchronousTestCase):
    def test_from_config(self) -> None:
        config = RuntimeConfig.from_environment(
            {
                "PYWATT_CHANNEL_PREFERENCE": "tcp",
                "PYWATT_CHANNEL_LIVENESS": "20",
                "PYWATT_IDENTIFY": "all",
                "PYWATT_CHANNEL_QUEUE_SIZE": "5",
                "PYWATT_MAX_FRAME_LENGTH": "4096",
                "PYWATT_CHANNEL_HIGH_WATER": "65536",
                "PYWATT_CHANNEL_QUEUE_BYTES": "1000000",
                "PYWATT_TLS_HANDSHAKE_TIMEOUT": "2.5",
                "PYWATT_CHANNEL_HEALTHY_AFTER": "7",
            }
        )
        options = ChannelOptions.from_config(config)
        self.assertEqual(
            (
                options.high_water,
                options.queue_bytes,
                options.tls_handshake_timeout,
                options.healthy_after,
            ),
            (65536, 1_000_000, 2.5, 7.0),
        )
        settings = Rig(TCP, options=options).manager.channels["tcp"].settings
        self.assertEqual(
            (settings.high_water, settings.tls_handshake_timeout, settings.healthy_after),
            (65536, 2.5, 7.0),
        )
        self.assertEqual(options.preference, ("tcp", "ipc"))
        self.assertEqual(options.liveness_deadline, 20.0)
        self.assertEqual(options.identify, "all")
        self.assertEqual(options.queue_size, 5)
        self.assertEqual(options.max_frame_length, 4096)
        self.assertIsNone(
            RuntimeConfig.from_environment(
                {"PYWATT_CHANNEL_LIVENESS": "0"}
            ).channel_liveness_deadline
        )

    def test_bad_values(self) -> None:
        for env in (
            {"PYWATT_CHANNEL_PREFERENCE": "udp"},
            {"PYWATT_CHANNEL_PREFERENCE": "tcp,tcp"},
            {"PYWATT_IDENTIFY": "sometimes"},
            {"PYWATT_CHANNEL_LIVENESS": "-1"},
            {"PYWATT_CHANNEL_QUEUE_SIZE": "0"},
        ):
            self.assertRaises(ConfigurationError, RuntimeConfig.from_environment, env)
        self.assertRaises(ConfigurationError, ChannelOptions, identify="x")

    def test_specs_from_init(self) -> None:
        blob = decode_init(
            json.dumps(
                {
                    "orchestrator_api": "http://127.0.0.1:9900",
                    "module_id": "m",
                    "env": {},
                    "listen": "127.0.0.1:0",
                    "tcp_channel": {
                        "address": "127.0.0.1:9901",
                        "tls_enabled": True,
                        "required": True,
                    },
                    "ipc_channel": {"socket_path": "/tmp/w.sock", "required": False},
                }
            )
        )
        tcp, ipc = ChannelSpec.from_init(blob)
        self.assertEqual(
            (tcp.name, tcp.host, tcp.port, tcp.tls, tcp.required),
            ("tcp", "127.0.0.1", 9901, True, True),
        )
        self.assertEqual((ipc.name, ipc.path, ipc.required), ("ipc", "/tmp/w.sock", False))


def channel_init(**extra: Any) -> bytes:
    blob = {
        "orchestrator_api": "http://127.0.0.1:9900",
        "module_id": "demo",
        "env": {},
        "listen": "127.0.0.1:0",
        "security_level": "None",
    }
    blob.update(extra)
    return json.dumps(blob).encode() + b"\n"


class ServiceWiringTests(SynchronousTestCase):
    """
    The channels inside a L{ModuleService}, in memory.
    """

    def harness(
        self, config: RuntimeConfig | None = None
    ) -> tuple[Harness, dict[str, FakeEndpoint]]:
        endpoints = {"tcp": FakeEndpoint("tcp"), "ipc": FakeEndpoint("ipc")}
        harness = Harness(echo_app, config)
        harness.service.channel_endpoints = lambda spec, tls: endpoints[spec.name]
        return harness, endpoints

    def start(self, harness: Harness, **channels: Any) -> None:
        harness.start()
        harness.feed(channel_init(**channels))
        harness.answer_secrets({"API_KEY": "k", "DB_PASSWORD": "p"})

    def stop(self, harness: Harness) -> None:
        d = harness.service.stopService()
        harness.reactor.advance(30)
        self.successResultOf(d)
        self.assertEqual(harness.reactor.getDelayedCalls(), [])

    def test_required_channel_gates_announce(self) -> None:
        harness, endpoints = self.harness()
        self.start(
            harness,
            tcp_channel={"address": "127.0.0.1:9901", "tls_enabled": False, "required": True},
        )
        self.assertFalse([x for x in harness.sent() if x.get("op") == "announce"])
        tcp = endpoints["tcp"].succeed()
        self.assertEqual(tcp.written()[0]["content"]["op"], "identify")
        self.assertEqual(len([x for x in harness.sent() if x.get("op") == "announce"]), 1)
        health = harness.service.health_status()
        self.assertEqual(health["channels"]["tcp"]["state"], ChannelState.CONNECTED)
        self.assertEqual(health["channel_queue"]["queued"], 0)
        self.stop(harness)

    def test_required_channel_timeout_fails_start(self) -> None:
        harness, endpoints = self.harness(RuntimeConfig(channel_required_timeout=3.0))
        self.start(
            harness,
            ipc_channel={"socket_path": "/nonexistent/orch.sock", "required": True},
        )
        for _ in range(100):
            if endpoints["ipc"].pending:
                endpoints["ipc"].fail(FileNotFoundError(2, "No such file or directory"))
            harness.reactor.advance(0.05)
        self.assertEqual(harness.exits, [1])
        self.assertFalse([x for x in harness.sent() if x.get("op") == "announce"])
        self.failureResultOf(harness.service.whenReady(), RequiredChannelFailed)
        self.flushLoggedErrors()
        self.stop(harness)

    def test_heartbeat_and_http_over_channel(self) -> None:
        """
        A heartbeat on the Unix socket is acked on it; an http_request on the TCP
        channel is served by the real route and answered on TCP, enveloped.
        """
        harness, endpoints = self.harness()
        self.start(
            harness,
            tcp_channel={"address": "127.0.0.1:9901", "tls_enabled": False, "required": False},
            ipc_channel={"socket_path": "/tmp/w.sock", "required": False},
        )
        tcp, ipc = endpoints["tcp"].succeed(), endpoints["ipc"].succeed()
        tcp.new()
        ipc.receive({"op": "heartbeat"})
        [ack] = ipc.new()
        self.assertEqual(ack["content"], {"op": "heartbeat_ack"})
        tcp.receive(
            {
                "op": "http_request",
                "request_id": "req-7",
                "method": "GET",
                "uri": "/items/42",
                "headers": {},
                "body": None,
            }
        )
        harness.reactor.advance(0)
        [reply] = tcp.new()
        self.assertEqual(reply["content"]["op"], "http_response")
        self.assertEqual(reply["content"]["request_id"], "req-7")
        self.assertEqual(reply["content"]["status_code"], 200)
        self.assertEqual(json.loads(bytes(reply["content"]["body"])), {"id": 42})
        self.assertEqual(ipc.new(), [])
        self.assertNotIn(b"req-7", harness.transport.value())
        text = harness.service.metrics.render().decode()
        self.assertIn('pywatt_messages_received_total{op="heartbeat",transport="ipc"} 1.0', text)
        self.stop(harness)

    def test_shutdown_on_channel_stops(self) -> None:
        harness, endpoints = self.harness()
        self.start(harness, ipc_channel={"socket_path": "/tmp/w.sock", "required": False})
        endpoints["ipc"].succeed().receive({"op": "shutdown"})
        self.assertEqual(harness.exits, [0])
        self.stop(harness)

    def test_no_channels_no_manager(self) -> None:
        harness, _ = self.harness()
        self.start(harness)
        self.assertIsNone(harness.service.channels)
        self.assertEqual(harness.service.health_status()["channels"], {})
        self.stop(harness)
