"""
The requests C{pywatt dev}'s L{ModuleSupervisor} makes of its module and waits for
(C{http_request}, C{rotated}), on the correlation table: answered, timed out, and failed
when the module exits.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ProcessTerminated
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import PyWattError, RequestTimeout
from pywatt_twisted.wire.codec import decode_json_object, encode_line
from pywatt_twisted.wire.messages import HttpResponse, RotationAck
from tests.dev.test_crash_loop import supervisor


def started(**options: Any) -> tuple[Any, Any, Any, list[str]]:
    sup, clock, lines = supervisor(request_timeout=10, **options)
    sup._wanted = True
    sup._spawn()
    child = clock.spawned[-1]
    return sup, clock, child, lines


def sent(child: Any, op: str) -> list[dict[str, Any]]:
    """
    The messages of kind C{op} written to C{child}'s stdin.
    """
    lines = b"".join(child.transport.written).splitlines()
    return [o for o in (dict(decode_json_object(line)) for line in lines[1:]) if o["op"] == op]


class HttpTests(SynchronousTestCase):
    def test_answered(self) -> None:
        sup, _clock, child, _ = started()
        d = sup.requests.http("GET", "/x", {}, None)
        (request,) = sent(child, "http_request")
        child.outReceived(encode_line(HttpResponse(request["request_id"], 200, {}, b"ok")))
        self.assertEqual(self.successResultOf(d).body, b"ok")
        self.assertEqual(len(sup.requests.pending_http), 0)

    def test_timeout(self) -> None:
        sup, clock, child, lines = started()
        d = sup.requests.http("GET", "/x", {}, None)
        clock.advance(9.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        failure = self.failureResultOf(d, RequestTimeout)
        self.assertEqual(str(failure.value), "module badmod did not answer within 10 s")
        # A late answer is only noted.
        (request,) = sent(child, "http_request")
        child.outReceived(encode_line(HttpResponse(request["request_id"], 200, {}, b"late")))
        self.assertTrue(any("response to unknown request" in line for line in lines))

    def test_late_streamed_answer_ends_its_stream(self) -> None:
        """
        A streamed response to a request that timed out is not kept for a client that
        will never come: its relay is dropped and its stream cancelled.
        """
        sup, clock, child, _ = started()
        d = sup.requests.http("GET", "/x", {}, None)
        clock.advance(10)
        self.failureResultOf(d, RequestTimeout)
        (request,) = sent(child, "http_request")
        child.outReceived(
            encode_line(HttpResponse(request["request_id"], 200, {}, b"", stream_id="s-late"))
        )
        self.assertEqual(sup.streams.relays, {})
        [cancel] = sent(child, "stream_cancel")
        self.assertEqual(cancel["stream_id"], "s-late")

    def test_exit_fails_the_requests_at_once(self) -> None:
        sup, _clock, child, _ = started()
        d = sup.requests.http("GET", "/x", {}, None)
        sup._wanted = False
        child.processEnded(Failure(ProcessTerminated(exitCode=1)))
        failure = self.failureResultOf(d, PyWattError)
        self.assertIn("exited before answering", str(failure.value))
        self.assertEqual(len(sup.requests.pending_http), 0)

    def test_not_running(self) -> None:
        sup, clock, _ = supervisor()
        self.failureResultOf(sup.requests.http("GET", "/x", {}, None), PyWattError)
        self.assertEqual(len(sup.requests.pending_http), 0)
        self.assertEqual(clock.getDelayedCalls(), [])


class RotationTests(SynchronousTestCase):
    def test_acked(self) -> None:
        sup, _clock, child, _ = started()
        sup.used_secrets.add("API_KEY")
        d = sup.requests.rotate(frozenset({"API_KEY"}), "rot-1")
        assert d is not None
        self.assertEqual(sent(child, "rotated")[0]["rotation_id"], "rot-1")
        child.outReceived(encode_line(RotationAck("rot-1", "success")))
        self.assertEqual(self.successResultOf(d), RotationAck("rot-1", "success"))
        self.assertEqual(len(sup.requests.pending_rotations), 0)

    def test_no_ack_within_the_request_timeout(self) -> None:
        """
        A rotation nobody acknowledges does not wait forever: after C{request_timeout}
        the console says so once and the Deferred fires with C{None}.
        """
        sup, clock, _child, lines = started()
        sup.used_secrets.add("API_KEY")
        d = sup.requests.rotate(frozenset({"API_KEY"}), "rot-2")
        assert d is not None
        clock.advance(10)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(sup.requests.pending_rotations), 0)
        said = [line for line in lines if "did not acknowledge rotation rot-2" in line]
        self.assertEqual(len(said), 1)
        self.assertIn("within 10 s", said[0])

    def test_unused_secret(self) -> None:
        sup, _clock, _child, _ = started()
        self.assertIsNone(sup.requests.rotate(frozenset({"OTHER"})))
