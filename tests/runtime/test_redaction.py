"""
Tests for L{pywatt_twisted._runtime.redaction}: the bounded history of values per secret,
a matching structure whose size does not grow with the number of rotations, short values
redacted only as whole tokens, and the escaped forms.
"""

from __future__ import annotations

import json

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.redaction import MIN_SUBSTRING_LENGTH, Redactor
from pywatt_twisted._runtime.secret import REDACTED, Secret
from pywatt_twisted._runtime.service import ModuleService
from tests.runtime.modules import echo_app


def rotated(i: int) -> str:
    """
    The value of rotation C{i}: every value has the same length and shape.
    """
    return f"rotated-value-{i:08d}"


class HistoryTests(SynchronousTestCase):
    def rotate(self, redactor: Redactor, times: int) -> None:
        for i in range(times):
            redactor.add(Secret("API_KEY", rotated(i)))

    def test_held_values_and_structure_flat_from_10_to_10000_rotations(self) -> None:
        """
        After 10 and after 10,000 rotations of one name the redactor holds the same
        number of values (current + history) and the last rebuild did the same work,
        over an automaton of the same bounded size.
        """
        small, large = Redactor(history=3), Redactor(history=3)
        self.rotate(small, 10)
        self.assertEqual(len(small), 4)
        self.rotate(large, 10_000)
        self.assertEqual(len(large), 4)
        self.assertEqual(large.build_steps, small.build_steps)
        self.assertEqual(large.build_steps, 4 * len(rotated(0)))
        self.assertLessEqual(large.matcher_size, large.build_steps + 1)
        self.assertLessEqual(small.matcher_size, small.build_steps + 1)

    def test_last_n_redacted_older_forgotten(self) -> None:
        r = Redactor(history=3)
        self.rotate(r, 10)
        for i in range(10):
            expected = f"x {REDACTED} y" if i >= 6 else f"x {rotated(i)} y"
            self.assertEqual(r.redact(f"x {rotated(i)} y"), expected, i)

    def test_other_names_keep_their_values(self) -> None:
        r = Redactor(history=1)
        r.add(Secret("DB_PASSWORD", "db-password-1"))
        self.rotate(r, 50)
        r.add("auth-token-pinned")
        self.rotate(r, 50)
        self.assertEqual(r.redact("db-password-1 auth-token-pinned"), f"{REDACTED} {REDACTED}")
        self.assertEqual(len(r), 4)

    def test_value_coming_back_is_not_counted_twice(self) -> None:
        r = Redactor(history=2)
        for value in ("value-aaaaaaaa", "value-bbbbbbbb", "value-aaaaaaaa", "value-cccccccc"):
            r.add(value, name="A")
        self.assertEqual(len(r), 3)
        self.assertEqual(r.redact("value-bbbbbbbb"), REDACTED)

    def test_same_value_under_two_names_stays_while_one_holds_it(self) -> None:
        r = Redactor(history=0)
        r.add("shared-value-1", name="A")
        r.add("shared-value-1", name="B")
        r.add("new-value-of-a", name="A")
        self.assertEqual(r.redact("shared-value-1"), REDACTED)

    def test_forgetting_is_logged_once_with_the_option(self) -> None:
        r = Redactor(history=2)
        with capturedLogs() as events:
            self.rotate(r, 3)
        self.assertEqual(events, [])
        with capturedLogs() as events:
            self.rotate(r, 10)
        (event,) = events
        text = formatEvent(event)
        self.assertIn("--redaction-history", text)
        self.assertIn("PYWATT_REDACTION_HISTORY", text)
        self.assertIn("last 2 past value(s)", text)
        self.assertNotIn("rotated-value", text)

    def test_set_history_trims_at_once(self) -> None:
        r = Redactor(history=3)
        self.rotate(r, 4)
        with capturedLogs() as events:
            r.set_history(1)
        self.assertEqual(len(events), 1)
        self.assertEqual(r.history, 1)
        self.assertEqual(len(r), 2)
        self.assertEqual(r.redact(rotated(2)), REDACTED)
        self.assertEqual(r.redact(rotated(1)), rotated(1))
        r.set_history(3)
        self.rotate(r, 2)
        self.assertEqual(len(r), 4, "room for 3 past values again")
        self.assertRaises(ValueError, Redactor, -1)

    def test_module_service_takes_history_from_config(self) -> None:
        r = Redactor()
        ModuleService(
            echo_app,
            reactor=object(),
            connect_stdio=lambda protocol: None,
            stop_process=lambda code: None,
            config=RuntimeConfig(redaction_history=7),
            redactor=r,
        )
        self.assertEqual(r.history, 7)
        self.assertEqual(RuntimeConfig.from_environment({}).redaction_history, 3)
        self.assertEqual(
            RuntimeConfig.from_environment({"PYWATT_REDACTION_HISTORY": "5"}).redaction_history,
            5,
        )


