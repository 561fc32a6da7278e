"""
Tests for L{pywatt_twisted._runtime.config}: one table of settings feeds the config,
the environment variables and the twistd options.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import SETTINGS, RuntimeConfig, option_parameters
from pywatt_twisted.errors import ConfigurationError


class SettingsTableTests(SynchronousTestCase):
    def test_every_field_has_one_setting(self) -> None:
        import attrs

        fields = {f.name for f in attrs.fields(RuntimeConfig)}
        self.assertEqual(fields, {s.field for s in SETTINGS})
        self.assertEqual(len({s.variable for s in SETTINGS}), len(SETTINGS))
        self.assertEqual(len({s.option for s in SETTINGS}), len(SETTINGS))

    def test_options_show_default_and_variable(self) -> None:
        rows = {row[0]: row[3] for row in option_parameters()}
        self.assertIn("(default 16777216; $PYWATT_MAX_BODY_SIZE)", rows["max-body-size"])
        self.assertIn("(default on; $PYWATT_ROUTED_REPLIES)", rows["routed-replies"])
        self.assertNotIn("registration-address", rows)

    def test_environment_and_overrides(self) -> None:
        env = {"PYWATT_MAX_BODY_SIZE": "1000", "PYWATT_HANDLER_TIMEOUT": "2.5"}
        config = RuntimeConfig.from_environment(env, handler_timeout="7")
        self.assertEqual(config.max_body_size, 1000)
        self.assertEqual(config.handler_timeout, 7.0)
        self.assertEqual(
            RuntimeConfig.from_environment({}, **{"max-body-size": "5"}).max_body_size, 5
        )

    def test_bad_values_name_their_source(self) -> None:
        e = self.assertRaises(
            ConfigurationError, RuntimeConfig.from_environment, {"PYWATT_MAX_BODY_SIZE": "x"}
        )
        self.assertIn("PYWATT_MAX_BODY_SIZE must be an integer", str(e))
        e = self.assertRaises(
            ConfigurationError, RuntimeConfig.from_environment, {}, redaction_history="0"
        )
        self.assertIn("--redaction-history must be positive", str(e))

    def test_stdout_water_marks(self) -> None:
        config = RuntimeConfig.from_environment({}, stdout_high_water="4000")
        self.assertEqual(config.stdout_resume_below, 1000)
        self.assertRaises(
            ConfigurationError, RuntimeConfig, stdout_high_water=10, stdout_low_water=10
        )
