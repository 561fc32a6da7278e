"""
Tests for L{pywatt_twisted._runtime.secrets.SecretClient} (correlation by name, shared
waiters, timeouts, seeding, the all-at-once refresh) and for the rotation flow it backs
in L{pywatt_twisted._runtime.service} (re-fetch, C{on_rotation} callbacks, C{rotation_ack}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.redaction import Redactor
from pywatt_twisted._runtime.secret import REDACTED, Secret
from pywatt_twisted._runtime.secrets import (
    CACHE_FIRST,
    DEFAULT_SECRET_TIMEOUT,
    FORCE_REMOTE,
    SecretClient,
)
from pywatt_twisted._runtime.service import READY
from pywatt_twisted.errors import SecretError
from pywatt_twisted.wire.messages import GetSecret, SecretMessage
from tests.runtime.helpers import Harness, init_line, line
from tests.runtime.modules import echo_app


class Fixture:
    def __init__(self, timeout: float = DEFAULT_SECRET_TIMEOUT) -> None:
        self.clock = Clock()
        self.sent: list[Any] = []
        self.redactor = Redactor()
        self.client = SecretClient(self.sent.append, self.clock, timeout, self.redactor)

    def reply(self, name: str, value: str, rotation_id: str | None = None) -> None:
        self.client.secret_received(SecretMessage(name=name, value=value, rotation_id=rotation_id))

    def requested(self) -> list[str]:
        return [m.name for m in self.sent if isinstance(m, GetSecret)]


class FetchTests(SynchronousTestCase):
    def test_request_and_reply(self) -> None:
        f = Fixture()
        d = f.client.get_secret("API_KEY")
        self.assertEqual(f.requested(), ["API_KEY"])
        self.assertNoResult(d)
        f.reply("API_KEY", "v-1")
        secret = self.successResultOf(d)
        self.assertIsInstance(secret, Secret)
        self.assertEqual((secret.name, secret.expose()), ("API_KEY", "v-1"))
        self.assertEqual(f.client.cached("API_KEY").expose(), "v-1")
        self.assertEqual(f.client.outstanding, frozenset())
        self.assertEqual(f.clock.getDelayedCalls(), [])

    def test_cache_first_and_force_remote(self) -> None:
        f = Fixture()
        f.reply("API_KEY", "v-1")  # unsolicited: just cached
        self.assertEqual(self.successResultOf(f.client.get_secret("API_KEY")).expose(), "v-1")
        self.assertEqual(f.requested(), [])
        d = f.client.get_secret("API_KEY", mode=FORCE_REMOTE)
        self.assertEqual(f.requested(), ["API_KEY"])
        f.reply("API_KEY", "v-2")
        self.assertEqual(self.successResultOf(d).expose(), "v-2")
        self.assertEqual(
            self.successResultOf(f.client.get_secret("API_KEY", mode=CACHE_FIRST)).expose(), "v-2"
        )

    def test_unknown_mode(self) -> None:
        f = Fixture()
        e = self.assertRaises(ValueError, f.client.get_secret, "X", mode="sometimes")
        self.assertIn("cache-first", str(e))
        self.assertEqual(f.requested(), [])

    def test_out_of_order_replies(self) -> None:
        f = Fixture()
        ds = {n: f.client.get_secret(n) for n in ("A", "B", "C")}
        self.assertEqual(f.requested(), ["A", "B", "C"])
        for name in ("C", "A", "B"):
            f.reply(name, f"value-of-{name}")
        for name, d in ds.items():
            self.assertEqual(self.successResultOf(d).expose(), f"value-of-{name}")

    def test_interleaved_with_unsolicited_and_other_names(self) -> None:
        f = Fixture()
        a = f.client.get_secret("A")
        f.reply("UNRELATED", "u-1")
        self.assertNoResult(a)
        b = f.client.get_secret("B")
        f.reply("B", "b-1")
        self.assertNoResult(a)
        self.assertEqual(self.successResultOf(b).expose(), "b-1")
        f.reply("A", "a-1")
        self.assertEqual(self.successResultOf(a).expose(), "a-1")
        self.assertEqual(f.client.cached("UNRELATED").expose(), "u-1")
        self.assertEqual(f.requested(), ["A", "B"])

    def test_concurrent_waiters_share_one_request(self) -> None:
        f = Fixture()
        waiters = [f.client.get_secret("API_KEY") for _ in range(5)]
        waiters.append(f.client.get_secret("API_KEY", mode=FORCE_REMOTE))
        self.assertEqual(f.requested(), ["API_KEY"])
        self.assertEqual(len(f.clock.getDelayedCalls()), 1)
        f.reply("API_KEY", "shared")
        values = {self.successResultOf(d).expose() for d in waiters}
        self.assertEqual(values, {"shared"})
        # Once answered, a new force-remote fetch is a new request.
        f.client.get_secret("API_KEY", mode=FORCE_REMOTE)
        self.assertEqual(f.requested(), ["API_KEY", "API_KEY"])

    def test_timeout_default_names_the_secret(self) -> None:
        f = Fixture()
        first, second = f.client.get_secret("DB_PASSWORD"), f.client.get_secret("DB_PASSWORD")
        f.clock.advance(DEFAULT_SECRET_TIMEOUT - 0.1)
        self.assertNoResult(first)
        f.clock.advance(0.1)
        for d in (first, second):
            failure = self.failureResultOf(d, SecretError)
            self.assertIn("'DB_PASSWORD'", str(failure.value))
            self.assertIn("30 s", str(failure.value))
        self.assertEqual(f.client.outstanding, frozenset())
        # A late reply is still welcome: it is cached as an unsolicited value.
        f.reply("DB_PASSWORD", "late")
        self.assertEqual(f.client.cached("DB_PASSWORD").expose(), "late")
        # A fetch after a timeout asks again.
        f.client.get_secret("DB_PASSWORD", mode=FORCE_REMOTE)
        self.assertEqual(f.requested(), ["DB_PASSWORD", "DB_PASSWORD"])

    def test_timeout_configurable_and_per_name(self) -> None:
        f = Fixture(timeout=2)
        a = f.client.get_secret("A")
        f.clock.advance(1)
        b = f.client.get_secret("B")
        f.clock.advance(1)
        self.failureResultOf(a, SecretError)
        self.assertNoResult(b)
        f.reply("B", "b")
        self.assertEqual(self.successResultOf(b).expose(), "b")
        self.assertEqual(f.clock.getDelayedCalls(), [])

    def test_cancelling_one_waiter_keeps_the_others(self) -> None:
        f = Fixture()
        first, second = f.client.get_secret("A"), f.client.get_secret("A")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        f.reply("A", "a")
        self.assertEqual(self.successResultOf(second).expose(), "a")

    def test_cancelling_the_only_waiter_stops_the_timer(self) -> None:
        f = Fixture()
        d = f.client.get_secret("A")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(f.client.outstanding, frozenset())
        self.assertEqual(f.clock.getDelayedCalls(), [])

    def test_send_failure_fails_at_once(self) -> None:
        def broken(message: Any) -> None:
            raise OSError("stdout closed")

        client = SecretClient(broken, Clock(), redactor=Redactor())
        failure = self.failureResultOf(client.get_secret("A"), SecretError)
        self.assertIn("could not request secret 'A'", str(failure.value))
        self.assertIn("stdout closed", str(failure.value))
        self.assertEqual(client.outstanding, frozenset())

    def test_get_secrets_together(self) -> None:
        f = Fixture(timeout=5)
        d = f.client.get_secrets(["A", "B", "A"])
        self.assertEqual(f.requested(), ["A", "B"])
        f.reply("B", "b")
        f.reply("A", "a")
        result = self.successResultOf(d)
        self.assertEqual({k: v.expose() for k, v in result.items()}, {"A": "a", "B": "b"})
        self.assertEqual(list(result), ["A", "B"])

    def test_get_secrets_names_every_missing_one(self) -> None:
        f = Fixture(timeout=5)
        d = f.client.get_secrets(["A", "B", "C"])
        f.reply("B", "b-value")
        f.clock.advance(5)
        failure = self.failureResultOf(d, SecretError)
        message = str(failure.value)
        self.assertIn("'A'", message)
        self.assertIn("'C'", message)
        self.assertNotIn("'B',", message)
        self.assertNotIn("b-value", message)

    def test_cached_never_fetched(self) -> None:
        f = Fixture()
        e = self.assertRaises(SecretError, f.client.cached, "NOPE")
        self.assertIn("'NOPE'", str(e))
        self.assertIn("secrets=[...]", str(e))
        self.assertIn("NOPE", f.client.known(), "asking for it marks it as used")

    def test_cancel_all(self) -> None:
        f = Fixture()
        a, b = f.client.get_secret("A"), f.client.get_secret("B")
        f.client.cancel_all("the module is stopping")
        for d in (a, b):
            self.assertIn("stopping", str(self.failureResultOf(d, SecretError).value))
        self.assertEqual(f.clock.getDelayedCalls(), [])


class SeedAndRedactionTests(SynchronousTestCase):
    def test_seed_from_env_answers_cache_first(self) -> None:
        f = Fixture()
        f.client.seed({"API_KEY": "from-env-1", "OTHER": "from-env-2"})
        self.assertEqual(
            self.successResultOf(f.client.get_secret("API_KEY")).expose(), "from-env-1"
        )
        self.assertEqual(f.requested(), [])
        self.assertEqual(f.client.known(), frozenset({"API_KEY", "OTHER"}))
        self.assertEqual(f.redactor.redact("x from-env-2 y"), f"x {REDACTED} y")

    def test_value_redacted_before_any_waiter_sees_it(self) -> None:
        f = Fixture()
        seen: list[str] = []
        d = f.client.get_secret("A")
        d.addCallback(lambda s: seen.append(f.redactor.redact("log " + s.expose())))
        f.reply("A", "sup3r-s3cret")
        self.assertEqual(seen, [f"log {REDACTED}"])

    def test_unsolicited_values_and_old_values_stay_redacted(self) -> None:
        f = Fixture()
        f.reply("A", "first-value")
        f.reply("A", "second-value")
        self.assertEqual(f.client.cached("A").expose(), "second-value")
        self.assertEqual(f.redactor.redact("first-value second-value"), f"{REDACTED} {REDACTED}")


class RefreshTests(SynchronousTestCase):
    def seeded(self) -> Fixture:
        f = Fixture(timeout=5)
        f.client.seed({"A": "a-old", "B": "b-old"})
        return f

    def values(self, f: Fixture) -> tuple[str, str]:
        return (f.client.cached("A").expose(), f.client.cached("B").expose())

    def test_all_or_nothing_swap(self) -> None:
        f = self.seeded()
        d = f.client.refresh(["A", "B"])
        self.assertEqual(f.requested(), ["A", "B"])
        f.reply("B", "b-new")
        self.assertEqual(self.values(f), ("a-old", "b-old"))
        self.assertEqual(f.redactor.redact("b-new"), REDACTED, "redacted while still staged")
        f.reply("A", "a-new")
        self.assertEqual(self.successResultOf(d), ("A", "B"))
        self.assertEqual(self.values(f), ("a-new", "b-new"))

    def test_failure_keeps_old_values(self) -> None:
        f = self.seeded()
        d = f.client.refresh(["A", "B"])
        f.reply("A", "a-new")
        f.clock.advance(5)
        self.assertIn("'B'", str(self.failureResultOf(d, SecretError).value))
        self.assertEqual(self.values(f), ("a-old", "b-old"))
        # Later values are plain updates again, nothing is left staged.
        f.reply("A", "a-later")
        self.assertEqual(f.client.cached("A").expose(), "a-later")

    def test_pushed_value_during_refresh_waits_for_the_swap(self) -> None:
        f = self.seeded()
        d = f.client.refresh(["A", "B"])
        f.reply("A", "a-new")
        f.reply("A", "a-newer")  # pushed again by the orchestrator
        self.assertEqual(self.values(f), ("a-old", "b-old"))
        f.reply("B", "b-new")
        self.successResultOf(d)
        self.assertEqual(self.values(f), ("a-newer", "b-new"))

    def test_failed_refresh_keeps_the_value_in_use_in_the_redaction_history(self) -> None:
        """
        A value that arrived for a refresh that then failed goes to the redactor's
        history, not the value the module still uses: one rotation later (history 1)
        the old, still used value is redacted as the previous one.
        """
        f = Fixture(timeout=5)
        f.redactor.set_history(1)
        f.client.seed({"A": "a-old-value", "B": "b-old-value"})
        d = f.client.refresh(["A", "B"])
        f.reply("A", "a-new-unused")
        f.clock.advance(5)
        self.failureResultOf(d, SecretError)
        self.assertEqual(f.client.cached("A").expose(), "a-old-value")
        f.reply("A", "a-later-value")
        self.assertEqual(f.redactor.redact("a-old-value"), REDACTED)
        self.assertEqual(f.redactor.redact("a-later-value"), REDACTED)

    def test_refresh_nothing(self) -> None:
        f = self.seeded()
        self.assertEqual(self.successResultOf(f.client.refresh([])), ())
        self.assertEqual(f.requested(), [])


# -- the rotation flow, through the module service ------------------------------------------

SECRETS = {"API_KEY": "k-1234567", "DB_PASSWORD": "pw-987654"}


def ready(config: RuntimeConfig | None = None, env: dict[str, str] | None = None) -> Harness:
    h = Harness(echo_app, config=config)
    h.start()
    h.feed(init_line(env=env))
    h.answer_secrets({k: v for k, v in SECRETS.items() if k not in (env or {})})
    assert h.service.status == READY
    h.new()
    return h


def rotated(keys: list[str], rotation_id: str) -> bytes:
    return line({"op": "rotated", "keys": keys, "rotation_id": rotation_id})


def secret(name: str, value: str, rotation_id: str | None = None) -> bytes:
    obj: dict[str, Any] = {"op": "secret", "name": name, "value": value}
    if rotation_id is not None:
        obj["rotation_id"] = rotation_id
    return line(obj)


def route(h: Harness, path: str = "/key") -> bytes:
    h.feed(
        line(
            {
                "op": "http_request",
                "request_id": "r",
                "method": "GET",
                "uri": path,
                "headers": {},
                "body": None,
            }
        )
    )
    return bytes(h.new()[-1]["content"]["body"])


class RotationFlowTests(SynchronousTestCase):
    def test_success_ack_after_every_key_and_callback(self) -> None:
        h = ready()
        h.feed(rotated(["API_KEY", "DB_PASSWORD", "NOT_MINE"], "rot-1"))
        self.assertEqual(
            h.new(),
            [{"op": "get_secret", "name": "API_KEY"}, {"op": "get_secret", "name": "DB_PASSWORD"}],
        )
        h.feed(secret("DB_PASSWORD", "pw-new", "rot-1"))
        # Half the rotation is in: routes still see the old values, no ack yet.
        self.assertEqual(route(h), b"k-1234567")
        self.assertEqual(h.service.state.secret("DB_PASSWORD").expose(), "pw-987654")
        h.feed(secret("API_KEY", "k-new", "rot-1"))
        self.assertEqual(
            h.new(), [{"op": "rotation_ack", "rotation_id": "rot-1", "status": "success"}]
        )
        self.assertEqual(route(h), b"k-new")
        self.assertEqual(h.service.state.secret("DB_PASSWORD").expose(), "pw-new")

    def test_on_rotation_order_and_deferreds_awaited(self) -> None:
        h = ready()
        calls: list[tuple[str, tuple[str, ...], str]] = []
        gate: Deferred[None] = Deferred()

        @h.service.state.on_rotation
        def first(names):
            calls.append(("first", names, h.service.state.secret("API_KEY").expose()))
            return gate

        @h.service.state.on_rotation
        def second(names):
            calls.append(("second", names, h.service.state.secret("API_KEY").expose()))

        h.feed(rotated(["API_KEY"], "rot-2"))
        h.new()
        self.assertEqual(calls, [])
        h.feed(secret("API_KEY", "k-2"))
        # Callbacks run after the new value is in, in registration order; each is
        # awaited before the next, and the ack waits for all.
        self.assertEqual(calls, [("first", ("API_KEY",), "k-2")])
        self.assertEqual(h.new(), [])
        gate.callback(None)
        self.assertEqual(calls[-1], ("second", ("API_KEY",), "k-2"))
        self.assertEqual(h.new()[-1]["status"], "success")

    def test_callback_failure_acks_error_and_others_still_run(self) -> None:
        h = ready()
        ran: list[str] = []
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)

        @h.service.state.on_rotation
        def reload_pool(names):
            raise RuntimeError("pool reload failed")

        @h.service.state.on_rotation
        def after(names):
            ran.append("after")

        h.feed(rotated(["API_KEY"], "rot-3"))
        h.feed(secret("API_KEY", "k-3"))
        ack = h.new()[-1]
        self.assertEqual(
            (ack["op"], ack["rotation_id"], ack["status"]), ("rotation_ack", "rot-3", "error")
        )
        self.assertIn("reload_pool", ack["message"])
        self.assertNotIn("k-3", ack["message"])
        self.assertEqual(ran, ["after"])
        self.assertTrue(
            any(
                e.get("log_failure") is not None and e["log_level"] == LogLevel.critical
                for e in logged
            )
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_refetch_timeout_acks_error_naming_the_key(self) -> None:
        h = ready(config=RuntimeConfig(secret_timeout=4))
        called: list[Any] = []
        h.service.state.on_rotation(called.append)
        h.feed(rotated(["API_KEY", "DB_PASSWORD"], "rot-4"))
        h.new()
        h.feed(secret("API_KEY", "k-4"))
        h.reactor.advance(4)
        ack = h.new()[-1]
        self.assertEqual(ack["status"], "error")
        self.assertIn("DB_PASSWORD", ack["message"])
        self.assertNotIn("k-4", ack["message"])
        self.assertEqual(called, [], "callbacks only run after a rotation was applied")
        self.assertEqual(route(h), b"k-1234567", "the old values stay")

    def test_unused_keys_only(self) -> None:
        h = ready()
        called: list[Any] = []
        h.service.state.on_rotation(called.append)
        h.feed(rotated(["SOMEONE_ELSES"], "rot-5"))
        self.assertEqual(
            h.new(), [{"op": "rotation_ack", "rotation_id": "rot-5", "status": "success"}]
        )
        self.assertEqual(called, [()])

    def test_env_seeded_key_is_refetched(self) -> None:
        h = ready(env={"API_KEY": "from-env"})
        self.assertEqual(route(h), b"from-env")
        h.feed(rotated(["API_KEY"], "rot-6"))
        self.assertEqual(h.new(), [{"op": "get_secret", "name": "API_KEY"}])
        h.feed(secret("API_KEY", "k-6"))
        self.assertEqual(h.new()[-1]["status"], "success")
        self.assertEqual(route(h), b"k-6")

    def test_unsolicited_secret_updates_the_cache(self) -> None:
        h = ready()
        h.feed(secret("API_KEY", "pushed-1"))
        self.assertEqual(h.new(), [])
        self.assertEqual(route(h), b"pushed-1")
        self.assertEqual(h.redactor.redact("pushed-1"), REDACTED)

    def test_rotate_false_acks_without_refetch(self) -> None:
        from pywatt_twisted import pywatt_module

        no_rotate = pywatt_module(secrets=["API_KEY"], rotate=False)(echo_app.create_app)
        h = Harness(no_rotate)
        h.start()
        h.feed(init_line())
        h.answer_secrets({"API_KEY": "k-1"})
        h.new()
        h.feed(rotated(["API_KEY"], "rot-7"))
        self.assertEqual(
            h.new(), [{"op": "rotation_ack", "rotation_id": "rot-7", "status": "success"}]
        )


class EscapedFormsTests(SynchronousTestCase):
    """
    A value must be redacted however it reaches a log line: inside the repr of a
    container, of bytes, of an exception holding its repr, or JSON-escaped.
    """

    VALUE = 'we{ird}\'s "val\\ue" é-42'

    def redactor(self) -> Redactor:
        r = Redactor()
        r.add(self.VALUE)
        return r

    def test_every_escaped_form(self) -> None:
        r = self.redactor()
        v = self.VALUE
        for text in (
            v,
            repr(v),
            repr([v]),
            repr({"k": v, v: 1}),
            repr(v.encode()),
            repr([v.encode()]),
            repr(ValueError(f"bad {v!r}")),
            json.dumps(v),
            json.dumps(v, ensure_ascii=False),
            json.dumps(repr(v)),
        ):
            redacted = r.redact(text)
            self.assertIn(REDACTED, redacted, text)
            self.assertNotIn("ird}", redacted, text)

    def test_plain_values_have_one_form(self) -> None:
        from pywatt_twisted._runtime.redaction import variants

        self.assertEqual(variants("plain-Value_123"), {"plain-Value_123"})
        self.assertEqual(len(Redactor()), 0)
        r = self.redactor()
        self.assertEqual(len(r), 1, "len() counts values, not forms")

    def test_text_without_values_untouched(self) -> None:
        r = self.redactor()
        text = "we{ird} is not the value, nor is val\\ue"
        self.assertEqual(r.redact(text), text)