class ShortValueTests(SynchronousTestCase):
    """
    A value shorter than L{MIN_SUBSTRING_LENGTH} characters is redacted only as a whole
    token: not glued to a letter, digit or underscore on either side.
    """

    def test_whole_tokens_only(self) -> None:
        r = Redactor()
        r.add(Secret("DB_USER", "user"))
        self.assertLess(len("user"), MIN_SUBSTRING_LENGTH)
        for text in ("username", "superuser", "user_id", "user1", "the_user", "éuser"):
            self.assertEqual(r.redact(text), text)
        for text, expected in (
            ("user", REDACTED),
            ("user=bob", f"{REDACTED}=bob"),
            ("the user is", f"the {REDACTED} is"),
            ("postgres://user:pw@db/x", f"postgres://{REDACTED}:pw@db/x"),
            (repr(["user"]), f"['{REDACTED}']"),
            (json.dumps({"k": "user"}), f'{{"k": "{REDACTED}"}}'),
        ):
            self.assertEqual(r.redact(text), expected)

    def test_escaped_forms_of_short_values_as_whole_tokens(self) -> None:
        r = Redactor()
        r.add(Secret("PIN", 'p"w\\1'))
        self.assertEqual(r.redact(repr('p"w\\1')), f"'{REDACTED}'")
        self.assertEqual(r.redact(json.dumps('p"w\\1')), f'"{REDACTED}"')
        self.assertEqual(r.redact(json.dumps('p"w\\12')), json.dumps('p"w\\12'))

    def test_long_values_still_substrings(self) -> None:
        r = Redactor()
        r.add(Secret("PW", "hunter22"))
        r.add(Secret("U", "hunt"))
        self.assertEqual(r.redact("xhunter22x hunt hunting"), f"x{REDACTED}x {REDACTED} hunting")

    def test_one_warning_per_name_without_the_value(self) -> None:
        r = Redactor()
        with capturedLogs() as events:
            r.add(Secret("DB_USER", "user"))
            r.add(Secret("DB_USER", "usr2"))
            r.add(Secret("LONG", "long-enough-value"))
            r.add(Secret("PIN", "1234"))
        texts = [formatEvent(e) for e in events]
        self.assertEqual(len(texts), 2, texts)
        self.assertIn("DB_USER", texts[0])
        self.assertIn("PIN", texts[1])
        for text in texts:
            self.assertIn("weak", text)
            self.assertIn("whole word", text)
            for value in ("user", "usr2", "1234"):
                self.assertNotIn(value, text.replace("DB_USER", ""))

    def test_dict_keys_keep_short_values(self) -> None:
        r = Redactor()
        r.add(Secret("DB_USER", "user"))
        r.add(Secret("PW", "long-password-1"))
        self.assertEqual(
            r.redact_value({"user": "user", "long-password-1": ["user"]}),
            {"user": REDACTED, REDACTED: [REDACTED]},
        )


class MatchingTests(SynchronousTestCase):
    def test_leftmost_longest_overlaps(self) -> None:
        r = Redactor()
        r.add("abcdefghij")
        r.add("ghijklmnop")
        r.add("abcdefgh")
        self.assertEqual(r.redact("abcdefghijklmnop"), f"{REDACTED}klmnop")
        self.assertEqual(r.redact("zzabcdefghzz"), f"zz{REDACTED}zz")

    def test_empty_redactor_and_text(self) -> None:
        r = Redactor()
        self.assertEqual(r.redact("anything"), "anything")
        self.assertEqual(r.matcher_size, 0)
        r.add("something-secret")
        self.assertEqual(r.redact(""), "")
